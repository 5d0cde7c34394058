"""ZaleyCash: recorded answers fed to the pure error map and parsers, then the client and the payout rail
over real HTTP against the ZaleyCash sandbox (providers.zaleycash.sandbox), and a refused port."""
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
from providers.payouts import FAILED, PENDING, SUCCEEDED, PayoutRail, PayoutRequest
from providers.zaleycash import (
    CODES,
    BadResponseError,
    Balances,
    Currency,
    DuplicateOperationError,
    InvalidTokenError,
    LookupUnavailableError,
    OperationNotFoundError,
    OperationsProtectedError,
    OperationStateError,
    PartnerError,
    ProbeRefusedError,
    Service,
    StatusNotAvailableError,
    Token,
    TransactionProcessingError,
    Transfer,
    TransferStatus,
    User,
    UserNotFoundError,
    WrongCurrencyError,
    ZaleyCashClient,
    ZaleyCashRail,
    check_envelope,
    error_for,
    transfer_state,
)
from providers.zaleycash.client import TRANSFER_PATH
from providers.zaleycash.sandbox import (
    AGENT_ID,
    DEFAULT_SECRET,
    DEFAULT_STATUS_PATH,
    create_app,
    describe,
    serve,
)
from providers.zaleycash.wire import dumps, loads
from tests.support.net import refused_url
from tests.support.recorded import Answer, answer, answer_names

CHILD, CHILD2, INACTIVE, STRANGER = 1001, 1002, 1003, 1004
RUB, USD, EUR = 1, 2, 3


def recorded(name: str) -> Answer:
    return answer("zaleycash", name)


def unwrap(name: str, call: str | None = None):
    """Feed a recorded answer (status, headers, the body's bytes as sent) through the one answer mapping."""
    rec = recorded(name)
    c = call or rec.call
    c = "request" if c == "any" else c
    return check_envelope(rec.status, rec.content, call=c, idempotent=c != "transfer_internal", headers=rec.headers)


