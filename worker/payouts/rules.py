"""Pure payout rules: route choice, limits, the auto-pay ceiling, error classification, retry ladders.

No I/O here: the engine feeds in the mirrored bid and the provider's answer and writes what comes out.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping, Sequence

from core.payout_config import PayoutSettings, RouteConfig, RouteRule
from models.states import AttemptOutcome, PayoutState
from providers import payouts as rail
from providers.errors import (
    AuthError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
)

# Payout states (models/states.py), by the short names the engine uses.
PENDING, SUBMITTING, SUBMITTED = PayoutState.PENDING, PayoutState.SUBMITTING, PayoutState.SUBMITTED
SUCCEEDED, FAILED, UNKNOWN = PayoutState.SUCCEEDED, PayoutState.FAILED, PayoutState.UNKNOWN
NEEDS_REVIEW, CANCELLED, PARKED = PayoutState.NEEDS_REVIEW, PayoutState.CANCELLED, PayoutState.PARKED
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
# Operator actions and the states they may start from. Never from submitting/submitted/unknown: the
# money may be moving.
APPROVABLE = frozenset({NEEDS_REVIEW})
RETRYABLE = frozenset({FAILED, NEEDS_REVIEW, PARKED})
CANCELLABLE = frozenset({PENDING, NEEDS_REVIEW, PARKED, FAILED})

KEY_MAX = 64


def idempotency_key(exchanger: str, remote_id: int) -> str:
    """``exs-<exchanger>-<remote id>``; a long exchanger name is replaced by a hash so the key stays ≤ 64."""
    key = f"exs-{exchanger}-{int(remote_id)}"
    if len(key) <= KEY_MAX:
        return key
    return f"exs-{hashlib.sha256(exchanger.encode()).hexdigest()[:16]}-{int(remote_id)}"


# -- creating a payout from the mirrored bid -------------------------------------------------------

@dataclass(frozen=True)
class BidView:
    """What the rules read of a mirrored bid."""

    exchanger: str
    remote_id: int
    status: str
    amount_get: Decimal | None
    currency_code_get: str | None
    psys_get: str | None = None
    request_fields: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class NewPayout:
    state: str  # pending | needs_review
    provider: str | None
    amount: Decimal | None
    currency: str | None
    destination: str | None
    reason: str | None = None  # why it waits for a person


def choose_rule(route: RouteConfig, currency: str | None, psys_get: str | None = None) -> RouteRule | None:
    """The first rule of the route for this receive currency (and psys_get, when the rule names one)."""
    if not currency:
        return None
    cur = currency.strip().upper()
    for r in route.rules:
        if r.currency != cur:
            continue
        if r.psys_get is not None and (psys_get or "").strip().lower() != r.psys_get.strip().lower():
            continue
        return r
    return None


def check_limits(rule: RouteRule, amount: Decimal) -> str | None:
    """None when the amount is inside the rule's limits, else the reason."""
    if rule.min_amount is not None and amount < rule.min_amount:
        return f"amount {amount.normalize():f} is below the route's min_amount {rule.min_amount}"
    if rule.max_amount is not None and amount > rule.max_amount:
        return f"amount {amount.normalize():f} is above the route's max_amount {rule.max_amount}"
    return None


def above_ceiling(route: RouteConfig, amount: Decimal) -> bool:
    return route.auto_pay_ceiling is not None and amount > route.auto_pay_ceiling


def approvals_required(route: RouteConfig, amount: Decimal | None) -> int:
    """Distinct approvers a payout of ``amount`` needs before its first send (four-eyes); 0: none."""
    if route.approval_above is None or amount is None or amount <= route.approval_above:
        return 0
    return route.approvers


def missing_approvals(route: RouteConfig, amount: Decimal | None, approvals: int) -> str | None:
    """Why a payout may not be sent yet for want of approvals, or None when it has what it needs."""
    needed = approvals_required(route, amount)
    if approvals >= needed:
        return None
    return (f"amount {_plain(amount)} is above approval_above {_plain(route.approval_above)}: needs {needed} "
            f"approvals by distinct approvers, has {approvals}")


def _plain(amount: Decimal | None) -> str:
    """9180 rather than 9180.000000000000000000 (the column's scale)."""
    return "-" if amount is None else format(amount.normalize(), "f")


def decide(route: RouteConfig, bid: BidView) -> NewPayout:
    """The payout a bid in a trigger status gets: pending, or needs_review with the reason."""
    amount, currency = bid.amount_get, (bid.currency_code_get or "").strip().upper() or None
    rule = choose_rule(route, currency, bid.psys_get)
    if rule is None:
        return NewPayout(NEEDS_REVIEW, None, amount, currency, None,
                         f"no route rule of {route.exchanger!r} pays currency {currency!r}"
                         + (f" via {bid.psys_get!r}" if bid.psys_get else ""))
    fields = bid.request_fields or {}
    raw_dest = fields.get(rule.destination_field)
    dest = str(raw_dest).strip() if raw_dest is not None else ""
    if not dest:
        return NewPayout(NEEDS_REVIEW, rule.provider, amount, currency, None,
                         f"the bid has no {rule.destination_field!r} in its request fields (destination)")
    if amount is None or amount <= 0:
        return NewPayout(NEEDS_REVIEW, rule.provider, amount, currency, dest,
                         f"the bid has no payable amount ({amount})")
    why = check_limits(rule, amount)
    if why:
        return NewPayout(NEEDS_REVIEW, rule.provider, amount, currency, dest, why)
    four_eyes = missing_approvals(route, amount, 0)
    if four_eyes:
        return NewPayout(NEEDS_REVIEW, rule.provider, amount, currency, dest, four_eyes)
    if above_ceiling(route, amount):
        return NewPayout(NEEDS_REVIEW, rule.provider, amount, currency, dest,
                         f"amount {amount.normalize():f} is above the auto-pay ceiling {route.auto_pay_ceiling}: "
                         f"approve it")
    return NewPayout(PENDING, rule.provider, amount, currency, dest)


