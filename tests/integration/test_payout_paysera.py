"""The Paysera rail through the payout engine (create draft → store id in the payouts row → sign → done),
with a lost create answer and a lost sign answer. The sandbox ledger shows one execution per payout."""
from __future__ import annotations

import tomllib

from core.payout_config import load_payout_config
from tests.support.payouts import PS_ACCOUNT, attempts, later, mirror_bid, one, payout_env
from worker.payouts import engine


def paysera_toml(url: str) -> str:
    from providers.paysera.sandbox import DEFAULT_MAC_ID

    return f"""
[exchangers.main]
base_url = "http://127.0.0.1:1"

[payouts]
lease_seconds = 30
max_attempts = 3
retry_ladder = [30, 120, 600]
check_ladder = [15, 60]

[providers.ps]
type = "paysera"
base_url = "{url}"
mac_id = "{DEFAULT_MAC_ID}"
mac_key_env = "EXSYNC_TEST_PS_MAC_KEY"
timeout = 1.5

[routes.main]
trigger_statuses = ["realpay"]

[[routes.main.rules]]
currency = "RUB"
provider = "ps"
destination_field = "account2"
min_amount = "1"
max_amount = "100000"
"""


def install_paysera(runtime, url: str) -> None:
    from providers.paysera.sandbox import DEFAULT_MAC_KEY

    env = {**payout_env(), "EXSYNC_TEST_PS_MAC_KEY": DEFAULT_MAC_KEY}
    runtime.payout_config = load_payout_config(tomllib.loads(paysera_toml(url)), env)
    runtime.forget_rails()


def ledger_for(sb, key: str) -> list[dict]:
    """Executions in the sandbox ledger of every transfer carrying the payout's key."""
    from providers.paysera.payout import key_token

    with sb.engine.lock:
        ids = {t.id for t in list(sb.engine.transfers.values()) + list(sb.engine.deleted.values())
               if key_token(key) in str((t.purpose or {}).get("details", ""))}
        return [e for e in sb.engine.ledger if e["transfer_id"] in ids]


def drafts_for(sb, key: str) -> int:
    from providers.paysera.payout import key_token

    with sb.engine.lock:
        return sum(1 for t in sb.engine.transfers.values() if key_token(key) in str((t.purpose or {}).get("details")))


def settle(runtime, start: float = 0, rounds: int = 6) -> None:
    for i in range(rounds):
        engine.submit_due(runtime, later(start + 100 * (i + 1)))


def pay_bid(runtime, premium_sandbox) -> None:
    mirror_bid(runtime, premium_sandbox, direction_id=2, amount="100", fields={"account2": PS_ACCOUNT})
    assert engine.create_due_payouts(runtime) == 1


def assert_paid_once(runtime, ps_sandbox):
    p = one(runtime)
    assert p.state == "succeeded", (p.state, p.last_error)
    entries = ledger_for(ps_sandbox, p.idempotency_key)
    assert len(entries) == 1 and entries[0]["transfer_id"] == p.provider_ref
    assert ps_sandbox.engine.executed(p.provider_ref) == 1
    assert entries[0]["amount"] == p.amount and entries[0]["currency"] == "RUB"
    return p


def test_paysera_happy_path(runtime, premium_sandbox, ps_sandbox):
    install_paysera(runtime, ps_sandbox.url)
    pay_bid(runtime, premium_sandbox)
    states = engine.submit_due(runtime)
    assert states in ({"submitted": 1}, {"succeeded": 1})  # signed: processing (done a moment later)
    p = one(runtime)
    assert p.provider == "ps" and p.provider_ref  # the draft's id, stored through the engine's callback
    assert ps_sandbox.engine.transfer(p.provider_ref)["executed"] == 1
    settle(runtime)
    p = assert_paid_once(runtime, ps_sandbox)
    kinds = [(a.kind, a.outcome) for a in attempts(runtime, p.id)]
    assert kinds[0] == ("submit", "pending" if states == {"submitted": 1} else "succeeded")
    assert all(k == "find" for k, _ in kinds[1:])


def test_paysera_lost_create_answer(runtime, premium_sandbox, ps_sandbox):
    """The draft is created but its answer lost: unknown → find() locates the draft by key → signed once."""
    install_paysera(runtime, ps_sandbox.url)
    pay_bid(runtime, premium_sandbox)
    ps_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fault_match=r"^POST /transfer/rest/v1/transfers$")
    assert engine.submit_due(runtime) == {"unknown": 1}
    p = one(runtime)
    assert p.maybe_sent and p.provider_ref is None  # the id never came back
    assert drafts_for(ps_sandbox, p.idempotency_key) == 1
    assert ledger_for(ps_sandbox, p.idempotency_key) == []  # a draft moves no money
    ps_sandbox.engine.knobs.update(fail_after_commit_rate=0.0, fault_match="")
    runtime.forget_rails()  # a fresh process
    settle(runtime)
    p = assert_paid_once(runtime, ps_sandbox)
    assert drafts_for(ps_sandbox, p.idempotency_key) == 1  # the same draft was signed, no second create
    kinds = [(a.kind, a.outcome) for a in attempts(runtime, p.id)]
    assert kinds[0] == ("submit", "unknown") and kinds[1][0] == "find"
    assert [k for k, _ in kinds].count("submit") == 2  # the create, then the sign of the found draft


def test_paysera_lost_sign_answer(runtime, premium_sandbox, ps_sandbox):
    """The sign is carried out but its answer lost: unknown → find() reads the stored id → one execution."""
    install_paysera(runtime, ps_sandbox.url)
    pay_bid(runtime, premium_sandbox)
    ps_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fault_match=r"^PUT .*/sign$")
    assert engine.submit_due(runtime) == {"unknown": 1}
    p = one(runtime)
    assert p.maybe_sent and p.provider_ref  # stored before signing
    assert ps_sandbox.engine.executed(p.provider_ref) == 1
    ps_sandbox.engine.knobs.update(fail_after_commit_rate=0.0, fault_match="")
    runtime.forget_rails()
    settle(runtime)
    p = assert_paid_once(runtime, ps_sandbox)
    kinds = [(a.kind, a.outcome) for a in attempts(runtime, p.id)]
    assert kinds[0] == ("submit", "unknown")
    assert [k for k, _ in kinds].count("submit") == 1  # never sent again: find() told us
