"""Polling live bids with bid_info on a per-status ladder of delays.

Due rows of ``bid_polls`` are claimed in batches with ``FOR UPDATE SKIP LOCKED`` and leased: each gets
the batch's ``lease_token`` and its ``next_poll_at`` is pushed LEASE ahead, renewed by this process's
heartbeat (worker/leases.py) until its poll is done. So any number of workers can poll side by side, a
slow worker keeps what it claimed, and a worker that dies mid-batch delays its bids by one LEASE at most:
they are simply due again. Bids are fetched concurrently, within the exchanger's rate limit, and each
answer is reconciled in its own short transaction that also ends the claim.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import text

from core import clock
from core.runtime import Runtime
from models import statuses as rules
from models.states import ChangeSource, PollState
from providers.errors import NotFoundError, ProviderError
from worker import leases, reconcile

log = logging.getLogger("exsync.poll")

LEASE = timedelta(seconds=15)  # a dead poller's bids are due again within this (plus one beat interval)
FETCH_THREADS = 16

LEASES = leases.Kind("bid_polls", """
    UPDATE bid_polls SET next_poll_at = greatest(next_poll_at, :until)
    WHERE bid_id = ANY(:ids) AND lease_token = ANY(:tokens) RETURNING bid_id""", LEASE.total_seconds())


class PollClaim(NamedTuple):
    bid_id: int
    exchanger: str
    remote_id: int
    status: str
    step: int
    due_at: datetime
    token: str  # the claim's fencing token


@dataclass
class PollRound:
    claimed: int = 0
    changed: int = 0
    errors: int = 0
    lags: list[float] = field(default_factory=list)  # seconds between due time and poll, for metrics/bench


def claim_due(runtime: Runtime, now: datetime, limit: int) -> list[PollClaim]:
    """Lease up to ``limit`` due polls (an expired claim of a dead worker is simply due again)."""
    token = leases.new_token()
    with runtime.db.session() as session:
        rows = session.execute(text("""
            WITH due AS (
                SELECT bid_id, next_poll_at FROM bid_polls
                WHERE state = :active AND next_poll_at <= :now
                ORDER BY next_poll_at LIMIT :limit FOR UPDATE SKIP LOCKED)
            UPDATE bid_polls p SET next_poll_at = :lease, lease_token = :token
            FROM due, bids b
            WHERE p.bid_id = due.bid_id AND b.id = p.bid_id
            RETURNING p.bid_id, p.exchanger, b.remote_id, b.status, p.step, due.next_poll_at"""),
            {"now": now, "limit": limit, "lease": now + LEASE, "token": token, "active": PollState.ACTIVE}).all()
    return [PollClaim(r.bid_id, r.exchanger, r.remote_id, r.status, r.step, r.next_poll_at, token) for r in rows]


def refresh(runtime: Runtime, exchanger: str, remote_id: int,
            source: str = ChangeSource.POLL) -> reconcile.Outcome | None:
    """Read one bid with bid_info and reconcile it (also used by `exsync` operator commands)."""
    runtime.limiter(exchanger).acquire()
    observed_at = clock.now_utc()
    try:
        bid = runtime.premium(exchanger).bid_info(id=remote_id)
    except NotFoundError:
        with runtime.db.session() as session:
            return reconcile.mark_vanished(session, runtime.settings, exchanger, remote_id, observed_at, source)
    snap = reconcile.Snapshot.from_provider(bid, observed_at)
    with runtime.db.session() as session:
        return reconcile.apply_snapshot(session, runtime.settings, exchanger, snap, source)


def _after_poll(runtime: Runtime, session, item: PollClaim, error: str | None) -> None:
    """Unchanged status: the next step of the ladder, and the claim ends. (A change restarted the ladder.)"""
    bid_id, step = item.bid_id, item.step
    now = clock.now_utc()
    row = session.execute(text(
        "SELECT b.status, b.first_seen_at, b.archived_at, p.ladder_status FROM bids b "
        "JOIN bid_polls p ON p.bid_id = b.id WHERE b.id = :id AND p.lease_token = :token FOR UPDATE OF p"),
        {"id": bid_id, "token": item.token}).first()
    if row is None:  # the claim was taken back (this worker was too slow): its new holder schedules it
        return
    status, first_seen, archived_at, ladder_status = row
    next_step = step + 1 if ladder_status == status else 0
    state, next_at = rules.next_poll(status, next_step, now, first_seen, runtime.settings.poll_ladder,
                                     runtime.settings.poll_give_up_after)
    if archived_at is not None:
        state, next_at = PollState.DONE, None
    session.execute(text("""
        UPDATE bid_polls SET state = :state, next_poll_at = :next_at, step = :step, ladder_status = :status,
               polls = polls + 1, last_polled_at = :now, last_error = :error, lease_token = NULL,
               gave_up_at = CASE WHEN :gave_up THEN :now ELSE gave_up_at END
        WHERE bid_id = :id"""),
        {"state": state, "next_at": next_at, "step": next_step, "status": status, "now": now,
         "error": error, "id": bid_id, "gave_up": state == PollState.GAVE_UP})
    if state == PollState.GAVE_UP:
        log.warning("bid %s still %s after %ss: polling gave up (see /stuck)",
                    bid_id, status, runtime.settings.poll_give_up_after)


def _poll_one(runtime: Runtime, item: PollClaim) -> tuple[bool, bool, float]:
    """One poll: bid_info, then one transaction that reconciles the answer and schedules the next poll."""
    exchanger, remote_id, due_at = item.exchanger, item.remote_id, item.due_at
    lag = (clock.now_utc() - due_at).total_seconds()
    error, bid, vanished = None, None, False
    runtime.limiter(exchanger).acquire()
    observed_at = clock.now_utc()
    try:
        bid = runtime.premium(exchanger).bid_info(id=remote_id)
    except NotFoundError:
        vanished = True
    except ProviderError as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        log.warning("poll of %s/%s failed: %s", exchanger, remote_id, error)
    changed = False
    with runtime.db.session() as session:
        if vanished:
            out = reconcile.mark_vanished(session, runtime.settings, exchanger, remote_id, observed_at,
                                          ChangeSource.POLL)
            changed = bool(out and out.changed)
        elif bid is not None:
            try:
                snap = reconcile.Snapshot.from_provider(bid, observed_at)
                changed = reconcile.apply_snapshot(session, runtime.settings, exchanger, snap,
                                                   ChangeSource.POLL).changed
            except reconcile.InvalidObservation as exc:
                error = f"InvalidObservation: {exc}"[:1000]
        if changed:  # the ladder restarted with the change; the claim ends here
            session.execute(text("UPDATE bid_polls SET lease_token = NULL WHERE bid_id = :id AND lease_token = :t"),
                            {"id": item.bid_id, "t": item.token})
        else:
            _after_poll(runtime, session, item, error)
    return changed, error is not None, lag


def poll_due(
    runtime: Runtime,
    *,
    budget_seconds: float = 30.0,
    idle_wait: float | None = None,
    pool: ThreadPoolExecutor | None = None,
    stop: threading.Event | None = None,
) -> PollRound:
    """Poll everything due, batch after batch, for at most ``budget_seconds``.

    With ``idle_wait`` the round keeps looking for newly due bids until its budget is spent (low poll
    lag between beat ticks); without it, it returns as soon as nothing is due.
    """
    result = PollRound()
    deadline = time.monotonic() + budget_seconds
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="poll")
    try:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            # Small claims keep lag low: a batch is done only when its slowest poll is.
            batch = claim_due(runtime, clock.now_utc(), min(runtime.settings.poll_batch, FETCH_THREADS * 4))
            if not batch:
                if idle_wait is None:
                    break
                (stop.wait if stop else time.sleep)(idle_wait)
                continue
            result.claimed += len(batch)
            with leases.hold(runtime.db, LEASES, batch[0].token, [it.bid_id for it in batch]) as lease:
                def one(it: PollClaim) -> tuple[bool, bool, float]:
                    try:
                        return _poll_one(runtime, it)
                    finally:
                        lease.done(it.bid_id)

                futures = [pool.submit(one, it) for it in batch]
                wait(futures)  # every poll ends while the batch is still renewed
            for f in futures:
                changed, failed, lag = f.result()
                result.changed += changed
                result.errors += failed
                result.lags.append(lag)
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    return result
