"""`exsync payouts list|show|approve|retry|cancel` through click's CliRunner against the test Postgres.

The actions name their operator (``--by``) and their reason; worker/actions checks the role and writes the
audit row (tests/integration/test_actions.py covers four-eyes and the audit trail in depth)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from cli import cli
from tests.support.config import make_env, write_config
from tests.support.operators import add_operator
from tests.support.payouts import install_payouts, mirror_bid, payout_env, payout_toml, payouts
from worker.payouts import engine

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def env(tmp_path, premium_sandbox, zc_sandbox, database_url):
    path = write_config(tmp_path, premium_sandbox.url, extra=payout_toml(zc_sandbox.url, ceiling="1000"))
    return make_env(path, database_url, None, **payout_env())


def invoke(args, env):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


@pytest.fixture
def review_payout(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url, ceiling="1000"))
    mirror_bid(runtime, premium_sandbox)  # above the ceiling: needs_review
    engine.create_due_payouts(runtime)
    (p,) = payouts(runtime)
    assert p.state == "needs_review"
    add_operator(runtime, "alice", "approver")
    add_operator(runtime, "olga", "operator")
    return p


def state_of(runtime, pid):
    with runtime.db.session() as s:
        return s.execute(text("SELECT state FROM payouts WHERE id = :id"), {"id": pid}).scalar()


def test_list_show_approve(runtime, review_payout, env, zc_sandbox):
    r = invoke(["payouts", "list", "--state", "needs_review"], env)
    assert r.exit_code == 0 and "needs_review" in r.output and "auto-pay ceiling" in r.output
    assert "no payouts" in invoke(["payouts", "list", "--state", "succeeded"], env).output
    r = invoke(["payouts", "approve", str(review_payout.id), "--by", "olga", "--reason", "checked"], env)
    assert r.exit_code == 1 and "olga' is a operator: this needs the approver role" in r.output
    r = invoke(["payouts", "approve", str(review_payout.id), "--by", "alice"], env)
    assert r.exit_code == 2 and "--reason" in r.output
    r = invoke(["payouts", "approve", str(review_payout.id), "--by", "alice", "--reason", "customer known"], env)
    assert r.exit_code == 0 and "approved by alice, now pending" in r.output
    assert state_of(runtime, review_payout.id) == "pending"
    engine.submit_due(runtime)
    r = invoke(["payouts", "show", str(review_payout.id)], env)
    assert r.exit_code == 0 and "succeeded" in r.output and "submit" in r.output and "alice" in r.output
    assert zc_sandbox.engine.executed(review_payout.idempotency_key) == 1
    # Approving again is refused: it is not waiting for a person any more.
    r = invoke(["payouts", "approve", str(review_payout.id), "--by", "alice", "--reason", "again"], env)
    assert r.exit_code == 1 and "only a payout in needs_review" in r.output
    r = invoke(["payouts", "cancel", str(review_payout.id), "--by", "olga", "--reason", "no"], env)
    assert r.exit_code == 1 and "cannot be cancelled" in r.output
    r = invoke(["audit", "list", "--object-type", "payout", "--object", str(review_payout.id)], env)
    assert r.exit_code == 0 and "alice" in r.output and "approve" in r.output and "customer known" in r.output
    assert "state: needs_review → pending" in r.output


def test_cancel_and_retry(runtime, review_payout, env):
    r = invoke(["payouts", "cancel", str(review_payout.id), "--by", "olga", "--reason", "customer asked"], env)
    assert r.exit_code == 0 and state_of(runtime, review_payout.id) == "cancelled"
    r = invoke(["payouts", "retry", str(review_payout.id), "--by", "olga", "--reason", "try"], env)
    assert r.exit_code == 1 and "retry needs failed" in r.output
    with runtime.db.session() as s:
        s.execute(text("UPDATE payouts SET state = 'failed', attempts = 3 WHERE id = :id"), {"id": review_payout.id})
    r = invoke(["payouts", "retry", str(review_payout.id), "--by", "nobody", "--reason", "try"], env)
    assert r.exit_code == 1 and "no operator 'nobody'" in r.output
    r = invoke(["payouts", "retry", str(review_payout.id), "--by", "olga", "--reason", "provider fixed"], env)
    assert r.exit_code == 0 and "now pending" in r.output
    with runtime.db.session() as s:
        assert s.execute(text("SELECT attempts FROM payouts WHERE id = :id"), {"id": review_payout.id}).scalar() == 0


def test_refuses_while_money_may_move(runtime, review_payout, env):
    for st in ("submitting", "submitted", "unknown"):
        with runtime.db.session() as s:
            s.execute(text("UPDATE payouts SET state = :st WHERE id = :id"), {"st": st, "id": review_payout.id})
        r = invoke(["payouts", "cancel", str(review_payout.id), "--by", "olga", "--reason", "no"], env)
        assert r.exit_code == 1 and "may be moving money" in r.output
        assert state_of(runtime, review_payout.id) == st


def test_bad_ids(runtime, env, db):
    r = invoke(["payouts", "show", "999"], env)
    assert r.exit_code == 1 and "no payout 999" in r.output
    add_operator(runtime, "alice", "approver")
    r = invoke(["payouts", "approve", "999", "--by", "alice", "--reason", "x"], env)
    assert r.exit_code == 1 and "no payout 999" in r.output
    assert invoke(["payouts", "show", "abc"], env).exit_code == 2
    assert invoke(["payouts", "cancel", "0"], env).exit_code == 2
    assert invoke(["payouts", "list", "--state", "bogus"], env).exit_code == 2