def raised(name: str, call: str | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as ei:
        unwrap(name, call)
    return ei.value


# =====================================================================================================
# 1. Recorded answers → error map and typed results (pure)
# =====================================================================================================

def test_every_seed_code_is_mapped_and_recorded():
    seed = {1, 2, 3, 4, 5, 10, 20, 21, 22, 23, 24, 25, 26, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 71, 72,
            73, 80, 81}
    assert set(CODES) == seed
    names = answer_names("zaleycash")
    for code in seed:
        assert any(n.split("__")[1].startswith(f"{code:02d}_") for n in names), code
    for n in names:  # every file is a recorded answer
        rec = recorded(n)
        assert isinstance(rec.status, int) and rec.body is not None


EXPECTED = {  # code → (class, also an instance of)
    1: (InvalidTokenError, AuthError), 2: (AuthError, AuthError), 3: (AuthError, AuthError),
    4: (AuthError, AuthError), 5: (AuthError, AuthError), 81: (AuthError, AuthError),
    10: (ValidationError, PermanentError), 20: (ValidationError, PermanentError),
    23: (ValidationError, PermanentError), 25: (ValidationError, PermanentError),
    55: (ValidationError, PermanentError), 56: (ValidationError, PermanentError),
    71: (ValidationError, PermanentError), 72: (ValidationError, PermanentError),
    21: (UserNotFoundError, NotFoundError), 22: (UserNotFoundError, PermanentError),
    24: (OperationsProtectedError, PermanentError), 26: (OperationsProtectedError, PermanentError),
    52: (OperationsProtectedError, PermanentError), 54: (OperationsProtectedError, PermanentError),
    50: (InsufficientFundsError, InsufficientFundsError), 51: (InsufficientFundsError, InsufficientFundsError),
    53: (TransactionProcessingError, RetryableError), 73: (PartnerError, RetryableError),
    57: (OperationStateError, PermanentError), 59: (OperationStateError, PermanentError),
    60: (OperationStateError, PermanentError), 58: (DuplicateOperationError, PermanentError),
    80: (WrongCurrencyError, PermanentError),
}


@pytest.mark.parametrize("name", [n for n in answer_names("zaleycash")
                                  if n.split("__")[1][:2].isdigit() and n.split("__")[1][2] == "_"
                                  and "variant" not in n and "string" not in n
                                  and "violations" not in n and "99" not in n
                                  and not n.startswith("transfer_status")])
def test_recorded_error_codes(name):
    rec = recorded(name)
    err = raised(name)
    code = rec.body["code"]
    cls, also = EXPECTED[code]
    assert type(err) is cls and isinstance(err, also)
    assert err.code == code and err.message == rec.body["message"]
    assert err.http_status == rec.status and err.provider == "zaleycash"
    assert err.reason == CODES[code][1] and err.call == rec.call.replace("any", "request") and err.raw_body == rec.body
    assert err.retryable is isinstance(err, RetryableError)
    assert f"code {code}" in str(err)


def test_user_not_found_is_both_not_found_and_permanent():
    err = raised("user__21_user_not_found")
    assert isinstance(err, NotFoundError) and isinstance(err, PermanentError) and not err.retryable


def test_detail_variants_and_string_codes():
    e = raised("transfer_internal__10_detail_variant")
    assert type(e) is ValidationError and e.code == 10 and e.message == "Invalid request: amount must be positive"
    e = raised("any__01_detail_variant")
    assert type(e) is InvalidTokenError and e.message == "Invalid access token"
    e = raised("transfer_internal__58_string_code")
    assert type(e) is DuplicateOperationError and e.code == 58
    e = raised("register_user__20_violations")
    assert e.code == 20 and set(e.fields) == {"email", "plainPassword"}
    assert "email: This value is not a valid email address." in e.message
    e = raised("register_user__72_email_exists")
    assert e.fields == {"email": "Email already exist"}


def test_status_call_turns_55_into_not_found():
    e = raised("transfer_status__55_not_found")
    assert type(e) is OperationNotFoundError and e.code == 55
    assert type(raised("transfer_internal__55_wrong_operation_id")) is ValidationError


def test_answers_without_a_known_code_go_by_http_status():
    e = raised("user__99_unknown_code")
    assert type(e) is PermanentError and e.code == 99 and e.message.endswith("Something new")
    e = raised("user__no_code_500_detail")
    assert type(e) is RetryableError and e.code == "http_500" and "Internal Server Error" in e.message
    e = raised("transfer_internal__no_code_500_detail")  # money may have moved
    assert type(e) is UnknownOutcomeError and e.http_status == 500
    assert type(raised("any__no_code_401")) is AuthError
    assert type(raised("any__no_code_403")) is AuthError
    assert type(raised("user__no_code_404")) is NotFoundError
    assert type(raised("transfer_internal__no_code_404")) is PermanentError  # a wrong path ran nothing
    e = raised("any__429")
    assert type(e) is RetryableError and e.retry_after == 7.0
    e = raised("transfer_internal__503")  # 503 on a money call: it may have run (providers.http.SEMANTICS)
    assert type(e) is UnknownOutcomeError and e.retry_after == 30.0
    e = raised("transfer_internal__503", call="balance")  # the same answer to a read: just retry
    assert type(e) is RetryableError and e.retry_after == 30.0
    assert type(raised("transfer_internal__502_html")) is UnknownOutcomeError
    assert type(raised("user__502_html")) is RetryableError
    assert type(raised("transfer_internal__200_html")) is UnknownOutcomeError
    assert type(raised("balance__200_not_envelope")) is BadResponseError


def test_error_for_is_pure_and_total():
    assert error_for(200, {"code": 200, "message": "OK", "response": {}}) is None
    assert error_for(200, {"code": "200", "response": []}) is None
    for junk in (None, [], "x", 5, {"response": {}}):
        assert isinstance(error_for(200, junk), BadResponseError)
    assert isinstance(error_for(500, {"code": 200}), RetryableError)  # a 5xx never counts as success
    assert check_envelope(200, {"code": 200, "message": "OK"}) is None
    odd = {"code": 0, "message": "Success"}  # an unknown code on HTTP 200: not a readable answer
    assert type(error_for(200, odd, call="user")) is BadResponseError
    assert type(error_for(200, odd, call="transfer_internal")) is UnknownOutcomeError


def test_recorded_successes_parse():
    tok = Token.from_raw(unwrap("token__ok"))
    assert tok.access_token.startswith("eyJ") and tok.expires_at == 1767225600.0
    assert "eyJ" not in repr(tok) and tok.expires.year == 2026
    svc = Service.list_from_raw(unwrap("services__ok"))
    assert [(s.alias, s.need_oauth) for s in svc] == [("vk", False), ("yandex", True)]
    assert svc[1].raw["new_field"] == 1
    u = User.from_raw(unwrap("user__ok"))
    assert (u.id, u.email, u.is_active) == (4711, "kid@example.com", True)
    b = Balances.from_raw(loads(recorded("balance__ok").content)["response"])
    assert b.user.id == 1000
    assert b.get(1).balance == Decimal("15234.57") and b.get(1).original_balance == Decimal("15234.57")
    assert b.get(2).balance == Decimal("0.10") and b.get(2).credit_limit == Decimal("100.00")
    assert all(isinstance(x.balance, Decimal) for x in b) and b.get(9) is None and b.get(2).raw["extra"] == "x"
    assert [(c.id, c.code) for c in Currency.list_from_raw(unwrap("currencies__ok"))] == [(1, "RUB"), (2, "USD")]
    assert [(c.id, c.name) for c in Currency.list_from_raw(unwrap("currencies__dict"))] == [(1, "RUB"), (2, "USD")]
    t = Transfer.from_raw(loads(recorded("transfer_internal__ok").content)["response"])
    assert (t.operation_id, t.transaction_id, t.amount, t.status) == ("payout-42", "987654", Decimal("150.25"), "done")
    t = Transfer.from_raw(unwrap("transfer_internal__ok_empty"), operation_id="k", user_id=5, currency=1,
                          amount=Decimal("1"))
    assert (t.operation_id, t.user_id, t.currency, t.amount, t.transaction_id) == ("k", 5, 1, Decimal("1"), None)
    st = TransferStatus.from_raw(unwrap("transfer_status__ok"))
    assert transfer_state(st.status) == SUCCEEDED and st.transaction_id == "987654"
    assert User.from_raw(unwrap("link_child__ok")).id is None  # an empty answer: the client fills the id


def test_transfer_state_words():
    assert transfer_state(None) == SUCCEEDED and transfer_state("done") == SUCCEEDED
    assert transfer_state("Declined") == FAILED and transfer_state("in-progress") == PENDING
    assert transfer_state("something new") == PENDING


def test_amounts_go_out_as_exact_json_numbers():
    assert dumps({"amount": Decimal("0.10"), "b": Decimal("1E+2"), "s": "x"}) == b'{"amount":0.10,"b":100,"s":"x"}'
    assert loads(b'\xef\xbb\xbf{"a": 0.1}') == {"a": Decimal("0.1")}


# =====================================================================================================
# 2. Against the sandbox over real HTTP
# =====================================================================================================

@pytest.fixture
def zc():
    app = create_app(seed=7)
    srv = serve(app, port=0)
    srv.engine = app.engine
    yield srv
    srv.shutdown()


@pytest.fixture
def zclient(zc):
    c = ZaleyCashClient(zc.url, DEFAULT_SECRET, timeout=5)
    yield c
    c.close()


@pytest.fixture
def rail(zclient):
    return ZaleyCashRail(zclient, currencies={"RUB": RUB, "USD": USD, "EUR": EUR})


def payout(key: str, amount: str = "10.00", currency: str = "RUB", dest: int = CHILD) -> PayoutRequest:
    return PayoutRequest(key=key, amount=Decimal(amount), currency=currency, destination=str(dest))


def test_every_call(zc, zclient):
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
    assert zc.engine.ledger["op-1"].amount == Decimal("150.25") and zc.engine.executed("op-1") == 1
    # the generic call, from the site root or relative to /api/v2/
    assert zclient.request("GET", "/api/v2/user/balance")["balances"][0]["currency"] == RUB
    assert zclient.request("GET", "money/currencies")[0]["code"] == "RUB"
    # the status endpoint: off by default, configurable
    with pytest.raises(StatusNotAvailableError):
        zclient.transfer_status("op-1")
    with ZaleyCashClient(zc.url, DEFAULT_SECRET, status_path=DEFAULT_STATUS_PATH) as sc:
        st = sc.transfer_status("op-1")
        assert (st.operation_id, st.status, st.amount) == ("op-1", "done", Decimal("150.25"))
        with pytest.raises(OperationNotFoundError):
            sc.transfer_status("never-sent")
    assert "ZaleyCashClient('http://127.0.0.1" in repr(zclient)


def test_token_is_cached(zc, zclient):
    for _ in range(10):
        zclient.balance()
    zclient.services()
    assert zc.engine.tokens_issued == 1 and zclient.token_fetches == 1


def test_token_renewed_on_expiry(zc, zclient):
    with freeze_time("2030-01-01 00:00:00") as clock:
        zclient.balance()
        assert zc.engine.tokens_issued == 1
        clock.tick(3000)  # still outside the 60 s margin
        zclient.balance()
        assert zc.engine.tokens_issued == 1
        clock.tick(600)  # 3600 s after the token was issued: it expired
        assert zclient.balance().get(RUB).balance == Decimal("100000.00")
        zclient.services()
        assert zc.engine.tokens_issued == 2 and zclient.token_fetches == 2


def test_token_expired_early_by_server_clock_is_renewed_once(zc, zclient, caplog):
    caplog.set_level(logging.INFO, logger="providers.zaleycash")
    zc.engine.knobs.clock_skew = 120  # the server's clock runs 2 minutes ahead: more than our 60 s margin
    with freeze_time("2030-01-01 00:00:00") as clock:
        zclient.balance()
        clock.tick(3630)  # we still trust the token; the server has expired it: code 1 → renew → success
        assert zclient.balance().user.id == AGENT_ID
        assert zc.engine.tokens_issued == 2 and zclient.token_fetches == 2
    assert any("refused on balance (code 1)" in r.getMessage() for r in caplog.records)


def test_code_1_renews_once_then_auth_error(zc, zclient):
    zclient.balance()
    zc.engine.revoke_tokens()  # the server forgot the token
    assert zclient.balance().get(USD).balance == Decimal("5000.00")
    assert zc.engine.tokens_issued == 2
    zc.engine.knobs.reject_tokens = True  # every token refused: renew once, then give up
    with pytest.raises(InvalidTokenError) as ei:
        zclient.balance()
    assert isinstance(ei.value, AuthError) and ei.value.code == 1 and ei.value.http_status == 401
    assert zc.engine.tokens_issued == 3


def test_token_shared_by_16_threads(zc, zclient):
    barrier = threading.Barrier(16)

    def work(_):
        barrier.wait()
        return zclient.balance().get(RUB).balance

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(work, range(16)))
    assert results == [Decimal("100000.00")] * 16
    assert zc.engine.tokens_issued == 1 and zclient.token_fetches == 1


