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
``internal_server_error``                   500    by status (the shared table): ``RetryableError`` —
                                                   ``UnknownOutcomeError`` for a call that may move
                                                   money (create, sign, reserve)
``not_enough_funds`` (our choice; also      any    ``InsufficientFundsError``
``insufficient_funds``, ``no_funds``,
``funds_insufficient``)
unknown code                                by HTTP status: 400/422 validation, 401/403 auth,
                                            404 not found, 409 invalid state, other 4xx permanent;
                                            429, 5xx and a 200 that is not JSON by the shared
                                            table of :mod:`providers.http` (a 5xx, 503 included,
                                            or a garbled 200 to create/sign/reserve is an
                                            ``UnknownOutcomeError``)
=========================================  ======  ===============================================

Paysera documents no insufficient-funds code for the Transfer API (``reserve`` "returns error if no funds
available"). We chose ``not_enough_funds`` — the sandbox answers it from ``sign``/``reserve`` — and
accept the spellings above so that a real answer with any of them lands in the same class.

Every error carries ``provider="paysera"``, ``.code`` (the ``error`` value as sent), ``.message``
(``error_description``, or ``error <code>``), ``.http_status``, ``.call`` and ``.body`` (the error
object: ``error_uri`` and ``error_data`` are there).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from providers.errors import (
    AuthError,
    BadResponseError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ProviderError,
    ValidationError,
)
from providers.http import Answer, Envelope, Refusal

PROVIDER = "paysera"

__all__ = [
    "PROVIDER",
    "InvalidStateError",
    "BadResponseError",
    "INSUFFICIENT_FUNDS_CODES",
    "ENVELOPE",
    "error_for",
    "check_envelope",
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
    # internal_server_error is not here: it is only a name for a 500, and the shared table knows what a
    # 500 means for a call that moves money.
    **{c: InsufficientFundsError for c in INSUFFICIENT_FUNDS_CODES},
}


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


class PayseraEnvelope(Envelope):
    """HTTP 200 with JSON is success; anything else carries the error object (see the module text)."""

    provider = PROVIDER
    money_calls = frozenset({"create_transfer", "sign_transfer", "reserve_transfer"})

    def refusal(self, answer: Answer, call: str) -> Refusal | None:
        if 200 <= answer.status < 300:
            return None if answer.is_json or not answer.size else Refusal()
        obj = answer.body if isinstance(answer.body, Mapping) else {}
        code = obj.get("error")
        code = code.strip() if isinstance(code, str) and code.strip() else None
        description = obj.get("error_description")
        description = str(description).strip() if description not in (None, "") else ""
        return Refusal(cls=_BY_CODE.get(code.lower()) if code else None, code=code, reason=code,
                       message=description or (f"error {code}" if code else ""),
                       fields=_fields(obj.get("error_properties")))

    def status_class(self, status: int, call: str, idempotent: bool) -> type[ProviderError]:
        if status in (400, 422):
            return ValidationError
        if status == 409:
            return InvalidStateError
        return super().status_class(status, call, idempotent)


ENVELOPE = PayseraEnvelope()
error_for = ENVELOPE.error_for  # (status, body, *, call, idempotent=None, headers=None): the same for every provider
check_envelope = ENVELOPE.check


_CLOCK_WORDS = re.compile(r"\b(timestamps?|ts|time|clock|expired|window)\b", re.IGNORECASE)


def is_clock_rejection(err: ProviderError) -> bool:
    """True for a 401 whose description says the timestamp was refused (e.g. "timestamp is outside the
    allowed window"). Paysera does not document the wording, so the client also retries when a re-sync
    moved its clock offset (see :class:`PayseraClient`)."""
    return err.http_status == 401 and bool(_CLOCK_WORDS.search(err.message))
