"""Payout benchmark: N payouts through the ZaleyCash, gateway and Paysera sandboxes (served over HTTP) with
injected faults, driven by the payout engine until every payout is final or waiting for a person.

Faults (``--fault-rate`` f, default 0.2, split per sandbox): ZaleyCash f/3 HTTP 500 (code 53) before
commit, f/3 HTTP 429, f/3 of transfers committed then answered 502; gateway f/2 500 before commit, f/2
of creates committed then answered 502; Paysera f/2 500 before commit, f/2 carried out then answered 500, on creates and
signs only (a find() after a lost create lists transfers page by page; faults on every page starve it).
Bids are seeded straight into the mirror (one batch per 1,000: ``apply_batch`` plus one ``request_fields``
update), so the run measures payouts, not bid sync; completion on the exchanger
(``success_bid``) is not part of it. Ladders are shortened (1 s) and each round looks 5 s ahead so retries
are due at once; the gateway sandbox processes its queue between rounds.

Figures: payouts settled per second; duplicates (a key executed more than once in a sandbox ledger —
must be 0); lost (payouts not succeeded/failed/needs_review/parked at the end — must be 0); succeeded
without a ledger execution (must be 0); payouts by final state; sends and provider calls per payout. The
baseline in the same run: the same number of bare ``rail.send()`` calls, no faults, no database, same
threads, fresh keys, against the same sandboxes.

    python -m bench.payouts [--payouts 10000] [--fault-rate 0.2] [--threads 16] [--providers zc,gw]

Paysera (``--providers zc,gw,ps``) works but is left out of the default: after a lost create its find()
lists every transfer of the lookback window page by page, so a full-size run slows down quadratically.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

from psycopg2.extras import execute_values
from sqlalchemy import text

from bench.common import database, report, runtime_for, settings_for
from core.clock import now_utc
from core.payout_config import load_payout_config
from providers.payouts import PayoutRequest
from providers.sandbox import serve
from worker import reconcile
from worker.payouts import engine

OPEN = ("pending", "submitting", "submitted", "unknown")
SETTLED = ("succeeded", "failed", "needs_review", "parked")
BIG = "1000000000000"
# provider name → (currency_code_get, psys_get, destination)
KINDS = {
    "zc": ("RUB", "ZaleyCash", "1001"),  # an active child of the ZaleyCash sandbox's agent
    "gw": ("RUB", "Visa/MasterCard", "4111111111111111"),
    "ps": ("EUR", "Paysera", "EVP0010000099999"),
}


class Sandboxes:
    def __init__(self, names: list[str], fault_rate: float) -> None:
        self.names = names
        self.servers: dict[str, object] = {}
        f = fault_rate
        if "zc" in names:
            from providers.zaleycash.sandbox import create_app

            app = create_app(seed=11, error_rate=f / 3, rate_limit_rate=f / 3, fail_after_commit_rate=f / 3,
                             fail_after_commit_mode="502")
            app.engine.set_balance(1, BIG)
            self.servers["zc"] = serve(app)
        if "gw" in names:
            from providers.gateway.sandbox import create_app

            app = create_app(seed=12, balance=BIG, error_rate=f / 2, fail_after_commit_rate=f / 2)
            self.servers["gw"] = serve(app)
        if "ps" in names:
            from providers.paysera.sandbox import DEFAULT_ACCOUNT, DEFAULT_WALLET_ID, create_app

            # Faults on the money-moving calls only (create, sign): find() lists transfers page by page
            # when the create answer was lost, and a 10% fault on every page makes it almost never finish.
            app = create_app(seed=13, error_rate=f / 2, fail_after_commit_rate=f / 2, fault_match=r"^(POST|PUT) ",
                             wallets={DEFAULT_WALLET_ID: {"account_number": DEFAULT_ACCOUNT,
                                                          "balance": {"EUR": BIG, "RUB": BIG}}})
            self.servers["ps"] = serve(app)

    def engine(self, name: str):
        return self.servers[name].app.engine

    def no_faults(self) -> None:
        for name in self.servers:
            k = self.engine(name).knobs
            k.update(error_rate=0.0, fail_after_commit_rate=0.0)
            if name == "zc":
                k.update(rate_limit_rate=0.0)

    def executions(self) -> Counter:
        """Money-moving executions per key, read from each sandbox's own ledger."""
        out: Counter = Counter()
        if "zc" in self.servers:
            e = self.engine("zc")
            with e.lock:
                for op in list(e.ledger):  # keyed by operation_id; executed() counts each execution
                    out[op] += e.executed(op)
        if "gw" in self.servers:
            e = self.engine("gw")
            with e.lock:
                for entry in e.ledger:
                    if entry["type"] == "debit":
                        out[entry["external_id"]] += 1
        if "ps" in self.servers:
            from providers.paysera.payout import KEY_PREFIX

            e = self.engine("ps")
            with e.lock:
                key_of = {}
                for t in list(e.transfers.values()) + list(e.deleted.values()):
                    details = str((t.purpose or {}).get("details") or "")
                    if KEY_PREFIX in details:
                        key_of[t.id] = details.split(KEY_PREFIX, 1)[1].split()[0]
                for entry in e.ledger:
                    out[key_of.get(entry["transfer_id"], "ps-transfer-" + entry["transfer_id"])] += 1
        return out

    def close(self) -> None:
        for name, srv in self.servers.items():
            srv.shutdown()
            close = getattr(self.engine(name), "close", None)
            if close:
                close()


