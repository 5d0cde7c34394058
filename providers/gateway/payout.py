"""The signed gateway as a :class:`providers.payouts.PayoutRail`.

Our idempotency key is the gateway's ``external_id``, so the gateway itself refuses to pay twice:
``send`` of a key it already knows answers 200 with the existing payout (same parameters) or an
IdempotencyConflictError (other parameters). After an UnknownOutcomeError (5xx or read timeout on the
create) call ``find(key)``: ``None`` means the gateway never heard of it and a new ``send`` is safe.

Status mapping: ``success`` → SUCCEEDED; ``failed``/``cancelled`` → FAILED (nothing was paid);
``created``/``processing`` → PENDING. Any status this code does not know stays PENDING (with the status
in ``code``): an unknown word must never be read as final.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from providers.gateway.client import GatewayClient
from providers.gateway.errors import PayoutNotFoundError
from providers.gateway.types import Payout
from providers.payouts import FAILED, PENDING, SUCCEEDED, PayoutRequest, PayoutResult

__all__ = ["GatewayRail", "result_of", "STATE_OF"]

STATE_OF = {
    "success": SUCCEEDED,
    "failed": FAILED,
    "cancelled": FAILED,
    "created": PENDING,
    "processing": PENDING,
}


def result_of(payout: Payout) -> PayoutResult:
    """A gateway payout as the payout engine's normalised result."""
    status = payout.status or ""
    return PayoutResult(
        state=STATE_OF.get(status.lower(), PENDING),
        provider_ref=str(payout.raw.get("id") or payout.external_id or "") or None,
        code=payout.status,
        message=payout.failure_reason,
        raw=payout.raw,
    )


class GatewayRail:
    """PayoutRail over a :class:`GatewayClient`. ``callback_url``: where the gateway reports changes."""

    def __init__(self, client: GatewayClient, *, name: str = "gateway", callback_url: str | None = None) -> None:
        self.client = client
        self.name = name
        self.callback_url = callback_url

    def __repr__(self) -> str:
        return f"GatewayRail({self.name!r}, {self.client!r})"

    def balances(self) -> dict[str, Decimal]:
        """The shop's available balance, in its one currency."""
        b = self.client.balance()
        return {} if b.available is None else {(b.currency or "?").upper(): b.available}

    def send(self, request: PayoutRequest) -> PayoutResult:
        extra: dict[str, Any] = dict(request.extra)
        if request.description:
            extra.setdefault("description", request.description)
        payout, _created = self.client.create_payout(
            external_id=request.key, amount=request.amount, currency=request.currency,
            card_number=request.destination, callback_url=self.callback_url, **extra,
        )
        return result_of(payout)

    def find(self, key: str) -> PayoutResult | None:
        try:
            return result_of(self.client.get_payout(key))
        except PayoutNotFoundError:
            return None
