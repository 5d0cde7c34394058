"""PayseraClient's pure side against recorded answers: the error map and typed results."""
from __future__ import annotations

from decimal import Decimal

import pytest

from providers import (
    AuthError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.paysera import (
    Configuration,
    InvalidStateError,
    Transfer,
    TransferPage,
    WalletBalance,
    error_for,
    is_clock_rejection,
)
from providers.paysera.payout import key_token
from tests.support.recorded import answer


def recorded(name: str):
    """The body of a recorded answer."""
    return answer("paysera", name).body


ERROR_CASES = [
    ("error__400_invalid_request.json", ValidationError, False),
    ("error__400_invalid_parameters.json", ValidationError, False),
    ("error__409_invalid_state.json", InvalidStateError, False),
    ("error__401_unauthorized.json", AuthError, False),
    ("error__401_unauthorized_ts.json", AuthError, False),
    ("error__403_forbidden.json", AuthError, False),
    ("error__404_not_found.json", NotFoundError, False),
    ("error__406_not_acceptable.json", PermanentError, False),
    ("error__500_internal_server_error.json", RetryableError, True),
    ("error__400_not_enough_funds.json", InsufficientFundsError, False),
    ("error__409_insufficient_funds.json", InsufficientFundsError, False),
    ("error__422_transfer_limit_exceeded.json", ValidationError, False),  # unknown code: by status
    ("error__429_rate_limited.json", RetryableError, True),
    ("error__418_unknown.json", PermanentError, False),
    ("error__503_maintenance.json", RetryableError, True),
]


@pytest.mark.parametrize("name,cls,retryable", ERROR_CASES)
def test_error_mapping(name, cls, retryable):
    status = answer("paysera", name).status
    body = recorded(name)
    err = error_for(status, body)
    assert type(err) is cls and err.retryable is retryable
    assert (err.provider, err.code, err.http_status) == ("paysera", body["error"], status)
    assert err.message == body.get("error_description", f"error {body['error']}")


def test_error_details_and_money_moving_calls():
    inv = error_for(400, recorded("error__400_invalid_parameters.json"))
    assert inv.fields == {"amount.amount": "must be a decimal string with at most 2 decimals",
                          "beneficiary.name": "is required for a bank transfer"}
    st = error_for(409, recorded("error__409_invalid_state.json"))
    assert isinstance(st, PermanentError) and st.raw_body["error_uri"].startswith("https://")
    # create/sign: a 5xx may come after Paysera acted, 503 included (providers.http.SEMANTICS)
    err500 = error_for(500, recorded("error__500_internal_server_error.json"), call="sign_transfer")
    assert type(err500) is UnknownOutcomeError and err500.call == "sign_transfer"
    assert type(error_for(502, None, idempotent=False)) is UnknownOutcomeError
    assert type(error_for(503, recorded("error__503_maintenance.json"), idempotent=False)) is UnknownOutcomeError
    assert type(error_for(503, recorded("error__503_maintenance.json"), call="get_transfer")) is RetryableError
    assert type(error_for(502, "<html>bad gateway</html>")) is RetryableError
    assert error_for(429, {"error": "x"}, headers={"Retry-After": "7"}).retry_after == 7.0
    assert is_clock_rejection(error_for(401, recorded("error__401_unauthorized_ts.json")))
    assert not is_clock_rejection(error_for(401, recorded("error__401_unauthorized.json")))
    assert issubclass(InvalidStateError, PermanentError)


def test_parse_recorded_results():
    t = Transfer.from_raw(recorded("transfer__done.json"))
    assert (t.id, t.status, t.amount.amount, t.amount.currency) == ("1002437", "done", Decimal("100.00"), "EUR")
    assert t.out_commission.amount == Decimal("0.10") and t.performed_at.tzinfo is not None
    assert t.details.endswith(key_token("bid-1350-payout")) and t.is_final and not t.is_draft
    assert t.raw["field_not_in_docs"] == {"kept": True}
    n = Transfer.from_raw(recorded("transfer__new_minimal.json"))  # optional fields absent
    assert n.is_draft and n.payer == {} and n.purpose == {} and n.callback is None and n.performed_at is None
    assert n.failure_status is None and n.amount.currency == "EUR" and n.details is None
    f = Transfer.from_raw(recorded("transfer__failed.json"))
    assert f.failure_status.code == "beneficiary_bank_rejected" and f.amount.amount == Decimal("12.5")
    page = TransferPage.from_raw(recorded("transfers__page.json"))
    assert [x.id for x in page] == ["1002439", "1002438"] and page.total == 5 and page.has_next
    b = WalletBalance.from_raw(14471, recorded("wallet_balance.json"))
    assert b["EUR"].at_disposal == Decimal("12345.67") and b["eur"].reserved == Decimal("10.00")
    assert b.at_disposal("USD") == Decimal("0.50") and b.at_disposal("GBP") == 0  # cents when no decimal given
    assert Configuration.from_raw(recorded("configuration.json")).minimum_password_length == 8
