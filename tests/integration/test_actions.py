"""worker/actions: the one implementation of every action of a person (the CLI and the console call it).

Four-eyes on a real payout through the engine and the ZaleyCash sandbox (whose ledger says what was paid),
the roles, the audit rows written in the action's own transaction, the inbox and route actions, and the
operators' logins.
"""
from __future__ import annotations

import pytest
from sqlalchemy import text

from models.console import list_audit
from tests.support.operators import PASSWORD, add_operator
from tests.support.payouts import install_payouts, mirror_bid, one, payout_toml
from worker.actions import Actor, Forbidden, Refused, routes
from worker.actions import inbox as inbox_actions
from worker.actions import operators as ops
from worker.actions import payouts as actions
from worker.payouts import engine

FOUR_EYES = 'approval_above = "5000"\napprovers = 2'


def audit(runtime, **filters) -> list[dict]:
    with runtime.db.session() as s:
        return list(reversed(list_audit(s, **filters)))


@pytest.fixture
def big_payout(runtime, premium_sandbox, zc_sandbox):
    """A payout of ≈ 9,000 RUB on a route whose four-eyes limit is 5,000: it waits for two approvers."""
    install_payouts(runtime, payout_toml(zc_sandbox.url, route=FOUR_EYES))
    mirror_bid(runtime, premium_sandbox, amount="100")
    engine.create_due_payouts(runtime)
    p = one(runtime)
    assert p.state == "needs_review" and "needs 2 approvals by distinct approvers, has 0" in p.last_error
    return p


def test_two_distinct_approvers_then_paid_once(runtime, big_payout, zc_sandbox):
    alice, bob = add_operator(runtime, "alice", "approver"), add_operator(runtime, "bob", "admin")
    viewer, oper = add_operator(runtime, "vera", "viewer"), add_operator(runtime, "olga", "operator")
    pid = big_payout.id
    for who in (viewer, oper):
        with pytest.raises(Forbidden, match="needs the approver role"):
            actions.approve(runtime, who, pid, "looks fine")
    with pytest.raises(Refused, match="a reason is required"):
        actions.approve(runtime, alice, pid, "   ")
    assert actions.approve(runtime, alice, pid, "customer verified") == "needs_review"
    assert "approved by 1 of 2 distinct approvers (alice)" in one(runtime).last_error
    with pytest.raises(Refused, match="alice already approved"):
        actions.approve(runtime, alice, pid, "again")
    assert engine.submit_due(runtime) == {}  # nothing due: still waiting
    assert actions.approve(runtime, bob, pid, "second pair of eyes") == "pending"
    assert engine.submit_due(runtime) == {"succeeded": 1}
    assert zc_sandbox.engine.executed(big_payout.idempotency_key) == 1
    rows = audit(runtime, object_type="payout", object_id=str(pid))
    assert [(r["actor"], r["action"], r["before"]["state"], r["after"]["state"], r["after"]["approvals"])
            for r in rows] == [("alice", "approve", "needs_review", "needs_review", "1/2"),
                               ("bob", "approve", "needs_review", "pending", "2/2")]
    assert rows[0]["reason"] == "customer verified" and rows[0]["via"] == "cli"


def test_whoever_retried_does_not_count_and_the_engine_holds_the_send(runtime, big_payout, zc_sandbox):
    alice, dave = add_operator(runtime, "alice", "approver"), add_operator(runtime, "dave", "approver")
    carol = add_operator(runtime, "carol", "approver")
    pid = big_payout.id
    # A retry puts it back to pending, but the engine checks the approvals before the first send.
    assert actions.retry(runtime, dave, pid, "provider was down") == "pending"
    assert engine.submit_due(runtime) == {"needs_review": 1}
    assert "has 0" in one(runtime).last_error and zc_sandbox.engine.executed(big_payout.idempotency_key) == 0
    with pytest.raises(Refused, match="dave retried payout"):
        actions.approve(runtime, dave, pid, "I retried it, I approve it")
    actions.approve(runtime, alice, pid, "ok")
    # carol approves, then retries: her approval stops counting.
    assert actions.approve(runtime, carol, pid, "ok too") == "pending"
    with runtime.db.session() as s:
        assert actions.counted_approvals(s, pid) == 2
    with runtime.db.session() as s:  # a send failed meanwhile: back to a person
        s.execute(text("UPDATE payouts SET state = 'needs_review' WHERE id = :id"), {"id": pid})
    actions.retry(runtime, carol, pid, "try once more")
    with runtime.db.session() as s:
        assert actions.counted_approvals(s, pid) == 1
    assert engine.submit_due(runtime) == {"needs_review": 1}
    assert zc_sandbox.engine.executed(big_payout.idempotency_key) == 0


