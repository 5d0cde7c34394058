"""The PayoutRail of each configured provider, through the Runtime (built once per process by the
provider's descriptor, providers/registry.py), and our stored payouts as a rail may need them:

- ``request(key)``: the stored payout's parameters, so a ZaleyCash ``find()`` can probe by re-sending the
  same operation after a restart;
- ``save_ref(key, ref)`` / ``load_ref(key)``: the provider's id (Paysera's transfer id), kept in
  ``payouts.provider_ref``.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text

from core.runtime import Runtime
from providers.payouts import PayoutRail, PayoutRequest


def request_for(row: Any) -> PayoutRequest:
    """The PayoutRequest of a stored payout (a row with idempotency_key, amount, currency, destination)."""
    return PayoutRequest(key=row.idempotency_key, amount=plain(row.amount), currency=row.currency,
                         destination=row.destination, description=f"exsync payout {row.idempotency_key}")


def plain(amount: Decimal) -> Decimal:
    """Numeric(38,18) without its trailing zeros and never in exponent form (100, 91.8)."""
    return amount.quantize(Decimal(1)) if amount == amount.to_integral() else amount.normalize()


class StoredPayouts:
    """providers.descriptor.PayoutStore over the ``payouts`` table."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def request(self, key: str) -> PayoutRequest | None:
        with self.runtime.db.session() as s:
            row = s.execute(text("SELECT idempotency_key, amount, currency, destination FROM payouts "
                                 "WHERE idempotency_key = :k"), {"k": key}).first()
        if row is None or row.amount is None or not row.destination:
            return None
        return request_for(row)

    def save_ref(self, key: str, ref: str) -> None:
        with self.runtime.db.session() as s:
            s.execute(text("UPDATE payouts SET provider_ref = :ref WHERE idempotency_key = :k"),
                      {"ref": str(ref), "k": key})

    def load_ref(self, key: str) -> str | None:
        with self.runtime.db.session() as s:
            return s.execute(text("SELECT provider_ref FROM payouts WHERE idempotency_key = :k"),
                             {"k": key}).scalar()


def rail_for(runtime: Runtime, name: str) -> PayoutRail:
    """The rail of provider ``name`` (one per process: clients pool connections and cache tokens)."""
    return runtime.rail(name, StoredPayouts(runtime))
