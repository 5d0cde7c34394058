"""One interface for every payout rail (ZaleyCash, the signed gateway, Paysera).

The payout engine talks only to this interface; each provider package implements it in its
``payout.py`` on top of its own client. Two calls, both keyed by *our* idempotency key:

- ``send(PayoutRequest)``: make the payout happen. Calling it again with the same key must never pay
  twice: it either returns the state of the existing payout or raises a ``ProviderError``.
- ``find(key)``: what the provider knows about the payout with that key, or ``None`` when it has never
  heard of it (the only answer that makes a new ``send`` safe after an unknown outcome).

Errors are the ``providers.errors`` hierarchy: RetryableError (send again later), UnknownOutcomeError
(call ``find`` before anything else), InsufficientFundsError (park), PermanentError/ValidationError
(fail and show), AuthError (an operator must act).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Protocol

# The provider's view of a payout, normalised.
SUCCEEDED = "succeeded"  # money left: final
PENDING = "pending"  # accepted, still processing at the provider: ask again later
FAILED = "failed"  # the provider refused or reversed it: final, nothing was paid
STATES = frozenset({SUCCEEDED, PENDING, FAILED})


@dataclass(frozen=True)
class PayoutRequest:
    key: str  # our idempotency key, stable for the payout's whole life
    amount: Decimal
    currency: str
    destination: str  # account / wallet / card / user id at the provider
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider-specific (e.g. beneficiary name)

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError("amount must be a Decimal")
        if self.amount <= 0:
            raise ValueError("amount must be positive")
        if not self.key or len(self.key) > 64:
            raise ValueError("key must be 1..64 characters")


@dataclass(frozen=True)
class PayoutResult:
    state: str  # SUCCEEDED | PENDING | FAILED
    provider_ref: str | None = None  # the provider's own id of the payout
    code: Any = None  # provider's status or failure code
    message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    # PENDING only: the provider holds the payout but no money has moved, and ``send()`` with the same key
    # continues it (e.g. a Paysera draft whose create answer was lost: send signs it).
    unsent: bool = False

    def __post_init__(self) -> None:
        if self.unsent and self.state != PENDING:
            raise ValueError("only a pending payout can be unsent")
        if self.state not in STATES:
            raise ValueError(f"unknown payout state {self.state!r}")


class PayoutRail(Protocol):
    name: str

    def send(self, request: PayoutRequest) -> PayoutResult: ...

    def find(self, key: str) -> PayoutResult | None: ...


class BalanceRail(Protocol):
    """Optional: a rail that can tell its balance has ``balances()`` — what can be paid out now, per currency
    (ZaleyCash's balances, the gateway's shop balance, Paysera's wallet at disposal). exsync reads it on a
    schedule for /metrics and the low-balance notification; a rail without it is simply not shown."""

    def balances(self) -> Mapping[str, Decimal]: ...
