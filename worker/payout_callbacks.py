"""The inbox handler of every payout provider's callbacks (``POST /webhooks/<type>/<name>``).

A callback is a hint, never the truth: its status never settles a payout. The handler asks the
provider's descriptor (providers/registry.py) which payout the stored payload names — the provider's
own id (``payouts.provider_ref``) first, then our idempotency key — and only makes that payout due for
an immediate check, handed to a task as soon as the event commits (worker/payouts/events.py; the tick
if that enqueue is lost); its ``find()`` re-reads the payout from the provider, which alone decides the state.

Only payouts in ``submitted`` or ``unknown`` are pulled forward (``next_attempt_at = now``). Any other
state (pending, submitting — the engine is talking to the provider right now and sets its own next check —,
parked, final, needs_review) is left alone and the event is processed with a note; so is a payout we do
not know. worker.inbox dispatches here for every registered provider type.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core import clock
from core.runtime import Runtime
from models import InboxEvent
from models.states import PayoutState
from providers import registry
from providers.descriptor import HintRefused
from worker.inbox import EventRejected
from worker.payouts import events as payout_events

CHECKABLE = (PayoutState.SUBMITTED, PayoutState.UNKNOWN)  # a hint may pull these forward, nothing else


def _make_due(session: Session, provider: str, where: str, params: dict[str, Any], what: str) -> str:
    now = clock.now_utc()
    row = session.execute(text(f"""
        UPDATE payouts SET next_attempt_at = :now, updated_at = :now
        WHERE provider = :provider AND {where} AND state = ANY(:checkable)
        RETURNING id, state"""), {**params, "now": now, "provider": provider, "checkable": list(CHECKABLE)}).first()
    if row is not None:
        payout_events.payout_due(session, row.id)  # checked by a task once this commits, not at the next tick
        return f"payout {row.id} ({row.state}) due for a check now"
    other = session.execute(text(f"SELECT id, state FROM payouts WHERE provider = :provider AND {where}"),
                            {**params, "provider": provider}).first()
    if other is None:
        return f"no payout for {what} (ignored)"
    return f"payout {other.id} is {other.state}: nothing to do"


def handle(runtime: Runtime, session: Session, event: InboxEvent) -> str:
    """Make the payout an event names due for a check. ``event.provider`` is the provider type,
    ``event.endpoint`` the configured provider's name."""
    desc = registry.get(event.provider)
    cfg = runtime.payouts().providers.get(event.endpoint)
    if desc is None or desc.callbacks is None or cfg is None or cfg.type != event.provider:
        raise EventRejected(f"{event.provider} provider {event.endpoint!r} is no longer configured")
    try:
        hint = desc.callbacks.hint(event.payload or {})
    except HintRefused as exc:
        raise EventRejected(str(exc)) from None
    if hint.provider_ref is not None:
        found = session.execute(text("SELECT 1 FROM payouts WHERE provider = :p AND provider_ref = :ref"),
                                {"p": cfg.name, "ref": hint.provider_ref}).first()
        if found is not None:
            return _make_due(session, cfg.name, "provider_ref = :ref", {"ref": hint.provider_ref}, hint.label)
    if hint.key is not None:
        return _make_due(session, cfg.name, "idempotency_key = :key", {"key": hint.key}, hint.label)
    return f"no payout for {hint.label} (ignored)"
