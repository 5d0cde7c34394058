"""Poll capacity: one worker process keeps N live bids on a 60 s ladder against a sandbox with 20 ms
latency per call. Target (issue 2): 10,000 bids with a p99 poll lag under 5 s.

``--workers 1,2,4`` measures instead how polling scales with worker processes (issue 9): for each count,
real ``exsync worker`` processes and one ``exsync beat`` poll a backlog that never runs dry (every bid due
again 1 s after its poll) for ``--seconds``, and the polls completed per second are set beside the bare
``bid_info`` rate of as many client processes with the same threads each (``poll.FETCH_THREADS``, what
one worker process polls with), against the same sandbox in the same run. Target: ratio >= 0.7.
The processes' logs stay in the temporary folder printed at the end (EXSYNC_LOG_LEVEL=DEBUG shows
every task; WARNING by default).

The lag of a poll is how late it ran after its row became due. Bids start spread evenly over one ladder
step (a steady state: bids arrive over time), then the worker polls for ``--seconds`` of real time.
The sandbox runs in a process of its own (`exsync sandbox premium`), as the real engine is another server.
The baseline in the same run is the sandbox's own floor: bid_info calls made back-to-back by the same
number of threads, without any database work.

    python -m bench.poll [--bids 10000] [--ladder 60] [--seconds 150] [--latency 0.02]
    python -m bench.poll --workers 1,2,4 [--bids 3000] [--seconds 30] [--latency 0.02]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import text

from bench.common import database, env_for, redis, report, runtime_for, settings_for
from core.config import load_settings
from worker import poll
from worker.sweep import sweep_exchanger


def percentile(values, q):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def start_sandbox() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "exsync"
    proc = subprocess.Popen([str(exe), "sandbox", "premium", "--port", str(port), "--seed", "3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            requests.get(f"{url}/_sandbox/state", timeout=1)
            return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the sandbox did not start")


def measure(args, url: str, ids: list[int]) -> tuple[float, list[float], int, int, int]:
    with database() as db_url:
        ladder = f"[settings.poll_ladder]\ndefault = [{args.ladder}]\nnew = [{args.ladder}]"
        rt = runtime_for(settings_for(url, db_url, extra_settings=f"poll_batch = 500\n{ladder}", rate_limit=5000))
        sweep_exchanger(rt, "main")
        requests.post(f"{url}/_sandbox/knobs", json={"latency": args.latency}, timeout=10)

        # Baseline: the engine's floor, bid_info calls only, same thread count.
        client = rt.premium("main")
        sample = ids[: min(2000, len(ids))]
        with ThreadPoolExecutor(poll.FETCH_THREADS) as pool:
            t0 = time.perf_counter()
            list(pool.map(lambda i: client.bid_info(id=i), sample))
            floor_rate = len(sample) / (time.perf_counter() - t0)

        with rt.db.engine.begin() as conn:  # steady state: due times spread over one ladder step
            conn.execute(text("UPDATE bid_polls SET next_poll_at = now() + random() * make_interval(secs => :s)"),
                         {"s": args.ladder})
        lags, claimed, errors = [], 0, 0
        deadline = time.monotonic() + args.seconds
        with ThreadPoolExecutor(poll.FETCH_THREADS, thread_name_prefix="poll") as pool:
            while time.monotonic() < deadline:
                r = poll.poll_due(rt, budget_seconds=min(10.0, deadline - time.monotonic()), idle_wait=0.1, pool=pool)
                lags += r.lags
                claimed += r.claimed
                errors += r.errors
        with rt.db.engine.connect() as conn:
            overdue = conn.execute(text(
                "SELECT count(*) FROM bid_polls WHERE state = 'active' AND next_poll_at < now() - interval '5 seconds'"
            )).scalar()
        rt.close()
    return floor_rate, lags, claimed, errors, overdue


def worker_counts(raw: str) -> list[int]:
    try:
        counts = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of worker counts, got {raw!r}") from None
    if not counts or any(not 1 <= n <= 16 for n in counts):
        raise argparse.ArgumentTypeError(f"worker counts must be between 1 and 16, got {raw!r}")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bids", type=int, default=None, help="live bids (default 10000; 3000 with --workers)")
    ap.add_argument("--ladder", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=None, help="measured seconds (default 150; 30 per count "
                    "with --workers)")
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--workers", type=worker_counts, default=None, metavar="N[,N…]",
                    help="measure the sustained poll rate with each number of worker processes")
    ap.add_argument("--bare-client", nargs=4, help=argparse.SUPPRESS)  # URL IDS_FILE START SECONDS (internal)
    args = ap.parse_args(argv)
    if args.bare_client:
        return bare_client(*args.bare_client)
    if args.workers:
        args.bids = args.bids or 3000
        args.seconds = args.seconds or 30.0
        return main_workers(args)
    args.bids = args.bids or 10_000
    args.seconds = args.seconds or 150.0

    sandbox, url = start_sandbox()
    try:
        ids = requests.post(f"{url}/_sandbox/bids/bulk", json={"n": args.bids, "spread_seconds": 600,
                                                                "statuses": ["new"]}, timeout=60).json()["ids"]
        floor_rate, lags, claimed, errors, overdue = measure(args, url, ids)
    finally:
        sandbox.terminate()
        sandbox.wait(10)

    needed = args.bids / args.ladder
    achieved = claimed / args.seconds
    p50, p99, worst = percentile(lags, 0.5), percentile(lags, 0.99), max(lags, default=0.0)
    rows = [
        ("live bids / ladder", f"{args.bids} / {args.ladder} s (needs {needed:,.0f} polls/s)"),
        ("sandbox latency", f"{args.latency * 1000:.0f} ms (sandbox in its own process)"),
        ("polls made", f"{claimed} in {args.seconds:.0f} s = {achieved:,.0f}/s, errors {errors}"),
        ("baseline: bare bid_info calls", f"{floor_rate:,.0f}/s with {poll.FETCH_THREADS} threads"),
        ("headroom: baseline / needed", f"{floor_rate / needed:.1f}x"),
        ("poll lag p50 / p99 / max", f"{p50:.2f} s / {p99:.2f} s / {worst:.2f} s"),
        ("mean lag", f"{statistics.fmean(lags) if lags else 0:.2f} s"),
        ("overdue by > 5 s at the end", overdue),
    ]
    checks = [("p99 poll lag < 5 s", p99 < 5.0), ("kept up (overdue at end == 0)", overdue == 0)]
    return report("poll", rows, checks)


# -- --workers: the sustained poll rate of N worker processes beside N bare clients ---------------------

WARMUP = 4.0  # seconds after every worker consumes before counting (pools and connections warm up)


def bare_client(url: str, ids_file: str, start: str, seconds: str) -> int:
    """One bare client process: FETCH_THREADS threads calling bid_info back to back from ``start`` (epoch)
    for ``seconds``; prints how many calls ended inside that window."""
    from providers.premium import PremiumClient
    from providers.premium.sandbox import DEFAULT_KEY, DEFAULT_LOGIN

    ids = json.loads(Path(ids_file).read_text())
    client = PremiumClient(url, DEFAULT_LOGIN, DEFAULT_KEY, timeout=30)
    t0, t1 = float(start), float(start) + float(seconds)

    def loop(k: int) -> int:
        n, i = 0, k
        time.sleep(max(0.0, t0 - time.time()))
        while True:
            client.bid_info(id=ids[i % len(ids)])
            if time.time() > t1:
                return n
            n += 1
            i += poll.FETCH_THREADS

    with ThreadPoolExecutor(poll.FETCH_THREADS) as pool:
        print(sum(pool.map(loop, range(poll.FETCH_THREADS))), flush=True)
    return 0


def bare_rate(url: str, ids: list[int], processes: int, seconds: float, tmp: Path) -> float:
    """bid_info calls per second of ``processes`` bare client processes running at once."""
    ids_file = tmp / "ids.json"
    ids_file.write_text(json.dumps(ids))
    start = time.time() + 3.0  # every client is up and connected before the window opens
    procs = [subprocess.Popen([sys.executable, "-m", "bench.poll", "--bare-client", url, str(ids_file), str(start),
                               str(seconds)], stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    total = 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 120)
        if p.returncode:
            raise SystemExit(f"a bare client failed ({p.returncode})")
        total += int(out.strip().splitlines()[-1])
    return total / seconds


def _exsync(args: list[str], env: dict, log) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "exsync"
    return subprocess.Popen([str(exe), *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def _polls(rt) -> int:
    with rt.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(sum(polls), 0) FROM bid_polls")).scalar())


def _consuming(rt, since: float) -> int:
    with rt.db.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM worker_liveness WHERE stopped_at IS NULL AND canary_consumed_at IS NOT NULL "
            "AND started_at >= to_timestamp(:since)"), {"since": since}).scalar())


def poll_rate(rt, env: dict, workers: int, seconds: float, tmp: Path) -> tuple[float, int]:
    """Polls per second completed by ``workers`` exsync worker processes (with one beat) after warm-up."""
    launched = time.time() - 1
    logs = [open(tmp / f"worker-{workers}-{i}.log", "wb") for i in range(workers)]
    procs = [_exsync(["worker"], env, log) for log in logs]
    try:
        deadline = time.monotonic() + 120
        while _consuming(rt, launched) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"the {workers} workers did not all start: see {tmp}")
            time.sleep(0.5)
        time.sleep(WARMUP)
        before, t0 = _polls(rt), time.monotonic()
        time.sleep(seconds)
        after, t1 = _polls(rt), time.monotonic()
    finally:
        _stop(procs)
        for log in logs:
            log.close()
    with rt.db.engine.connect() as conn:
        errors = int(conn.execute(text("SELECT count(*) FROM bid_polls WHERE last_error IS NOT NULL")).scalar())
    return (after - before) / (t1 - t0), errors


def main_workers(args) -> int:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="exsync-bench-poll-"))
    sandbox, url = start_sandbox()
    results: list[tuple[int, float, float, int]] = []
    try:
        ids = requests.post(f"{url}/_sandbox/bids/bulk", json={"n": args.bids, "spread_seconds": 600,
                                                                "statuses": ["new"]}, timeout=60).json()["ids"]
        with database() as db_url, redis() as redis_url:
            # Every bid is due again 1 s after its poll: more than any worker count here can poll, so the
            # figure is the sustained capacity, not the demand. No sweep or partner sync during the run.
            extra = ("poll_interval = 1\nsweep_interval = 86400\npoll_give_up_after = 86400\n"
                     "[settings.poll_ladder]\ndefault = [1]\nnew = [1]")
            exsync_env = env_for(url, db_url, redis_url, extra_settings=extra)
            rt = runtime_for(load_settings(exsync_env))
            sweep_exchanger(rt, "main")
            requests.post(f"{url}/_sandbox/knobs", json={"latency": args.latency}, timeout=10)
            env = {**os.environ, **exsync_env, "EXSYNC_DATA_DIR": str(tmp / "data"),
                   "EXSYNC_LOG_LEVEL": os.environ.get("EXSYNC_LOG_LEVEL", "WARNING")}
            with open(tmp / "beat.log", "wb") as beat_log:
                beat = _exsync(["beat"], env, beat_log)
                try:
                    for n in args.workers:
                        bare = bare_rate(url, ids, n, args.seconds, tmp)
                        rate, errors = poll_rate(rt, env, n, args.seconds, tmp)
                        results.append((n, rate, bare, errors))
                finally:
                    _stop([beat])
            rt.close()
    finally:
        sandbox.terminate()
        sandbox.wait(10)

    rows: list[tuple[str, object]] = [
        ("live bids / ladder", f"{args.bids} / 1 s (a backlog that never runs dry)"),
        ("sandbox latency", f"{args.latency * 1000:.0f} ms (sandbox in its own process)"),
        ("seconds measured per count", f"{args.seconds:.0f} (after {WARMUP:.0f} s of warm-up)"),
        ("client threads per process", poll.FETCH_THREADS),
        ("logs", tmp),
    ]
    checks = []
    for n, rate, bare, errors in results:
        rows.append((f"{n} worker(s): polls/s", f"{rate:,.0f} (errors on {errors} bids)"))
        rows.append((f"{n} bare client(s): bid_info/s", f"{bare:,.0f}"))
        rows.append((f"{n} worker(s): ratio", f"{rate / bare:.2f}"))
        checks.append((f"{n} worker(s): ratio >= 0.7", rate / bare >= 0.7))
    if len(results) > 1:
        base = results[0][1]
        rows.append(("scaling: polls/s against the first count", ", ".join(
            f"{n}: {rate / base:.2f}x" for n, rate, _, _ in results)))
    return report("poll-workers", rows, checks)


if __name__ == "__main__":
    sys.exit(main())
