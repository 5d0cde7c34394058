"""The payout engine end to end: mirrored bid in realpay → one payout → the ZaleyCash (or gateway) sandbox
pays once → success_bid on the Premium sandbox → the mirror shows success with history.

Real Postgres, real sandboxes over HTTP. Helpers here are shared with test_payout_faults.py.
"""
from __future__ import annotations

import threading
import tomllib
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from core.clock import now_utc
from providers.sandbox import serve
from worker import reconcile
from core.payout_config import load_payout_config
from worker.payouts import engine

ZC_USER = "1001"  # an active child of the ZaleyCash sandbox's agent
CARD = "4111111111111111"


@pytest.fixture
def zc_sandbox():
    from providers.zaleycash.sandbox import create_app

    app = create_app(seed=7, hang_seconds=3)
    srv = serve(app, port=0)
    srv.engine = app.engine
    yield srv
    srv.shutdown()


@pytest.fixture
def gw_sandbox():
    from providers.gateway.sandbox import create_app

    app = create_app(seed=7, hang_seconds=3)
    srv = serve(app, port=0)
    srv.engine = app.engine
    yield srv
    srv.shutdown()
    app.engine.close()


def payout_toml(zc_url: str, gw_url: str = "http://127.0.0.1:9", *, ceiling: str = "500000", extra: str = "",
                zc_status_path: bool = True) -> str:
    status = 'status_path = "/api/v2/money/transfer/status"' if zc_status_path else ""
    return f"""
[payouts]
lease_seconds = 30
max_attempts = 3
retry_ladder = [30, 120, 600]
check_ladder = [15, 60]
park_seconds = 3600
completion_ladder = [10, 60]

[providers.zc]
type = "zaleycash"
base_url = "{zc_url}"
secret_key_env = "EXSYNC_TEST_ZC_SECRET"
timeout = 1.5
{status}

[providers.gw]
type = "gateway"
base_url = "{gw_url}"
api_key_env = "EXSYNC_TEST_GW_KEY"
secret_env = "EXSYNC_TEST_GW_SECRET"
timeout = 1.5

[routes.main]
enabled = true
trigger_statuses = ["realpay"]
auto_pay_ceiling = "{ceiling}"

[[routes.main.rules]]
currency = "RUB"
psys_get = "ZaleyCash"
provider = "zc"
destination_field = "account2"
min_amount = "1"
max_amount = "100000"

[[routes.main.rules]]
currency = "RUB"
provider = "gw"
destination_field = "account2"
min_amount = "1"
max_amount = "100000"
""" + extra


def payout_env() -> dict:
    from providers.gateway.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET as GW_SECRET
    from providers.zaleycash.sandbox import DEFAULT_SECRET as ZC_SECRET

    return {"EXSYNC_TEST_ZC_SECRET": ZC_SECRET, "EXSYNC_TEST_GW_KEY": DEFAULT_API_KEY,
            "EXSYNC_TEST_GW_SECRET": GW_SECRET}


def install_payouts(runtime, toml_text: str, exchanger_url: str = "http://127.0.0.1:1") -> None:
    doc = tomllib.loads(f'[exchangers.main]\nbase_url = "{exchanger_url}"\n' + toml_text)
    runtime.payout_config = load_payout_config(doc, payout_env())
    runtime.forget_rails()


def mirror_bid(runtime, premium_sandbox, *, status: str = "realpay", direction_id: int = 3, amount: str = "100",
               fields: dict | None = None) -> int:
    """A bid on the Premium sandbox, mirrored as exsync's create_bid would (with its request fields)."""
    fields = {"account2": ZC_USER} if fields is None else fields
    rid = premium_sandbox.engine.add_bid(direction_id=direction_id, amount=Decimal(amount), status=status,
                                         fields=fields)
    observed = now_utc()
    bid = runtime.premium("main").bid_info(id=rid)
    snap = reconcile.Snapshot.from_provider(bid, observed)
    with runtime.db.session() as s:
        reconcile.apply_snapshot(s, runtime.settings, "main", snap, "create", request_fields=fields,
                                 created_via="exsync")
    return rid


def payouts(runtime) -> list:
    with runtime.db.session() as s:
        return s.execute(text("SELECT * FROM payouts ORDER BY id")).all()


def attempts(runtime, payout_id: int) -> list:
    with runtime.db.session() as s:
        return s.execute(text("SELECT * FROM payout_attempts WHERE payout_id = :id ORDER BY n"),
                         {"id": payout_id}).all()


def later(seconds: float):
    return now_utc() + timedelta(seconds=seconds)


def settle(runtime, *, rounds: int = 12, step: float = 0) -> None:
    """Tick repeatedly, each time ``step`` seconds further in the (passed-in) future."""
    for i in range(rounds):
        engine.tick(runtime, later(step * (i + 1)) if step else None)


# -- tests -----------------------------------------------------------------------------------------

