"""Typed results of the signed gateway: :class:`Payout`, :class:`PayIn`, :class:`Balance`.

Each is a frozen dataclass with the fields of the contract plus ``raw`` (the object exactly as decoded:
unknown fields live there and never break parsing). Amounts are ``Decimal`` (never float), times aware
UTC ``datetime``. A card/account number is always masked, even if a server sent it in clear.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

# Scalars are read by the converters every provider shares (providers.values); re-exported here.
from providers.values import to_decimal, to_text, to_time

__all__ = [
    "PAYOUT_STATUSES",
    "FINAL_STATUSES",
    "Payout",
    "PayIn",
    "Balance",
    "format_amount",
    "mask_account",
    "to_decimal",
    "to_time",
    "unwrap",
]

PAYOUT_STATUSES = ("created", "processing", "success", "failed", "cancelled")
FINAL_STATUSES = frozenset({"success", "failed", "cancelled"})


def format_amount(value: Any, name: str = "amount") -> str:
    """An amount as the gateway's decimal string: at least two decimals, never exponent notation.

    ``Decimal("5000")`` → ``"5000.00"``, ``"12.5"`` → ``"12.50"``, ``Decimal("0.001")`` → ``"0.001"``
    (more precision is kept, never rounded away). Floats are refused: they cannot carry an amount
    exactly. A string that is not a number is passed through unchanged for the gateway to judge.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{name}: pass a Decimal, int or str, not a {type(value).__name__}")
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            return value
        if not d.is_finite():
            return value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{name}: not a finite number")
        d = value
    else:
        raise TypeError(f"{name}: pass a Decimal, int or str, not a {type(value).__name__}")
    exponent = d.as_tuple().exponent  # an int for a finite Decimal
    if isinstance(exponent, int) and exponent > -2:
        d = d.quantize(Decimal("0.01"))
    return format(d, "f")


def mask_account(value: Any) -> str | None:
    """``4111111111111111`` → ``411111******1111``; shorter numbers keep their last 4 only.

    An already masked value (it contains ``*``) is returned as it is.
    """
    if value is None:
        return None
    s = str(value)
    if "*" in s or not s:
        return s
    n = len(s)
    if n <= 4:
        return "*" * n
    if n >= 13:
        return s[:6] + "*" * (n - 10) + s[-4:]
    return "*" * (n - 4) + s[-4:]


def unwrap(body: Any) -> dict:
    """The object of an answer: the body itself, or its ``data`` when the server wraps it."""
    if isinstance(body, Mapping):
        inner = body.get("data")
        if isinstance(inner, Mapping) and "external_id" not in body:
            return dict(inner)
        return dict(body)
    return {}


@dataclass(frozen=True)
class Payout:
    """A payout as the gateway reports it (create, get, callback)."""

    external_id: str | None
    status: str | None  # created | processing | success | failed | cancelled (others kept as sent)
    amount: Decimal | None
    currency: str | None
    card_number: str | None  # masked
    failure_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Payout":
        d = unwrap(d)
        if "card_number" in d:  # never keep a clear number, not even in raw
            d["card_number"] = mask_account(d["card_number"])
        return cls(external_id=to_text(d.get("external_id")), status=to_text(d.get("status")),
                   amount=to_decimal(d.get("amount")), currency=to_text(d.get("currency")),
                   card_number=to_text(d.get("card_number")), failure_reason=to_text(d.get("failure_reason")) or None,
                   created_at=to_time(d.get("created_at")), updated_at=to_time(d.get("updated_at")), raw=d)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class PayIn:
    """A pay-in (money coming in to the shop) as the gateway reports it."""

    external_id: str | None
    status: str | None  # created | processing | success | failed | cancelled
    amount: Decimal | None
    currency: str | None
    failure_reason: str | None
    payment_url: str | None  # where the payer pays, when the gateway gives one
    created_at: datetime | None
    updated_at: datetime | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "PayIn":
        d = unwrap(d)
        return cls(external_id=to_text(d.get("external_id")), status=to_text(d.get("status")),
                   amount=to_decimal(d.get("amount")), currency=to_text(d.get("currency")),
                   failure_reason=to_text(d.get("failure_reason")) or None, payment_url=to_text(d.get("payment_url")),
                   created_at=to_time(d.get("created_at")), updated_at=to_time(d.get("updated_at")), raw=d)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class Balance:
    """The shop's balance: ``available`` in the shop's one ``currency``."""

    available: Decimal | None
    currency: str | None
    shop_code: str | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Balance":
        d = unwrap(d)
        amount = d.get("balance", d.get("available", d.get("amount")))
        return cls(available=to_decimal(amount), currency=to_text(d.get("currency")),
                   shop_code=to_text(d.get("shop_code")),
                   raw=d)
