"""Signed gateway answer → error, as pure functions.

Error bodies (docs/providers/gateway.md)::

    {"message": "Invalid API key", "code": "unauthorized",
     "error": {"code": "unauthorized", "message": "Invalid API key"}}
    {"message": "amount must be a positive decimal string", "code": "validation_error",
     "errors": [{"field": "amount", "message": "amount must be a positive decimal string"}],
     "error": {"code": "validation_error", "message": "amount must be a positive decimal string"}}

Mapping (every error carries ``provider="gateway"``, the gateway's ``code`` and exact ``message``,
``http_status``, ``call`` and ``body``):

=========================================================  ==========================================
answer                                                     error
=========================================================  ==========================================
401 (key / timestamp / signature / replay)                 the ``signing`` class for that message
                                                           (all ``AuthError``; the timestamp-window one
                                                           says "check the clock"), else SignatureError
403                                                        ``ForbiddenError`` (AuthError)
404 ``Payout not found`` / ``PayIn not found``             ``PayoutNotFoundError`` / ``PayInNotFoundError``
                                                           (NotFoundError); another 404 to a read of a
                                                           payout/pay-in is that class too, else the
                                                           shared table (NotFoundError)
422 ``Shop currency mismatch. Expected X.``                ``CurrencyMismatchError`` (PermanentError),
                                                           ``.expected`` = X
422 ``Insufficient balance...``                            ``InsufficientBalanceError``
                                                           (InsufficientFundsError)
422 a create repeated with other parameters                ``IdempotencyConflictError`` (PermanentError)
422 ``validation_error`` (or an ``errors`` list)           ``ValidationError``, ``.fields`` = {field: message}
anything else (other 4xx, 429, 5xx, a 2xx that is not      the shared table of :mod:`providers.http`: 5xx
JSON)                                                      on a create (not idempotent) is an
                                                           UnknownOutcomeError — the object may exist
                                                           now: ask by external_id before sending again
=========================================================  ==========================================
"""
from __future__ import annotations

import re
import time
from typing import Any, Mapping

from providers.errors import (
    AuthError,
    BadResponseError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ValidationError,
)
from providers.gateway.signing import SIGNATURE_ERRORS, SignatureError, TimestampWindowError
from providers.http import Answer, Envelope, Refusal

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
    "ENVELOPE",
    "parse_error_body",
    "error_for",
    "check_envelope",
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


class CallbackError(PermanentError):
    """A callback that passed the signature check but is not a JSON object."""


_EXPECTED_RE = re.compile(r"expected\s+([A-Za-z0-9_-]+)", re.IGNORECASE)


def parse_error_body(content: bytes | str | None) -> tuple[str | None, str | None, dict[str, str]]:
    """``(code, message, fields)`` from an error body; Nones when it is not the gateway's JSON."""
    if content is None:
        return None, None, {}
    try:
        body = ENVELOPE.decode(content.encode("utf-8") if isinstance(content, str) else content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None, {}
    return _error_parts(body)


def _error_parts(body: Any) -> tuple[str | None, str | None, dict[str, str]]:
    if not isinstance(body, Mapping):
        return None, None, {}
    inner = body.get("error")
    inner = inner if isinstance(inner, Mapping) else {}
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


def _skew_from_date(headers: Mapping[str, str] | None, now: float) -> float | None:
    """Server time minus ours from the answer's ``Date`` header (for the clock hint), None if unknown."""
    if not headers:
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


def _kind(call: str) -> str | None:
    """What a read is about (what its bare 404 means): ``"payout"``, ``"payin"`` or None."""
    return {"get_payout": "payout", "get_payin": "payin"}.get(call)


class GatewayEnvelope(Envelope):
    """The gateway answers objects with 2xx and ``{"message", "code", "error", "errors"}`` otherwise."""

    provider = PROVIDER
    money_calls = frozenset({"create_payout", "create_payin"})  # each may create an object at the gateway

    def refusal(self, answer: Answer, call: str) -> Refusal | None:
        status = answer.status
        if 200 <= status < 300:
            return None if answer.is_json or not answer.size else Refusal()  # a proxy's page is no answer
        code, message, fields = _error_parts(answer.body)
        low = (message or "").strip().lower()
        if status == 401:  # every 401 is the gateway refusing our signature, before any processing
            cls = SIGNATURE_ERRORS.get(low) or (SIGNATURE_ERRORS["replay"] if low.startswith("replay") else None)
            cls = cls or SignatureError
            extra = {"skew": _skew_from_date(answer.headers, time.time())} if cls is TimestampWindowError else {}
            return Refusal(cls=cls, code=code or "unauthorized", message=message or cls.default_message,
                           reason=cls.reason, extra=extra)
        if status == 403:
            return Refusal(cls=ForbiddenError, code=code, message=message or "Forbidden", reason="forbidden")
        if status == 404:
            kind = "payout" if low.startswith("payout not found") else "payin" if low.startswith("payin not found") \
                else _kind(call) if ("not found" in low or not message) else None
            cls404 = {"payout": PayoutNotFoundError, "payin": PayInNotFoundError}.get(kind or "")
            return Refusal(cls=cls404, code=code, message=message or "", reason=f"{kind}_not_found" if kind else None)
        if status == 422:
            if low.startswith("shop currency mismatch"):
                m = _EXPECTED_RE.search(message or "")
                return Refusal(cls=CurrencyMismatchError, code=code, message=message or "", reason="currency_mismatch",
                               extra={"expected": m.group(1) if m else None})
            if low.startswith("insufficient balance"):
                return Refusal(cls=InsufficientBalanceError, code=code, message=message or "",
                               reason="insufficient_balance")
            if code == "idempotency_conflict" or "different parameters" in low:
                return Refusal(cls=IdempotencyConflictError, code=code, message=message or "",
                               reason="idempotency_conflict")
            if code == "validation_error" or fields:
                first = next(iter(fields.values()), None)
                return Refusal(cls=ValidationError, code=code, message=message or first or "validation error",
                               reason="validation_error", fields=fields)
        return Refusal(code=code, message=message or "", fields=fields)  # the shared table decides by status


ENVELOPE = GatewayEnvelope()
error_for = ENVELOPE.error_for  # (status, body, *, call, idempotent=None, headers=None): the same for every provider
check_envelope = ENVELOPE.check
