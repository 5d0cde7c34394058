"""ZaleyCashClient and ZaleyCashRail over real HTTP against the ZaleyCash sandbox: every call, the token,
every error code, the rail's idempotency and find(), transport faults and secrets, the sandbox's own face."""
from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from flask import Flask, Response, request
from freezegun import freeze_time

from providers import (
    AuthError,
    ConnectionFailedError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.payouts import SUCCEEDED, PayoutRail, PayoutRequest
from providers.zaleycash import (
    DuplicateOperationError,
    InvalidTokenError,
    LookupUnavailableError,
    OperationNotFoundError,
    OperationsProtectedError,
    ProbeRefusedError,
    StatusNotAvailableError,
    TransactionProcessingError,
    User,
    UserNotFoundError,
    WrongCurrencyError,
    ZaleyCashClient,
    ZaleyCashRail,
    check_envelope,
)
from providers.zaleycash.client import TRANSFER_PATH
from providers.zaleycash.sandbox import (
    AGENT_ID,
    DEFAULT_SECRET,
    DEFAULT_STATUS_PATH,
    describe,
    serve,
)
from providers.zaleycash.wire import loads
from tests.support.net import refused_url

CHILD, CHILD2, INACTIVE, STRANGER = 1001, 1002, 1003, 1004
RUB, USD, EUR = 1, 2, 3


@pytest.fixture
def zclient(zc_sandbox):
    c = ZaleyCashClient(zc_sandbox.url, DEFAULT_SECRET, timeout=5)
    yield c
    c.close()


@pytest.fixture
def rail(zclient):
    return ZaleyCashRail(zclient, currencies={"RUB": RUB, "USD": USD, "EUR": EUR})


def payout(key: str, amount: str = "10.00", currency: str = "RUB", dest: int = CHILD) -> PayoutRequest:
    return PayoutRequest(key=key, amount=Decimal(amount), currency=currency, destination=str(dest))


def test_every_call(zc_sandbox, zclient):
    assert {s.alias for s in zclient.services()} == {"vk", "yandex", "mytarget"}
    assert zclient.user(email="child1@sandbox.zaleycash.local") == User(CHILD, "child1@sandbox.zaleycash.local",
                                                                       True, "Child one")
    new = zclient.register_user(name="New kid", email="kid@example.com", plainPassword="s3cret-pass")
    assert new.id and new.email == "kid@example.com" and new.is_active
    assert zclient.link_child(user=STRANGER).id == STRANGER
    bal = zclient.balance()
    assert bal.user.id == AGENT_ID and bal.get(RUB).balance == Decimal("100000.00")
    assert [c.code for c in zclient.currencies()] == ["RUB", "USD", "EUR", "KZT"]
    t = zclient.transfer_internal(user_id=CHILD, currency=RUB, amount=Decimal("150.25"), operation_id="op-1")
    assert (t.operation_id, t.user_id, t.amount, t.status) == ("op-1", CHILD, Decimal("150.25"), "done")
    assert zclient.balance().get(RUB).balance == Decimal("99849.75")
    assert zc_sandbox.engine.ledger["op-1"].amount == Decimal("150.25") and zc_sandbox.engine.executed("op-1") == 1
    # the generic call, from the site root or relative to /api/v2/
    assert zclient.request("GET", "/api/v2/user/balance")["balances"][0]["currency"] == RUB
    assert zclient.request("GET", "money/currencies")[0]["code"] == "RUB"
    # the status endpoint: off by default, configurable
    with pytest.raises(StatusNotAvailableError):
        zclient.transfer_status("op-1")
    with ZaleyCashClient(zc_sandbox.url, DEFAULT_SECRET, status_path=DEFAULT_STATUS_PATH) as sc:
        st = sc.transfer_status("op-1")
        assert (st.operation_id, st.status, st.amount) == ("op-1", "done", Decimal("150.25"))
        with pytest.raises(OperationNotFoundError):
            sc.transfer_status("never-sent")
    assert "ZaleyCashClient('http://127.0.0.1" in repr(zclient)


def test_token_is_cached(zc_sandbox, zclient):
    for _ in range(10):
        zclient.balance()
    zclient.services()
    assert zc_sandbox.engine.tokens_issued == 1 and zclient.token_fetches == 1


def test_token_renewed_on_expiry(zc_sandbox, zclient):
    with freeze_time("2030-01-01 00:00:00") as clock:
        zclient.balance()
        assert zc_sandbox.engine.tokens_issued == 1
        clock.tick(3000)  # still outside the 60 s margin
        zclient.balance()
        assert zc_sandbox.engine.tokens_issued == 1
        clock.tick(600)  # 3600 s after the token was issued: it expired
        assert zclient.balance().get(RUB).balance == Decimal("100000.00")
        zclient.services()
        assert zc_sandbox.engine.tokens_issued == 2 and zclient.token_fetches == 2


def test_token_expired_early_by_server_clock_is_renewed_once(zc_sandbox, zclient, caplog):
    caplog.set_level(logging.INFO, logger="providers.zaleycash")
    zc_sandbox.engine.knobs.clock_skew = 120  # the server's clock runs 2 minutes ahead: more than our 60 s margin
    with freeze_time("2030-01-01 00:00:00") as clock:
        zclient.balance()
        clock.tick(3630)  # we still trust the token; the server has expired it: code 1 → renew → success
        assert zclient.balance().user.id == AGENT_ID
        assert zc_sandbox.engine.tokens_issued == 2 and zclient.token_fetches == 2
    assert any("refused on balance (code 1)" in r.getMessage() for r in caplog.records)


def test_code_1_renews_once_then_auth_error(zc_sandbox, zclient):
    zclient.balance()
    zc_sandbox.engine.revoke_tokens()  # the server forgot the token
    assert zclient.balance().get(USD).balance == Decimal("5000.00")
    assert zc_sandbox.engine.tokens_issued == 2
    zc_sandbox.engine.knobs.reject_tokens = True  # every token refused: renew once, then give up
    with pytest.raises(InvalidTokenError) as ei:
        zclient.balance()
    assert isinstance(ei.value, AuthError) and ei.value.code == 1 and ei.value.http_status == 401
    assert zc_sandbox.engine.tokens_issued == 3


def test_token_shared_by_16_threads(zc_sandbox, zclient):
    barrier = threading.Barrier(16)

    def work(_):
        barrier.wait()
        return zclient.balance().get(RUB).balance

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(work, range(16)))
    assert results == [Decimal("100000.00")] * 16
    assert zc_sandbox.engine.tokens_issued == 1 and zclient.token_fetches == 1


