"""Sweep benchmark: N bids from the Premium sandbox reconciled into an empty, then a full, mirror.

Targets: at least 5,000 bids/s overall (issue 2), and the database stage at least as fast as a raw
``execute_values`` upsert of the same rows into a table like ``bids`` (same columns, same indexes),
measured in the same run (issue 9, item 8; was 50% in issue 2), into an empty and into a full mirror;
each baseline runs right before or after the sweep it is compared with.

The sandbox runs in a process of its own (`exsync sandbox premium`), as the real engine is another server:
served from threads of this process it took the GIL from the sweep's own threads.

    python -m bench.sweep [--bids 100000]
"""
from __future__ import annotations

import argparse
import sys
import time

import requests
from psycopg2.extras import execute_values
from sqlalchemy import text

from bench.common import database, report, runtime_for, settings_for
from bench.poll import start_sandbox
from core.clock import now_utc
from worker import reconcile
from worker.sweep import EPOCH, sweep_exchanger

COLUMNS = ("exchanger", "remote_id", "status", "observed_at", "remote_changed_at", "created_via",
           "first_seen_at", "updated_at") + reconcile.DATA_FIELDS


def baseline_upsert(rt, pages) -> float:
    """The floor: one execute_values upsert per page into bench_baseline, no rules, no history."""
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c not in ("exchanger", "remote_id"))
    sql = (f"INSERT INTO bench_baseline ({', '.join(COLUMNS)}) VALUES %s "
           f"ON CONFLICT (exchanger, remote_id) DO UPDATE SET {sets}")
    now = now_utc()
    started = time.perf_counter()
    for page in pages:
        rows = [tuple(["main", s.remote_id, s.status, s.observed_at, s.remote_changed_at, "sweep", now, now]
                      + [getattr(s, k) for k in reconcile.DATA_FIELDS]) for s in page]
        with rt.db.session() as session:
            cur = session.connection().connection.dbapi_connection.cursor()
            execute_values(cur, sql, rows, page_size=len(rows))
            cur.close()
    return time.perf_counter() - started


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bids", type=int, default=100_000)
    args = ap.parse_args(argv)

    sandbox, sandbox_url = start_sandbox()
    try:
        requests.post(f"{sandbox_url}/_sandbox/bids/bulk", json={"n": args.bids, "spread_seconds": 6 * 3600},
                      timeout=120).raise_for_status()
        return measure(args, sandbox_url)
    finally:
        sandbox.terminate()
        sandbox.wait(10)


def measure(args, sandbox_url: str) -> int:
    with database() as url:
        rt = runtime_for(settings_for(sandbox_url, url))
        with rt.db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_baseline (LIKE bids INCLUDING ALL)"))

        # The same rows for the baseline, fetched first (not timed): the same window, pages and order.
        client = rt.premium("main")
        pages = [reconcile.snapshots(page, now_utc())[0] for page in client.iter_exchanges(
            start_time=EPOCH, end_time=now_utc(), page_size=rt.settings.sweep_page_size)]

        # Baseline, sweep, sweep, baseline: each baseline runs next to the sweep it is compared with, so a
        # change in what else the machine does weighs on both (the baseline used to run after both sweeps).
        base_empty = baseline_upsert(rt, pages)
        t0 = time.perf_counter()
        empty = sweep_exchanger(rt, "main")
        empty_s = time.perf_counter() - t0
        # The sweep re-reads from its cursor minus the overlap; to reconcile every bid again into the full
        # mirror, sweep the same whole window once more.
        t0 = time.perf_counter()
        full = sweep_exchanger(rt, "main", since=empty.window_start)
        full_s = time.perf_counter() - t0
        base_full = baseline_upsert(rt, pages)
        assert empty.seen == args.bids == full.seen == sum(map(len, pages)), (empty.seen, full.seen)
        with rt.db.engine.connect() as conn:
            history = conn.execute(text("SELECT count(*) FROM bid_status_changes")).scalar()
        rt.close()

    n = args.bids
    rate_empty, rate_full = n / empty_s, n / full_s
    ratio_empty, ratio_full = base_empty / empty.db_seconds, base_full / full.db_seconds
    rows = [
        ("bids", n),
        ("empty mirror: total", f"{empty_s:.2f} s = {rate_empty:,.0f} bids/s"),
        ("empty mirror: db stage",
         f"{empty.db_seconds:.2f} s (baseline upsert {base_empty:.2f} s, ratio {ratio_empty:.2f})"),
        ("empty mirror: waiting on engine", f"{empty.fetch_seconds:.2f} s"),
        ("full mirror: total", f"{full_s:.2f} s = {rate_full:,.0f} bids/s"),
        ("full mirror: db stage",
         f"{full.db_seconds:.2f} s (baseline upsert {base_full:.2f} s, ratio {ratio_full:.2f})"),
        ("full mirror: unchanged rows skipped", full.unchanged),
        ("history rows written", history),
    ]
    checks = [
        ("overall >= 5,000 bids/s (empty)", rate_empty >= 5000),
        ("overall >= 5,000 bids/s (full)", rate_full >= 5000),
        ("db stage >= raw upsert (empty)", ratio_empty >= 1.0),
        ("db stage >= raw upsert (full)", ratio_full >= 1.0),
    ]
    return report("sweep", rows, checks)


if __name__ == "__main__":
    sys.exit(main())
