"""Pure payout rules and the payout config: route choice, limits, ceiling, error classes, ladders."""
from __future__ import annotations

import random
from decimal import Decimal

import pytest

from core.config import ConfigError
from core.payout_config import PayoutSettings, load_payout_config
from providers.errors import (
    AuthError,
    ConnectionFailedError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.payouts import PayoutResult
from worker.payouts import rules

ENV = {"ZC": "zc-secret", "GWK": "gw-key", "GWS": "gw-secret"}


def doc(**over):
    d = {
        "exchangers": {"main": {}},
        "providers": {"zc": {"type": "zaleycash", "base_url": "https://zc.example", "secret_key_env": "ZC"},
                      "gw": {"type": "gateway", "base_url": "https://gw.example", "api_key_env": "GWK",
                             "secret_env": "GWS"}},
        "routes": {"main": {"trigger_statuses": ["realpay"], "auto_pay_ceiling": "500", "rules": [
            {"currency": "RUB", "psys_get": "ZaleyCash", "provider": "zc", "min_amount": "1", "max_amount": "1000"},
            {"currency": "rub", "provider": "gw", "destination_field": "cf5", "max_amount": "100000"},
        ]}},
    }
    d.update(over)
    return d


def test_config_parses():
    cfg = load_payout_config(doc(), ENV)
    route = cfg.routes["main"]
    assert route.auto_pay_ceiling == Decimal("500") and route.enabled and route.trigger_statuses == ("realpay",)
    assert [r.provider for r in route.rules] == ["zc", "gw"] and route.rules[1].currency == "RUB"
    assert cfg.providers["zc"].secrets["secret_key"] == "zc-secret"
    assert "zc-secret" not in repr(cfg) and set(cfg.secrets()) == {"zc-secret", "gw-key", "gw-secret"}


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["providers"]["zc"].update(color="red"), "providers.zc.color"),
    (lambda d: d["providers"]["zc"].update(type="bank"), "providers.zc.type"),
    (lambda d: d["providers"]["zc"].pop("base_url"), "providers.zc.base_url"),
    (lambda d: d["providers"]["zc"].update(secret_key_env="MISSING"), "MISSING"),
    (lambda d: d["routes"]["main"]["rules"][0].update(provider="nope"), "routes.main.rules[0].provider"),
    (lambda d: d["routes"]["main"]["rules"][0].update(min_amount=5.5), "routes.main.rules[0].min_amount"),
    (lambda d: d["routes"]["main"]["rules"][1].update(max_amount="abc"), "routes.main.rules[1].max_amount"),
    (lambda d: d["routes"]["main"].update(trigger_statuses=["paid!"]), "routes.main.trigger_statuses[0]"),
    (lambda d: d["routes"]["main"].update(trigger_statuses=["success"]), "routes.main.trigger_statuses[0]"),
    (lambda d: d["routes"]["main"].update(auto_pay_ceiling="-1"), "routes.main.auto_pay_ceiling"),
    (lambda d: d["routes"]["main"].update(speed=1), "routes.main.speed"),
    (lambda d: d["routes"].update(other={}), "routes.other"),
    (lambda d: d.update(payouts={"retry_ladder": []}), "payouts.retry_ladder"),
    (lambda d: d.update(payouts={"jitter": 2}), "payouts.jitter"),
])
def test_config_errors_name_the_key(mutate, key):
    d = doc()
    mutate(d)
    with pytest.raises(ConfigError) as err:
        load_payout_config(d, ENV)
    assert err.value.key == key


def test_min_above_max_is_refused():
    d = doc()
    d["routes"]["main"]["rules"][0].update(min_amount="2000")
    with pytest.raises(ConfigError, match="routes.main.rules\\[0\\].max_amount"):
        load_payout_config(d, ENV)


def bid(amount="100", currency="RUB", psys="ZaleyCash", fields=None):
    return rules.BidView("main", 1350, "realpay", Decimal(amount) if amount is not None else None, currency, psys,
                         {"account2": "1001", "cf5": "4111"} if fields is None else fields)


def test_route_choice_limits_and_ceiling():
    route = load_payout_config(doc(), ENV).routes["main"]
    assert rules.decide(route, bid()) == rules.NewPayout("pending", "zc", Decimal("100"), "RUB", "1001")
    card = rules.decide(route, bid(psys="Visa/MasterCard"))
    assert (card.state, card.provider, card.destination) == ("pending", "gw", "4111")
    assert rules.decide(route, bid(currency="USD")).reason.startswith("no route rule")
    assert "min_amount" in rules.decide(route, bid(amount="0.5")).reason
    assert "max_amount" in rules.decide(route, bid(amount="1000.01")).reason
    over = rules.decide(route, bid(amount="600"))
    assert over.state == "needs_review" and "ceiling" in over.reason and over.destination == "1001"
    assert "'account2'" in rules.decide(route, bid(fields={"account2": "  "})).reason
    assert "payable amount" in rules.decide(route, bid(amount=None)).reason