def test_cancel_records_who_and_why(runtime, big_payout):
    olga = add_operator(runtime, "olga", "operator")
    assert actions.cancel(runtime, olga, big_payout.id, "customer asked") == "cancelled"
    p = one(runtime)
    assert p.state == "cancelled" and p.last_error == "cancelled by olga: customer asked"
    (row,) = audit(runtime, action="cancel")
    assert row["before"]["state"] == "needs_review" and row["after"]["state"] == "cancelled"


def test_a_refused_action_writes_no_audit_row(runtime, big_payout):
    olga = add_operator(runtime, "olga", "operator")
    with runtime.db.session() as s:
        s.execute(text("UPDATE payouts SET state = 'submitting' WHERE id = :id"), {"id": big_payout.id})
    with pytest.raises(Refused, match="may be moving money"):
        actions.cancel(runtime, olga, big_payout.id, "stop")
    assert audit(runtime, action="cancel") == []


def test_the_route_switch_holds_payouts_until_switched_back_on(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    admin, olga = add_operator(runtime, "ada", "admin"), add_operator(runtime, "olga", "operator")
    with pytest.raises(Forbidden, match="needs the admin role"):
        routes.switch(runtime, olga, "main", False, "incident")
    with pytest.raises(Refused, match="no payout route 'other'"):
        routes.switch(runtime, admin, "other", False, "incident")
    routes.switch(runtime, admin, "main", False, "provider incident")
    assert routes.switches(runtime) == {"main": False}
    mirror_bid(runtime, premium_sandbox, amount="5")
    engine.create_due_payouts(runtime)
    assert engine.submit_due(runtime) == {"pending": 1}
    p = one(runtime)
    assert "switched off" in p.last_error and zc_sandbox.engine.executed(p.idempotency_key) == 0
    routes.switch(runtime, admin, "main", True, "incident over")
    with runtime.db.session() as s:
        s.execute(text("UPDATE payouts SET next_attempt_at = now()"))
    assert engine.submit_due(runtime) == {"succeeded": 1}
    assert [(r["before"], r["after"]) for r in audit(runtime, action="route_switch")] == [
        ({"enabled": True}, {"enabled": False}), ({"enabled": False}, {"enabled": True})]


def test_inbox_replay_and_dismiss(runtime):
    olga = add_operator(runtime, "olga", "operator")
    with runtime.db.session() as s:
        ids = s.execute(text("""INSERT INTO inbox_events (provider, endpoint, body, state, attempts, last_error)
                                VALUES ('premium', 'main', 'x', 'dead', 10, 'gave up'),
                                       ('premium', 'main', 'y', 'failed', 2, 'timeout'),
                                       ('premium', 'main', 'z', 'processed', 1, NULL) RETURNING id""")).scalars().all()
    dead, failed, processed = ids
    inbox_actions.dismiss(runtime, olga, dead, "bid removed by hand")
    with pytest.raises(Refused, match="only a failed or dead event"):
        inbox_actions.dismiss(runtime, olga, processed, "x")
    with pytest.raises(Refused, match="no inbox event 999"):
        inbox_actions.dismiss(runtime, olga, 999, "x")
    assert inbox_actions.replay(runtime, olga, None, "cause fixed") == [failed]  # dismissed stays dismissed
    rows = audit(runtime, object_type="inbox_event")
    assert [(r["action"], r["object_id"], r["before"]["state"], r["after"]["state"]) for r in rows] == [
        ("dismiss", str(dead), "dead", "dismissed"), ("replay", str(failed), "failed", "received")]


def test_operators_login_disable_password_and_sessions(runtime):
    with pytest.raises(Refused, match="at least 10 characters"):
        ops.add(runtime, Actor.shell(), "ann", "admin", "short")
    with pytest.raises(Refused, match="operator name"):
        ops.add(runtime, Actor.shell(), "Ann Smith", "admin", PASSWORD)
    ann = add_operator(runtime, "ann", "admin")
    with pytest.raises(Refused, match="exists already"):
        ops.add(runtime, Actor.shell(), "ann", "viewer", PASSWORD)
    ben = add_operator(runtime, "ben", "viewer")
    with pytest.raises(Forbidden):
        ops.disable(runtime, ben, "ann", "coup")
    me = ops.login(runtime, "ben", PASSWORD, None, "127.0.0.1")
    assert me.role == "viewer" and ops.current(runtime, me.id, me.session_epoch) == me
    for name, pw in (("ben", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(ops.LoginFailed, match="wrong name or password"):
            ops.login(runtime, name, pw, None, "127.0.0.1")
    ops.set_password(runtime, ann, "ben", "another good password")
    assert ops.current(runtime, me.id, me.session_epoch) is None  # the old session ended
    ops.disable(runtime, ann, "ben", "left the team")
    with pytest.raises(ops.LoginFailed, match="operator disabled"):
        ops.login(runtime, "ben", "another good password", None, None)
    with pytest.raises(Refused, match="cannot disable or demote themselves"):
        ops.disable(runtime, ann, "ann", "oops")
    rows = audit(runtime, object_type="operator")
    assert [r["action"] for r in rows] == ["operator_add", "operator_add", "login", "login_failed", "login_failed",
                                           "operator_password", "operator_disable", "login_failed"]
    assert rows[0]["actor"].startswith("cli:")
    with runtime.db.session() as s:
        stored = s.execute(text("SELECT before::text || after::text FROM audit_events")).scalars().all()
    assert not any("argon2" in (x or "") or PASSWORD in (x or "") for x in stored)


def test_totp_second_factor(runtime):
    import pyotp

    ann = add_operator(runtime, "ann", "admin")
    secret = ops.set_totp(runtime, ann, "ann", True)
    assert secret
    with pytest.raises(ops.LoginFailed, match="TOTP"):
        ops.login(runtime, "ann", PASSWORD, None, None)
    with pytest.raises(ops.LoginFailed, match="TOTP"):
        ops.login(runtime, "ann", PASSWORD, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111", None)
    assert ops.login(runtime, "ann", PASSWORD, pyotp.TOTP(secret).now(), None).name == "ann"
    (row,) = audit(runtime, action="operator_totp")
    assert secret not in str(row)


def test_failed_logins_are_throttled_per_name_and_per_address(runtime):
    from datetime import timedelta

    from freezegun import freeze_time

    from core.clock import now_utc

    add_operator(runtime, "ann", "admin")
    add_operator(runtime, "ben", "admin")
    start = now_utc()
    with freeze_time(start) as frozen:
        for _ in range(ops.THROTTLE_PER_NAME):
            with pytest.raises(ops.LoginFailed, match="wrong name or password"):
                ops.login(runtime, "ann", "guess guess guess", None, "10.9.9.1")
        # Now even the right password is refused, unchecked, from anywhere; another name still works.
        with pytest.raises(ops.LoginThrottled, match="try again in") as err:
            ops.login(runtime, "ann", PASSWORD, None, "10.9.9.2")
        assert 0 < err.value.wait <= ops.THROTTLE_WINDOW.total_seconds() + 1
        assert ops.login(runtime, "ben", PASSWORD, None, "10.9.9.2").name == "ben"
        assert len(audit(runtime, action="login_failed")) == ops.THROTTLE_PER_NAME  # refusals write nothing
        frozen.move_to(start + ops.THROTTLE_WINDOW + timedelta(seconds=1))
        assert ops.login(runtime, "ann", PASSWORD, None, "10.9.9.2").name == "ann"
        # One address guessing many names is stopped too.
        for i in range(ops.THROTTLE_PER_IP):
            with pytest.raises(ops.LoginFailed):
                ops.login(runtime, f"guess{i}", "guess guess guess", None, "10.9.9.3")
        with pytest.raises(ops.LoginThrottled):
            ops.login(runtime, "ben", PASSWORD, None, "10.9.9.3")


@pytest.mark.parametrize("name,password", [("ann\x00", PASSWORD), ("ann", "pw\udc80pw pw pw"), ("", PASSWORD),
                                           ("a" * 5000, PASSWORD)])
def test_hostile_login_input_is_a_failed_login(runtime, name, password):
    add_operator(runtime, "ann", "admin")
    with pytest.raises(ops.LoginFailed):
        ops.login(runtime, name, password, None, None)
