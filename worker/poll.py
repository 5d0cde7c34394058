"""Polling live bids with bid_info on a per-status ladder of delays.

Due rows of ``bid_polls`` are claimed in batches with ``FOR UPDATE SKIP LOCKED`` and leased: each gets
the batch's ``lease_token`` and its ``next_poll_at`` is pushed LEASE ahead, renewed by this process's
heartbeat (worker/leases.py) until its poll is done. So any number of workers can poll side by side, a
slow worker keeps what it claimed, and a worker that dies mid-batch delays its bids by one LEASE at most:
they are simply due again. A batch's bids are fetched concurrently, within the exchanger's rate limit,
then reconciled together in one transaction that also ends the claims (reconcile.apply_batch, as a sweep
page is: a poll costs its bid_info call and a share of a few statements, so a worker process polls about
as fast as the engine answers).
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
from worker.payouts import events as payout_events

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
        out = reconcile.apply_snapshot(session, runtime.settings, exchanger, snap, source)
        payout_events.bid_moved(session, runtime, exchanger, remote_id, out)  # sent once this commits
        return out


class Fetched(NamedTuple):
    """One bid_info answer of a batch, before it is reconciled."""

    item: PollClaim
    observed_at: datetime
    lag: float  # seconds between the poll's due time and the call
    bid: object | None = None
    vanished: bool = False  # "no bid exists": the engine deleted it
    error: str | None = None


def _fetch(runtime: Runtime, item: PollClaim) -> Fetched:
    """The network half of one poll (run on the fetch pool); no database work."""
    lag = (clock.now_utc() - item.due_at).total_seconds()
    runtime.limiter(item.exchanger).acquire()
    observed_at = clock.now_utc()
    try:
        return Fetched(item, observed_at, lag, bid=runtime.premium(item.exchanger).bid_info(id=item.remote_id))
    except NotFoundError:
        return Fetched(item, observed_at, lag, vanished=True)
    except ProviderError as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        log.warning("poll of %s/%s failed: %s", item.exchanger, item.remote_id, error)
        return Fetched(item, observed_at, lag, error=error)


def _reconcile_batch(runtime: Runtime, fetched: list[Fetched]) -> tuple[int, int]:
    """The database half of a batch, in one transaction: every answer reconciled (reconcile.apply_batch,
    a few statements per exchanger rather than a few per bid), then every claim ended: a changed bid's
    ladder was restarted by the reconcile, every other bid goes one step up its ladder.
    Returns (changed, errors)."""
    errors: dict[int, str] = {f.item.bid_id: f.error for f in fetched if f.error}
    changed: set[int] = set()
    with runtime.db.session() as session:
        by_exchanger: dict[str, list[reconcile.Snapshot]] = {}
        bid_ids: dict[tuple[str, int], int] = {}
        for f in fetched:
            bid_ids[(f.item.exchanger, f.item.remote_id)] = f.item.bid_id
            if f.vanished:
                out = reconcile.mark_vanished(session, runtime.settings, f.item.exchanger, f.item.remote_id,
                                              f.observed_at, ChangeSource.POLL)
                if out and out.changed:
                    changed.add(f.item.bid_id)
                payout_events.bid_moved(session, runtime, f.item.exchanger, f.item.remote_id, out)
            elif f.bid is not None:
                try:
                    by_exchanger.setdefault(f.item.exchanger, []).append(
                        reconcile.Snapshot.from_provider(f.bid, f.observed_at))
                except reconcile.InvalidObservation as exc:
                    errors[f.item.bid_id] = f"InvalidObservation: {exc}"[:1000]
        for exchanger, snaps in by_exchanger.items():
            res = reconcile.apply_batch(session, runtime.settings, exchanger, snaps, ChangeSource.POLL)
            changed.update(bid_ids[(exchanger, rid)] for rid, _, _ in res.changes)
            payout_events.batch_moved(session, runtime, exchanger, res.changes)  # sent once this commits
        _end_claims(runtime, session, fetched, changed, errors)
    return len(changed), len(errors)


def _end_claims(runtime: Runtime, session, fetched: list[Fetched], changed: set[int],
                errors: dict[int, str]) -> None:
    """End every claim of the batch still held under its token (a claim taken back meanwhile belongs to
    its new holder). Changed bids: their ladder restarted, the token goes. Others: the next step of the
    ladder (or the ladder of a status that another writer set meanwhile, from its first step)."""
    token = fetched[0].item.token
    ids = sorted(f.item.bid_id for f in fetched)
    rows = session.execute(text(
        "SELECT b.id, b.status, b.first_seen_at, b.archived_at, p.ladder_status, p.step FROM bid_polls p "
        "JOIN bids b ON b.id = p.bid_id WHERE p.bid_id = ANY(:ids) AND p.lease_token = :token "
        "ORDER BY p.bid_id FOR UPDATE OF p"), {"ids": ids, "token": token}).all()
    now = clock.now_utc()
    settings = runtime.settings
    done, plan = [], []
    for bid_id, status, first_seen, archived_at, ladder_status, step in rows:
        if bid_id in changed:
            done.append(bid_id)
            continue
        next_step = step + 1 if ladder_status == status else 0
        state, next_at = rules.next_poll(status, next_step, now, first_seen, settings.poll_ladder,
                                         settings.poll_give_up_after)
        if archived_at is not None:
            state, next_at = PollState.DONE, None
        plan.append((bid_id, state, next_at, next_step, status, errors.get(bid_id)))
        if state == PollState.GAVE_UP:
            log.warning("bid %s still %s after %ss: polling gave up (see /stuck)",
                        bid_id, status, settings.poll_give_up_after)
    if done:
        session.execute(text("UPDATE bid_polls SET lease_token = NULL WHERE bid_id = ANY(:ids) AND lease_token = :t"),
                        {"ids": done, "t": token})
    if plan:
        ids_, states, next_ats, steps, statuses, errs = (list(col) for col in zip(*plan, strict=True))
        session.execute(text("""
            UPDATE bid_polls p SET state = v.state, next_poll_at = v.next_at, step = v.step,
                   ladder_status = v.status, polls = p.polls + 1, last_polled_at = :now, last_error = v.error,
                   lease_token = NULL, gave_up_at = CASE WHEN v.state = :gave_up THEN :now ELSE p.gave_up_at END
            FROM unnest(CAST(:ids AS bigint[]), CAST(:states AS text[]), CAST(:next_ats AS timestamptz[]),
                        CAST(:steps AS int[]), CAST(:statuses AS text[]), CAST(:errors AS text[]))
                 AS v(bid_id, state, next_at, step, status, error)
            WHERE p.bid_id = v.bid_id AND p.lease_token = :token"""),
            {"ids": ids_, "states": states, "next_ats": next_ats, "steps": steps, "statuses": statuses,
             "errors": errs, "now": now, "gave_up": PollState.GAVE_UP, "token": token})


def poll_claims(runtime: Runtime, batch: list[PollClaim], pool: ThreadPoolExecutor | None = None) -> PollRound:
    """Poll one claimed batch (one token): fetch every bid (on ``pool``, or one after the other), then
    reconcile them and end the claims in one transaction. A batch that cannot be stored counts as errors:
    its claims run out and its bids are polled again."""
    fetched = list((pool.map if pool else map)(lambda it: _fetch(runtime, it), batch))
    try:
        changed, errors = _reconcile_batch(runtime, fetched) if fetched else (0, 0)
    except Exception:  # Postgres gone, a conflict: nothing of the batch was stored
        log.exception("poll batch of %s bids could not be stored", len(batch))
        changed, errors = 0, len(batch)
    return PollRound(claimed=len(batch), changed=changed, errors=errors, lags=[f.lag for f in fetched])


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
            with leases.hold(runtime.db, LEASES, batch[0].token, [it.bid_id for it in batch]):
                r = poll_claims(runtime, batch, pool)  # every poll ends while the batch is still renewed
            result.claimed += r.claimed
            result.changed += r.changed
            result.errors += r.errors
            result.lags += r.lags
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    return result