def test_auth_errors(zc_sandbox):
    with ZaleyCashClient(zc_sandbox.url, "not-the-key") as bad:
        with pytest.raises(AuthError) as ei:
            bad.balance()
    assert ei.value.code == 2 and type(ei.value) is AuthError
    r = requests.post(zc_sandbox.url + "/api/v2/token")  # no Authorization header: only a raw client can do that
    with pytest.raises(AuthError) as ei:
        check_envelope(r.status_code, r.content, call="token")
    assert ei.value.code == 4
    zc_sandbox.engine.knobs.agent_disabled = True
    with ZaleyCashClient(zc_sandbox.url, DEFAULT_SECRET) as c:
        with pytest.raises(AuthError) as ei:
            c.balance()
    assert ei.value.code == 81 and ei.value.http_status == 403


def test_every_error_code_of_the_sandbox(zc_sandbox, zclient):
    k = zc_sandbox.engine.knobs

    def err(fn, *a, **kw) -> ProviderError:
        with pytest.raises(ProviderError) as ei:
            fn(*a, **kw)
        return ei.value

    tr = zclient.transfer_internal
    e = err(tr, STRANGER, RUB, Decimal("1"), "x5")  # not a child of the agent
    assert type(e) is AuthError and e.code == 5
    e = err(zclient.request, "POST", TRANSFER_PATH, json={"user_id": CHILD, "currency": RUB})
    assert type(e) is ValidationError and e.code == 10 and "amount, operation_id" in e.message
    e = err(tr, CHILD, RUB, Decimal("1.005"), "x10")
    assert e.code == 10
    e = err(zclient.request, "POST", TRANSFER_PATH, json=[1, 2])
    assert e.code == 10
    e = err(zclient.request, "POST", TRANSFER_PATH,
            json={"user_id": CHILD, "currency": RUB, "amount": Decimal("-5"), "operation_id": "neg"})
    assert e.code == 10 and "positive" in e.message
    tok = zclient.token().access_token
    r = requests.post(zc_sandbox.url + TRANSFER_PATH, data=b"{not json", headers={"Authorization": f"Bearer {tok}"})
    with pytest.raises(ValidationError) as ei:
        check_envelope(r.status_code, r.content, call="transfer_internal")
    assert ei.value.code == 10 and "not JSON" in ei.value.message
    e = err(zclient.register_user, "Bad", "not-an-email", "s3cret-pass")
    assert type(e) is ValidationError and e.code == 20 and "email" in e.fields
    e = err(zclient.user, email="nobody@example.com")
    assert type(e) is UserNotFoundError and e.code == 21 and e.http_status == 404
    e = err(tr, 9999, RUB, Decimal("1"), "x21")
    assert isinstance(e, PermanentError) and e.code == 21
    e = err(tr, INACTIVE, RUB, Decimal("1"), "x26")
    assert type(e) is OperationsProtectedError and e.code == 26
    e = err(zclient.link_child, INACTIVE)
    assert e.code == 26
    e = err(tr, CHILD, EUR, Decimal("1"), "x51")
    assert type(e) is InsufficientFundsError and e.code == 51
    e = err(tr, CHILD, 9, Decimal("1"), "x80")
    assert type(e) is WrongCurrencyError and e.code == 80
    e = err(tr, CHILD, RUB, Decimal("1"), "x" * 65)
    assert type(e) is ValidationError and e.code == 55
    zclient.register_user("Twice", "twice@example.com", "s3cret-pass")
    e = err(zclient.register_user, "Twice", "twice@example.com", "s3cret-pass")
    assert e.code == 72 and e.fields == {"email": "Email already exist"}
    tr(CHILD, RUB, Decimal("1"), "x58")
    e = err(tr, CHILD, RUB, Decimal("1"), "x58")
    assert type(e) is DuplicateOperationError and e.code == 58
    k.min_amount = 100
    e = err(tr, CHILD, RUB, Decimal("5"), "x50")
    assert type(e) is InsufficientFundsError and e.code == 50
    k.min_amount = 0
    k.transfers_protected = True
    e = err(tr, CHILD, RUB, Decimal("1"), "x54")
    assert type(e) is OperationsProtectedError and e.code == 54
    k.transfers_protected = False
    k.error_rate = 1.0
    e = err(tr, CHILD, RUB, Decimal("1"), "x53")
    assert type(e) is TransactionProcessingError and e.retryable and e.http_status == 500
    e = err(zclient.services)
    assert type(e) is RetryableError and e.code == "http_500" and "Internal Server Error" in e.message
    k.error_rate = 0.0
    k.rate_limit_rate = 1.0
    e = err(zclient.balance)
    assert type(e) is RetryableError and e.http_status == 429 and e.retry_after == 1.0
    k.rate_limit_rate = 0.0
    assert type(err(zclient.request, "GET", "/api/v2/no/such/thing")) is NotFoundError
    assert type(err(zclient.request, "DELETE", "/api/v2/user/balance")) is PermanentError  # 405
    # nothing but the one good transfer ever ran
    assert [op for op in zc_sandbox.engine.ledger] == ["x58"] and zc_sandbox.engine.executed("x53") == 0


