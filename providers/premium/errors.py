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
``.message`` (``error_text``), ``.http_status``, ``.method`` (the API method) and ``.reason`` (a stable
symbolic name such as ``"api_disabled"`` or ``"api_id_not_unique"``).
"""
from __future__ import annotations

from typing import Any, Mapping

from providers.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    ValidationError,
)

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
    "error_for",
    "check_envelope",
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
        return getattr(self, "method", None) in STATUS_CHANGING_METHODS


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


class BadResponseError(RetryableError):
    """The answer is not a Premium envelope (HTML from a proxy, a truncated body, a JSON of another shape)."""


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


def error_for(envelope: Any, method: str, http_status: int | None = 200) -> ProviderError | None:
    """The error an envelope stands for, or None when it is a success. Pure: no I/O, never raises."""
    if (not isinstance(envelope, Mapping) or "error" not in envelope or envelope.get("error") is None
            or (isinstance(envelope.get("error"), str) and not envelope["error"].strip())):
        shape = type(envelope).__name__ if not isinstance(envelope, Mapping) else "object without an error code"
        err: ProviderError = BadResponseError(f"{method}: answer is not a Premium envelope ({shape})",
                                              code="bad_envelope", http_status=http_status, provider=PROVIDER)
        err.method, err.reason = method, "bad_envelope"  # type: ignore[attr-defined]
        return err
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
    cls = _CLASSES[reason]
    kw: dict[str, Any] = {"code": raw_code, "http_status": http_status, "provider": PROVIDER}
    if issubclass(cls, ValidationError):
        err = cls(message, fields=fields, **kw)
    else:
        err = cls(message, **kw)
    err.method = method  # type: ignore[attr-defined]
    err.reason = reason  # type: ignore[attr-defined]
    return err


def check_envelope(envelope: Any, method: str, http_status: int | None = 200) -> Any:
    """Raise the envelope's error, or return its ``data`` (None when absent)."""
    err = error_for(envelope, method, http_status)
    if err is not None:
        raise err
    return envelope.get("data")
