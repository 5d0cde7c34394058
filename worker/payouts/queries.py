"""Read and operator queries on payouts (list, show, approve, retry, cancel). State-guarded updates only."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from worker.payouts import rules

COLUMNS = ("id, exchanger, remote_id, idempotency_key, provider, amount, currency, destination, state, attempts, "
           "checks, maybe_sent, next_attempt_at, provider_ref, provider_status, last_error, approved_by, created_at, "
           "updated_at, completed_at, bid_completed_at, completion_attempts, completion_error, "
           "lease_token, lease_until")  # lease_token names the worker (host:pid:…) holding it now


class Refused(Exception):
    """The action is not allowed in the payout's current state (or the payout does not exist)."""


def list_payouts(session: Session, *, state: str | None = None, exchanger: str | None = None,
                 limit: int = 50) -> list[dict[str, Any]]:
    rows = session.execute(text(f"""
        SELECT {COLUMNS} FROM payouts
        WHERE (CAST(:state AS text) IS NULL OR state = :state) AND (CAST(:ex AS text) IS NULL OR exchanger = :ex)
        ORDER BY id DESC LIMIT :limit"""), {"state": state, "ex": exchanger, "limit": limit}).mappings().all()
    return [dict(r) for r in rows]


def get_payout(session: Session, payout_id: int) -> dict[str, Any] | None:
    row = session.execute(text(f"SELECT {COLUMNS} FROM payouts WHERE id = :id"), {"id": payout_id}).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["attempts_log"] = [dict(a) for a in session.execute(text("""
        SELECT n, kind, started_at, finished_at, outcome, http_status, provider_code, message
        FROM payout_attempts WHERE payout_id = :id ORDER BY n"""), {"id": payout_id}).mappings().all()]
    return out


def _current(session: Session, payout_id: int) -> str:
    state = session.execute(text("SELECT state FROM payouts WHERE id = :id FOR UPDATE"), {"id": payout_id}).scalar()
    if state is None:
        raise Refused(f"no payout {payout_id}")
    return state


def approve(session: Session, payout_id: int, by: str, now: datetime) -> str:
    """needs_review → pending (or unknown, when a send may already have reached the provider)."""
    state = _current(session, payout_id)
    if state not in rules.APPROVABLE:
        raise Refused(f"payout {payout_id} is {state}: only a payout in needs_review can be approved")
    return _requeue(session, payout_id, now, by=by, reset=False)


def retry(session: Session, payout_id: int, now: datetime, by: str | None = None) -> str:
    """failed/needs_review/parked → pending, attempts reset (unknown first if money may have moved)."""
    state = _current(session, payout_id)
    if state not in rules.RETRYABLE:
        raise Refused(f"payout {payout_id} is {state}: retry needs failed, needs_review or parked")
    return _requeue(session, payout_id, now, by=by, reset=True)


def _requeue(session: Session, payout_id: int, now: datetime, *, by: str | None, reset: bool) -> str:
    row = session.execute(text("SELECT provider, amount, destination, maybe_sent FROM payouts WHERE id = :id"),
                          {"id": payout_id}).one()  # the caller locked it a moment ago
    if not row.provider or row.amount is None or not row.destination:
        raise Refused(f"payout {payout_id} has no provider, amount or destination: fix the route or the bid, "
                      f"or cancel it")
    new = rules.UNKNOWN if row.maybe_sent else rules.PENDING
    session.execute(text("""
        UPDATE payouts SET state = :new, next_attempt_at = :now, updated_at = :now, completed_at = NULL,
               attempts = CASE WHEN :reset THEN 0 ELSE attempts END,
               checks = CASE WHEN :reset THEN 0 ELSE checks END,
               approved_by = coalesce(:by, approved_by),
               approved_at = CASE WHEN :by IS NULL THEN approved_at ELSE :now END
        WHERE id = :id"""), {"new": new, "now": now, "reset": reset, "by": by, "id": payout_id})
    return new


def cancel(session: Session, payout_id: int, now: datetime, reason: str | None = None) -> str:
    state = _current(session, payout_id)
    if state not in rules.CANCELLABLE:
        raise Refused(f"payout {payout_id} is {state}: it may be moving money, so it cannot be cancelled "
                      f"(only pending, needs_review, parked or failed)")
    if session.execute(text("SELECT maybe_sent FROM payouts WHERE id = :id"), {"id": payout_id}).scalar():
        raise Refused(f"payout {payout_id} may have reached the provider: retry it (the engine asks the "
                      f"provider first) instead of cancelling")
    session.execute(text("""UPDATE payouts SET state = :cancelled, next_attempt_at = NULL, updated_at = :now,
                            completed_at = :now, last_error = coalesce(:reason, last_error) WHERE id = :id"""),
                    {"now": now, "reason": reason, "id": payout_id, "cancelled": rules.CANCELLED})
    return rules.CANCELLED


def counts(session: Session) -> dict[str, int]:
    return dict(session.execute(text("SELECT state, count(*) FROM payouts GROUP BY state")).all())