# ----------------------------------------------------------------------------------------------------
# The payout rail
# ----------------------------------------------------------------------------------------------------

def test_rail_send_and_idempotency(zc_sandbox, rail):
    as_rail: PayoutRail = rail  # the interface (a typing Protocol, not runtime-checkable)
    assert as_rail.name == "zaleycash" and callable(as_rail.send) and callable(as_rail.find)
    first = rail.send(payout("pay-1", "250.00"))
    assert first.state == SUCCEEDED and first.provider_ref == zc_sandbox.engine.ledger["pay-1"].transaction_id
    again = rail.send(payout("pay-1", "250.00"))
    assert again.state == SUCCEEDED and again.code == 58 and again.provider_ref == "pay-1"
    assert zc_sandbox.engine.executed("pay-1") == 1
    assert zc_sandbox.engine.balance_of(RUB) == Decimal("99750.00")
    assert zc_sandbox.engine.balance_of(RUB, CHILD) == Decimal("250.00")
    # the same key with other parameters is refused before anything is sent
    with pytest.raises(ValidationError) as ei:
        rail.send(payout("pay-1", "999.00"))
    assert ei.value.code == "key_reused" and zc_sandbox.engine.executed("pay-1") == 1


def test_rail_parameters(zc_sandbox, rail):
    assert rail.send(payout("num-cur", "1.00", currency="2")).state == SUCCEEDED  # a numeric code as is
    assert zc_sandbox.engine.ledger["num-cur"].currency == USD
    with pytest.raises(ValidationError) as ei:
        rail.send(payout("bad-cur", currency="XYZ"))
    assert ei.value.fields == {"currency": "no ZaleyCash code"}
    with pytest.raises(ValidationError):
        rail.send(PayoutRequest("bad-dest", Decimal("1"), "RUB", "kid@example.com"))
    assert "bad-cur" not in zc_sandbox.engine.ledger and "bad-dest" not in zc_sandbox.engine.ledger