def test_realpay_bid_is_paid_once_and_completed(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = mirror_bid(runtime, premium_sandbox)

    assert engine.create_due_payouts(runtime) == 1
    assert engine.create_due_payouts(runtime) == 0  # a second trigger makes no second payout
    (p,) = payouts(runtime)
    assert p.state == "pending" and p.provider == "zc" and p.idempotency_key == f"exs-main-{rid}"
    assert p.destination == ZC_USER and p.currency == "RUB" and p.amount > 0

    assert engine.submit_due(runtime) == {"succeeded": 1}
    assert engine.complete_due(runtime) == 1

    (p,) = payouts(runtime)
    assert p.state == "succeeded" and p.bid_completed_at is not None and p.completion_error is None
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1
    assert premium_sandbox.engine.bid(rid)["status"] == "success"
    kinds = [(a.kind, a.outcome) for a in attempts(runtime, p.id)]
    assert kinds == [("submit", "succeeded"), ("complete", "succeeded")]
    with runtime.db.session() as s:
        status = s.execute(text("SELECT status FROM bids WHERE remote_id = :r"), {"r": rid}).scalar()
        history = s.execute(text(
            "SELECT h.from_status, h.to_status FROM bid_status_changes h JOIN bids b ON b.id = h.bid_id "
            "WHERE b.remote_id = :r ORDER BY h.id"), {"r": rid}).all()
    assert status == "success"
    assert ("realpay", "success") in [tuple(h) for h in history]

    # Nothing more to do; ticking again changes nothing and pays nothing.
    engine.tick(runtime)
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1


def test_two_workers_two_triggers_one_payout(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rids = [mirror_bid(runtime, premium_sandbox) for _ in range(6)]
    barrier = threading.Barrier(4)
    errors: list = []

    def worker():
        try:
            barrier.wait()
            for _ in range(3):
                engine.create_due_payouts(runtime)
                engine.submit_due(runtime)
                engine.complete_due(runtime)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    rows = payouts(runtime)
    assert len(rows) == len(rids)
    for p in rows:
        assert p.state == "succeeded", (p.id, p.state, p.last_error)
        assert zc_sandbox.engine.executed(p.idempotency_key) == 1
        assert [a.kind for a in attempts(runtime, p.id)].count("submit") == 1
    assert all(premium_sandbox.engine.bid(r)["status"] == "success" for r in rids)


def test_gateway_payout_pending_then_found_succeeded(runtime, premium_sandbox, gw_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url, gw_sandbox.url))
    rid = mirror_bid(runtime, premium_sandbox, direction_id=2, fields={"account2": CARD})  # USDT -> card RUB
    engine.create_due_payouts(runtime)
    assert engine.submit_due(runtime) == {"submitted": 1}  # created at the gateway, not final yet
    (p,) = payouts(runtime)
    assert p.provider == "gw" and p.provider_status == "created"
    assert engine.submit_due(runtime) == {}  # its check is not due yet
    gw_sandbox.engine.process_all()
    assert engine.submit_due(runtime, later(120)) == {"succeeded": 1}
    assert engine.complete_due(runtime, later(120)) == 1
    (p,) = payouts(runtime)
    assert p.state == "succeeded" and gw_sandbox.engine.executed(p.idempotency_key) == 1
    assert [(a.kind, a.outcome) for a in attempts(runtime, p.id)] == [
        ("submit", "pending"), ("find", "succeeded"), ("complete", "succeeded")]
    assert premium_sandbox.engine.bid(rid)["status"] == "success"


def test_review_reasons_and_approval(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url, ceiling="1000"))
    big = mirror_bid(runtime, premium_sandbox, amount="100")  # ≈ 9,000 RUB: above the ceiling
    nodest = mirror_bid(runtime, premium_sandbox, amount="5", fields={"cf6": "a@example.com"})
    other = mirror_bid(runtime, premium_sandbox, direction_id=1, amount="0.01", fields={"account2": "T" * 34})
    not_yet = mirror_bid(runtime, premium_sandbox, status="payed")
    assert engine.create_due_payouts(runtime) == 3
    by_rid = {p.remote_id: p for p in payouts(runtime)}
    assert not_yet not in by_rid
    assert by_rid[big].state == "needs_review" and "auto-pay ceiling" in by_rid[big].last_error
    assert by_rid[nodest].state == "needs_review" and "'account2'" in by_rid[nodest].last_error
    assert by_rid[other].state == "needs_review" and "no route rule" in by_rid[other].last_error
    assert engine.submit_due(runtime) == {}
    assert zc_sandbox.engine.executed(by_rid[big].idempotency_key) == 0

    from worker.payouts import queries
    with runtime.db.session() as s:
        assert queries.approve(s, by_rid[big].id, "alice", now_utc()) == "pending"
    assert engine.submit_due(runtime) == {"succeeded": 1}
    assert zc_sandbox.engine.executed(by_rid[big].idempotency_key) == 1


def test_bid_that_left_its_payout_status_is_held_for_a_person_before_any_money_moves(
        runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = mirror_bid(runtime, premium_sandbox)
    assert engine.create_due_payouts(runtime) == 1
    # Before the first send, an operator cancels the bid on the exchanger and the mirror learns it.
    premium_sandbox.engine.set_status(rid, "cancel")
    from worker.poll import refresh

    refresh(runtime, "main", rid, "poll")
    assert engine.submit_due(runtime) == {"needs_review": 1}
    (p,) = payouts(runtime)
    assert p.state == "needs_review" and "'cancel'" in p.last_error
    assert zc_sandbox.engine.executed(p.idempotency_key) == 0
    assert attempts(runtime, p.id) == []  # no provider call was made


def test_switched_off_route_pauses_payouts_without_flagging_them(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    mirror_bid(runtime, premium_sandbox)
    assert engine.create_due_payouts(runtime) == 1
    install_payouts(runtime, payout_toml(zc_sandbox.url).replace("enabled = true", "enabled = false"))
    assert engine.submit_due(runtime) == {"pending": 1}
    (p,) = payouts(runtime)
    assert p.state == "pending" and "switched off" in p.last_error and p.next_attempt_at > later(60)
    assert zc_sandbox.engine.executed(p.idempotency_key) == 0
