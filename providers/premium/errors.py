"""Premium Exchanger answer envelope → error, as pure functions.

Every answer is ``{"error": <code>, "error_text": <text>, "data": <payload>}`` (HTTP 200); ``create_bid``
and ``bid_info`` add ``error_fields``. ``error`` is an int for some methods and a string for others:
``0`` and ``"0"`` both mean success. The same code means different things per method, so the mapping
looks at the text first (the engine's fixed English texts, plus their Russian forms), then at the code in
the context of the method, and finally treats an *int* 1/2/3 on a method whose own codes are strings as
one of the errors raised before any method runs (``Api disabled``, ``IP blocked``, ``Method not
supported``). That last rule matters: a wrong key must never look like "no bid exists" (which would
make a caller archive a live bid).

Every error carries ``provider="premium"``, ``.code`` (the engine's ``error`` value exactly as sent),
``.message`` (``error_text``), ``.http_status``, ``.call`` (the API method), ``.reason`` (a stable
symbolic name such as ``"api_disabled"`` or ``"api_id_not_unique"``) and ``.body`` (the envelope).

Everything that is not an envelope (another HTTP status, an HTML page, a 5xx) is mapped by the shared
table in :mod:`providers.http`: the engine always answers HTTP 200, so another status comes from what
stands in front of it, and every 4xx is a :class:`BadResponseError` here (a proxy's 404 must never read
as "no bid exists").
"""
from __future__ import annotations

import json as _json
from decimal import Decimal
from typing import Any, Mapping

from providers.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    ValidationError,
)
from providers.http import Answer, Envelope, Refusal

PROVIDER = "premium"

__all__ = [
    "PROVIDER",
    "ApiDisabledError",
    "IpBlockedError",
    "MethodNotSupportedError",
    "MaintenanceError",
    "BidNotFoundError",
    "DirectionNotFoundError",
    "DuplicateApiIdError",
    "ActionDisabledError",
    "PartnerProgramError",
    "BadResponseError",
    "ENVELOPE",
    "error_for",
    "check_envelope",
    "decode_body",
    "is_success",
    "normalize_code",
    "STATUS_CHANGING_METHODS",
]

STATUS_CHANGING_METHODS = frozenset({"cancel_bid", "pay_bid", "success_bid"})
_INT_CODE_METHODS = frozenset({"test", "get_direction_currencies", "get_directions"})


class ApiDisabledError(AuthError):
    """``{"error": 1, "error_text": "Api disabled"}``: the engine's catch-all before any method runs.

    It means any of: API module off, site in maintenance, unknown or wrong login/key, banned user, user not
    allowed to use the API. Not retryable as such (an operator must look), although it may clear by itself
    when it was maintenance.
    """


class IpBlockedError(AuthError):
    """``{"error": 2, "error_text": "IP blocked"}``: the key has an IP allow-list and we are not on it."""


class MethodNotSupportedError(AuthError):
    """``{"error": 3, "error_text": "Method not supported"}``: unknown method or not enabled for this key."""


class MaintenanceError(RetryableError):
    """The method answered with the site's maintenance ("technical works") text: try again later."""


class BidNotFoundError(NotFoundError):
    """``"no bid exists"``.

    For ``bid_info``: the bid is unknown to this login, was archived (the engine deletes old bids), or its
    direction/currencies were switched off. For ``cancel_bid``/``pay_bid``/``success_bid`` the engine gives
    the same answer when the bid EXISTS but its status does not allow the action (``maybe_status_forbids``
    is then True): re-read it with ``bid_info`` before concluding anything.
    """

    @property
    def maybe_status_forbids(self) -> bool:
        return self.call in STATUS_CHANGING_METHODS


class DirectionNotFoundError(NotFoundError):
    """``"direction not found"``: unknown direction, or API access is not enabled for it."""


class DuplicateApiIdError(ValidationError):
    """create_bid: ``"api id not unique"`` — a bid with this api_id already exists for this login.

    A create whose answer was lost and is sent again ends here: look the bid up with
    ``get_exchanges(api_id=…)``.
    """