def test_auth_errors(zc):
    with ZaleyCashClient(zc.url, "not-the-key") as bad:
        with pytest.raises(AuthError) as ei:
            bad.balance()
    assert ei.value.code == 2 and type(ei.value) is AuthError
    r = requests.post(zc.url + "/api/v2/token")  # no Authorization header: only a raw client can do that
    with pytest.raises(AuthError) as ei:
        check_envelope(r.status_code, r.content, call="token")
    assert ei.value.code == 4
    zc.engine.knobs.agent_disabled = True
    with ZaleyCashClient(zc.url, DEFAULT_SECRET) as c:
        with pytest.raises(AuthError) as ei:
            c.balance()
    assert ei.value.code == 81 and ei.value.http_status == 403


def test_every_error_code_of_the_sandbox(zc, zclient):
    k = zc.engine.knobs

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
    r = requests.post(zc.url + TRANSFER_PATH, data=b"{not json", headers={"Authorization": f"Bearer {tok}"})
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
    assert [op for op in zc.engine.ledger] == ["x58"] and zc.engine.executed("x53") == 0


# ----------------------------------------------------------------------------------------------------
# The payout rail
# ----------------------------------------------------------------------------------------------------

def test_rail_send_and_idempotency(zc, rail):
    as_rail: PayoutRail = rail  # the interface (a typing Protocol, not runtime-checkable)
    assert as_rail.name == "zaleycash" and callable(as_rail.send) and callable(as_rail.find)
    first = rail.send(payout("pay-1", "250.00"))
    assert first.state == SUCCEEDED and first.provider_ref == zc.engine.ledger["pay-1"].transaction_id
    again = rail.send(payout("pay-1", "250.00"))
    assert again.state == SUCCEEDED and again.code == 58 and again.provider_ref == "pay-1"
    assert zc.engine.executed("pay-1") == 1
    assert zc.engine.balance_of(RUB) == Decimal("99750.00")
    assert zc.engine.balance_of(RUB, CHILD) == Decimal("250.00")
    # the same key with other parameters is refused before anything is sent
    with pytest.raises(ValidationError) as ei:
        rail.send(payout("pay-1", "999.00"))
    assert ei.value.code == "key_reused" and zc.engine.executed("pay-1") == 1