def test_rail_insufficient_funds(zc_sandbox, rail):
    with pytest.raises(InsufficientFundsError) as ei:
        rail.send(payout("no-money", "5.00", currency="EUR"))
    assert ei.value.code == 51 and zc_sandbox.engine.executed("no-money") == 0


@pytest.mark.parametrize("mode", ["hang", "502", "close"])
def test_fail_after_commit_is_unknown_then_found(zc_sandbox, mode):
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode=mode, hang_seconds=3)
    with ZaleyCashClient(zc_sandbox.url, DEFAULT_SECRET, timeout=0.5) as c:
        r = ZaleyCashRail(c, currencies={"RUB": RUB})
        with pytest.raises(UnknownOutcomeError):
            r.send(payout(f"lost-{mode}", "42.00"))
        assert zc_sandbox.engine.executed(f"lost-{mode}") == 1  # the money moved although we got no answer
        zc_sandbox.engine.knobs.fail_after_commit_rate = 0.0
        found = r.find(f"lost-{mode}")
        assert found is not None and found.state == SUCCEEDED and found.code == 58
    assert zc_sandbox.engine.executed(f"lost-{mode}") == 1
    assert zc_sandbox.engine.balance_of(RUB) == Decimal("99958.00")


def test_find_with_status_endpoint(zc_sandbox):
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode="502")
    with ZaleyCashClient(zc_sandbox.url, DEFAULT_SECRET, status_path=DEFAULT_STATUS_PATH) as c:
        r = ZaleyCashRail(c, currencies={"RUB": RUB})
        with pytest.raises(UnknownOutcomeError):
            r.send(payout("st-1"))
        found = r.find("st-1")
        assert found.state == SUCCEEDED and found.provider_ref == zc_sandbox.engine.ledger["st-1"].transaction_id
        assert r.find("never-sent") is None  # the status endpoint says: no such operation
    assert zc_sandbox.engine.executed("st-1") == 1


def test_find_probe_may_complete_the_payout(zc_sandbox, zclient):
    stored = {"late-1": payout("late-1", "7.00")}  # the engine's stored payout, e.g. after a restart
    r = ZaleyCashRail(zclient, currencies={"RUB": RUB}, request_lookup=stored.get)
    res = r.find("late-1")  # the first send never reached ZaleyCash: the probe pays it now
    assert res.state == SUCCEEDED and res.code == 200 and zc_sandbox.engine.executed("late-1") == 1
    assert r.find("late-1").code == 58 and zc_sandbox.engine.executed("late-1") == 1
    with pytest.raises(LookupUnavailableError) as ei:
        r.find("unknown-key")
    assert isinstance(ei.value, UnknownOutcomeError)


def test_find_probe_short_of_money_is_never_none(zc_sandbox, zclient):
    zc_sandbox.engine.set_balance(EUR, "10.00")
    r = ZaleyCashRail(zclient, currencies={"EUR": EUR})
    assert r.send(payout("eur-1", "10.00", currency="EUR")).state == SUCCEEDED  # drains the balance
    zc_sandbox.engine.knobs.funds_before_duplicate = True  # a server that checks money before duplicates
    with pytest.raises(InsufficientFundsError):
        r.find("eur-1")  # 51 although the transfer exists: parked, not "never executed"
    zc_sandbox.engine.set_balance(EUR, "50.00")  # topped up: the next probe learns the truth
    assert r.find("eur-1").state == SUCCEEDED
    assert zc_sandbox.engine.executed("eur-1") == 1 and zc_sandbox.engine.balance_of(EUR) == Decimal("50.00")


def test_find_probe_refused_stays_unknown(zc_sandbox, zclient):
    r = ZaleyCashRail(zclient, currencies={"RUB": RUB},
                      request_lookup={"to-inactive": payout("to-inactive", dest=INACTIVE)}.get)
    with pytest.raises(ProbeRefusedError) as ei:
        r.find("to-inactive")
    assert isinstance(ei.value, UnknownOutcomeError) and ei.value.code == 26
    assert isinstance(ei.value.__cause__, OperationsProtectedError)


# ----------------------------------------------------------------------------------------------------
# Transport faults and secrets
# ----------------------------------------------------------------------------------------------------

def test_connection_refused():
    with ZaleyCashClient(refused_url(), DEFAULT_SECRET, timeout=2) as c:
        with pytest.raises(ConnectionFailedError):
            c.balance()
        with pytest.raises(ConnectionFailedError):
            ZaleyCashRail(c, currencies={"RUB": RUB}).send(payout("refused-1"))


