"""Values from outside, turned into Python values within bounds — or a ``BadValue`` naming the field.

One place for the rules every edge applies (HTTP requests, callbacks, provider answers):
- text is a ``str`` without NUL and without lone surrogates (Postgres text and jsonb refuse both, and
  ``str.encode`` raises on a surrogate), of bounded length, and a pattern is matched whole
  (``fullmatch``: ``$`` would let a trailing newline through);
- a whole number is ASCII digits only (``"²".isdigit()`` is True, ``int("²")`` fails; ``int("٣")``
  is 3) within explicit bounds;
- an amount is a plain decimal with bounded digits: ``Decimal("1e999999999")`` is cheap to make but
  formatting or quantizing it costs gigabytes;
- a time is inside years 1970–9998, so every conversion (offsets, UTC, timestamps) stays in range.

Pure functions, no I/O: usable by ``providers`` (the bottom layer) as well as by the HTTP edge.

The second half, ``to_decimal``/``to_int``/``to_bool``/``to_time``/``to_text``/``to_dict``, reads
provider answers leniently with the same bounds: a value it cannot read becomes None (the typed result
keeps the payload in ``raw``) instead of raising. The four ``providers/<name>/types.py`` use only these.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping, Pattern

__all__ = [
    "BadValue", "clean_text", "first_unclean", "text", "whole_number", "amount", "timestamp", "check_json",
    "MAX_INT_DIGITS", "MAX_FRACTION_DIGITS", "MIN_TIME", "MAX_TIME", "MAX_JSON_DEPTH",
    "to_decimal", "to_int", "to_bool", "to_time", "to_text", "to_dict",
]

# The database keeps money as Numeric(38, 18): 20 integer digits and 18 fraction digits.
MAX_INT_DIGITS = 20
MAX_FRACTION_DIGITS = 18
MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(9998, 12, 31, tzinfo=timezone.utc)  # a day's offset either way stays a valid datetime
MAX_TIME_TEXT = 64
MAX_JSON_DEPTH = 32

_UNCLEAN = re.compile("[\x00\ud800-\udfff]")
_DIGITS = re.compile(r"[0-9]{1,19}")
_DECIMAL = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?")
_UNIX = re.compile(r"[0-9]{1,12}")


class BadValue(ValueError):
    """``field``: the name as the sender wrote it; ``message``: what is wrong, fit to show the sender."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def first_unclean(value: str) -> str | None:
    """Why ``value`` cannot be stored as text ("a NUL character", "a lone surrogate"), or None."""
    m = _UNCLEAN.search(value)
    if m is None:
        return None
    return "a NUL character" if m.group() == "\x00" else "a lone surrogate (not valid Unicode)"


def clean_text(value: str, replacement: str = "\ufffd") -> str:
    """``value`` with every NUL and lone surrogate replaced: for text we keep but never judge (headers, errors)."""
    return _UNCLEAN.sub(replacement, value) if _UNCLEAN.search(value) else value


