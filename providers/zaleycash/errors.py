"""ZaleyCash API v2 error bodies → the project's error hierarchy, as pure functions.

Every answer is an envelope ``{"code", "message", "response"}``; ``code`` 200 is success. An error is
``{"code": <internal code>, "message": "<text>"}`` (some bodies carry ``detail`` instead of ``message``)
with HTTP 400, 401, 403, 404 or 500. The internal code decides the class; the HTTP status only decides
when the code is missing or unknown. Every error carries ``provider="zaleycash"``, ``.code`` (the
ZaleyCash code as an int, or a symbolic string such as ``"http_502"`` when there was none),
``.message`` (the provider's text, else the documented text for the code), ``.http_status``, ``.call`` (our
method name), ``.reason`` (a stable symbolic name, e.g. ``"duplicate_operation_id"``) and ``.body``.

Every documented code (docs/providers/zaleycash.md) and why it lands where it does:

====  ===============================================  ===========================================
code  text                                             class (why)
====  ===============================================  ===========================================
1     Invalid access token                             InvalidTokenError(AuthError): the client
                                                       renews the token and retries once; raised
                                                       only when it persists
2-5   wrong secret / client / header / access denied   AuthError: an operator must act
81    Agent account is disabled                        AuthError (same)
10    Invalid request                                  ValidationError
20    Registration errors                              ValidationError
23    Account type mismatch · 25 Wrong account_id      ValidationError (field ``account_id``)
55    Wrong operation_id                               ValidationError (field ``operation_id``);
                                                       OperationNotFoundError on ``transfer_status``
56    Invalid transaction description                  ValidationError (field ``description``)
71    Account creation error · 72 Email already exist  ValidationError (72: field ``email``)
21    User does not exist                              UserNotFoundError(NotFoundError, PermanentError):
22    User with account does not exist                 the user really is absent (a lookup wants
                                                       NotFoundError) and a payout to it fails the
                                                       same way every time (the payout engine wants
                                                       PermanentError: fail and show) — one class
                                                       answers both ``except`` clauses
24,26 account / user inactive, operations protected    OperationsProtectedError(PermanentError)
52,54 common account off / financial ops protected     OperationsProtectedError(PermanentError)
50,51 Not enough money (or below the set limit)        InsufficientFundsError: park, retry later
53    Transaction processing error                     TransactionProcessingError(RetryableError):
                                                       nothing was recorded; a money call is resent
                                                       with the SAME operation_id, so a resend can
                                                       never pay twice (58 if it had been recorded)
57    Can not approve deposit transaction              OperationStateError(PermanentError)
59,60 Operation already approved / declined            OperationStateError(PermanentError)
58    Duplicate operation_id                           DuplicateOperationError(PermanentError): the
                                                       first operation with this id was recorded;
                                                       the payout adapter reads it as "already done"
73    {partner} returned an error                      PartnerError(RetryableError): an upstream
                                                       ad platform failed, try again later
80    Wrong currency                                   WrongCurrencyError(PermanentError)
====  ===============================================  ===========================================

No (or an unknown) code: the shared table of :mod:`providers.http` decides by the HTTP status — 429 →
RetryableError; 5xx → RetryableError, ``UnknownOutcomeError`` for a call that moves money (503 included:
the money may have moved); 401/403 → AuthError; 404 → NotFoundError (PermanentError for a money call: a
wrong path executes nothing); other 4xx → PermanentError (the unknown code kept in ``.code``); a 2xx that
is not an envelope or carries an unknown code → BadResponseError (``UnknownOutcomeError`` for a money
call: an unfamiliar answer must never read as "nothing happened").
"""
from __future__ import annotations

from typing import Any, Mapping

from providers.errors import (
    AuthError,
    BadResponseError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    ValidationError,
)
from providers.http import Answer, Envelope, Refusal
from providers.zaleycash.wire import loads

PROVIDER = "zaleycash"

