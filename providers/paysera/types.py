"""Typed results of the Paysera Wallet API and Transfer API.

Every result is a frozen dataclass with the fields we use plus ``raw``: the payload exactly as decoded
(unknown fields live there and never break parsing). Optional fields are omitted by Paysera, never null:
they come back as ``None`` here. Amounts are ``Decimal`` (never float); unix times are aware UTC datetimes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterator, Mapping

# Scalars are read by the converters every provider shares (providers.values); re-exported here.
from providers.values import to_decimal, to_dict, to_int, to_text, to_time

__all__ = [
    "Money", "FailureStatus", "Transfer", "TransferPage", "CurrencyBalance", "WalletBalance", "Configuration",
    "TRANSFER_STATUSES", "DRAFT_STATUSES", "PENDING_STATUSES", "FINAL_FAILED_STATUSES", "to_decimal", "to_time",
]

# Transfer API statuses (docs/providers/paysera.md).
TRANSFER_STATUSES = ("new", "registered", "signed", "reserved", "processing", "waiting_funds",
                     "waiting_registration", "waiting_password", "done", "rejected", "revoked", "failed")
DRAFT_STATUSES = frozenset({"new"})  # created, never authorised: nothing can have been paid
PENDING_STATUSES = frozenset({"registered", "signed", "reserved", "processing", "waiting_funds",
                              "waiting_registration", "waiting_password"})
FINAL_FAILED_STATUSES = frozenset({"rejected", "revoked", "failed"})


@dataclass(frozen=True)
class Money:
    """``{"amount": "100.00", "currency": "EUR"}``."""

    amount: Decimal
    currency: str

    @classmethod
    def from_raw(cls, d: Any) -> "Money | None":
        if not isinstance(d, Mapping):
            return None
        amount = to_decimal(d.get("amount"))
        if amount is None:
            amount = to_decimal(d.get("amount_decimal"))
        currency = to_text(d.get("currency"))
        if amount is None or not currency:
            return None
        return cls(amount, currency.upper())

    def to_raw(self) -> dict[str, str]:
        return {"amount": format(self.amount, "f"), "currency": self.currency}


@dataclass(frozen=True)
class FailureStatus:
    code: str | None
    message: str | None

    @classmethod
    def from_raw(cls, d: Any) -> "FailureStatus | None":
        if not isinstance(d, Mapping) or not d:
            return None
        return cls(code=to_text(d.get("code")), message=to_text(d.get("message", d.get("description"))))


@dataclass(frozen=True)
class Transfer:
    """A transfer as the Transfer API returns it (``TransferOutput``)."""

    id: str | None
    status: str | None
    amount: Money | None
    beneficiary: dict
    payer: dict
    purpose: dict
    callback: dict | None
    created_at: datetime | None
    performed_at: datetime | None
    failure_status: FailureStatus | None
    out_commission: Money | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Transfer":
        d = to_dict(d)
        return cls(id=to_text(d.get("id")), status=to_text(d.get("status")), amount=Money.from_raw(d.get("amount")),
                   beneficiary=to_dict(d.get("beneficiary")), payer=to_dict(d.get("payer")),
                   purpose=to_dict(d.get("purpose")),
                   callback=to_dict(d.get("callback")) if isinstance(d.get("callback"), Mapping) else None,
                   created_at=to_time(d.get("created_at")), performed_at=to_time(d.get("performed_at")),
                   failure_status=FailureStatus.from_raw(d.get("failure_status")),
                   out_commission=Money.from_raw(d.get("out_commission")), raw=d)

    @property
    def details(self) -> str | None:
        """``purpose.details``: the payment details the beneficiary sees."""
        return to_text(self.purpose.get("details"))

    @property
    def reference(self) -> str | None:
        return to_text(self.purpose.get("reference"))

    @property
    def is_draft(self) -> bool:
        """Created but never authorised (``new``): invisible, moves no money, deleted if left alone."""
        return self.status in DRAFT_STATUSES

    @property
    def is_final(self) -> bool:
        return self.status == "done" or self.status in FINAL_FAILED_STATUSES


@dataclass(frozen=True)
class TransferPage:
    """One page of ``GET /transfers``: ``{"items": [...], "_metadata": {"total", "offset", "limit", …}}``."""

    items: list[Transfer]
    total: int | None
    offset: int | None
    limit: int | None
    has_next: bool
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "TransferPage":
        if isinstance(d, list):  # a bare list is tolerated
            d = {"items": d}
        d = to_dict(d)
        meta = to_dict(d.get("_metadata"))
        items = [Transfer.from_raw(x) for x in (d.get("items") or []) if isinstance(x, Mapping)]

        total, offset, limit = to_int(meta.get("total")), to_int(meta.get("offset")), to_int(meta.get("limit"))
        has_next = meta.get("has_next")
        if not isinstance(has_next, bool):
            has_next = total is not None and (offset or 0) + len(items) < total
        return cls(items=items, total=total, offset=offset, limit=limit, has_next=has_next, raw=d)

    def __iter__(self) -> Iterator[Transfer]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Transfer:
        return self.items[i]


@dataclass(frozen=True)
class CurrencyBalance:
    currency: str
    at_disposal: Decimal
    reserved: Decimal
    raw: dict = field(default_factory=dict, repr=False, compare=False)


def _balance_amount(d: Mapping, name: str) -> Decimal:
    """Prefer ``<name>_decimal`` (a decimal string); else ``<name>`` in cents (Wallet API integers)."""
    dec = to_decimal(d.get(f"{name}_decimal"))
    if dec is not None:
        return dec
    cents = to_decimal(d.get(name))
    return (cents / 100) if cents is not None else Decimal(0)


@dataclass(frozen=True)
class WalletBalance:
    """``GET /rest/v1/wallet/{id}/balance``: ``{"EUR": {"at_disposal": 1000, "reserved": 0,
    "at_disposal_decimal": "10.00", "reserved_decimal": "0.00"}, …}`` (integers are cents)."""

    wallet_id: str
    currencies: dict[str, CurrencyBalance]
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, wallet_id: Any, d: Any) -> "WalletBalance":
        d = to_dict(d)
        cur = {str(c).upper(): CurrencyBalance(str(c).upper(), _balance_amount(v, "at_disposal"),
                                               _balance_amount(v, "reserved"), dict(v))
               for c, v in d.items() if isinstance(v, Mapping)}
        return cls(wallet_id=str(wallet_id), currencies=cur, raw=d)

    def __getitem__(self, currency: str) -> CurrencyBalance:
        return self.currencies[currency.upper()]

    def at_disposal(self, currency: str) -> Decimal:
        c = self.currencies.get(currency.upper())
        return c.at_disposal if c else Decimal(0)


@dataclass(frozen=True)
class Configuration:
    minimum_password_length: int | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Configuration":
        d = to_dict(d)
        return cls(minimum_password_length=to_int(d.get("minimum_password_length")), raw=d)