def payout_doc(sb: Sandboxes) -> tuple[dict, dict]:
    from providers.gateway.sandbox import DEFAULT_API_KEY
    from providers.gateway.sandbox import DEFAULT_SECRET as GW_SECRET
    from providers.paysera.sandbox import DEFAULT_MAC_ID, DEFAULT_MAC_KEY
    from providers.zaleycash.sandbox import DEFAULT_SECRET as ZC_SECRET

    parts = ["""
[exchangers.main]
base_url = "http://127.0.0.1:1"

[payouts]
lease_seconds = 60
max_attempts = 8
retry_ladder = [1]
check_ladder = [1]
max_checks = 50
park_seconds = 1
batch = 500
"""]
    urls = {n: s.url for n, s in sb.servers.items()}
    if "zc" in urls:
        parts.append(f"""
[providers.zc]
type = "zaleycash"
base_url = "{urls['zc']}"
secret_key_env = "BENCH_ZC_SECRET"
status_path = "/api/v2/money/transfer/status"
timeout = 10
""")
    if "gw" in urls:
        parts.append(f"""
[providers.gw]
type = "gateway"
base_url = "{urls['gw']}"
api_key_env = "BENCH_GW_KEY"
secret_env = "BENCH_GW_SECRET"
timeout = 10
""")
    if "ps" in urls:
        parts.append(f"""
[providers.ps]
type = "paysera"
base_url = "{urls['ps']}"
mac_id = "{DEFAULT_MAC_ID}"
mac_key_env = "BENCH_PS_KEY"
timeout = 10
""")
    parts.append('\n[routes.main]\ntrigger_statuses = ["realpay"]\n')
    for name in sb.servers:
        cur, psys, _ = KINDS[name]
        parts.append(f"""
[[routes.main.rules]]
currency = "{cur}"
psys_get = "{psys}"
provider = "{name}"
destination_field = "account2"
""")
    env = {"BENCH_ZC_SECRET": ZC_SECRET, "BENCH_GW_KEY": DEFAULT_API_KEY, "BENCH_GW_SECRET": GW_SECRET,
           "BENCH_PS_KEY": DEFAULT_MAC_KEY}
    return tomllib.loads("".join(parts)), env


