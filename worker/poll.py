"""Polling live bids with bid_info on a per-status ladder of delays.

Due rows of ``bid_polls`` are claimed in batches with ``FOR UPDATE SKIP LOCKED`` and leased (their
``next_poll_at`` pushed ahead by LEASE), so any number of workers can poll side by side and a worker that
dies mid-batch only delays its bids by the lease. Bids are fetched concurrently, within the exchanger's
rate limit, and each answer is reconciled in its own short transaction.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text

from models import statuses as rules
from providers.errors import NotFoundError, ProviderError
from worker import reconcile
from worker.runtime import Runtime

log = logging.getLogger("exsync.poll")

LEASE = timedelta(seconds=120)
FETCH_THREADS = 16


@dataclass
class PollRound:
    claimed: int = 0
    changed: int = 0
    errors: int = 0
    lags: list[float] = field(default_factory=list)  # seconds between due time and poll, for metrics/bench


def claim_due(runtime: Runtime, now: datetime, limit: int) -> list[tuple[int, str, int, str, int, datetime]]:
    """Lease up to ``limit`` due polls: (bid_id, exchanger, remote_id, status, step, due_at)."""
    with runtime.db.session() as session:
        rows = session.execute(text("""
            WITH due AS (
                SELECT bid_id, next_poll_at FROM bid_polls
                WHERE state = 'active' AND next_poll_at <= :now
                ORDER BY next_poll_at LIMIT :limit FOR UPDATE SKIP LOCKED)
            UPDATE bid_polls p SET next_poll_at = :lease
            FROM due, bids b
            WHERE p.bid_id = due.bid_id AND b.id = p.bid_id
            RETURNING p.bid_id, p.exchanger, b.remote_id, b.status, p.step, due.next_poll_at"""),
            {"now": now, "limit": limit, "lease": now + LEASE}).all()
    return [tuple(r) for r in rows]


def refresh(runtime: Runtime, exchanger: str, remote_id: int, source: str = "poll") -> reconcile.Outcome | None:
    """Read one bid with bid_info and reconcile it (also used by `exsync` operator commands)."""
    runtime.limiter(exchanger).acquire()
    observed_at = reconcile.now_utc()
    try:
        bid = runtime.premium(exchanger).bid_info(id=remote_id)
    except NotFoundError:
        with runtime.db.session() as session:
            return reconcile.mark_vanished(session, runtime.settings, exchanger, remote_id, observed_at, source)
    snap = reconcile.Snapshot.from_provider(bid, observed_at)
    with runtime.db.session() as session:
        return reconcile.apply_snapshot(session, runtime.settings, exchanger, snap, source)


def _after_poll(runtime: Runtime, session, bid_id: int, step: int, error: str | None) -> None:
    """Unchanged status: the next step of the ladder. (A change already restarted the ladder.)"""
    now = reconcile.now_utc()
    row = session.execute(text(
        "SELECT b.status, b.first_seen_at, b.archived_at, p.ladder_status FROM bids b "
        "JOIN bid_polls p ON p.bid_id = b.id WHERE b.id = :id FOR UPDATE OF p"), {"id": bid_id}).first()
    if row is None:
        return
    status, first_seen, archived_at, ladder_status = row
    next_step = step + 1 if ladder_status == status else 0
    state, next_at = rules.next_poll(status, next_step, now, first_seen, runtime.settings.poll_ladder,
                                     runtime.settings.poll_give_up_after)
    if archived_at is not None:
        state, next_at = "done", None
    session.execute(text("""
        UPDATE bid_polls SET state = :state, next_poll_at = :next_at, step = :step, ladder_status = :status,
               polls = polls + 1, last_polled_at = :now, last_error = :error,
               gave_up_at = CASE WHEN :state = 'gave_up' THEN :now ELSE gave_up_at END
        WHERE bid_id = :id"""),
        {"state": state, "next_at": next_at, "step": next_step, "status": status, "now": now,
         "error": error, "id": bid_id})
    if state == "gave_up":
        log.warning("bid %s still %s after %ss: polling gave up (see /stuck)",
                    bid_id, status, runtime.settings.poll_give_up_after)


def _poll_one(runtime: Runtime, item) -> tuple[bool, bool, float]:
    """One poll: bid_info, then one transaction that reconciles the answer and schedules the next poll."""
    bid_id, exchanger, remote_id, status, step, due_at = item
    lag = (reconcile.now_utc() - due_at).total_seconds()
    error, bid, vanished = None, None, False
    runtime.limiter(exchanger).acquire()
    observed_at = reconcile.now_utc()
    try:
        bid = runtime.premium(exchanger).bid_info(id=remote_id)
    except NotFoundError:
        vanished = True
    except ProviderError as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        log.info("poll of %s/%s failed: %s", exchanger, remote_id, error)
    changed = False
    with runtime.db.session() as session:
        if vanished:
            out = reconcile.mark_vanished(session, runtime.settings, exchanger, remote_id, observed_at, "poll")
            changed = bool(out and out.changed)
        elif bid is not None:
            try:
                snap = reconcile.Snapshot.from_provider(bid, observed_at)
                changed = reconcile.apply_snapshot(session, runtime.settings, exchanger, snap, "poll").changed
            except reconcile.InvalidObservation as exc:
                error = f"InvalidObservation: {exc}"[:1000]
        if not changed:
            _after_poll(runtime, session, bid_id, step, error)
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
            batch = claim_due(runtime, reconcile.now_utc(), min(runtime.settings.poll_batch, FETCH_THREADS * 4))
            if not batch:
                if idle_wait is None:
                    break
                (stop.wait if stop else time.sleep)(idle_wait)
                continue
            result.claimed += len(batch)
            for changed, failed, lag in pool.map(lambda it: _poll_one(runtime, it), batch):
                result.changed += changed
                result.errors += failed
                result.lags.append(lag)
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    return result
