"""ZaleyCashClient's pure side against recorded answers: the error map of every seed code, typed results,
exact JSON numbers."""
from __future__ import annotations

from decimal import Decimal

import pytest

from providers import (
    AuthError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.payouts import FAILED, PENDING, SUCCEEDED
from providers.zaleycash import (
    CODES,
    BadResponseError,
    Balances,
    Currency,
    DuplicateOperationError,
    InvalidTokenError,
    OperationNotFoundError,
    OperationsProtectedError,
    OperationStateError,
    PartnerError,
    Service,
    Token,
    TransactionProcessingError,
    Transfer,
    TransferStatus,
    User,
    UserNotFoundError,
    WrongCurrencyError,
    check_envelope,
    error_for,
    transfer_state,
)
from providers.zaleycash.wire import dumps, loads
from tests.support.recorded import Answer, answer, answer_names


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