def seed_bids(rt, n: int, names: list[str]) -> None:
    """N bids in ``realpay`` straight into the mirror, spread over the providers (batched)."""
    now = now_utc()
    for start in range(0, n, 1000):
        snaps, fields = [], []
        for i in range(start, min(n, start + 1000)):
            rid = 100_000 + i
            name = names[i % len(names)]
            cur, psys, dest = KINDS[name]
            amount = Decimal(10 + (i * 37) % 900) + Decimal(i % 100) / 100
            snaps.append(reconcile.Snapshot(remote_id=rid, status="realpay", observed_at=now, remote_changed_at=now,
                                            psys_give="Tether TRC20", psys_get=psys, currency_code_give="USDT",
                                            currency_code_get=cur, amount_give=Decimal(1), amount_get=amount))
            fields.append((rid, json.dumps({"account2": dest})))
        with rt.db.session() as s:
            reconcile.apply_batch(s, rt.settings, "main", snaps, "sweep")
            cur_ = s.connection().connection.dbapi_connection.cursor()
            execute_values(cur_, "UPDATE bids b SET request_fields = CAST(v.f AS jsonb) FROM (VALUES %s) AS v(rid, f) "
                                 "WHERE b.exchanger = 'main' AND b.remote_id = v.rid", fields, page_size=1000)
            cur_.close()


def open_count(rt) -> int:
    with rt.db.session() as s:
        return s.execute(text("SELECT count(*) FROM payouts WHERE state = ANY(:st)"), {"st": list(OPEN)}).scalar()


def drive(rt, pool, sb: Sandboxes, deadline: float) -> tuple[int, int]:
    """create_due_payouts, then rounds of reap + submit until nothing is open. Returns (created, rounds)."""
    created = engine.create_due_payouts(rt)
    rounds = 0
    while time.monotonic() < deadline:
        now = now_utc() + timedelta(seconds=5)
        engine.reap(rt, now)
        out = engine.submit_due(rt, now, pool=pool)
        rounds += 1
        if "gw" in sb.servers:
            sb.engine("gw").process_all()
        if not out and open_count(rt) == 0:
            break
        if not out:
            time.sleep(0.05)
    return created, rounds


