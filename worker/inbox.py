"""Processing of stored webhook events, and the sweeper that re-enqueues what Redis lost.

An event is ``received`` until a handler has applied it; a failed handler leaves it ``failed`` with a
back-off (``next_attempt_at``) and runs again; after ``inbox_max_attempts`` it is ``dead`` and waits for
``exsync inbox replay`` (worker/actions/inbox.py, audited). Received and processed are never confused (dj-stripe #832).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import clock
from core.runtime import Runtime
from models import InboxEvent
from models.states import INBOX_TO_PROCESS, ChangeSource, InboxState
from providers.errors import NotFoundError, ProviderError
from worker import reconcile
from worker.payouts import events as payout_events

log = logging.getLogger("exsync.inbox")

BACKOFF = (5, 15, 60, 300, 900, 1800, 3600)  # seconds before attempt n+1


class EventRejected(Exception):
    """The event can never be processed (unknown provider, bad payload): it goes straight to dead."""


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=BACKOFF[min(attempts - 1, len(BACKOFF) - 1)])


def _handle_premium(runtime: Runtime, session: Session, event: InboxEvent) -> str:
    """The posted status is only a hint: re-read the bid with bid_info and reconcile what it says."""
    exchanger = event.endpoint
    if exchanger not in runtime.settings.exchangers:
        raise EventRejected(f"exchanger {exchanger!r} is no longer configured")
    try:
        remote_id = int((event.payload or {})["bid_id"])
    except (KeyError, TypeError, ValueError):
        raise EventRejected("payload has no integer bid_id") from None
    runtime.limiter(exchanger).acquire()
    observed_at = clock.now_utc()
    try:
        bid = runtime.premium(exchanger).bid_info(id=remote_id)
    except NotFoundError:
        out = reconcile.mark_vanished(session, runtime.settings, exchanger, remote_id, observed_at,
                                      ChangeSource.CALLBACK, inbox_event_id=event.id)
        return "archived" if out and out.changed else "unknown bid (bid_info: no bid exists)"
    snap = reconcile.Snapshot.from_provider(bid, observed_at)
    out = reconcile.apply_snapshot(session, runtime.settings, exchanger, snap, ChangeSource.CALLBACK,
                                   inbox_event_id=event.id)
    payout_events.bid_moved(session, runtime, exchanger, remote_id, out)  # sent once this commits
    if out.created:
        return f"new bid {remote_id} ({out.status})"
    return f"{out.from_status} -> {out.status}" if out.changed else ("unchanged" if out.applied else "stale")


Handler = Callable[[Runtime, Session, InboxEvent], str]


def handler_for(provider: str) -> Handler | None:
    """The handler of an event's provider: the exchanger's here, every registered payout provider's in
    worker.payout_callbacks (looked up, not registered by an import's side effect)."""
    if provider == "premium":
        return _handle_premium
    from providers import registry

    desc = registry.get(provider)
    if desc is None or desc.callbacks is None:
        return None
    from worker import payout_callbacks  # it imports this module: loaded on first use

    return payout_callbacks.handle


def process_event(runtime: Runtime, event_id: int) -> str:
    """Apply one inbox event. Safe to call any number of times, from any number of workers."""
    with runtime.db.session() as session:
        event = session.execute(
            select(InboxEvent).where(InboxEvent.id == event_id).with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if event is None:
            # Either it does not exist or another worker holds it right now.
            exists = session.execute(select(InboxEvent.id).where(InboxEvent.id == event_id)).first()
            return "busy" if exists else "missing"
        if event.state not in INBOX_TO_PROCESS:
            return f"skipped ({event.state})"
        handler = handler_for(event.provider)
        event.attempts += 1
        try:
            if handler is None:
                raise EventRejected(f"no handler for provider {event.provider!r}")
            with session.begin_nested():  # a handler failure rolls back its own writes only
                result = handler(runtime, session, event)
        except EventRejected as exc:
            _fail(event, str(exc), dead=True, runtime=runtime)
            return f"dead: {exc}"
        except (ProviderError, reconcile.InvalidObservation) as exc:
            dead = event.attempts >= runtime.settings.inbox_max_attempts
            _fail(event, f"{type(exc).__name__}: {exc}", dead=dead, runtime=runtime)
            return f"{'dead' if dead else 'failed'}: {exc}"
        event.state = InboxState.PROCESSED
        event.processed_at = clock.now_utc()
        event.next_attempt_at = None
        event.last_error = None
        return result


def _fail(event: InboxEvent, error: str, *, dead: bool, runtime: Runtime) -> None:
    event.state = InboxState.DEAD if dead else InboxState.FAILED
    event.last_error = error[:2000]
    event.next_attempt_at = None if dead else clock.now_utc() + backoff(event.attempts)
    log.warning("inbox event %s %s after %s attempts: %s", event.id, event.state, event.attempts, error)


def due_events(runtime: Runtime, now: datetime, limit: int = 500) -> list[int]:
    """Events nobody processed in time (their queue message was lost) or whose back-off has passed.

    Each one returned gets a lease (next_attempt_at pushed ahead) so the next sweep does not enqueue
    it again while its message is still queued.
    """
    grace = timedelta(seconds=runtime.settings.inbox_retry_after)
    with runtime.db.session() as session:
        rows = session.execute(text("""
            UPDATE inbox_events SET next_attempt_at = :lease
            WHERE id IN (
                SELECT id FROM inbox_events
                WHERE state = ANY(:to_process)
                  AND ((state = :received AND next_attempt_at IS NULL AND received_at <= :stale)
                       OR next_attempt_at <= :now)
                ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
            RETURNING id"""), {"now": now, "stale": now - grace, "lease": now + grace, "limit": limit,
                               "to_process": list(INBOX_TO_PROCESS), "received": InboxState.RECEIVED}).scalars().all()
    return sorted(rows)
