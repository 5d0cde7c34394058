"""Payout latency: how long a customer waits for the money after the engine's callback says "paid".

Callbacks at a steady rate move bids into ``realpay`` on the Premium sandbox; for each one the figure is
the time from the callback being SENT to exsync (a little before it arrives, so the figure errs long) to

* the ZaleyCash sandbox's ledger entry for that bid's payout (the money left), and
* ``success_bid`` reaching the Premium sandbox (the bid's ``success`` in its history).

exsync runs as it does in production, as real processes: ``exsync web`` (gunicorn) receives the
callbacks, ``exsync worker`` (Celery, threads) processes them, ``exsync beat`` runs the periodic jobs
(``--no-beat`` leaves it out: then only the event-driven path can pay, the payouts tick never runs). Both
sandboxes are served by this process with ``--latency`` per call. Bids are created on the sandbox in
``payed`` (with the customer's ZaleyCash account) and mirrored by one sweep before the clock starts.

The baseline in the same run is the floor of the same chain of calls made directly, one after another,
with no exsync in between: ``bid_info``, the ZaleyCash send, ``success_bid`` (fresh bids, same rate).

Target (issue 9): p99 < 1 s from the callback to the provider's ledger at 50 payouts/s with 20 ms sandbox
latencies; duplicates (a payout executed twice in the ledger) and lost (a callback whose bid was never
paid, or never completed) must be 0.

    python -m bench.payout_latency [--payouts 1000] [--rate 50] [--latency 0.02] [--concurrency 32] [--no-beat]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import requests
from sqlalchemy import text

from bench.common import database, redis, report, runtime_for, settings_for
from bench.ingest import free_port, start, stop, wait_http

TOKEN = "benchtoken-0123456789abcdef"
ZC_USER = "1001"  # an active child of the ZaleyCash sandbox's agent
DIRECTION = 3  # USDT → RUB via ZaleyCash in the sandbox's catalogue
BIG = "1000000000000"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def config(premium_url: str, zc_url: str) -> str:
    from providers.premium.sandbox import DEFAULT_LOGIN

    return f"""
[exchangers.main]
base_url = "{premium_url}"
api_login = "{DEFAULT_LOGIN}"
timeout = 30
rate_limit = 10000

[providers.zc]
type = "zaleycash"
base_url = "{zc_url}"
secret_key_env = "BENCH_ZC_SECRET"
status_path = "/api/v2/money/transfer/status"
timeout = 10

[routes.main]
trigger_statuses = ["realpay"]
auto_pay_ceiling = "{BIG}"