@pytest.fixture
def echo_server():
    """A server that repeats the Authorization header in its error texts (a careless real server might)."""
    app = Flask("echo")

    @app.route("/api/v2/<path:sub>", methods=["GET", "POST"])
    def echo(sub):
        auth = request.headers.get("Authorization", "")
        if sub == "token":
            return Response(json.dumps({"code": 200, "message": "OK", "response": {
                "access_token": "tok-ECHO-1234567890", "expires_at": 4102444800}}), mimetype="application/json")
        return Response(json.dumps({"code": 10, "message": f"Invalid request (got header {auth})",
                                    "errors": {"auth": auth}}), status=400, mimetype="application/json")

    srv = serve(app, port=0)
    yield srv
    srv.shutdown()


def test_no_secret_in_errors_or_logs(zc_sandbox, caplog, echo_server):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def keep(fn, *a, **kw):
        try:
            fn(*a, **kw)
        except ProviderError as e:
            texts.extend([str(e), repr(e), e.message, json.dumps(getattr(e, "fields", {}))])

    c = ZaleyCashClient(zc_sandbox.url, DEFAULT_SECRET, timeout=0.5)
    r = ZaleyCashRail(c, currencies={"RUB": RUB})
    keep(c.balance)
    keep(r.send, payout("sec-1"))
    keep(r.send, payout("sec-1"))
    keep(c.transfer_internal, STRANGER, RUB, Decimal("1"), "sec-2")
    zc_sandbox.engine.revoke_tokens()
    keep(c.services)
    zc_sandbox.engine.knobs.reject_tokens = True
    keep(c.services)
    zc_sandbox.engine.knobs.update(reject_tokens=False, fail_after_commit_rate=1.0, fail_after_commit_mode="close")
    keep(r.send, payout("sec-3"))
    keep(ZaleyCashClient(zc_sandbox.url, DEFAULT_SECRET + "-wrong").balance)
    keep(ZaleyCashClient(refused_url(), DEFAULT_SECRET).balance)
    echo = ZaleyCashClient(echo_server.url, DEFAULT_SECRET)
    keep(echo.balance)
    texts.extend([repr(c), repr(r), repr(c.token())])
    texts.extend(rec.getMessage() for rec in caplog.records)
    texts.extend(rec.exc_text or "" for rec in caplog.records)
    assert len(texts) > 10 and any("Invalid request (got header Bearer ***)" in t for t in texts)
    secrets = [DEFAULT_SECRET, "tok-ECHO-1234567890", *zc_sandbox.engine.issued_tokens]
    assert len(secrets) >= 5
    for text in texts:
        for s in secrets:
            assert s not in text
    c.close()
    echo.close()


# ----------------------------------------------------------------------------------------------------
# The sandbox's own face
# ----------------------------------------------------------------------------------------------------

def test_sandbox_control_api_and_describe(zc_sandbox):
    base = zc_sandbox.url + "/_sandbox"
    assert requests.post(base + "/knobs", json={"latency": 0, "error_rate": 0.5}).json()["error_rate"] == 0.5
    assert requests.post(base + "/knobs", json={"nope": 1}).status_code == 400
    assert requests.post(base + "/knobs", json={"fail_after_commit_mode": "explode"}).status_code == 400
    requests.post(base + "/knobs", json={"error_rate": 0})
    uid = requests.post(base + "/users", json={"email": "added@example.com", "linked": True}).json()["id"]
    assert requests.post(base + "/users", json={"email": "added@example.com"}).status_code == 400
    assert requests.post(base + "/balance", json={"currency": USD, "balance": "12.34"}).json() == {"ok": True}
    with ZaleyCashClient(zc_sandbox.url, DEFAULT_SECRET) as c:
        assert c.balance().get(USD).balance == Decimal("12.34")
        c.transfer_internal(uid, USD, Decimal("2.34"), "ctl-1")
        assert requests.post(base + "/tokens/revoke").json() == {"ok": True}
        assert c.balance().get(USD).balance == Decimal("10.00")  # renewed after the revoke
    state = loads(requests.get(base + "/state").content)
    assert state["tokens_issued"] == 2 and state["ledger"][0]["operation_id"] == "ctl-1"
    assert state["balances"][str(uid)][str(USD)] == Decimal("2.34")
    assert loads(requests.get(base + "/ledger").content)[0]["amount"] == Decimal("2.34")
    text = describe(zc_sandbox.url)
    assert DEFAULT_SECRET in text and zc_sandbox.url in text and "LOCAL USE ONLY" in text