def test_rail_parameters(zc, rail):
    assert rail.send(payout("num-cur", "1.00", currency="2")).state == SUCCEEDED  # a numeric code as is
    assert zc.engine.ledger["num-cur"].currency == USD
    with pytest.raises(ValidationError) as ei:
        rail.send(payout("bad-cur", currency="XYZ"))
    assert ei.value.fields == {"currency": "no ZaleyCash code"}
    with pytest.raises(ValidationError):
        rail.send(PayoutRequest("bad-dest", Decimal("1"), "RUB", "kid@example.com"))
    assert "bad-cur" not in zc.engine.ledger and "bad-dest" not in zc.engine.ledger


def test_rail_insufficient_funds(zc, rail):
    with pytest.raises(InsufficientFundsError) as ei:
        rail.send(payout("no-money", "5.00", currency="EUR"))
    assert ei.value.code == 51 and zc.engine.executed("no-money") == 0


@pytest.mark.parametrize("mode", ["hang", "502", "close"])
def test_fail_after_commit_is_unknown_then_found(zc, mode):
    zc.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode=mode, hang_seconds=3)
    with ZaleyCashClient(zc.url, DEFAULT_SECRET, timeout=0.5) as c:
        r = ZaleyCashRail(c, currencies={"RUB": RUB})
        with pytest.raises(UnknownOutcomeError):
            r.send(payout(f"lost-{mode}", "42.00"))
        assert zc.engine.executed(f"lost-{mode}") == 1  # the money moved although we got no answer
        zc.engine.knobs.fail_after_commit_rate = 0.0
        found = r.find(f"lost-{mode}")
        assert found is not None and found.state == SUCCEEDED and found.code == 58
    assert zc.engine.executed(f"lost-{mode}") == 1
    assert zc.engine.balance_of(RUB) == Decimal("99958.00")