def test_idempotency_key():
    assert rules.idempotency_key("main", 1350) == "exs-main-1350"
    long = rules.idempotency_key("x" * 63, 10**18)
    assert len(long) <= 64 and long == rules.idempotency_key("x" * 63, 10**18)


CFG = PayoutSettings(max_attempts=3, retry_ladder=(30, 120, 600), park_seconds=3600, jitter=0.2)


@pytest.mark.parametrize("exc, state", [
    (RetryableError("503"), "pending"),
    (ConnectionFailedError("refused"), "pending"),
    (UnknownOutcomeError("timeout"), "unknown"),
    (InsufficientFundsError("51"), "parked"),
    (PermanentError("wrong currency"), "failed"),
    (ValidationError("bad", fields={"amount": "x"}), "failed"),
    (NotFoundError("no user"), "failed"),
    (AuthError("key"), "needs_review"),
    (ValueError("bug"), "unknown"),
])
def test_send_error_classes(exc, state):
    t = rules.classify_send_error(exc, 1, CFG, random.Random(1))
    assert t.state == state
    assert t.maybe_sent == (state == "unknown")
    assert (t.delay is None) == (state in ("failed", "needs_review"))


def test_retries_run_out_to_a_person():
    assert rules.classify_send_error(RetryableError("x"), 2, CFG).state == "pending"
    t = rules.classify_send_error(RetryableError("x"), 3, CFG)
    assert t.state == "needs_review" and t.alert and "retries ran out" in t.reason
    assert rules.classify_send_error(RetryableError("x", retry_after=900), 1, CFG).delay >= 900


def test_find_errors_never_fail():
    cfg = PayoutSettings(max_checks=3)
    for exc in (RetryableError("x"), UnknownOutcomeError("x"), PermanentError("x"), ValueError("x")):
        assert rules.classify_find_error(exc, 1, cfg, "unknown").state == "unknown"
        assert rules.classify_find_error(exc, 3, cfg, "submitted").state == "needs_review"
    assert rules.classify_find_error(InsufficientFundsError("x"), 1, cfg, "unknown").state == "parked"
    assert rules.classify_find_error(AuthError("x"), 1, cfg, "unknown").state == "needs_review"


def test_results():
    assert rules.from_result(PayoutResult("succeeded")) == ("succeeded", "succeeded")
    assert rules.from_result(PayoutResult("pending")) == ("submitted", "pending")
    assert rules.from_result(PayoutResult("failed")) == ("failed", "failed")


def test_ladder_with_jitter_bounds():
    rng = random.Random(42)
    ladder = (30, 120, 600)
    for step, base in [(0, 30), (1, 120), (2, 600), (7, 600)]:
        values = [rules.ladder_delay(step, ladder, 0.2, rng) for _ in range(200)]
        assert all(base * 0.8 <= v <= base * 1.2 for v in values)
        assert max(values) - min(values) > base * 0.2  # it really spreads
    assert rules.ladder_delay(1, ladder, 0) == 120


def test_operator_state_sets():
    assert not rules.CANCELLABLE & {"submitting", "submitted", "unknown"}
    assert rules.APPROVABLE == {"needs_review"}


def test_four_eyes_needs_distinct_approvals_above_the_amount():
    from dataclasses import replace

    route = replace(load_payout_config(doc(), ENV).routes["main"], approval_above=Decimal("5000"), approvers=2)
    assert rules.approvals_required(route, Decimal("5000")) == 0
    assert rules.approvals_required(route, Decimal("5000.01")) == 2
    assert rules.missing_approvals(route, Decimal("4000"), 0) is None
    assert rules.missing_approvals(route, Decimal("9180.000000000000000000"), 1) == (
        "amount 9180 is above approval_above 5000: needs 2 approvals by distinct approvers, has 1")
    assert rules.missing_approvals(route, Decimal("9180"), 2) is None
    bid = rules.BidView("main", 1, "realpay", Decimal("6000"), "RUB", None, {"cf5": "card"})
    out = rules.decide(replace(route, auto_pay_ceiling=None), bid)
    assert out.state == rules.NEEDS_REVIEW and "needs 2 approvals" in out.reason
    off = replace(route, approval_above=None)
    assert rules.approvals_required(off, Decimal("1e9")) == 0