def text(value: Any, field: str, *, max_length: int, pattern: Pattern[str] | None = None,
         describe: str | None = None, strip: bool = False) -> str:
    """A string without NUL or lone surrogates, 1..max_length characters, matching ``pattern`` whole."""
    if not isinstance(value, str):
        raise BadValue(field, "must be a string")
    if strip:
        value = value.strip()
    bad = first_unclean(value)
    if bad:
        raise BadValue(field, f"must not contain {bad}")
    if not value:
        raise BadValue(field, "must not be empty")
    if len(value) > max_length:
        raise BadValue(field, f"must be at most {max_length} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise BadValue(field, describe or f"must match {pattern.pattern}")
    return value


def whole_number(value: Any, field: str, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """An int, a string of 1–19 ASCII digits, or an integral Decimal, within [minimum, maximum]."""
    if isinstance(value, bool):
        n = None
    elif isinstance(value, int):
        n = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        n = int(value)
    elif (isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 19
          and value == value.to_integral_value()):
        n = int(value)  # JSON's 1766.0 is an integer (JSON Schema agrees); the exponent is bounded first
    else:
        n = None
    if n is None or not minimum <= n <= maximum:
        raise BadValue(field, f"must be a whole number from {minimum} to {maximum}")
    return n


def amount(value: Any, field: str, *, positive: bool = True, int_digits: int = MAX_INT_DIGITS,
           fraction_digits: int = MAX_FRACTION_DIGITS) -> Decimal:
    """A decimal amount with at most ``int_digits`` + ``fraction_digits`` digits.

    Strings must be plain decimals ("100.50": no exponent, no comma, no spaces inside); ints and
    Decimals (JSON numbers parsed with ``parse_float=Decimal``) are checked by their digits before any
    arithmetic, so ``1e999999999`` is refused in microseconds. Floats are refused: they cannot carry an
    amount exactly.
    """
    shape = (f"must be a decimal number{' greater than 0' if positive else ''} with at most {int_digits} "
             f"digits before the point and {fraction_digits} after (a string such as \"100.50\")")
    if isinstance(value, bool) or isinstance(value, float):
        raise BadValue(field, shape)
    if isinstance(value, str):
        s = value.strip()
        m = _DECIMAL.fullmatch(s) if len(s) <= int_digits + fraction_digits + 64 else None
        if m is None:
            raise BadValue(field, shape)
        whole, frac = m.group(2).lstrip("0"), (m.group(3) or "").rstrip("0")
        if len(whole) > int_digits or len(frac) > fraction_digits:
            raise BadValue(field, shape)
        d = Decimal(s)  # bounded above, so exact and cheap; "100.50" keeps its two decimals
    elif isinstance(value, int):
        if abs(value) >= 10**int_digits:
            raise BadValue(field, shape)
        d = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise BadValue(field, shape)
        _, digits, exp = value.as_tuple()
        assert isinstance(exp, int)
        trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        significant, exp = len(digits) - trailing, exp + trailing  # 1.500 counts as 1.5
        if significant and (significant + exp > int_digits or -exp > fraction_digits):
            raise BadValue(field, shape)
        d = value
    else:
        raise BadValue(field, shape)
    if positive and d <= 0:
        raise BadValue(field, shape)
    return d


def timestamp(value: Any, field: str) -> datetime:
    """ISO 8601 (``Z`` or an offset; no offset = UTC) or unix seconds → aware UTC datetime in range."""
    problem = "must be a time between 1970 and 9998 (ISO 8601 or unix seconds)"
    if isinstance(value, bool):
        raise BadValue(field, problem)
    try:
        if isinstance(value, int) or (isinstance(value, str) and _UNIX.fullmatch(value.strip())):
            seconds = int(value)
            if not 0 <= seconds <= MAX_TIME.timestamp():
                raise BadValue(field, problem)
            dt = datetime.fromtimestamp(seconds, tz=timezone.utc)
        elif isinstance(value, str) and len(value) <= MAX_TIME_TEXT and not first_unclean(value):
            dt = datetime.fromisoformat(value.strip())
            dt = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        else:
            raise BadValue(field, problem)
    except (ValueError, OverflowError, OSError):
        raise BadValue(field, problem) from None
    if not MIN_TIME <= dt <= MAX_TIME:
        raise BadValue(field, problem)
    return dt


def check_json(value: Any, field: str, *, _depth: int = 0) -> None:
    """``BadValue`` when a decoded JSON value cannot be stored as jsonb: NUL or lone surrogates in a key
    or a string, non-finite numbers, or nesting deeper than ``MAX_JSON_DEPTH``."""
    if _depth > MAX_JSON_DEPTH:
        raise BadValue(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        bad = first_unclean(value)
        if bad:
            raise BadValue(field, f"contains {bad}")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise BadValue(field, "has a key that is not a string")
            bad = first_unclean(k)
            if bad:
                raise BadValue(field, f"has a key that contains {bad}")
            check_json(v, f"{field}.{k}" if len(field) < 200 else field, _depth=_depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_json(v, f"{field}[{i}]" if len(field) < 200 else field, _depth=_depth + 1)
    elif isinstance(value, float) or isinstance(value, Decimal):
        if not (value.is_finite() if isinstance(value, Decimal) else value == value and abs(value) != float("inf")):
            raise BadValue(field, "contains a number that is not finite")


# --------------------------------------------------------------------------- lenient readers (provider answers)
# Decisions, the same for every provider:
# - a comma is never a decimal separator: "1,234" is a thousand in one locale and 1.234 in another, and
#   reading it wrong is a 1000x error on money, so it is unreadable (None); spaces that group thousands
#   (" ", NBSP, narrow NBSP, thin space) are dropped;
# - NaN and ±Infinity are not numbers (None), nor are values beyond the bounds of ``amount``;
# - times: unix seconds (milliseconds when the number is above 10^11, i.e. past year 5138), or ISO 8601;
#   0 and negatives mean "unset" (None): no provider reports an event in 1970.

_GROUPING = str.maketrans("", "", " \u00a0\u202f\u2009")
_UNIX_MS = 10**11
_TRUE = frozenset({"1", "true", "yes", "y", "on", "active"})
_FALSE = frozenset({"0", "false", "no", "n", "off", "", "inactive"})
_INT_LIMIT = 2**63


def to_decimal(v: Any) -> Decimal | None:
    """``"9"``, ``9``, ``"0.00100000"``, ``"1 543 021.55"``, a ``Decimal`` → Decimal; None, bools, ``"no"``,
    ``"1,5"``, NaN, Infinity, garbage, or more digits than ``amount`` allows → None. A float (JSON decoded
    without ``parse_float=Decimal``) goes through ``repr`` so that 0.1 stays 0.1."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        v = Decimal(repr(v))
    elif isinstance(v, str):
        v = v.translate(_GROUPING)
        if not v:
            return None
    try:
        return amount(v, "value", positive=False)
    except BadValue:
        return None


def to_int(v: Any) -> int | None:
    """An int from an int, a whole-number string (``"12"``, ``"12.0"``) or an integral Decimal; else None."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if -_INT_LIMIT < v < _INT_LIMIT else None
    d = to_decimal(v)
    if d is None or d != d.to_integral_value():
        return None
    n = int(d)
    return n if -_INT_LIMIT < n < _INT_LIMIT else None


def to_bool(v: Any) -> bool | None:
    """True/False from a bool, a number (non-zero) or a word (1/0, true/false, yes/no, on/off,
    active/inactive; "" is False); anything else → None."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, Decimal)):
        return v != 0
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return None


def to_time(v: Any) -> datetime | None:
    """An aware UTC datetime from unix seconds (or milliseconds) as a number or digit string, an ISO 8601
    string (``Z`` or an offset; none = UTC) or a datetime (naive = UTC); None when it is not a time
    between 1970 and 9998, or is 0."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, datetime):
        dt = v if v.tzinfo else v.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc) if MIN_TIME <= dt <= MAX_TIME else None
    n = to_decimal(v)
    if n is None:
        if not isinstance(v, str) or not v.strip():
            return None
        try:
            return timestamp(v.strip(), "time")
        except BadValue:
            return None
    if n <= 0:
        return None
    if n > _UNIX_MS:
        n = n / 1000
    if n > Decimal(int(MAX_TIME.timestamp())):
        return None
    return datetime.fromtimestamp(float(n), tz=timezone.utc)


def to_text(v: Any) -> str | None:
    """``str(v)`` for a scalar, exactly as sent (NUL and lone surrogates included: whoever stores it checks
    it with :func:`text`, and a silent repair here would hide hostile input from that check); None for None,
    a list/dict or a boolean (JSON ``false`` is no id or word: ``"False"`` would be a value nobody sent)."""
    if v is None or isinstance(v, (dict, list, bool)):
        return None
    return v if isinstance(v, str) else str(v)


def to_dict(v: Any) -> dict:
    """A copy of a mapping; ``{}`` for anything else."""
    return dict(v) if isinstance(v, Mapping) else {}