def test_find_with_status_endpoint(zc):
    zc.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode="502")
    with ZaleyCashClient(zc.url, DEFAULT_SECRET, status_path=DEFAULT_STATUS_PATH) as c:
        r = ZaleyCashRail(c, currencies={"RUB": RUB})
        with pytest.raises(UnknownOutcomeError):
            r.send(payout("st-1"))
        found = r.find("st-1")
        assert found.state == SUCCEEDED and found.provider_ref == zc.engine.ledger["st-1"].transaction_id
        assert r.find("never-sent") is None  # the status endpoint says: no such operation
    assert zc.engine.executed("st-1") == 1


def test_find_probe_may_complete_the_payout(zc, zclient):
    stored = {"late-1": payout("late-1", "7.00")}  # the engine's stored payout, e.g. after a restart
    r = ZaleyCashRail(zclient, currencies={"RUB": RUB}, request_lookup=stored.get)
    res = r.find("late-1")  # the first send never reached ZaleyCash: the probe pays it now
    assert res.state == SUCCEEDED and res.code == 200 and zc.engine.executed("late-1") == 1
    assert r.find("late-1").code == 58 and zc.engine.executed("late-1") == 1
    with pytest.raises(LookupUnavailableError) as ei:
        r.find("unknown-key")
    assert isinstance(ei.value, UnknownOutcomeError)


