"""approve, retry, cancel a payout: the role check, the state change (worker/payouts/queries.py), the four-eyes
approvals and the audit row, in one transaction.

Four-eyes (``approval_above``/``approvers`` in the route's section): a payout above the amount is sent only
once that many distinct approvers approved it; the approvals that count are those of approvers who did not
retry it (``models.operators.COUNTED_APPROVALS``, which the engine checks again right before the first send).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core import clock
from core.runtime import Runtime
from models.operators import COUNTED_APPROVALS, PayoutApproval
from models.states import AuditAction, OperatorRole
from worker.actions.audit import Actor, Refused, reason_of, record, require
from worker.payouts import queries, rules

SNAPSHOT = "state, attempts, checks, last_error, approved_by, next_attempt_at"


def _snapshot(session: Session, payout_id: int) -> dict[str, Any]:
    row = session.execute(text(f"SELECT {SNAPSHOT} FROM payouts WHERE id = :id FOR UPDATE"),
                          {"id": payout_id}).mappings().first()
    if row is None:
        raise Refused(f"no payout {payout_id}")
    return dict(row)


def counted_approvals(session: Session, payout_id: int) -> int:
    query = text(f"SELECT {COUNTED_APPROVALS.format(payout=':id')}")
    return int(session.execute(query, {"id": payout_id}).scalar_one())


def required_approvals(runtime: Runtime, session: Session, payout_id: int) -> int:
    """How many distinct approvers this payout needs (at least one: approving is one approval)."""
    row = session.execute(text("SELECT exchanger, amount FROM payouts WHERE id = :id"), {"id": payout_id}).one()
    route = runtime.payouts().routes.get(row.exchanger)
    return max(1, rules.approvals_required(route, row.amount) if route is not None else 1)


def approve(runtime: Runtime, actor: Actor, payout_id: int, reason: str | None) -> str:
    """Record one approval; the payout is queued (pending, or unknown when a send may have reached the
    provider) once it has every approval its route needs. Returns its state."""
    why = reason_of(reason)
    with runtime.db.session() as s:
        op = require(s, actor, OperatorRole.APPROVER)
        before = _snapshot(s, payout_id)
        if before["state"] not in rules.APPROVABLE:
            raise Refused(f"payout {payout_id} is {before['state']}: only a payout in needs_review can be approved")
        if op is None:
            raise Refused("approving needs a named approver: give --by NAME")
        retried = s.execute(text("""SELECT 1 FROM audit_events WHERE object_type = 'payout' AND object_id = :id
                                    AND action = :retry AND actor = :name LIMIT 1"""),
                            {"id": str(payout_id), "retry": AuditAction.RETRY, "name": op.name}).first()
        if retried:
            raise Refused(f"{op.name} retried payout {payout_id}: another approver must approve it")
        added = s.execute(pg_insert(PayoutApproval).values(
            payout_id=payout_id, operator_id=op.id, operator=op.name, reason=why, at=clock.now_utc(),
        ).on_conflict_do_nothing().returning(PayoutApproval.id)).first()
        if added is None:
            raise Refused(f"{op.name} already approved payout {payout_id}: another approver must approve it")
        have, need = counted_approvals(s, payout_id), required_approvals(runtime, s, payout_id)
        if have >= need:
            state = queries.approve(s, payout_id, op.name, clock.now_utc())
        else:
            state = before["state"]
            names = s.execute(text("SELECT string_agg(operator, ', ' ORDER BY id) FROM payout_approvals "
                                   "WHERE payout_id = :id"), {"id": payout_id}).scalar()
            s.execute(text("UPDATE payouts SET last_error = :e, updated_at = :now WHERE id = :id"),
                      {"id": payout_id, "now": clock.now_utc(),
                       "e": f"approved by {have} of {need} distinct approvers ({names}): waiting for "
                            f"{need - have} more"})
        after = _snapshot(s, payout_id)
        after["approvals"] = f"{have}/{need}"
        record(s, actor, AuditAction.APPROVE, "payout", payout_id, reason=why, before=before, after=after)
    return state


def retry(runtime: Runtime, actor: Actor, payout_id: int, reason: str | None) -> str:
    """failed / needs_review / parked → pending with its attempts reset (unknown first if money may have
    moved). The operator who retries a payout cannot count as one of its approvers."""
    why = reason_of(reason)
    with runtime.db.session() as s:
        require(s, actor, OperatorRole.OPERATOR)
        before = _snapshot(s, payout_id)
        state = queries.retry(s, payout_id, clock.now_utc())
        record(s, actor, AuditAction.RETRY, "payout", payout_id, reason=why, before=before,
               after=_snapshot(s, payout_id))
    return state


def cancel(runtime: Runtime, actor: Actor, payout_id: int, reason: str | None) -> str:
    """Never pay it (only while no money can be moving)."""
    why = reason_of(reason)
    with runtime.db.session() as s:
        require(s, actor, OperatorRole.OPERATOR)
        before = _snapshot(s, payout_id)
        state = queries.cancel(s, payout_id, clock.now_utc(), f"cancelled by {actor.name}: {why}")
        record(s, actor, AuditAction.CANCEL, "payout", payout_id, reason=why, before=before,
               after=_snapshot(s, payout_id))
    return state