# -- ladders ---------------------------------------------------------------------------------------

def ladder_delay(step: int, ladder: Sequence[int], jitter: float = 0.2, rng: random.Random | None = None) -> float:
    """Seconds to wait before try ``step`` + 1 (step 0 = after the first failure); the last step repeats.

    The base delay is multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` so payouts that failed
    together do not come back together.
    """
    base = ladder[min(max(step, 0), len(ladder) - 1)]
    r = (rng or random).uniform(1 - jitter, 1 + jitter) if jitter else 1.0
    return base * r


def next_at(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


# -- classification --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Transition:
    state: str
    delay: float | None = None  # seconds until the next try (None: nothing scheduled)
    outcome: str = AttemptOutcome.ERROR  # the attempt row's outcome
    maybe_sent: bool = False  # the call may have moved money: find() before any new send
    alert: bool = False  # log a warning an operator should see
    reason: str | None = None


def from_result(result: rail.PayoutResult) -> tuple[str, str]:
    """(payout state, attempt outcome) for an answer of send() or find()."""
    if result.state == rail.SUCCEEDED:
        return SUCCEEDED, AttemptOutcome.SUCCEEDED
    if result.state == rail.FAILED:
        return FAILED, AttemptOutcome.FAILED
    return SUBMITTED, AttemptOutcome.PENDING


def error_outcome(exc: BaseException) -> str:
    if isinstance(exc, RetryableError):
        return AttemptOutcome.RETRYABLE
    if isinstance(exc, UnknownOutcomeError):
        return AttemptOutcome.UNKNOWN
    if isinstance(exc, InsufficientFundsError):
        return AttemptOutcome.INSUFFICIENT_FUNDS
    if isinstance(exc, AuthError):
        return AttemptOutcome.AUTH
    if isinstance(exc, NotFoundError):
        return AttemptOutcome.NOT_FOUND
    if isinstance(exc, PermanentError):
        return AttemptOutcome.PERMANENT
    return AttemptOutcome.ERROR


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


def classify_send_error(exc: BaseException, attempts: int, cfg: PayoutSettings,
                        rng: random.Random | None = None) -> Transition:
    """What a failed send() does to the payout. ``attempts``: sends so far, this one included."""
    outcome, why = error_outcome(exc), _describe(exc)
    if isinstance(exc, RetryableError):  # ConnectionFailedError included: nothing reached the provider
        if attempts >= cfg.max_attempts:
            return Transition(NEEDS_REVIEW, None, outcome, alert=True,
                              reason=f"retries ran out after {attempts} attempts; last: {why}")
        delay = ladder_delay(attempts - 1, cfg.retry_ladder, cfg.jitter, rng)
        if isinstance(exc, ProviderError) and exc.retry_after:
            delay = max(delay, float(exc.retry_after))
        return Transition(PENDING, delay, outcome, reason=why)
    if isinstance(exc, UnknownOutcomeError):
        return Transition(UNKNOWN, ladder_delay(0, cfg.check_ladder, cfg.jitter, rng), outcome, maybe_sent=True,
                          reason=why)
    if isinstance(exc, InsufficientFundsError):
        return Transition(PARKED, cfg.park_seconds * (1 + (rng or random).uniform(0, cfg.jitter)), outcome,
                          alert=True, reason=why)
    if isinstance(exc, AuthError):
        return Transition(NEEDS_REVIEW, None, outcome, alert=True, reason=why)
    if isinstance(exc, (PermanentError, NotFoundError)):
        return Transition(FAILED, None, outcome, alert=True, reason=why)
    # Not a provider error at all (a bug, a broken answer): do not guess whether it was sent.
    return Transition(UNKNOWN, ladder_delay(0, cfg.check_ladder, cfg.jitter, rng), outcome, maybe_sent=True,
                      alert=True, reason=why)


def classify_find_error(exc: BaseException, checks: int, cfg: PayoutSettings, current: str,
                        rng: random.Random | None = None) -> Transition:
    """A failed find() leaves the outcome as unclear as before: ask again later, or hand it to a person.

    ``current`` is the state to stay in (unknown or submitted). Never failed: the money may have moved.
    """
    outcome, why = error_outcome(exc), _describe(exc)
    if isinstance(exc, InsufficientFundsError):  # a ZaleyCash probe: park, then probe again
        return Transition(PARKED, cfg.park_seconds, outcome, maybe_sent=True, alert=True, reason=why)
    if isinstance(exc, AuthError):
        return Transition(NEEDS_REVIEW, None, outcome, maybe_sent=True, alert=True, reason=why)
    if checks >= cfg.max_checks:
        return Transition(NEEDS_REVIEW, None, outcome, maybe_sent=True, alert=True,
                          reason=f"the provider could not tell the payout's fate after {checks} checks; last: {why}")
    return Transition(current, ladder_delay(checks - 1, cfg.check_ladder, cfg.jitter, rng), outcome,
                      maybe_sent=True, reason=why)