[[routes.main.rules]]
currency = "RUB"
psys_get = "ZaleyCash"
provider = "zc"
destination_field = "account2"
"""


def _sandboxes(latency: float, n: int, conn) -> None:
    """The child process that serves both sandboxes (they do not share this process's GIL with the driver).

    Answers over ``conn``: ("bids", k) → k new bids in ``payed``; ("done", ids) → how many are ``success``;
    ("report", ids) → per bid (ledger time, executions, times of ``success``); ("stop",) → ends.
    """
    from providers.premium.sandbox import create_app as premium_app
    from providers.sandbox import serve
    from providers.zaleycash.sandbox import create_app as zc_app

    premium = serve(premium_app(latency=latency, seed=9))
    zc_sb = zc_app(latency=latency, seed=10)
    zc_sb.engine.set_balance(1, BIG)
    zc = serve(zc_sb)
    pe, ze = premium.app.engine, zc.app.engine

    def bids(k: int) -> list[int]:
        return [pe.add_bid(direction_id=DIRECTION, amount=Decimal(10 + i % 90), status="payed",
                           fields={"account2": ZC_USER}) for i in range(k)]

    conn.send((premium.url, zc.url, bids(n)))
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "bids":
                conn.send(bids(msg[1]))
            elif msg[0] == "done":
                conn.send(sum(1 for r in msg[1] if pe.bid(r)["status"] == "success"))
            elif msg[0] == "report":
                with ze.lock:
                    out = {r: (ze.ledger[k].at if k in ze.ledger else None, ze.executed(k))
                           for r, k in ((r, f"exs-main-{r}") for r in msg[1])}
                conn.send({r: (*out[r], [t for t, st in pe.bid(r)["history"] if st == "success"]) for r in msg[1]})
            else:
                break
    finally:
        premium.shutdown()
        zc.shutdown()
        pe.close()


class Sandboxes:
    """Both sandboxes in a process of their own (see ``_sandboxes``)."""

    def __init__(self, latency: float, n: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sandboxes, args=(latency, n, child), daemon=True)
        self.proc.start()
        self.premium_url, self.zc_url, self.rids = self.conn.recv()
        self.http = threading.local()

    def ask(self, *msg):
        self.conn.send(msg)
        return self.conn.recv()

    def set_status(self, rid: int, status: str) -> None:
        http = getattr(self.http, "s", None) or requests.Session()
        self.http.s = http
        r = http.post(f"{self.premium_url}/_sandbox/bids/{rid}/status", json={"status": status}, timeout=10)
        r.raise_for_status()

    def close(self) -> None:
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def mirror(db_url: str, premium_url: str, rids: list[int]) -> None:
    """One sweep mirrors the bids (in ``payed``); the customer's account as exsync's create_bid stores it."""
    from worker.sweep import sweep_exchanger

    rt = runtime_for(settings_for(premium_url, db_url))
    try:
        sweep_exchanger(rt, "main")
        with rt.db.session() as s:
            s.execute(text("UPDATE bids SET request_fields = CAST(:f AS jsonb) WHERE remote_id = ANY(:ids)"),
                      {"f": f'{{"account2": "{ZC_USER}"}}', "ids": rids})
    finally:
        rt.close()


def drive(rids: list[int], rate: float, one) -> dict[int, float]:
    """Call ``one(rid)`` for each bid at a steady rate (scheduled, not after the previous one ends)."""
    sent: dict[int, float] = {}
    lock = threading.Lock()

    def job(rid: int) -> None:
        t = one(rid)
        with lock:
            sent[rid] = t

    start_at = time.monotonic() + 0.2
    with ThreadPoolExecutor(16, thread_name_prefix="bench-callbacks") as pool:
        for i, rid in enumerate(rids):
            delay = start_at + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(job, rid)
    return sent


def baseline(sb: Sandboxes, rids: list[int], rate: float) -> tuple[list[float], list[float]]:
    """The floor: bid_info → ZaleyCash send → success_bid made directly per bid, no exsync."""
    from providers.payouts import PayoutRequest
    from providers.premium import PremiumClient
    from providers.premium.sandbox import DEFAULT_KEY, DEFAULT_LOGIN
    from providers.zaleycash import ZaleyCashClient, ZaleyCashRail
    from providers.zaleycash.sandbox import DEFAULT_SECRET

    client = PremiumClient(sb.premium_url, DEFAULT_LOGIN, DEFAULT_KEY, timeout=30)
    rail = ZaleyCashRail(ZaleyCashClient(sb.zc_url, DEFAULT_SECRET), name="zc", currencies={"RUB": 1})
    to_ledger: list[float] = []
    to_success: list[float] = []
    lock = threading.Lock()

    def one(rid: int) -> float:
        sb.set_status(rid, "realpay")
        t0 = time.time()
        bid = client.bid_info(id=rid)
        rail.send(PayoutRequest(key=f"base-{rid}", amount=bid.amount_get, currency="RUB", destination=ZC_USER))
        t1 = time.time()
        client.success_bid(id=rid)
        t2 = time.time()
        with lock:
            to_ledger.append(t1 - t0)
            to_success.append(t2 - t0)
        return t0

    drive(rids, rate, one)
    return to_ledger, to_success


# Where the time goes, per payout, from exsync's own rows (medians and p99 of each step's duration).
STAGES = """
SELECT e.received_at, e.processed_at, p.created_at,
       (SELECT min(a.started_at) FROM payout_attempts a WHERE a.payout_id = p.id AND a.kind = 'submit') AS sent,
       (SELECT min(a.finished_at) FROM payout_attempts a WHERE a.payout_id = p.id AND a.kind = 'submit') AS answered,
       (SELECT min(a.started_at) FROM payout_attempts a WHERE a.payout_id = p.id AND a.kind = 'complete') AS completing,
       p.bid_completed_at
FROM payouts p
JOIN LATERAL (SELECT min(received_at) AS received_at, min(processed_at) AS processed_at FROM inbox_events
              WHERE provider = 'premium' AND (payload->>'bid_id')::bigint = p.remote_id) e ON true"""


def stages(db_url: str) -> list[tuple[str, str]]:
    from sqlalchemy import create_engine

    from models.urls import normalize_url

    engine = create_engine(normalize_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(STAGES)).all()
    finally:
        engine.dispose()
    steps = [("received -> event processed", 0, 1), ("processed -> payout created", 1, 2),
             ("created -> send started", 2, 3), ("send (provider call)", 3, 4),
             ("answered -> completion started", 4, 5), ("completion (success_bid + bid_info)", 5, 6)]
    out = []
    for name, a, b in steps:
        d = [(r[b] - r[a]).total_seconds() for r in rows if r[a] is not None and r[b] is not None]
        out.append((f"  step: {name}", f"p50 {pct(d, .5) * 1000:,.0f} ms, p99 {pct(d, .99) * 1000:,.0f} ms"))
    return out


def cpu_seconds(proc) -> float:
    """CPU time of a process and its children (gunicorn's workers), user + system."""
    import psutil

    try:
        ps = psutil.Process(proc.pid)
        total = 0.0
        for p in [ps, *ps.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payouts", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0, help="callbacks per second")
    ap.add_argument("--latency", type=float, default=0.02, help="seconds per call of each sandbox")
    ap.add_argument("--concurrency", type=int, default=32, help="EXSYNC_WORKER_CONCURRENCY of the worker")
    ap.add_argument("--workers", type=int, default=1, help="exsync worker processes")
    ap.add_argument("--no-beat", action="store_true", help="no beat: only the event-driven path can pay")
    ap.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for the last payouts")
    args = ap.parse_args(argv)
    if args.payouts < 1 or args.rate <= 0 or args.latency < 0 or args.concurrency < 1 or args.workers < 1:
        ap.error("--payouts, --rate, --concurrency and --workers must be positive, --latency >= 0")
    n = args.payouts

    from providers.premium.sandbox import DEFAULT_KEY
    from providers.zaleycash.sandbox import DEFAULT_SECRET

    sb = Sandboxes(args.latency, n)
    rids = sb.rids
    n_base = min(n, 200)
    bindir = Path(sys.executable).parent
    procs: list = []
    try:
        with database() as db_url, redis() as redis_url:
            mirror(db_url, sb.premium_url, rids)
            tmp = Path(tempfile.mkdtemp(prefix="exsync-bench-latency-"))
            (tmp / "exsync.toml").write_text(config(sb.premium_url, sb.zc_url))
            env = {**os.environ, "EXSYNC_CONFIG": str(tmp / "exsync.toml"), "EXSYNC_DATABASE_URL": db_url,
                   "EXSYNC_REDIS_URL": redis_url, "EXSYNC_EXCHANGER_MAIN_API_KEY": DEFAULT_KEY,
                   "EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN": TOKEN, "EXSYNC_LOG_LEVEL": "WARNING",
                   "EXSYNC_DATA_DIR": str(tmp / "data"), "BENCH_ZC_SECRET": DEFAULT_SECRET,
                   "EXSYNC_WORKER_CONCURRENCY": str(args.concurrency)}
            port = free_port()
            procs.append(start([str(bindir / "exsync"), "web", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                                "--threads", "8"], env))
            for _ in range(args.workers):
                procs.append(start([str(bindir / "exsync"), "worker"], env))
            if not args.no_beat:
                procs.append(start([str(bindir / "exsync"), "beat"], env))
            names = ["web"] + [f"worker{i + 1}" if args.workers > 1 else "worker" for i in range(args.workers)]
            names += [] if args.no_beat else ["beat"]
            wait_http(port, "/healthz")
            wait_http(port, "/readyz")
            url = f"http://127.0.0.1:{port}/webhooks/premium/main/{TOKEN}"
            local = threading.local()
            refused = []

            def callback(rid: int) -> float:
                http = getattr(local, "http", None) or requests.Session()
                local.http = http
                sb.set_status(rid, "realpay")  # the engine's admin marks it paid…
                t0 = time.time()  # …and its callback leaves for exsync
                r = http.post(url, data={"bid_id": str(rid), "status": "realpay"}, timeout=10)
                if r.status_code != 202:
                    refused.append(r.status_code)
                return t0

            time.sleep(1.0)  # the worker is consuming (readyz) and has warmed its pools
            cpu0 = [cpu_seconds(p) for p in procs]
            load0 = os.getloadavg()[0]
            sent = drive(rids, args.rate, callback)
            deadline = time.monotonic() + args.max_wait
            while time.monotonic() < deadline and sb.ask("done", rids) < n:
                time.sleep(0.2)
            cpu = {name: cpu_seconds(p) - c0 for name, p, c0 in zip(names, procs, cpu0, strict=True)}
            load1 = os.getloadavg()[0]
            time.sleep(1.0)  # anything late (a duplicate) has a moment to show in the ledgers
            got = sb.ask("report", rids)
            paid_at = {r: g[0] for r, g in got.items() if g[0] is not None}
            executions = {r: g[1] for r, g in got.items()}
            success_at = {r: (g[2][0] if g[2] else None) for r, g in got.items()}
            successes = {r: len(g[2]) for r, g in got.items()}
            for p in procs:
                stop(p)
            procs.clear()
            stage_rows = stages(db_url)
            # exsync is stopped: these bids are the baseline's alone.
            base_ledger, base_success = baseline(sb, sb.ask("bids", n_base), args.rate)
    finally:
        for p in procs:
            stop(p)
        sb.close()

    to_ledger = [paid_at[r] - sent[r] for r in rids if r in paid_at and r in sent]
    to_success = [success_at[r] - sent[r] for r in rids if success_at.get(r) is not None and r in sent]
    duplicates = sum(1 for c in executions.values() if c > 1) + sum(1 for c in successes.values() if c > 1)
    lost = sum(1 for r in rids if r not in paid_at or success_at.get(r) is None)  # not paid, or not completed
    first, last = min(sent.values()), max(sent.values())
    rate = (n - 1) / (last - first) if n > 1 and last > first else float("nan")
    paid_rate = len(paid_at) / (max(paid_at.values()) - first) if paid_at and max(paid_at.values()) > first else 0.0

    def line(v: list[float]) -> str:
        return (f"p50 {pct(v, .5) * 1000:,.0f} ms, p95 {pct(v, .95) * 1000:,.0f} ms, "
                f"p99 {pct(v, .99) * 1000:,.0f} ms, max {max(v, default=float('nan')) * 1000:,.0f} ms")

    p99 = pct(to_ledger, .99)
    rows = [
        ("payouts", n),
        ("processes", f"exsync web (1x8 threads), {args.workers} exsync worker ({args.concurrency} threads each)"
                      + ("" if args.no_beat else ", exsync beat")),
        ("sandbox latency", f"{args.latency * 1000:.0f} ms per call (Premium, ZaleyCash)"),
        ("callback rate", f"{rate:,.1f} callbacks/s (asked {args.rate:g}); refused {len(refused)}"),
        ("payout rate", f"{paid_rate:,.1f} payouts/s reached the provider's ledger"),
        ("callback -> provider ledger", line(to_ledger)),
        ("callback -> success_bid", line(to_success)),
        ("baseline: direct calls -> ledger", line(base_ledger) + f" ({n_base} bids)"),
        ("baseline: direct calls -> success_bid", line(base_success)),
        ("ratio p99 exsync / direct (ledger)",
         f"{p99 / pct(base_ledger, .99):.1f}" if base_ledger else "n/a"),
        *stage_rows,
        ("CPU per payout", ", ".join(f"{k} {v / n * 1000:.1f} ms" for k, v in cpu.items())),
        ("machine load (1-min average)", f"{load0:.1f} at the start, {load1:.1f} at the end on "
                                         f"{os.cpu_count()} cores (shared)"),
        ("count paid / completed", f"{len(paid_at)} / {len(to_success)}"),
        ("duplicates", duplicates),
        ("lost", lost),
    ]
    checks = [
        ("p99 callback -> provider < 1 s", p99 < 1.0),
        ("callback rate within 10% of asked", rate >= 0.9 * args.rate),
        ("duplicates == 0", duplicates == 0),
        ("lost == 0", lost == 0),
        ("every callback accepted", not refused),
    ]
    return report("payout_latency", rows, checks)


if __name__ == "__main__":
    sys.exit(main())