class ActionDisabledError(PermanentError):
    """cancel/pay/success_bid ``"2"`` with "action disabled": the bid's api_actions do not allow it."""


class PartnerProgramError(PermanentError):
    """Partner methods: "no active partner program" or "no partner id"."""


# Fixed engine texts (lower case substrings), English and Russian. The maintenance text is configurable
# by the site, so it is matched loosely and otherwise inferred from the code.
_TEXTS: list[tuple[str, tuple[str, ...]]] = [
    ("api_disabled", ("api disabled", "api отключ", "api выключ")),
    ("ip_blocked", ("ip blocked", "ip заблокир")),
    ("method_not_supported", ("method not supported", "метод не поддерж")),
    ("api_id_not_unique", ("api id not unique", "api_id not unique", "api id не уникал", "api_id не уникал")),
    ("no_bid", ("no bid exists", "bid does not exist", "bid not found", "заявка не найдена", "нет заявки",
                "заявки не существует", "заявка не существует")),
    ("direction_not_found", ("direction not found", "направление не найдено", "направления не существует")),
    ("action_disabled", ("action disabled", "действие отключено", "действие запрещено")),
    ("partner", ("partner program", "no partner id", "партнерск", "партнёрск")),
    ("maintenance", ("maintenance", "technical work", "технические работы", "техработ", "тех. работ",
                     "технических работ")),
]

_CLASSES: dict[str, type[ProviderError]] = {
    "api_disabled": ApiDisabledError,
    "ip_blocked": IpBlockedError,
    "method_not_supported": MethodNotSupportedError,
    "api_id_not_unique": DuplicateApiIdError,
    "no_bid": BidNotFoundError,
    "direction_not_found": DirectionNotFoundError,
    "action_disabled": ActionDisabledError,
    "partner": PartnerProgramError,
    "maintenance": MaintenanceError,
    "validation": ValidationError,
    "unknown": PermanentError,
}

_PRE_METHOD = {1: "api_disabled", 2: "ip_blocked", 3: "method_not_supported"}


def _method_codes(method: str) -> dict[int, str]:
    """What each non-zero code means for ``method`` (per the engine's code)."""
    if method in _INT_CODE_METHODS:
        return {1: "maintenance"}
    if method in ("get_direction", "get_calc"):
        return {1: "direction_not_found"}
    if method == "create_bid":
        return {1: "direction_not_found", 2: "maintenance", 3: "validation"}
    if method == "bid_info":
        return {1: "no_bid", 2: "maintenance"}
    if method in STATUS_CHANGING_METHODS:
        return {1: "no_bid", 2: "maintenance"}  # "2" with the "action disabled" text is matched by text
    # Partner methods: "1" is also used for plain refusals ("balance is less than minimum payout"), so only
    # the partner-program texts map to PartnerProgramError; anything else stays a PermanentError.
    return {}


