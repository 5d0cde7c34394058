"""replay and dismiss inbox events (failed or dead), with their audit rows."""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import select, update

from core import clock
from core.runtime import Runtime
from models.states import INBOX_REPLAYABLE, AuditAction, InboxState, OperatorRole
from models.tables import InboxEvent
from worker.actions.audit import Actor, Refused, reason_of, record, require


def replay(runtime: Runtime, actor: Actor, event_ids: Iterable[int] | None, reason: str | None) -> list[int]:
    """Put events back to ``received`` with fresh attempts (all failed and dead ones when ``event_ids`` is
    None; a processed event is left alone); returns the ids, for the caller to enqueue after the commit.

    They are due at once (``next_attempt_at`` = now), so beat's inbox sweep enqueues them at its next run
    (within 30 s) even when nobody enqueues them now; with NULL they waited ``inbox_retry_after`` after
    the event's *receipt* too (67 s were seen)."""
    why = reason_of(reason)
    with runtime.db.session() as s:
        require(s, actor, OperatorRole.OPERATOR)
        q = select(InboxEvent.id, InboxEvent.state, InboxEvent.attempts, InboxEvent.last_error).with_for_update()
        if event_ids is not None:
            q = q.where(InboxEvent.id.in_(list(event_ids)), InboxEvent.state != InboxState.PROCESSED)
        else:
            q = q.where(InboxEvent.state.in_(list(INBOX_REPLAYABLE)))
        rows = s.execute(q.order_by(InboxEvent.id)).all()
        if rows:
            s.execute(update(InboxEvent).where(InboxEvent.id.in_([r.id for r in rows]))
                      .values(state=InboxState.RECEIVED, attempts=0, next_attempt_at=clock.now_utc()))
        for r in rows:
            record(s, actor, AuditAction.REPLAY, "inbox_event", r.id, reason=why,
                   before={"state": r.state, "attempts": r.attempts, "last_error": r.last_error},
                   after={"state": InboxState.RECEIVED.value, "attempts": 0})
    return [r.id for r in rows]


def dismiss(runtime: Runtime, actor: Actor, event_id: int, reason: str | None) -> None:
    """failed / dead → dismissed: a person decided the event needs nothing more (it leaves /stuck)."""
    why = reason_of(reason)
    with runtime.db.session() as s:
        require(s, actor, OperatorRole.OPERATOR)
        ev = s.execute(select(InboxEvent.state, InboxEvent.attempts, InboxEvent.last_error)
                       .where(InboxEvent.id == event_id).with_for_update()).first()
        if ev is None:
            raise Refused(f"no inbox event {event_id}")
        if ev.state not in INBOX_REPLAYABLE:
            raise Refused(f"inbox event {event_id} is {ev.state}: only a failed or dead event can be dismissed")
        s.execute(update(InboxEvent).where(InboxEvent.id == event_id)
                  .values(state=InboxState.DISMISSED, next_attempt_at=None))
        record(s, actor, AuditAction.DISMISS, "inbox_event", event_id, reason=why,
               before={"state": ev.state, "attempts": ev.attempts, "last_error": ev.last_error},
               after={"state": InboxState.DISMISSED.value})
