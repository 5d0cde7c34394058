"""Signed gateway answer → error, as pure functions.

Error bodies (seed 003)::

    {"message": "Invalid API key", "code": "unauthorized",
     "error": {"code": "unauthorized", "message": "Invalid API key"}}
    {"message": "amount must be a positive decimal string", "code": "validation_error",
     "errors": [{"field": "amount", "message": "amount must be a positive decimal string"}],
     "error": {"code": "validation_error", "message": "amount must be a positive decimal string"}}

Mapping (every error carries ``provider="gateway"``, the gateway's ``code`` and exact ``message``,
``http_status`` and ``operation``):

=========================================================  ==========================================
answer                                                     error
=========================================================  ==========================================
401 (key / timestamp / signature / replay)                 the ``signing`` class for that message
                                                           (all ``AuthError``; the timestamp-window one
                                                           says "check the clock"), else SignatureError
403                                                        ``ForbiddenError`` (AuthError)
404 ``Payout not found`` / ``PayIn not found``             ``PayoutNotFoundError`` / ``PayInNotFoundError``
                                                           (NotFoundError); other 404s NotFoundError
422 ``Shop currency mismatch. Expected X.``                ``CurrencyMismatchError`` (PermanentError),
                                                           ``.expected`` = X
422 ``Insufficient balance...``                            ``InsufficientBalanceError``
                                                           (InsufficientFundsError)
422 a create repeated with other parameters                ``IdempotencyConflictError`` (PermanentError)
422 ``validation_error`` (or an ``errors`` list)           ``ValidationError``, ``.fields`` = {field: message}
other 422, other 4xx                                       PermanentError
429, 5xx                                                   RetryableError (``retry_after`` from Retry-After)
5xx on a create (not idempotent)                           UnknownOutcomeError: the object may exist now;
                                                           ask by external_id before sending again
a 2xx whose body is not JSON                               BadResponseError (RetryableError), or
                                                           UnknownOutcomeError on a create
=========================================================  ==========================================

Every 5xx on a create is an unknown outcome, 503 included (``providers.http`` treats 503 as "not
processed"; for money leaving we would rather pay one extra GET than guess).
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
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
from providers.gateway.signing import SIGNATURE_ERRORS, SignatureError, TimestampWindowError

PROVIDER = "gateway"

__all__ = [
    "PROVIDER",
    "ForbiddenError",
    "PayoutNotFoundError",
    "PayInNotFoundError",
    "CurrencyMismatchError",
    "InsufficientBalanceError",
    "IdempotencyConflictError",
    "BadResponseError",
    "CallbackError",
    "parse_error_body",
    "error_for",
]


class ForbiddenError(AuthError):
    """403: the key may not do this (shop scope, permissions, IP): an operator must act."""


class PayoutNotFoundError(NotFoundError):
    """404 ``Payout not found``: no payout with this external_id in the resolved shop scope."""


class PayInNotFoundError(NotFoundError):
    """404 ``PayIn not found``: no pay-in with this external_id in the resolved shop scope."""


class CurrencyMismatchError(PermanentError):
    """422 ``Shop currency mismatch. Expected X.``: each shop has one currency; ``expected`` is it."""

    def __init__(self, message: str, *, expected: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.expected = expected


class InsufficientBalanceError(InsufficientFundsError):
    """422 ``Insufficient balance...``: top up the shop balance or reduce the amount (park and alert)."""


class IdempotencyConflictError(PermanentError):
    """422: this external_id was already used for a create with different parameters. Nothing new was
    created; the existing object is untouched. A bug on our side (a key reused for another payout)."""


class BadResponseError(RetryableError):
    """A 2xx answer that is not the JSON object expected (a proxy page, a truncated body)."""


class CallbackError(PermanentError):
    """A callback that passed the signature check but is not a JSON object."""


_EXPECTED_RE = re.compile(r"expected\s+([A-Za-z0-9_-]+)", re.IGNORECASE)


def parse_error_body(content: bytes | str | None) -> tuple[str | None, str | None, dict[str, str]]:
    """``(code, message, fields)`` from an error body; Nones when it is not the gateway's JSON."""
    if content is None:
        return None, None, {}
    try:
        body = json.loads(content if isinstance(content, str) else content.decode("utf-8"), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None, None, {}
    if not isinstance(body, Mapping):
        return None, None, {}
    inner = body.get("error") if isinstance(body.get("error"), Mapping) else {}
    message = body.get("message") or inner.get("message")
    if message is None and isinstance(body.get("error"), str):
        message = body["error"]
    code = body.get("code") or inner.get("code")
    fields: dict[str, str] = {}
    errors = body.get("errors")
    if isinstance(errors, list):
        for i, e in enumerate(errors):
            if isinstance(e, Mapping):
                fields[str(e.get("field", i))] = str(e.get("message", ""))
            elif e not in (None, ""):
                fields[str(i)] = str(e)
    elif isinstance(errors, Mapping):
        fields = {str(k): str(v) for k, v in errors.items()}
    return (None if code is None else str(code)), (None if message is None else str(message)), fields


def _skew_from_date(headers: Mapping[str, str] | None, now: float | None) -> float | None:
    """Server time minus ours from the answer's ``Date`` header (for the clock hint), None if unknown."""
    if not headers or now is None:
        return None
    from email.utils import parsedate_to_datetime

    # Two Date headers arrive joined ("<front server's>, <application's>"): the last one is the app's.
    raw = headers.get("Date") or ""
    for value in reversed(re.findall(r"[A-Za-z]{3},\s*\d{1,2}\s+\w{3}\s+\d{4}\s+[\d:]{8}\s+GMT", raw) or [raw]):
        try:
            server = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            continue
        if server is not None:
            return server.timestamp() - now
    return None


def error_for(
    status: int,
    content: bytes | str | None,
    *,
    operation: str | None = None,
    idempotent: bool = True,
    headers: Mapping[str, str] | None = None,
    url: str = "",
    now: float | None = None,
) -> ProviderError | None:
    """The error an answer stands for, or None for a 2xx. Pure (no I/O), never raises.

    ``operation``: ``"payout"`` or ``"payin"`` (what a 404 is about) or None. ``idempotent=False`` for
    creates: a 5xx is then an UnknownOutcomeError. ``now``: our clock, to estimate the skew for the
    timestamp-window hint from the ``Date`` header.
    """
    if 200 <= status < 300:
        return None
    code, message, fields = parse_error_body(content)
    kw: dict[str, Any] = {"code": code, "http_status": status, "provider": PROVIDER}
    where = f" from {url}" if url else ""
    err: ProviderError

    if status == 429 or status >= 500:
        from providers.http import parse_retry_after

        kw["code"] = code or f"http_{status}"
        text = message or f"HTTP {status}{where}"
        if status >= 500 and not idempotent:
            err = UnknownOutcomeError(text, **kw)
        else:
            retry_after = parse_retry_after((headers or {}).get("Retry-After")) if status in (429, 503) else None
            err = RetryableError(text, retry_after=retry_after, **kw)
    elif status == 401:
        cls = SIGNATURE_ERRORS.get((message or "").strip().lower())
        if cls is None and (message or "").lower().startswith("replay"):
            cls = SIGNATURE_ERRORS["replay"]
        cls = cls or SignatureError
        kw["code"] = code or "unauthorized"
        if cls is TimestampWindowError:
            err = TimestampWindowError(message, skew=_skew_from_date(headers, now), **kw)
        else:
            err = cls(message, **kw)
    elif status == 403:
        err = ForbiddenError(message or "Forbidden", **kw)
    elif status == 404:
        low = (message or "").lower()
        if low.startswith("payout not found") or (not message and operation == "payout"):
            cls404: type[NotFoundError] = PayoutNotFoundError
        elif low.startswith("payin not found") or (not message and operation == "payin"):
            cls404 = PayInNotFoundError
        elif operation == "payout" and "not found" in low:
            cls404 = PayoutNotFoundError
        elif operation == "payin" and "not found" in low:
            cls404 = PayInNotFoundError
        else:
            cls404 = NotFoundError
        err = cls404(message or f"not found{where}", **kw)
    elif status == 422:
        low = (message or "").lower()
        if low.startswith("shop currency mismatch"):
            m = _EXPECTED_RE.search(message or "")
            err = CurrencyMismatchError(message or "", expected=m.group(1) if m else None, **kw)
        elif low.startswith("insufficient balance"):
            err = InsufficientBalanceError(message or "", **kw)
        elif code == "idempotency_conflict" or "different parameters" in low:
            err = IdempotencyConflictError(message or "", **kw)
        elif code == "validation_error" or fields:
            first = next(iter(fields.values()), None)
            err = ValidationError(message or first or "validation error", fields=fields, **kw)
        else:
            err = PermanentError(message or f"HTTP 422{where}", **kw)
    else:
        err = PermanentError(message or f"HTTP {status}{where}", **kw)
    err.operation = operation  # type: ignore[attr-defined]
    return err
