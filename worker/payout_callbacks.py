"""Inbox handlers for payout-provider callbacks (providers "gateway" and "paysera").

A callback is a hint, never the truth (lessons.md, Receiving): its status never settles a payout. The
handler only finds our payout and makes it due for an immediate check; the engine's next round claims
it and its ``find()`` re-reads the payout from the provider, which alone decides the state.

- gateway: ``external_id`` is our idempotency key (the event's endpoint is the provider's name).
- paysera: the transfer id is ``payouts.provider_ref``; failing that, our key carried in the purpose
  details (``#exsync:<key>``, providers.paysera.payout.key_token).

Only payouts in ``submitted`` or ``unknown`` are pulled forward (``next_attempt_at = now``). Any other
state (pending, submitting — the engine is talking to the provider right now and sets its own next check —,
parked, final, needs_review) is left alone and the event is processed with a note; so is a key we do
not know. Imported by worker.tasks, which registers the handlers into ``worker.inbox.HANDLERS``.
"""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core import clock
from models import InboxEvent
from providers.paysera.payout import KEY_PREFIX
from worker.inbox import HANDLERS, EventRejected
from core.runtime import Runtime

CHECKABLE = ("submitted", "unknown")
_KEY_RE = re.compile(r"(?:^|\s)" + re.escape(KEY_PREFIX) + r"(\S{1,64})(?:\s|$)")


def _provider(runtime: Runtime, event: InboxEvent, kind: str) -> str:
    cfg = runtime.payouts().providers.get(event.endpoint)
    if cfg is None or cfg.type != kind:
        raise EventRejected(f"{kind} provider {event.endpoint!r} is no longer configured")
    return cfg.name


def _make_due(session: Session, provider: str, where: str, params: dict[str, Any], what: str) -> str:
    now = clock.now_utc()
    row = session.execute(text(f"""
        UPDATE payouts SET next_attempt_at = :now, updated_at = :now
        WHERE provider = :provider AND {where} AND state IN ('submitted', 'unknown')
        RETURNING id, state"""), {**params, "now": now, "provider": provider}).first()
    if row is not None:
        return f"payout {row.id} ({row.state}) due for a check now"
    other = session.execute(text(f"SELECT id, state FROM payouts WHERE provider = :provider AND {where}"),
                            {**params, "provider": provider}).first()
    if other is None:
        return f"no payout for {what} (ignored)"
    return f"payout {other.id} is {other.state}: nothing to do"


def handle_gateway(runtime: Runtime, session: Session, event: InboxEvent) -> str:
    provider = _provider(runtime, event, "gateway")
    key = (event.payload or {}).get("external_id")
    if not isinstance(key, str) or not key:
        raise EventRejected("payload has no external_id")
    return _make_due(session, provider, "idempotency_key = :key", {"key": key}, f"external_id {key!r}")


def handle_paysera(runtime: Runtime, session: Session, event: InboxEvent) -> str:
    provider = _provider(runtime, event, "paysera")
    payload = event.payload or {}
    transfer_id = payload.get("transfer_id")
    if transfer_id:
        found = session.execute(text("SELECT 1 FROM payouts WHERE provider = :p AND provider_ref = :ref"),
                                {"p": provider, "ref": str(transfer_id)}).first()
        if found is not None:
            return _make_due(session, provider, "provider_ref = :ref", {"ref": str(transfer_id)},
                             f"transfer {transfer_id}")
    m = _KEY_RE.search(str(payload.get("details") or ""))
    if m is not None:
        return _make_due(session, provider, "idempotency_key = :key", {"key": m.group(1)},
                         f"key {m.group(1)!r} (transfer {transfer_id})")
    if not transfer_id:
        raise EventRejected("payload names no transfer and carries no key")
    return f"no payout for transfer {transfer_id} (ignored)"


HANDLERS.setdefault("gateway", handle_gateway)
HANDLERS.setdefault("paysera", handle_paysera)
