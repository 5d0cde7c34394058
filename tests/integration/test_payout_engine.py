"""The payout engine end to end: mirrored bid in realpay → one payout → the ZaleyCash (or gateway) sandbox
pays once → success_bid on the Premium sandbox → the mirror shows success with history.

Real Postgres, real sandboxes over HTTP.
"""
from __future__ import annotations

import threading

from sqlalchemy import text

from core.clock import now_utc
from tests.support.payouts import (
    CARD,
    ZC_USER,
    attempts,
    install_payouts,
    later,
    mirror_bid,
    payout_toml,
    payouts,
)
from worker.payouts import engine


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
