"""Typed results of the ZaleyCash API v2.

Every result is a frozen dataclass holding the fields we use plus ``raw``: the ``response`` payload exactly
as decoded (unknown fields are kept there and never break parsing). Amounts become ``Decimal`` (never
float), ids and currency codes ``int``. Only a few response shapes are public, so every parser accepts
the plausible variants (a list or a ``{"items": [...]}`` wrapper, camelCase or snake_case names) and
leaves a field ``None`` when it is absent rather than failing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

__all__ = [
    "Token", "Service", "User", "Balance", "Balances", "Currency", "Transfer", "TransferStatus",
    "to_decimal", "to_int", "to_bool", "to_unix",
]


# --------------------------------------------------------------------------- scalar coercion
def _s(v: Any) -> str | None:
    if v is None or isinstance(v, (dict, list)):
        return None
    return str(v)


def to_decimal(v: Any) -> Decimal | None:
    """``150.25``, ``"150.25"``, ``150``, ``Decimal`` → Decimal; None, "", garbage → None."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, Decimal):
        return v if v.is_finite() else None
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):  # only if someone decoded JSON without parse_float=Decimal
        return Decimal(repr(v))
    if not isinstance(v, str):
        return None
    s = v.strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def to_int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    d = to_decimal(v)
    if d is None or d != d.to_integral_value():
        return None
    return int(d)


def to_bool(v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, Decimal)):
        return v != 0
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("1", "true", "yes", "y", "on", "active"):
            return True
        if s in ("0", "false", "no", "n", "off", "", "inactive"):
            return False
    return None


def to_unix(v: Any) -> float | None:
    """Unix seconds from a number (seconds, or milliseconds when it is that large) or an ISO-8601 string."""
    if v is None or isinstance(v, bool):
        return None
    d = to_decimal(v)
    if d is not None:
        f = float(d)
        return f / 1000.0 if f > 1e11 else f
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    return None


def _dict(v: Any) -> dict:
    return dict(v) if isinstance(v, Mapping) else {}


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def _items(v: Any, *wrappers: str) -> list:
    """A list payload, whether sent bare, wrapped (``{"items": [...]}``) or as a dict keyed by id."""
    if isinstance(v, list):
        return v
    if isinstance(v, Mapping):
        for w in (*wrappers, "items", "data", "list"):
            if isinstance(v.get(w), list):
                return v[w]
        return [x if isinstance(x, Mapping) else {"id": k, "name": x} for k, x in v.items()]
    return []


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Token:
    """``POST token``. ``access_token`` is a secret: it is left out of ``repr``."""

    access_token: str = field(repr=False)
    expires_at: float | None  # unix seconds
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Token":
        d = _dict(d)
        tok = _first(d, "access_token", "accessToken", "token")
        return cls(access_token="" if tok is None else str(tok),
                   expires_at=to_unix(_first(d, "expires_at", "expiresAt", "expires")), raw=d)

    @property
    def expires(self) -> datetime | None:
        return None if self.expires_at is None else datetime.fromtimestamp(self.expires_at, timezone.utc)


@dataclass(frozen=True)
class Service:
    """One entry of ``GET services``: an advertising platform ZaleyCash tops up."""

    name: str | None
    alias: str | None
    need_oauth: bool | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Service":
        d = _dict(d)
        return cls(name=_s(d.get("name")), alias=_s(d.get("alias")),
                   need_oauth=to_bool(_first(d, "need_oauth", "needOauth")), raw=d)

    @staticmethod
    def list_from_raw(v: Any) -> "list[Service]":
        return [Service.from_raw(x) for x in _items(v, "services")]


@dataclass(frozen=True)
class User:
    """``{user: {id, email, is_active}}`` from ``GET user``, ``POST user`` and ``POST user/children``."""

    id: int | None
    email: str | None
    is_active: bool | None
    name: str | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "User":
        d = _dict(d)
        if isinstance(d.get("user"), Mapping):  # the envelope's response wraps the user
            d = dict(d["user"])
        return cls(id=to_int(_first(d, "id", "user_id", "userId")), email=_s(d.get("email")),
                   is_active=to_bool(_first(d, "is_active", "isActive", "active")),
                   name=_s(_first(d, "name", "username")), raw=d)


@dataclass(frozen=True)
class Balance:
    """One currency of ``GET user/balance``: ``{currency, balance, creditLimit, originalBalance}``."""

    currency: int | None
    balance: Decimal | None
    credit_limit: Decimal | None
    original_balance: Decimal | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Balance":
        d = _dict(d)
        return cls(currency=to_int(_first(d, "currency", "currency_id", "currencyId")),
                   balance=to_decimal(d.get("balance")),
                   credit_limit=to_decimal(_first(d, "creditLimit", "credit_limit")),
                   original_balance=to_decimal(_first(d, "originalBalance", "original_balance")), raw=d)


@dataclass(frozen=True)
class Balances:
    """``GET user/balance``: the agent user and one :class:`Balance` per currency."""

    user: User | None
    balances: tuple[Balance, ...]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Balances":
        if isinstance(d, list):
            d = {"balances": d}
        d = _dict(d)
        user = User.from_raw(d["user"]) if isinstance(d.get("user"), Mapping) else None
        return cls(user=user, balances=tuple(Balance.from_raw(x) for x in _items(d.get("balances"))), raw=d)

    def get(self, currency: int) -> Balance | None:
        """The balance in ``currency`` (its ZaleyCash int code), or None when not listed."""
        for b in self.balances:
            if b.currency == currency:
                return b
        return None

    def __iter__(self):
        return iter(self.balances)


@dataclass(frozen=True)
class Currency:
    """One entry of ``GET money/currencies`` (its exact shape is not public: id plus whatever names come)."""

    id: int | None
    code: str | None
    name: str | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Currency":
        d = _dict(d)
        return cls(id=to_int(_first(d, "id", "currency", "currency_id", "value")),
                   code=_s(_first(d, "code", "alias", "iso", "symbol")),
                   name=_s(_first(d, "name", "title", "label")), raw=d)

    @staticmethod
    def list_from_raw(v: Any) -> "list[Currency]":
        return [Currency.from_raw(x) for x in _items(v, "currencies")]


@dataclass(frozen=True)
class Transfer:
    """``POST money/transfer/internal``: what ZaleyCash recorded (fields absent from the answer are None)."""

    operation_id: str | None
    transaction_id: str | None  # ZaleyCash's own id of the money operation, when it sends one
    user_id: int | None
    currency: int | None
    amount: Decimal | None
    status: str | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any, **sent: Any) -> "Transfer":
        """``sent``: what we asked for, used where the answer is silent (an empty ``response`` is common)."""
        d = _dict(d)
        for wrapper in ("transaction", "operation", "transfer"):
            if isinstance(d.get(wrapper), Mapping):
                d = {**d, **d[wrapper]}
        op = _first(d, "operation_id", "operationId")
        return cls(operation_id=_s(op if op is not None else sent.get("operation_id")),
                   transaction_id=_s(_first(d, "transaction_id", "transactionId", "id")),
                   user_id=to_int(_first(d, "user_id", "userId", "user")) or sent.get("user_id"),
                   currency=to_int(d.get("currency")) if d.get("currency") is not None else sent.get("currency"),
                   amount=to_decimal(d.get("amount")) if d.get("amount") is not None else sent.get("amount"),
                   status=_s(_first(d, "status", "state")), raw=d)


@dataclass(frozen=True)
class TransferStatus(Transfer):
    """The answer of the (configurable) transfer-status endpoint; same fields as :class:`Transfer`."""

