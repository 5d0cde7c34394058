"""Paysera error object → the project's error hierarchy, as pure functions.

Every answer other than HTTP 200 carries ``{"error": <code>, "error_description": …, "error_uri": …}``
(only ``error`` is always there). Paysera's REST stack may add ``error_properties`` (field → messages)
and ``error_data``; they are read when present. The mapping looks at the code first and falls back on
the HTTP status for codes it does not know:

=========================================  ======  ===============================================
code                                       HTTP    error
=========================================  ======  ===============================================
``invalid_request``, ``invalid_parameters``  400   ``ValidationError`` (``fields`` from error_properties)
``invalid_state``                           409    ``InvalidStateError`` (a ``PermanentError``)
``unauthorized``                            401    ``AuthError`` (the client re-syncs its clock and
                                                   retries once when the ts was refused)
``forbidden``                               403    ``AuthError``
``not_found``                               404    ``NotFoundError``
``not_acceptable``                          406    ``PermanentError``
``internal_server_error``                   500    ``RetryableError`` — ``UnknownOutcomeError`` for a
                                                   call that may move money (create, sign, reserve)
``not_enough_funds`` (our choice; also      any    ``InsufficientFundsError``
``insufficient_funds``, ``no_funds``,
``funds_insufficient``)
unknown code                                by HTTP status: 400/422 validation, 401/403 auth,
                                            404 not found, 409 invalid state, 429/5xx retryable,
                                            other 4xx permanent
=========================================  ======  ===============================================

Paysera documents no insufficient-funds code for the Transfer API (``reserve`` "returns error if no funds
available"). We chose ``not_enough_funds`` — the sandbox answers it from ``sign``/``reserve`` — and
accept the spellings above so that a real answer with any of them lands in the same class.

Every error carries ``provider="paysera"``, ``.code`` (the ``error`` value as sent), ``.message``
(``error_description``, or the code), ``.http_status``, ``.error_uri`` and ``.error_data``.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from providers.errors import (
    AuthError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)

PROVIDER = "paysera"

__all__ = [
    "PROVIDER",
    "InvalidStateError",
    "INSUFFICIENT_FUNDS_CODES",
    "error_for",
    "is_clock_rejection",
]


class InvalidStateError(PermanentError):
    """``invalid_state`` (409): the action is not allowed in the resource's current state (e.g. signing a
    transfer that is already processing). Re-read the resource before deciding anything."""


INSUFFICIENT_FUNDS_CODES = frozenset({"not_enough_funds", "insufficient_funds", "no_funds", "funds_insufficient"})

_BY_CODE: dict[str, type[ProviderError]] = {
    "invalid_request": ValidationError,
    "invalid_parameters": ValidationError,
    "invalid_state": InvalidStateError,
    "unauthorized": AuthError,
    "forbidden": AuthError,
    "not_found": NotFoundError,
    "not_acceptable": PermanentError,
    "internal_server_error": RetryableError,
    **{c: InsufficientFundsError for c in INSUFFICIENT_FUNDS_CODES},
}


def _by_status(status: int) -> type[ProviderError]:
    if status in (400, 422):
        return ValidationError
    if status in (401, 403):
        return AuthError
    if status in (404, 410):
        return NotFoundError
    if status == 409:
        return InvalidStateError
    if status == 429 or status >= 500:
        return RetryableError
    return PermanentError


def _fields(raw: Any) -> dict[str, str]:
    """``error_properties``: {field: [messages]} or {field: message}; other shapes are ignored."""
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, str] = {}
    for k, v in raw.items():
        if isinstance(v, (list, tuple)):
            out[str(k)] = "; ".join(str(x) for x in v)
        elif v is not None:
            out[str(k)] = str(v)
    return out


def error_for(http_status: int, body: Any, *, idempotent: bool = True, what: str = "",
              retry_after: float | None = None) -> ProviderError:
    """The error an answer other than 200 stands for. Pure: no I/O, never raises.

    ``body`` is the decoded JSON (anything else — None, a list, a string — is handled by status alone).
    ``idempotent=False`` marks a call that may move money: a 5xx other than 503 becomes an
    :class:`UnknownOutcomeError` because the provider may have acted before failing.
    """
    obj = body if isinstance(body, Mapping) else {}
    code = obj.get("error")
    code = code.strip() if isinstance(code, str) and code.strip() else None
    description = obj.get("error_description")
    description = str(description).strip() if description not in (None, "") else ""
    label = f"{what}: " if what else ""
    cls = _BY_CODE.get(code.lower()) if code else None
    if cls is None:
        cls = _by_status(http_status)
    if not idempotent and (cls is RetryableError or issubclass(cls, RetryableError)) and (
            http_status >= 500 and http_status != 503):
        cls = UnknownOutcomeError
    message = label + (description or (f"error {code}" if code else f"HTTP {http_status}"))
    kw: dict[str, Any] = {"code": code if code is not None else f"http_{http_status}",
                          "http_status": http_status, "provider": PROVIDER}
    if issubclass(cls, RetryableError):
        kw["retry_after"] = retry_after
    if issubclass(cls, ValidationError):
        err: ProviderError = cls(message, fields=_fields(obj.get("error_properties")), **kw)
    else:
        err = cls(message, **kw)
    err.error_uri = obj.get("error_uri")  # type: ignore[attr-defined]
    err.error_data = obj.get("error_data")  # type: ignore[attr-defined]
    err.description = description  # type: ignore[attr-defined]
    return err


_CLOCK_WORDS = re.compile(r"\b(timestamps?|ts|time|clock|expired|window)\b", re.IGNORECASE)


def is_clock_rejection(err: ProviderError) -> bool:
    """True for a 401 whose description says the timestamp was refused (e.g. "timestamp is outside the
    allowed window"). Paysera does not document the wording, so the client also retries when a re-sync
    moved its clock offset (see :class:`PayseraClient`)."""
    if err.http_status != 401:
        return False
    return bool(_CLOCK_WORDS.search(getattr(err, "description", "") or ""))