def test_find_probe_short_of_money_is_never_none(zc, zclient):
    zc.engine.set_balance(EUR, "10.00")
    r = ZaleyCashRail(zclient, currencies={"EUR": EUR})
    assert r.send(payout("eur-1", "10.00", currency="EUR")).state == SUCCEEDED  # drains the balance
    zc.engine.knobs.funds_before_duplicate = True  # a server that checks money before duplicates
    with pytest.raises(InsufficientFundsError):
        r.find("eur-1")  # 51 although the transfer exists: parked, not "never executed"
    zc.engine.set_balance(EUR, "50.00")  # topped up: the next probe learns the truth
    assert r.find("eur-1").state == SUCCEEDED
    assert zc.engine.executed("eur-1") == 1 and zc.engine.balance_of(EUR) == Decimal("50.00")


def test_find_probe_refused_stays_unknown(zc, zclient):
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


def test_no_secret_in_errors_or_logs(zc, caplog, echo_server):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def keep(fn, *a, **kw):
        try:
            fn(*a, **kw)
        except ProviderError as e:
            texts.extend([str(e), repr(e), e.message, json.dumps(getattr(e, "fields", {}))])

    c = ZaleyCashClient(zc.url, DEFAULT_SECRET, timeout=0.5)
    r = ZaleyCashRail(c, currencies={"RUB": RUB})
    keep(c.balance)
    keep(r.send, payout("sec-1"))
    keep(r.send, payout("sec-1"))
    keep(c.transfer_internal, STRANGER, RUB, Decimal("1"), "sec-2")
    zc.engine.revoke_tokens()
    keep(c.services)
    zc.engine.knobs.reject_tokens = True
    keep(c.services)
    zc.engine.knobs.update(reject_tokens=False, fail_after_commit_rate=1.0, fail_after_commit_mode="close")
    keep(r.send, payout("sec-3"))
    keep(ZaleyCashClient(zc.url, DEFAULT_SECRET + "-wrong").balance)
    keep(ZaleyCashClient(refused_url(), DEFAULT_SECRET).balance)
    echo = ZaleyCashClient(echo_server.url, DEFAULT_SECRET)
    keep(echo.balance)
    texts.extend([repr(c), repr(r), repr(c.token())])
    texts.extend(rec.getMessage() for rec in caplog.records)
    texts.extend(rec.exc_text or "" for rec in caplog.records)
    assert len(texts) > 10 and any("Invalid request (got header Bearer ***)" in t for t in texts)
    secrets = [DEFAULT_SECRET, "tok-ECHO-1234567890", *zc.engine.issued_tokens]
    assert len(secrets) >= 5
    for text in texts:
        for s in secrets:
            assert s not in text
    c.close()
    echo.close()


# ----------------------------------------------------------------------------------------------------
# The sandbox's own face
# ----------------------------------------------------------------------------------------------------

def test_sandbox_control_api_and_describe(zc):
    base = zc.url + "/_sandbox"
    assert requests.post(base + "/knobs", json={"latency": 0, "error_rate": 0.5}).json()["error_rate"] == 0.5
    assert requests.post(base + "/knobs", json={"nope": 1}).status_code == 400
    assert requests.post(base + "/knobs", json={"fail_after_commit_mode": "explode"}).status_code == 400
    requests.post(base + "/knobs", json={"error_rate": 0})
    uid = requests.post(base + "/users", json={"email": "added@example.com", "linked": True}).json()["id"]
    assert requests.post(base + "/users", json={"email": "added@example.com"}).status_code == 400
    assert requests.post(base + "/balance", json={"currency": USD, "balance": "12.34"}).json() == {"ok": True}
    with ZaleyCashClient(zc.url, DEFAULT_SECRET) as c:
        assert c.balance().get(USD).balance == Decimal("12.34")
        c.transfer_internal(uid, USD, Decimal("2.34"), "ctl-1")
        assert requests.post(base + "/tokens/revoke").json() == {"ok": True}
        assert c.balance().get(USD).balance == Decimal("10.00")  # renewed after the revoke
    state = loads(requests.get(base + "/state").content)
    assert state["tokens_issued"] == 2 and state["ledger"][0]["operation_id"] == "ctl-1"
    assert state["balances"][str(uid)][str(USD)] == Decimal("2.34")
    assert loads(requests.get(base + "/ledger").content)[0]["amount"] == Decimal("2.34")
    text = describe(zc.url)
    assert DEFAULT_SECRET in text and zc.url in text and "LOCAL USE ONLY" in text
