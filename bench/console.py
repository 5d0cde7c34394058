"""Console benchmark: every console page on a mirror of a million bids, against the same pages on a small
mirror in the same run, and the plan of every query each page ran.

Bids are seeded in SQL (``INSERT … SELECT … generate_series``): two exchangers, 95% of bids finished
(success, cancel, error) and the rest live, an
``account2`` on a third of them, first-seen times over a year, one history row each; a payout for one bid in
ten (every state), an inbox event for one in five (some failed or dead), audit rows. Then an admin logs in
(the real app, in this process, Flask's test client) and each page is fetched: the first fetch warms the
caches, the median of the next ``--repeat`` fetches is kept.

Figures per page: milliseconds on the small mirror (the baseline) and on the big one, their ratio (near 1:
the page does not grow with the table), and what is wrong in the plans of the queries the page ran (EXPLAIN
ANALYZE of each statement as it was sent, captured from the engine): a sequential scan of a big table, or a
node that filtered out more than 10,000 rows.

    python -m bench.console [--bids 1000000] [--baseline 10000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import re
import statistics
import time
from typing import Any

from sqlalchemy import event, text

from bench.common import database, redis, report, runtime_for, settings_for

BIG_TABLES = {"bids", "bid_status_changes", "payouts", "payout_attempts", "inbox_events", "audit_events"}
PASSWORD = "bench password 0123"
TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')

SEED = [
    """INSERT INTO bids (id, exchanger, remote_id, api_id, status, currency_code_give, currency_code_get,
                         amount_give, amount_get, request_fields, created_via, observed_at, first_seen_at, updated_at)
       SELECT i, CASE WHEN i % 10 = 0 THEN 'second' ELSE 'main' END, 100000 + i, NULL,
              CASE WHEN i % 100 < 95 THEN (ARRAY['success','success','success','cancel','error'])[1 + i % 5]
                   ELSE (ARRAY['new','payed','realpay','verify','coldpay'])[1 + i % 5] END,
              'USDT', 'RUB', round((i % 5000) / 7.0, 2), round((i % 5000) * 91.8 / 7.0, 2),
              CASE WHEN i % 3 = 0 THEN jsonb_build_object('account2', 'ACC' || (i % 100000)) END, 'sweep',
              :t0 + make_interval(secs => i * :span / :n), :t0 + make_interval(secs => i * :span / :n),
              :t0 + make_interval(secs => i * :span / :n)
       FROM generate_series(1, :n) AS i""",
    """INSERT INTO bid_status_changes (bid_id, from_status, to_status, source, observed_at, recorded_at)
       SELECT id, NULL, status, 'sweep', observed_at, first_seen_at FROM bids""",
    """INSERT INTO payouts (exchanger, bid_id, remote_id, idempotency_key, provider, amount, currency, destination,
                            state, last_error, created_at, updated_at)
       SELECT exchanger, id, remote_id, 'exs-' || exchanger || '-' || remote_id,
              CASE WHEN id % 20 = 0 THEN 'gw' ELSE 'zc' END, amount_get, 'RUB', '1001',
              (ARRAY['succeeded','succeeded','succeeded','failed','needs_review','parked','cancelled',
                     'pending'])[1 + (id / 10) % 8],
              CASE WHEN (id / 10) % 8 IN (3, 4) THEN 'a person must look' END, first_seen_at, first_seen_at
       FROM bids WHERE id % 10 = 0""",
    """INSERT INTO payout_attempts (payout_id, n, kind, started_at, finished_at, outcome)
       SELECT id, 1, 'submit', created_at, created_at, CASE WHEN state = 'failed' THEN 'permanent' ELSE 'succeeded' END
       FROM payouts""",
    """INSERT INTO inbox_events (provider, endpoint, received_at, body, payload, state, attempts, last_error)
       SELECT 'premium', exchanger, first_seen_at, convert_to('bid_id=' || remote_id || '&status=' || status, 'UTF8'),
              jsonb_build_object('bid_id', remote_id, 'status', status),
              CASE WHEN id % 1000 = 5 THEN 'dead' WHEN id % 1000 = 10 THEN 'failed' ELSE 'processed' END,
              1, CASE WHEN id % 1000 IN (5, 10) THEN 'ConnectionFailedError' END
       FROM bids WHERE id % 5 = 0""",
    """INSERT INTO audit_events (at, actor, via, action, object_type, object_id, reason)
       SELECT created_at, 'ann', 'console', 'retry', 'payout', id::text, 'bench' FROM payouts WHERE id % 50 = 0""",
]


def seed(rt, n: int) -> None:
    from datetime import timedelta

    from core.clock import now_utc

    t0 = now_utc() - timedelta(days=365)
    with rt.db.engine.begin() as conn:
        for sql in SEED:
            conn.execute(text(sql), {"n": n, "t0": t0, "span": 365 * 86400.0})
        conn.execute(text("SELECT setval(pg_get_serial_sequence('bids', 'id'), :n)"), {"n": n})
    with rt.db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


def pages(n: int) -> list[str]:
    mid, some = n // 2, (n // 2) - (n // 2) % 10
    return [
        "/console/", "/console/payouts", "/console/payouts?state=needs_review", "/console/payouts?provider=gw",
        f"/console/payouts?before={n // 20}", "/console/payouts/1", "/console/bids", "/console/bids?status=verify",
        f"/console/bids?remote_id={100000 + mid}", "/console/bids?amount=100",
        f"/console/bids?account=ACC{mid % 100000 - mid % 3}",
        "/console/bids?since=2026-01-01&until=2026-01-02", "/console/bids?exchanger=second&status=success",
        "/console/bids?exchanger=second&status=cancel",
        f"/console/bids?before={mid}", f"/console/bids/main/{100000 + some + 1}", "/console/inbox",
        "/console/inbox?state=processed", "/console/inbox/1", "/console/audit", "/console/audit?actor=ann",
        "/console/providers",
    ]


class Plans:
    """Every statement the engine sends while ``on``; ``seq_scans`` explains them."""

    def __init__(self, engine) -> None:
        self.engine, self.on, self.statements = engine, False, []
        event.listen(engine, "before_cursor_execute", self._capture)

    def _capture(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on and statement.lstrip().upper().startswith("SELECT"):
            self.statements.append((statement, parameters))

    def problems(self) -> set[str]:
        """Sequential scans of a big table, and nodes that read and threw away more than WASTED rows (an
        index walked in id order while a filter rejects nearly everything is no better than a scan)."""
        found: set[str] = set()
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, params in self.statements:
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                _walk(cur.fetchone()[0][0]["Plan"], found)
            raw.rollback()
        finally:
            raw.close()
        return found


WASTED = 10_000


def _walk(node: dict[str, Any], found: set[str]) -> None:
    relation = node.get("Relation Name")
    if node.get("Node Type") == "Seq Scan" and relation in BIG_TABLES:
        found.add(f"seq scan {relation}")
    elif node.get("Rows Removed by Filter", 0) > WASTED and relation in BIG_TABLES:
        found.add(f"{node['Rows Removed by Filter']:,} rows filtered out of {relation}")
    for child in node.get("Plans", []):
        _walk(child, found)


def measure(n: int, repeat: int, redis_url: str) -> dict[str, tuple[float, set[str]]]:
    from webhooks.app import create_app as web_app
    from worker.actions import Actor
    from worker.actions import operators as ops

    out: dict[str, tuple[float, set[str]]] = {}
    with database() as url:
        settings = settings_for("http://127.0.0.1:9", url, redis_url, rate_limit=100)  # no engine call is made
        rt = runtime_for(settings)
        started = time.perf_counter()
        seed(rt, n)
        print(f"  seeded {n:,} bids in {time.perf_counter() - started:.1f} s", flush=True)
        ops.add(rt, Actor.shell(), "ann", "admin", PASSWORD)
        app = web_app(rt)
        client = app.test_client()
        token = TOKEN.search(client.get("/console/login").get_data(as_text=True)).group(1)
        assert client.post("/console/login", data={"csrf_token": token, "name": "ann",
                                                   "password": PASSWORD}).status_code == 303
        plans = Plans(rt.db.engine)
        for path in pages(n):
            assert client.get(path).status_code in (200, 404), path  # warm
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                r = client.get(path)
                times.append(time.perf_counter() - t)
                assert r.status_code in (200, 404), (path, r.status_code)
            plans.statements, plans.on = [], True
            client.get(path)
            plans.on = False
            out[path] = (statistics.median(times) * 1000, plans.problems())
        rt.db.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bids", type=int, default=1_000_000)
    ap.add_argument("--baseline", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    with redis() as redis_url:
        small = measure(args.baseline, args.repeat, redis_url)
        big = measure(args.bids, args.repeat, redis_url)
    rows: list[tuple[str, object]] = [("bids", args.bids), ("baseline bids", args.baseline)]
    slowest = 0.0
    scans: dict[str, set[str]] = {}
    for (path, (base_ms, _)), (_, (big_ms, seq)) in zip(small.items(), big.items(), strict=True):
        rows.append((path, f"{base_ms:7.1f} ms → {big_ms:7.1f} ms  x{big_ms / max(base_ms, 0.01):5.1f}"
                           + (f"  {'; '.join(sorted(seq))}" if seq else "")))
        slowest = max(slowest, big_ms)
        if seq:
            scans[path] = seq
    rows.append(("slowest page at full size (ms)", f"{slowest:.1f}"))
    return report("console", rows, [("every query of every page reads through an index", not scans),
                                    ("every page under 1 s at full size", slowest < 1000)])


if __name__ == "__main__":
    raise SystemExit(main())
