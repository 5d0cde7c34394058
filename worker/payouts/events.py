"""Event-driven payouts: a bid that a reconcile just moved into a payout status is handed to a Celery task
at once, instead of waiting for the payouts tick.

The reconcile callers (worker/inbox.py for callbacks, worker/poll.py, worker/sweep.py) call
:func:`bid_moved` / :func:`batch_moved` with what reconcile returned, inside their own transaction; the
task is enqueued only after that transaction COMMITS (a task that ran earlier would not see the new
status), and nothing is enqueued if it rolls back. worker/payout_callbacks.py hands over a payout that a
provider's callback made due for a check (:func:`payout_due`), and a send that ends ``succeeded`` hands
over its completion (:func:`completions`).

A hand-over is only a hint. The tasks (worker/payouts/tasks.py) re-decide everything from the mirror and
claim with the same leases and fencing tokens as the tick, so a duplicate hand-over (callback, poll and
sweep seeing the same move, a task delivered twice) finds nothing due, and a lost one (Redis down, a
worker killed before it ran it) is paid by the payouts tick, which stays the safety net.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

from sqlalchemy import event
from sqlalchemy.orm import Session

from core.runtime import Runtime

log = logging.getLogger("exsync.payouts")

CHUNK = 20  # bids per task when a sweep page moves many at once: enough tasks to spread over the threads
_PENDING = "exsync.payout_hand_over"  # Session.info key: what to enqueue when the transaction commits
# Enqueueing is best effort: a broker that is down must not hold a reconcile for long (the tick pays).
_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def triggers(runtime: Runtime, exchanger: str, status: str | None) -> bool:
    """Whether ``status`` is a payout status of an enabled route of ``exchanger``."""
    route = runtime.payouts().routes.get(exchanger)
    return route is not None and route.enabled and status in route.trigger_statuses


def bid_moved(session: Session, runtime: Runtime, exchanger: str, remote_id: int, outcome: Any) -> None:
    """After ``reconcile.apply_snapshot``: hand the bid over if it just changed into a payout status."""
    if outcome is not None and outcome.changed and triggers(runtime, exchanger, outcome.status):
        _on_commit(session, ("bids", exchanger, [remote_id]))


def batch_moved(session: Session, runtime: Runtime, exchanger: str,
                changes: Iterable[tuple[int, str | None, str]]) -> None:
    """After ``reconcile.apply_batch``: hand over the bids of its ``changes`` that moved into a payout status."""
    moved = [rid for rid, _, new in changes if triggers(runtime, exchanger, new)]
    for i in range(0, len(moved), CHUNK):
        _on_commit(session, ("bids", exchanger, moved[i:i + CHUNK]))


def payout_due(session: Session, payout_id: int) -> None:
    """A provider callback made this payout due for a check: look now rather than at the next tick."""
    _on_commit(session, ("send", None, [payout_id]))


def completions(payout_ids: Sequence[int]) -> None:
    """These payouts just succeeded: mark their bids ``success`` at once, one task each (side by side)."""
    for pid in payout_ids:
        _enqueue("complete", None, [pid])


def _on_commit(session: Session, item: tuple[str, str | None, list[int]]) -> None:
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _flush)
        event.listen(session, "after_rollback", _drop)
    pending.append(item)


def _flush(session: Session) -> None:
    if session.in_nested_transaction():  # after_commit also fires when a SAVEPOINT is released: not yet
        return
    for what, exchanger, ids in session.info.pop(_PENDING, None) or ():
        _enqueue(what, exchanger, ids)


def _drop(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _enqueue(what: str, exchanger: str | None, ids: list[int]) -> None:
    """Publish one task; never raises (it runs after a commit, and the tick is the safety net)."""
    from worker.celery_app import app
    from worker.payouts import tasks

    if not app.conf.broker_url:  # a process without a broker (a library use, a test): the tick pays
        log.debug("payout hand-over %s %s not enqueued: no broker configured", what, ids)
        return
    try:
        if what == "bids":
            tasks.pay_bids.apply_async((exchanger, ids), retry=True, retry_policy=_RETRY)
        elif what == "send":
            tasks.send_payouts.apply_async((ids,), retry=True, retry_policy=_RETRY)
        else:
            tasks.complete_payouts.apply_async((ids,), retry=True, retry_policy=_RETRY)
    except Exception as exc:  # the broker is away: the payouts tick finds the work in Postgres
        log.warning("payout hand-over (%s %s%s) not enqueued, the payouts tick will do it: %s", what,
                    f"{exchanger} " if exchanger else "", ids, exc)