def normalize_code(value: Any) -> int | None:
    """``0``/``"0"``/``" 1 "`` → int; anything else (None, "", "abc", a dict) → None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        s = value.strip()
        if s.lstrip("-").isdigit():
            return int(s)
    return None


def is_success(envelope: Any) -> bool:
    return isinstance(envelope, Mapping) and "error" in envelope and normalize_code(envelope.get("error")) == 0


def _reason_from_text(text: str) -> str | None:
    t = text.lower()
    for reason, needles in _TEXTS:
        if any(n in t for n in needles):
            return reason
    return None


def _fields(raw: Any) -> dict[str, str]:
    """``error_fields``: a dict of field → message, or ``[]`` when empty (other shapes tolerated)."""
    if isinstance(raw, Mapping):
        return {str(k): "" if v is None else (v if isinstance(v, str) else str(v)) for k, v in raw.items()}
    out: dict[str, str] = {}
    if isinstance(raw, list):
        for i, x in enumerate(raw):
            if isinstance(x, Mapping):
                name = x.get("name", x.get("field", i))
                out[str(name)] = str(x.get("text", x.get("message", x.get("error", ""))))
            elif x not in (None, ""):
                out[str(i)] = str(x)
    return out


def decode_body(content: bytes) -> Any:
    """Decode an answer body into an envelope (fractions as Decimal).

    Tolerates a UTF-8 BOM and stray output before the JSON (PHP notices printed by a WordPress site with
    display_errors on). Raises ``ValueError`` when no envelope can be found.
    """
    text = content.lstrip(b"\xef\xbb\xbf").decode("utf-8", errors="replace").strip()
    try:
        return _json.loads(text, parse_float=Decimal)
    except ValueError:
        pass
    start = text.find('{"error"')
    if start > 0:
        value, _end = _json.JSONDecoder(parse_float=Decimal).raw_decode(text, start)
        return value
    raise ValueError("not JSON")


class PremiumEnvelope(Envelope):
    """``{"error", "error_text", "data"}`` on HTTP 200 (see the module text)."""

    provider = PROVIDER
    # A 5xx or garbled answer to these may come after the engine acted. create_bid WITH an api_id is
    # safe to resend (a second one fails with "api id not unique"): the client passes that per call.
    money_calls = frozenset({"create_bid", "add_partner_payout"})

    def decode(self, content: bytes) -> Any:
        return decode_body(content)

    def refusal(self, answer: Answer, call: str) -> Refusal | None:
        if answer.status != 200:
            return Refusal()  # not the engine: the shared table decides by status
        return _refusal(answer.body, call)

    def data(self, answer: Answer) -> Any:
        return answer.body.get("data")

    def status_class(self, status: int, call: str, idempotent: bool) -> type[ProviderError]:
        return BadResponseError  # the engine answers 200 only: any 4xx is a proxy, the web server or WordPress


def _refusal(envelope: Any, method: str) -> Refusal | None:
    if (not isinstance(envelope, Mapping) or "error" not in envelope or envelope.get("error") is None
            or (isinstance(envelope.get("error"), str) and not envelope["error"].strip())):
        shape = type(envelope).__name__ if not isinstance(envelope, Mapping) else "object without an error code"
        return Refusal(code="bad_envelope", reason="bad_envelope", message=f"not a Premium envelope ({shape})")
    raw_code = envelope.get("error")
    code = normalize_code(raw_code)
    if code == 0:
        return None
    text = envelope.get("error_text")
    text = "" if text is None else str(text).strip()
    fields = _fields(envelope.get("error_fields"))

    reason = _reason_from_text(text)
    if reason is None and any(_reason_from_text(m) == "api_id_not_unique" for m in fields.values()):
        reason = "api_id_not_unique"
    if reason is None and method == "create_bid" and "api_id" in fields and code == 3:
        reason = "api_id_not_unique"  # api_id is only ever rejected for being reused (it is cut, not refused)
    if reason is None and fields and method == "create_bid":
        reason = "validation"  # errors raised before the method never carry error_fields
    if reason is None:
        int_typed = isinstance(raw_code, int) and not isinstance(raw_code, bool)
        if int_typed and method not in _INT_CODE_METHODS and code in _PRE_METHOD:
            reason = _PRE_METHOD[code]
        else:
            reason = _method_codes(method).get(code) if code is not None else None
        if reason is None and code in _PRE_METHOD and "data" not in envelope and not fields:
            reason = _PRE_METHOD[code]
        if reason is None:
            reason = "unknown"
    if reason == "validation" and not fields and code != 3:
        reason = "unknown"
    message = text or (f"invalid fields: {', '.join(sorted(fields))}" if fields else f"error {raw_code!r}")
    return Refusal(cls=_CLASSES[reason], code=raw_code, message=message, reason=reason, fields=fields)


ENVELOPE = PremiumEnvelope()
error_for = ENVELOPE.error_for  # (status, body, *, call, idempotent=None, headers=None): the same for every provider
check_envelope = ENVELOPE.check