__all__ = [
    "PROVIDER",
    "CODES",
    "InvalidTokenError",
    "UserNotFoundError",
    "OperationsProtectedError",
    "TransactionProcessingError",
    "DuplicateOperationError",
    "OperationStateError",
    "PartnerError",
    "WrongCurrencyError",
    "OperationNotFoundError",
    "StatusNotAvailableError",
    "BadResponseError",
    "ENVELOPE",
    "error_for",
    "check_envelope",
    "error_text",
    "normalize_code",
]


class InvalidTokenError(AuthError):
    """Code 1: the access token is unknown or expired. The client renews it once by itself."""


class UserNotFoundError(NotFoundError, PermanentError):
    """Codes 21/22: no such user (or no such user with an account). Both a NotFound and a Permanent error."""


class OperationsProtectedError(PermanentError):
    """Codes 24/26/52/54: the account or user is inactive or its financial operations are protected."""


class TransactionProcessingError(RetryableError):
    """Code 53: ZaleyCash failed to process the transaction; nothing was recorded. Resend the same call."""


class DuplicateOperationError(PermanentError):
    """Code 58: an operation with this ``operation_id`` was already recorded (the first one counts).

    ``operation_id`` is the idempotency key of a money operation, so for a payout this means "already
    done": :class:`providers.zaleycash.payout.ZaleyCashRail` turns it into SUCCEEDED.
    """


class OperationStateError(PermanentError):
    """Codes 57/59/60: the operation is in a state that does not allow the action."""


class PartnerError(RetryableError):
    """Code 73: a partner platform behind ZaleyCash returned an error."""


class WrongCurrencyError(PermanentError):
    """Code 80: the currency is unknown or not allowed for this operation."""


class OperationNotFoundError(NotFoundError):
    """``transfer_status``: ZaleyCash says it has no operation with this ``operation_id`` (code 55)."""


class StatusNotAvailableError(PermanentError):
    """``transfer_status`` was called but no status endpoint is configured (its name is not public)."""


# code → (class, reason, the documented text, the request field it points at or None)
CODES: dict[int, tuple[type[ProviderError], str, str, str | None]] = {
    1: (InvalidTokenError, "invalid_token", "Invalid access token", None),
    2: (AuthError, "wrong_secret_key", "Wrong secret key", None),
    3: (AuthError, "client_not_found", "Client does not exist", None),
    4: (AuthError, "wrong_authorization_header", "Wrong Authorization header", None),
    5: (AuthError, "access_denied", "Access is denied for user", None),
    10: (ValidationError, "invalid_request", "Invalid request", None),
    20: (ValidationError, "registration_error", "Registration errors", None),
    21: (UserNotFoundError, "user_not_found", "User does not exist", None),
    22: (UserNotFoundError, "user_account_not_found", "User with account does not exist", None),
    23: (ValidationError, "account_type_mismatch", "Account type is not the expected type", "account_id"),
    24: (OperationsProtectedError, "account_inactive", "Account inactive. Operations are protected", None),
    25: (ValidationError, "wrong_account_id", "Wrong account_id", "account_id"),
    26: (OperationsProtectedError, "user_inactive", "User inactive. Operations are protected", None),
    50: (InsufficientFundsError, "not_enough_money_or_limit",
         "Not enough money or your amount is less then set limit", None),
    51: (InsufficientFundsError, "not_enough_money", "Not enough money", None),
    52: (OperationsProtectedError, "common_account_off",
         "Switch on common financial account for operation processing", None),
    53: (TransactionProcessingError, "transaction_error", "Transaction processing error", None),
    54: (OperationsProtectedError, "financial_operations_protected",
         "Financial operations are protected for account", None),
    55: (ValidationError, "wrong_operation_id", "Wrong operation_id", "operation_id"),
    56: (ValidationError, "invalid_description", "Invalid transaction description in request", "description"),
    57: (OperationStateError, "cannot_approve_deposit", "Can not approve deposit transaction", None),
    58: (DuplicateOperationError, "duplicate_operation_id", "Duplicate operation_id", "operation_id"),
    59: (OperationStateError, "already_approved", "Operation already approved", None),
    60: (OperationStateError, "already_declined", "Operation already declined", None),
    71: (ValidationError, "account_creation_error", "Account creation error", None),
    72: (ValidationError, "email_exists", "Email already exist", "email"),
    73: (PartnerError, "partner_error", "Partner returned an error", None),
    80: (WrongCurrencyError, "wrong_currency", "Wrong currency", "currency"),
    81: (AuthError, "agent_disabled", "Agent account is disabled", None),
}

