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
from decimal import Decimal
from typing import Any, Mapping, Self

from providers.values import to_bool, to_decimal, to_dict, to_int, to_text, to_time

__all__ = [
    "Token", "Service", "User", "Balance", "Balances", "Currency", "Transfer", "TransferStatus",
    "to_decimal", "to_int", "to_bool", "to_unix",
]


# Scalars are read by the converters every provider shares (providers.values); re-exported here.
def to_unix(v: Any) -> float | None:
    """Unix seconds (a float) from what :func:`providers.values.to_time` reads: seconds or milliseconds as
    a number or digit string, or an ISO 8601 string."""
    t = to_time(v)
    return None if t is None else t.timestamp()


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
        d = to_dict(d)
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
        d = to_dict(d)
        return cls(name=to_text(d.get("name")), alias=to_text(d.get("alias")),
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
        d = to_dict(d)
        if isinstance(d.get("user"), Mapping):  # the envelope's response wraps the user
            d = dict(d["user"])
        return cls(id=to_int(_first(d, "id", "user_id", "userId")), email=to_text(d.get("email")),
                   is_active=to_bool(_first(d, "is_active", "isActive", "active")),
                   name=to_text(_first(d, "name", "username")), raw=d)


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
        d = to_dict(d)
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
        d = to_dict(d)
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
        d = to_dict(d)
        return cls(id=to_int(_first(d, "id", "currency", "currency_id", "value")),
                   code=to_text(_first(d, "code", "alias", "iso", "symbol")),
                   name=to_text(_first(d, "name", "title", "label")), raw=d)

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
    def from_raw(cls, d: Any, **sent: Any) -> Self:
        """``sent``: what we asked for, used where the answer is silent (an empty ``response`` is common)."""
        d = to_dict(d)
        for wrapper in ("transaction", "operation", "transfer"):
            if isinstance(d.get(wrapper), Mapping):
                d = {**d, **d[wrapper]}
        op = _first(d, "operation_id", "operationId")
        return cls(operation_id=to_text(op if op is not None else sent.get("operation_id")),
                   transaction_id=to_text(_first(d, "transaction_id", "transactionId", "id")),
                   user_id=to_int(_first(d, "user_id", "userId", "user")) or sent.get("user_id"),
                   currency=to_int(d.get("currency")) if d.get("currency") is not None else sent.get("currency"),
                   amount=to_decimal(d.get("amount")) if d.get("amount") is not None else sent.get("amount"),
                   status=to_text(_first(d, "status", "state")), raw=d)


@dataclass(frozen=True)
class TransferStatus(Transfer):
    """The answer of the (configurable) transfer-status endpoint; same fields as :class:`Transfer`."""

