"""Poll capacity: one worker process keeps N live bids on a 60 s ladder against a sandbox with 20 ms
latency per call. Target (issue 2): 10,000 bids with a p99 poll lag under 5 s.

The lag of a poll is how late it ran after its row became due. Bids start spread evenly over one ladder
step (a steady state: bids arrive over time), then the worker polls for ``--seconds`` of real time.
The sandbox runs in a process of its own (`exsync sandbox premium`), as the real engine is another server.
The baseline in the same run is the sandbox's own floor: bid_info calls made back-to-back by the same
number of threads, without any database work.

    python -m bench.poll [--bids 10000] [--ladder 60] [--seconds 150] [--latency 0.02]
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import text

from bench.common import database, report, runtime_for, settings_for
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bids", type=int, default=10_000)
    ap.add_argument("--ladder", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--latency", type=float, default=0.02)
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