# Calls that move money: a 5xx or a garbled answer may come after ZaleyCash acted.
MONEY_CALLS = frozenset({"transfer_internal"})


def normalize_code(value: Any) -> int | None:
    """``58``/``"58"``/``" 58 "`` → 58; anything else (None, "", "abc", a dict, a bool) → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def error_text(body: Mapping[str, Any]) -> str:
    """``message``, else ``detail`` (a string, or a list/dict of violations flattened), else ""."""
    for key in ("message", "detail"):
        v = body.get(key)
        if v is None or v == "":
            continue
        if isinstance(v, str):
            return v.strip()
        if isinstance(v, Mapping):
            return "; ".join(f"{k}: {_flat(x)}" for k, x in v.items())
        if isinstance(v, list):
            return "; ".join(_flat(x) for x in v)
        return str(v)
    return ""


def _flat(v: Any) -> str:
    if isinstance(v, Mapping):
        msg = v.get("message", v.get("msg", v.get("detail")))
        where = v.get("propertyPath", v.get("field", v.get("loc")))
        if msg is not None:
            return f"{where}: {msg}" if where not in (None, "") else str(msg)
        return ", ".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_flat(x) for x in v)
    return str(v)


def _fields(body: Mapping[str, Any], field: str | None, message: str) -> dict[str, str]:
    """Field errors: an ``errors``/``violations`` mapping or list in the body, else the code's own field."""
    out: dict[str, str] = {}
    raw = body.get("errors", body.get("violations"))
    if isinstance(raw, Mapping):
        out.update({str(k): _flat(v) for k, v in raw.items()})
    elif isinstance(raw, list):
        for i, x in enumerate(raw):
            if isinstance(x, Mapping):
                name = x.get("propertyPath", x.get("field", i))
                out[str(name)] = str(x.get("message", x.get("title", "")))
    if not out and field:
        out[field] = message
    return out


class ZaleyCashEnvelope(Envelope):
    """``{"code", "message", "response"}``; code 200 is success (see the module text)."""

    provider = PROVIDER
    money_calls = MONEY_CALLS

    def decode(self, content: bytes) -> Any:
        return loads(content)

    def refusal(self, answer: Answer, call: str) -> Refusal | None:
        body = answer.body
        if not isinstance(body, Mapping) or not ({"code", "message", "detail"} & body.keys()):
            return Refusal()  # not an envelope (HTML from a proxy, another shape): by the HTTP status
        code = normalize_code(body.get("code"))
        message = error_text(body)
        if code == 200:
            return None  # believed on a 2xx only (a "200" in a 5xx body is not a success)
        known = CODES.get(code) if code is not None else None
        if known is None:  # no or an unknown code: the status decides, the code and text are kept
            return Refusal(code=code, message=message, reason="unknown" if code is not None else None)
        cls, reason, seed_text, field = known
        if call == "transfer_status" and code == 55:
            cls, reason = OperationNotFoundError, "operation_not_found"
        text = message or seed_text
        return Refusal(cls=cls, code=code, message=text, reason=reason, fields=_fields(body, field, text))

    def data(self, answer: Answer) -> Any:
        return answer.body.get("response")


ENVELOPE = ZaleyCashEnvelope()
error_for = ENVELOPE.error_for  # (status, body, *, call, idempotent=None, headers=None): the same for every provider
check_envelope = ENVELOPE.check
