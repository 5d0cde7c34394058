"""Fault runs: 5xx, timeouts after the provider committed, no money, permanent refusals, retries running out,
a worker dying mid-call. Afterwards each sandbox ledger shows every payout executed at most once and every
payout is succeeded, failed, or waiting for a person (needs_review / parked)."""
from __future__ import annotations

import pytest

from tests.support.payouts import (
    CARD,
    assert_invariant,
    attempts,
    install_payouts,
    later,
    mirror_bid,
    one,
    payout_toml,
)
from worker.payouts import engine, rails


def test_provider_5xx_is_retried_then_succeeds(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    zc_sandbox.engine.knobs.error_rate = 1.0
    assert engine.submit_due(runtime) == {"pending": 1}
    p = one(runtime)
    assert p.attempts == 1 and p.next_attempt_at > later(20)  # 30 s ± jitter
    assert engine.submit_due(runtime) == {}  # not due yet
    zc_sandbox.engine.knobs.error_rate = 0.0
    assert engine.submit_due(runtime, later(40)) == {"succeeded": 1}
    outcomes = [(a.kind, a.outcome, a.http_status) for a in attempts(runtime, p.id)]
    assert outcomes[0][:2] == ("submit", "retryable") and outcomes[0][2] == 500
    assert outcomes[1][:2] == ("submit", "succeeded")
    assert_invariant(runtime, zc_sandbox)


@pytest.mark.parametrize("status_path", [True, False], ids=["status-endpoint", "resend-probe"])
def test_zaleycash_commit_then_502_is_unknown_then_found(runtime, premium_sandbox, zc_sandbox, status_path):
    install_payouts(runtime, payout_toml(zc_sandbox.url, zc_status_path=status_path))
    mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode="502")
    assert engine.submit_due(runtime) == {"unknown": 1}
    p = one(runtime)
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1 and p.maybe_sent
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=0.0)
    runtime.forget_rails()  # a fresh process: the rail's memory of what it sent is gone
    assert engine.submit_due(runtime, later(30)) == {"succeeded": 1}
    assert [(a.kind, a.outcome) for a in attempts(runtime, p.id)] == [("submit", "unknown"), ("find", "succeeded")]
    assert_invariant(runtime, zc_sandbox)


def test_zaleycash_timeout_after_commit_is_unknown(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode="hang", hang_seconds=3)
    assert engine.submit_due(runtime) == {"unknown": 1}  # client timeout 1.5 s
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=0.0)
    assert engine.submit_due(runtime, later(30)) == {"succeeded": 1}
    assert_invariant(runtime, zc_sandbox)


def test_gateway_commit_then_fail_is_unknown_then_found(runtime, premium_sandbox, zc_sandbox, gw_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url, gw_sandbox.url))
    mirror_bid(runtime, premium_sandbox, direction_id=2, fields={"account2": CARD})
    engine.create_due_payouts(runtime)
    gw_sandbox.engine.knobs.fail_after_commit_rate = 1.0
    assert engine.submit_due(runtime) == {"unknown": 1}
    gw_sandbox.engine.knobs.fail_after_commit_rate = 0.0
    assert engine.submit_due(runtime, later(30)) == {"submitted": 1}  # found, still processing
    gw_sandbox.engine.process_all()
    # Another process polls next: this one would answer an identical read again within the same real
    # second from that second's answer (see GatewayClient, "Timestamps and replays").
    runtime.forget_rails()
    assert engine.submit_due(runtime, later(200)) == {"succeeded": 1}
    p = one(runtime)
    assert [a.kind for a in attempts(runtime, p.id)] == ["submit", "find", "find"]
    assert_invariant(runtime, gw_sandbox)


def test_insufficient_funds_parks_then_pays(runtime, premium_sandbox, zc_sandbox, caplog):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    zc_sandbox.engine.set_balance(1, "0")
    assert engine.submit_due(runtime) == {"parked": 1}
    p = one(runtime)
    assert p.next_attempt_at > later(3500) and "InsufficientFunds" in p.last_error
    assert any("parked" in r.getMessage() for r in caplog.records)  # the alert
    assert_invariant(runtime, zc_sandbox)
    assert engine.submit_due(runtime, later(600)) == {}  # the long back-off holds
    zc_sandbox.engine.set_balance(1, "100000")
    assert engine.submit_due(runtime, later(5000)) == {"succeeded": 1}
    assert_invariant(runtime, zc_sandbox)


def test_permanent_refusal_fails(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    mirror_bid(runtime, premium_sandbox, fields={"account2": "1003"})  # an inactive ZaleyCash user
    engine.create_due_payouts(runtime)
    assert engine.submit_due(runtime) == {"failed": 1}
    p = one(runtime)
    assert "OperationsProtected" in p.last_error and p.completed_at is not None
    assert engine.complete_due(runtime, later(100)) == 0  # a failed payout never completes the bid
    assert_invariant(runtime, zc_sandbox)


def test_retries_exhausted_wait_for_a_person(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))  # max_attempts = 3
    mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    zc_sandbox.engine.knobs.error_rate = 1.0
    states = [engine.submit_due(runtime, later(t)) for t in (0, 1000, 5000, 20000)]
    assert states == [{"pending": 1}, {"pending": 1}, {"needs_review": 1}, {}]
    p = one(runtime)
    assert p.attempts == 3 and "retries ran out" in p.last_error
    assert_invariant(runtime, zc_sandbox)


@pytest.mark.parametrize("provider_got_it", [True, False], ids=["died-after-send", "died-before-send"])
def test_worker_dies_mid_submission(runtime, premium_sandbox, zc_sandbox, provider_got_it):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    (c,) = engine.claim(runtime)
    assert engine._start_attempt(runtime, c, "submit", later(0))
    if provider_got_it:
        rails.rail_for(runtime, "zc").send(rails.request_for(c.row))
    # ...and the worker is gone: no outcome written, the row stays in submitting.
    assert one(runtime).state == "submitting"
    assert engine.submit_due(runtime) == {}  # nobody else touches it while the lease holds
    assert engine.reap(runtime, later(5)) == 0
    runtime.forget_rails()
    assert engine.reap(runtime, later(31)) == 1
    p = one(runtime)
    assert p.state == "unknown" and p.maybe_sent
    assert engine.submit_due(runtime, later(32)) == {"succeeded": 1}
    p = one(runtime)
    kinds = [(a.kind, a.outcome) for a in attempts(runtime, p.id)]
    assert kinds[0] == ("submit", "lost") and kinds[1] == ("find", "succeeded" if provider_got_it else "not_found")
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1
    assert_invariant(runtime, zc_sandbox)