def baseline(sb: Sandboxes, n: int, threads: int) -> float:
    """Seconds for N bare rail.send() calls (fresh keys, no faults, no database), same threads."""
    from providers.gateway import GatewayClient, GatewayRail
    from providers.gateway.sandbox import DEFAULT_API_KEY
    from providers.gateway.sandbox import DEFAULT_SECRET as GW_SECRET
    from providers.paysera import PayseraClient
    from providers.paysera.payout import PayseraRail
    from providers.paysera.sandbox import DEFAULT_MAC_ID, DEFAULT_MAC_KEY
    from providers.zaleycash import ZaleyCashClient, ZaleyCashRail
    from providers.zaleycash.sandbox import DEFAULT_SECRET as ZC_SECRET

    sb.no_faults()
    rails = {}
    if "zc" in sb.servers:
        rails["zc"] = ZaleyCashRail(ZaleyCashClient(sb.servers["zc"].url, ZC_SECRET), name="zc",
                                    currencies={"RUB": 1})
    if "gw" in sb.servers:
        rails["gw"] = GatewayRail(GatewayClient(sb.servers["gw"].url, DEFAULT_API_KEY, GW_SECRET), name="gw")
    if "ps" in sb.servers:
        rails["ps"] = PayseraRail(PayseraClient(sb.servers["ps"].url, DEFAULT_MAC_ID, DEFAULT_MAC_KEY), name="ps")
    names = list(rails)

    def one(i: int) -> None:
        name = names[i % len(names)]
        cur, _, dest = KINDS[name]
        amount = Decimal(10 + (i * 37) % 900) + Decimal(i % 100) / 100
        rails[name].send(PayoutRequest(key=f"base-{i}", amount=amount, currency=cur, destination=dest))

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(n)))
    return time.perf_counter() - started


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payouts", type=int, default=10_000)
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--providers", default="zc,gw")
    ap.add_argument("--max-seconds", type=float, default=1800)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.providers.split(",") if n.strip()]
    if not names or any(n not in KINDS for n in names):
        ap.error(f"--providers: choose from {', '.join(KINDS)}")
    n = args.payouts

    sb = Sandboxes(names, args.fault_rate)
    try:
        with database() as url:
            rt = runtime_for(settings_for("http://127.0.0.1:1", url))
            doc, env = payout_doc(sb)
            rt.payout_config = load_payout_config(doc, env)
            seed_bids(rt, n, names)
            pool = ThreadPoolExecutor(args.threads, thread_name_prefix="bench-payout")
            t0 = time.perf_counter()
            created, rounds = drive(rt, pool, sb, time.monotonic() + args.max_seconds)
            elapsed = time.perf_counter() - t0
            pool.shutdown(wait=True)
            with rt.db.session() as s:
                states = dict(s.execute(text("SELECT state, count(*) FROM payouts GROUP BY state")).all())
                by_provider = dict(s.execute(text(
                    "SELECT provider || ' ' || state, count(*) FROM payouts GROUP BY 1 ORDER BY 1")).all())
                keys = s.execute(text("SELECT idempotency_key, state FROM payouts")).all()
                sends, checks = s.execute(text("SELECT coalesce(sum(attempts), 0), coalesce(sum(checks), 0) "
                                               "FROM payouts")).one()
                outcomes = dict(s.execute(text("SELECT kind || ' ' || outcome, count(*) FROM payout_attempts "
                                               "GROUP BY 1 ORDER BY 1")).all())
            rt.close()
        execs = sb.executions()
        base_s = baseline(sb, n, args.threads)
    finally:
        sb.close()

    ours = {k for k, _ in keys}
    duplicates = sum(1 for k, c in execs.items() if c > 1)
    strays = sum(1 for k in execs if k not in ours and not k.startswith("base-"))  # paid under no payout
    lost = sum(states.get(s, 0) for s in states if s not in SETTLED) + (n - created)
    phantom = sum(1 for k, st in keys if st == "succeeded" and execs.get(k, 0) != 1)
    settled = sum(states.get(s, 0) for s in SETTLED)
    rate = settled / elapsed if elapsed else 0.0
    base_rate = n / base_s if base_s else 0.0
    calls = sends + checks
    rows = [
        ("payouts", n),
        ("providers", ",".join(names)),
        ("fault rate", args.fault_rate),
        ("threads", args.threads),
        ("settled", f"{settled} in {elapsed:.2f} s = {rate:,.0f} payouts/s ({rounds} rounds)"),
        ("baseline bare rail.send()", f"{n} in {base_s:.2f} s = {base_rate:,.0f} sends/s (no faults, no db)"),
        ("ratio engine / baseline", f"{rate / base_rate:.2f}" if base_rate else "n/a"),
        ("duplicates", duplicates),
        ("lost", lost),
        ("succeeded without one ledger execution", phantom),
        ("executions under no payout's key", strays),
        ("by final state", ", ".join(f"{k}={v}" for k, v in sorted(states.items()))),
        ("by provider", ", ".join(f"{k}={v}" for k, v in by_provider.items())),
        ("sends per payout", f"{sends / n:.2f}" if n else "n/a"),
        ("provider calls per payout (send+find)", f"{calls / n:.2f}" if n else "n/a"),
        ("attempt outcomes", ", ".join(f"{k}={v}" for k, v in outcomes.items())),
    ]
    checks_ = [
        ("duplicates == 0", duplicates == 0),
        ("lost == 0", lost == 0),
        ("every succeeded payout executed once", phantom == 0),
        ("no execution outside a payout", strays == 0),
    ]
    return report("payouts", rows, checks_)


if __name__ == "__main__":
    sys.exit(main())
