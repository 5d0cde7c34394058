"""GatewayClient's pure side against recorded answers: the error map, typed results, amounts and masking."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

from providers import (
    AuthError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.gateway import (
    BadResponseError,
    Balance,
    CallbackError,
    CurrencyMismatchError,
    ForbiddenError,
    IdempotencyConflictError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    InvalidSignatureError,
    InvalidTimestampError,
    MissingApiKeyError,
    MissingTimestampError,
    PayIn,
    PayInNotFoundError,
    Payout,
    PayoutNotFoundError,
    ReplayError,
    SignatureError,
    TimestampWindowError,
    error_for,
)
from providers.gateway.types import format_amount, mask_account
from tests.support.recorded import answer

UTC = timezone.utc

ANSWERED_AT = 1717000200  # 2024-05-29 16:30:00 UTC, the Date below


def recorded(name: str) -> tuple[int, bytes]:
    """(HTTP status, the body's bytes as sent) of a recorded answer."""
    found = answer("gateway", name)
    return found.status, found.content


ERROR_CASES = [
    # file, call, class, code, fields (a create is not idempotent: providers.http.SEMANTICS)
    ("401__api_key_required.json", "request", MissingApiKeyError, "unauthorized", None),
    ("401__invalid_api_key.json", "create_payout", InvalidApiKeyError, "unauthorized", None),
    ("401__timestamp_required.json", "request", MissingTimestampError, "unauthorized", None),
    ("401__invalid_timestamp_format.json", "request", InvalidTimestampError, "unauthorized", None),
    ("401__timestamp_window_exceeded.json", "request", TimestampWindowError, "unauthorized", None),
    ("401__invalid_signature.json", "create_payout", InvalidSignatureError, "unauthorized", None),
    ("401__replay.json", "request", ReplayError, "unauthorized", None),
    ("403__forbidden.json", "request", ForbiddenError, "forbidden", None),
    ("404__payout_not_found.json", "get_payout", PayoutNotFoundError, "not_found", None),
    ("404__payin_not_found.json", "get_payin", PayInNotFoundError, "not_found", None),
    ("404__payin_not_found.json", "request", PayInNotFoundError, "not_found", None),  # by the message
    ("422__validation_amount.json", "create_payout", ValidationError, "validation_error",
     {"amount": "amount must be a positive decimal string"}),
    ("422__validation_several.json", "create_payout", ValidationError, "validation_error",
     {"external_id": "external_id is required", "card_number": "card_number is required",
      "callback_url": "callback_url must be a valid URL"}),
    ("422__currency_mismatch.json", "create_payout", CurrencyMismatchError, "currency_mismatch", None),
    ("422__insufficient_balance.json", "create_payout", InsufficientBalanceError, "insufficient_balance", None),
    ("422__idempotency_conflict.json", "create_payout", IdempotencyConflictError, "idempotency_conflict", None),
    ("422__business_other.json", "create_payout", PermanentError, "business_error", None),
    ("500__internal.json", "get_payout", RetryableError, "internal_error", None),
    ("500__internal.json", "create_payout", UnknownOutcomeError, "internal_error", None),
]


@pytest.mark.parametrize("name,call,cls,code,fields", ERROR_CASES)
def test_error_mapping(name, call, cls, code, fields):
    status, content = recorded(name)
    body = json.loads(content)
    err = error_for(status, content, call=call)
    assert type(err) is cls
    assert (err.provider, err.code, err.message, err.http_status) == ("gateway", code, body["message"], status)
    assert err.call == call and err.raw_body == body
    if fields is not None:
        assert err.fields == fields
    assert err.retryable is (cls is RetryableError)


def test_error_hierarchy_placement():
    assert issubclass(PayoutNotFoundError, NotFoundError) and issubclass(PayInNotFoundError, NotFoundError)
    assert issubclass(CurrencyMismatchError, PermanentError) and issubclass(InsufficientBalanceError,
                                                                             InsufficientFundsError)
    assert issubclass(IdempotencyConflictError, PermanentError) and issubclass(ForbiddenError, AuthError)
    assert issubclass(SignatureError, AuthError) and issubclass(BadResponseError, RetryableError)
    assert issubclass(CallbackError, PermanentError)


def test_error_details():
    status, content = recorded("422__currency_mismatch.json")
    assert error_for(status, content).expected == "RUB"
    status, content = recorded("401__timestamp_window_exceeded.json")
    with freeze_time(datetime.fromtimestamp(ANSWERED_AT - 900, UTC)):  # our clock, 900 s behind the answer's Date
        e = error_for(status, content, headers={"Date": "Wed, 29 May 2024 16:30:00 GMT"})
    assert e.skew == 900 and "check the clock" in str(e) and "900 s behind" in str(e)
    assert error_for(200, b"{}") is None and error_for(201, b"") is None
    # transport-ish answers
    e = error_for(429, b"slow down", headers={"Retry-After": "7"})
    assert type(e) is RetryableError and e.retry_after == 7.0 and e.code == "http_429"
    for st in (500, 502, 503, 504):
        assert type(error_for(st, b"<html>oops</html>", call="get_payout")) is RetryableError
        e = error_for(st, b"<html>oops</html>", call="create_payout")
        assert type(e) is UnknownOutcomeError and e.code == f"http_{st}" and "oops" not in str(e)
        assert e.raw_body == "<html>oops</html>"  # kept on the error, never in its text
    assert type(error_for(404, b"<html>nginx</html>", call="get_payout")) is PayoutNotFoundError
    assert type(error_for(404, b'{"message": "Not found", "code": "not_found"}')) is NotFoundError
    assert type(error_for(401, b"")) is SignatureError
    assert type(error_for(400, b'{"message": "Bad request"}')) is PermanentError


def test_success_bodies_parse():
    p = Payout.from_raw(answer("gateway", "201__payout_created").body)
    assert (p.external_id, p.status, p.amount, p.currency) == ("ord-77", "created", Decimal("5000.00"), "RUB")
    assert p.card_number == "411111******1111" and p.failure_reason is None and not p.is_final
    assert p.created_at == datetime(2024, 5, 29, 16, 30, tzinfo=UTC) and p.raw["shop_code"] == "main"
    f = Payout.from_raw(answer("gateway", "200__payout_failed").body)  # its amount read as a Decimal
    assert f.status == "failed" and f.is_final and f.failure_reason == "Card declined by issuer"
    assert f.amount == Decimal("1250.5") and f.card_number == "427638******5678"  # masked even if sent clear
    assert "4276380012345678" not in json.dumps(f.raw, default=str) and f.raw["new_field"] == {"kept": True}
    assert f.created_at == datetime(2024, 5, 29, 13, 30, tzinfo=UTC) and f.updated_at.timestamp() == 1717000260
    i = PayIn.from_raw(answer("gateway", "200__payin").body)
    assert i.status == "success" and i.payment_url.endswith("/pay/pi_000003") and i.amount == Decimal("10.00")
    b = Balance.from_raw(answer("gateway", "200__balance").body)
    assert (b.available, b.currency, b.shop_code) == (Decimal("995000.00"), "RUB", "main")


def test_amount_format_and_masking():
    assert format_amount(Decimal("5000")) == "5000.00" and format_amount("12.5") == "12.50"
    assert format_amount(7) == "7.00" and format_amount(Decimal("0.001")) == "0.001"
    assert format_amount(Decimal("1E+3")) == "1000.00" and format_amount("abc") == "abc"
    for bad in (0.1, True):
        with pytest.raises(TypeError):
            format_amount(bad)
    with pytest.raises(ValueError):
        format_amount(Decimal("NaN"))
    assert mask_account("4111111111111111") == "411111******1111" and mask_account("40817810") == "****7810"
    assert mask_account("123") == "***" and mask_account("4111**1111") == "4111**1111"
