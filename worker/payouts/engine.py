"""The payout engine: create payouts for eligible bids, submit them, resolve unknown outcomes, complete bids.

Every step is a short transaction around at most one provider call, safe to run in any number of workers:

1. ``create_due_payouts``: one payout per bid of an enabled route in a trigger status, decided from the
   MIRRORED bid; the unique ``bid_id``/``idempotency_key`` + ON CONFLICT DO NOTHING make a second trigger
   (or a second worker) a no-op.
2. ``reap``: claims whose lease ran out (their worker died) are taken back. A ``submitting`` row with a
   send in flight becomes ``unknown`` (asked with ``find`` before any resend); one whose worker never
   started a send goes back to the state it was claimed from; a completion is due again. Every attempt
   row the dead worker left ``started`` is marked ``lost``.
3. ``submit_due``: due pending/unknown/parked/submitted rows are claimed (SKIP LOCKED) and set to
   ``submitting`` with a lease, COMMITTED, and only then is the provider called. A payout that may have
   reached the provider (``maybe_sent``) is first looked up with ``find(key)``; ``None`` is the only answer
   that allows a new ``send``. Each call is an attempt row written before the call and finished after it.
4. ``complete_due``: a succeeded payout marks its bid ``success`` on the exchanger (success_bid), then
   re-reads the bid so the mirror's history shows it.

Leases (worker/leases.py): a claim writes a fresh ``lease_token`` (the fencing token: every later write
of the claim checks it, so a worker that lost its claim changes nothing) and ``lease_until`` a short
``lease_seconds`` ahead, which this process's heartbeat renews for the whole batch while it works.

Two ways in, one set of steps: a bid that a reconcile moves into a payout status is handed over at once
(worker/payouts/events.py → tasks.py: ``create_due_payouts`` narrowed to its bids, ``submit_ids``, then
``complete_ids``), and the tick (``tick``) runs every step for whatever an event missed. Both claim the
same way, so an event and a tick (or two events) never send one payout twice.

Long waits are ``next_attempt_at``/``next_completion_at`` values scanned on each tick, never Celery ETAs.

(Over 500 lines on purpose: the four steps share the claim, the lease fencing and the attempt rows, and
reading them in one place is how one checks that money moves at most once; the pure decisions already
live in ``rules.py`` and the operator's queries in ``queries.py``.)
"""
from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core import clock
from core.config import ConfigError
from core.runtime import Runtime
from models.operators import COUNTED_APPROVALS
from models.payouts import Payout
from models.states import PAYOUT_DUE, AttemptKind, AttemptOutcome, ChangeSource, PayoutState
from providers.errors import NotFoundError, ProviderError
from providers.payouts import PayoutResult
from worker import leases
from worker.payouts import rails, rules

log = logging.getLogger("exsync.payouts")

THREADS = 8


def _now(now: datetime | None) -> datetime:
    return now or clock.now_utc()


# -- 1. creation -----------------------------------------------------------------------------------

def create_due_payouts(runtime: Runtime, now: datetime | None = None, *, exchanger: str | None = None,
                       remote_ids: list[int] | None = None) -> int:
    """Insert a payout for every eligible bid that has none; returns how many were created.

    ``exchanger`` and ``remote_ids`` narrow it to the bids an event named (worker/payouts/tasks.py).
    """
    now = _now(now)
    cfg = runtime.payouts()
    created = 0
    only = "" if remote_ids is None else "AND b.remote_id = ANY(:ids)"
    for route in cfg.routes.values():
        if not route.enabled or (exchanger is not None and route.exchanger != exchanger):
            continue
        while True:
            with runtime.db.session() as s:
                bids = s.execute(text(f"""
                    SELECT b.id, b.exchanger, b.remote_id, b.status, b.amount_get, b.currency_code_get,
                           b.psys_get, b.request_fields
                    FROM bids b
                    WHERE b.exchanger = :ex AND b.status = ANY(:st) AND b.archived_at IS NULL {only}
                      AND NOT EXISTS (SELECT 1 FROM payouts p WHERE p.bid_id = b.id)
                    ORDER BY b.id LIMIT 500"""), {"ex": route.exchanger, "st": list(route.trigger_statuses),
                                                  "ids": remote_ids}).all()
                if not bids:
                    break
                for b in bids:
                    d = rules.decide(route, rules.BidView(b.exchanger, b.remote_id, b.status, b.amount_get,
                                                          b.currency_code_get, b.psys_get, b.request_fields))
                    row = s.execute(pg_insert(Payout).values(
                        exchanger=b.exchanger, bid_id=b.id, remote_id=b.remote_id,
                        idempotency_key=rules.idempotency_key(b.exchanger, b.remote_id), provider=d.provider,
                        amount=d.amount, currency=d.currency, destination=d.destination, state=d.state,
                        next_attempt_at=now if d.state == rules.PENDING else None, last_error=d.reason,
                        created_at=now, updated_at=now,
                    ).on_conflict_do_nothing().returning(Payout.id)).first()
                    if row is not None:
                        created += 1
                        if d.state == rules.NEEDS_REVIEW:
                            log.warning("payout %s for bid %s/%s waits for a person: %s",
                                        row.id, b.exchanger, b.remote_id, d.reason)
                        else:
                            log.info("payout %s created for bid %s/%s", row.id, b.exchanger, b.remote_id)
            if len(bids) < 500:
                break
    return created


def payouts_of_bids(runtime: Runtime, exchanger: str, remote_ids: list[int], now: datetime | None = None) -> list[int]:
    """The event path's creation: the payouts of these bids, created now if they are eligible; their ids."""
    create_due_payouts(runtime, now, exchanger=exchanger, remote_ids=remote_ids)
    keys = [rules.idempotency_key(exchanger, r) for r in remote_ids]
    with runtime.db.session() as s:
        return list(s.execute(text("SELECT id FROM payouts WHERE idempotency_key = ANY(:keys) ORDER BY id"),
                              {"keys": keys}).scalars().all())


# -- 2. reaper -------------------------------------------------------------------------------------

LOST_SEND = "worker lost during a provider call (lease expired): ask the provider first"
LOST_FIND = "worker lost during a find() (lease expired): nothing was sent by it; due again"
LOST_IDLE = "worker lost before it called the provider (lease expired): due again"
LOST_COMPLETION = "worker lost during success_bid (lease expired): trying again"
_LOST_ATTEMPT = {
    AttemptKind.SUBMIT: "worker lost while this send was in flight (lease expired): the payout is unknown until the "
              "provider is asked",
    AttemptKind.FIND: "worker lost while this find() was in flight (lease expired); a find moves no money",
    AttemptKind.COMPLETE: "worker lost while this success_bid was in flight (lease expired); it is tried again "
                "(repeating it is harmless)",
}

# Both statements read the partial index on lease_until (only held claims are in it) and skip rows a live
# worker is writing this instant, so reaping costs next to nothing on every tick.
_REAP_SUBMITTING = """
    WITH lost AS (
        SELECT p.id, (SELECT a.kind FROM payout_attempts a WHERE a.payout_id = p.id AND a.outcome = :started
                      ORDER BY a.id DESC LIMIT 1) AS in_flight
        FROM payouts p WHERE p.lease_until < :now AND p.state = :submitting
        FOR UPDATE OF p SKIP LOCKED)
    UPDATE payouts p SET
        state = CASE WHEN lost.in_flight = :submit THEN :unknown ELSE coalesce(p.claimed_from, :unknown) END,
        maybe_sent = p.maybe_sent OR lost.in_flight IS NOT DISTINCT FROM :submit,
        last_error = CASE lost.in_flight WHEN :submit THEN :lost_send WHEN :find THEN :lost_find
                     ELSE :lost_idle END,
        next_attempt_at = :now, updated_at = :now, lease_token = NULL, lease_until = NULL, claimed_from = NULL
    FROM lost WHERE p.id = lost.id
    RETURNING p.id, p.state"""

_REAP_COMPLETIONS = """
    WITH lost AS (
        SELECT id FROM payouts WHERE lease_until < :now AND state <> :submitting FOR UPDATE SKIP LOCKED)
    UPDATE payouts p SET lease_token = NULL, lease_until = NULL, updated_at = :now,
        next_completion_at = CASE WHEN p.bid_completed_at IS NULL THEN :now END,
        completion_error = CASE WHEN p.bid_completed_at IS NULL THEN :lost_completion END
    FROM lost WHERE p.id = lost.id
    RETURNING p.id"""

# The states the reaper's statements name (bind parameters of both statements above and of its attempts update).
REAP_STATES = {"started": AttemptOutcome.STARTED, "lost": AttemptOutcome.LOST, "submit": AttemptKind.SUBMIT,
               "find": AttemptKind.FIND, "submitting": PayoutState.SUBMITTING, "unknown": PayoutState.UNKNOWN}


def reap(runtime: Runtime, now: datetime | None = None) -> int:
    """Take back every claim whose lease ran out (its worker died); returns how many."""
    now = _now(now)
    with runtime.db.session() as s:
        sent = s.execute(text(_REAP_SUBMITTING), {**REAP_STATES, "now": now, "lost_send": LOST_SEND,
                                                  "lost_find": LOST_FIND, "lost_idle": LOST_IDLE}).all()
        completions = s.execute(text(_REAP_COMPLETIONS), {**REAP_STATES, "now": now,
                                                          "lost_completion": LOST_COMPLETION}).scalars().all()
        ids = [r.id for r in sent] + list(completions)
        if ids:
            s.execute(text("""
                UPDATE payout_attempts SET outcome = :lost, finished_at = :now,
                       message = CASE kind WHEN :submit THEN :m_submit WHEN :find THEN :m_find ELSE :m_complete END
                WHERE payout_id = ANY(:ids) AND outcome = :started"""),
                {**REAP_STATES, "now": now, "ids": ids, "m_submit": _LOST_ATTEMPT[AttemptKind.SUBMIT],
                 "m_find": _LOST_ATTEMPT[AttemptKind.FIND], "m_complete": _LOST_ATTEMPT[AttemptKind.COMPLETE]})
    if sent:
        log.warning("took back %s payouts from a lost worker: %s", len(sent),
                    ", ".join(f"{r.id}→{r.state}" for r in sent))
    if completions:
        log.warning("took back %s bid completions from a lost worker: %s", len(completions), list(completions))
    return len(ids)


# -- 3. submission ---------------------------------------------------------------------------------

def lease_kind(runtime: Runtime) -> leases.Kind:
    """Held payout claims (sends and completions alike), renewed in one UPDATE per beat."""
    return leases.Kind("payouts", """
        UPDATE payouts SET lease_until = greatest(lease_until, :until)
        WHERE id = ANY(:ids) AND lease_token = ANY(:tokens) RETURNING id""",
        runtime.payouts().settings.lease_seconds)


def _lease_until(runtime: Runtime, now: datetime) -> datetime:
    return now + timedelta(seconds=runtime.payouts().settings.lease_seconds)


@dataclass
class Claimed:
    id: int
    prior: str  # the state before the claim
    token: str  # the claim's fencing token
    provider: str
    key: str
    row: Any  # idempotency_key, amount, currency, destination, maybe_sent, attempts, checks


def claim(runtime: Runtime, now: datetime | None = None, limit: int | None = None, *,
          ids: list[int] | None = None) -> list[Claimed]:
    """Lease due payouts (only those of ``ids`` if given): their state becomes ``submitting`` (committed
    before any provider call). A payout that is not due — held by another worker, settled — is skipped."""
    now = _now(now)
    token = leases.new_token()
    only = "" if ids is None else "AND id = ANY(:ids)"
    with runtime.db.session() as s:
        rows = s.execute(text(f"""
            WITH due AS (
                SELECT id, state FROM payouts
                WHERE state = ANY(:due) AND next_attempt_at <= :now {only}
                ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)
            UPDATE payouts p SET state = :submitting, claimed_from = due.state, lease_token = :token,
                   lease_until = :lease, updated_at = :now
            FROM due WHERE p.id = due.id
            RETURNING p.id, due.state AS prior, p.provider, p.idempotency_key, p.amount, p.currency,
                      p.destination, p.maybe_sent, p.attempts, p.checks"""),
            {"now": now, "limit": limit or runtime.payouts().settings.batch, "token": token, "ids": ids,
             "lease": _lease_until(runtime, now), "due": list(PAYOUT_DUE), "submitting": PayoutState.SUBMITTING}).all()
    return [Claimed(r.id, r.prior, token, r.provider, r.idempotency_key, r) for r in rows]


def _start_attempt(runtime: Runtime, c: Claimed, kind: str, now: datetime) -> tuple[int, int] | None:
    """Write the attempt row (outcome 'started') and count the call; None if the claim was lost.

    The lease is renewed in the same statement, so every call starts with a whole lease ahead of it.
    """
    counter = "attempts" if kind == AttemptKind.SUBMIT else "checks"
    with runtime.db.session() as s:
        count = s.execute(text(f"""
            UPDATE payouts SET {counter} = {counter} + 1, lease_until = greatest(lease_until, :until)
            WHERE id = :id AND state = :submitting AND lease_token = :token
            RETURNING {counter}"""), {"id": c.id, "token": c.token, "until": _lease_until(runtime, now),
                                      "submitting": PayoutState.SUBMITTING}).scalar()
        if count is None:
            return None
        attempt_id = s.execute(text("""
            INSERT INTO payout_attempts (payout_id, n, kind, started_at, outcome)
            VALUES (:id, (SELECT coalesce(max(n), 0) + 1 FROM payout_attempts WHERE payout_id = :id), :kind, :now,
                    :started) RETURNING id"""), {"id": c.id, "kind": kind, "now": now,
                                                 "started": AttemptOutcome.STARTED}).scalar_one()
    return attempt_id, count


def _finish(runtime: Runtime, c: Claimed, attempt_id: int, *, outcome: str, state: str, delay: float | None,
            error: str | None, maybe_sent: bool | None = None, result: PayoutResult | None = None,
            exc: BaseException | None = None) -> bool:
    """Record the call's outcome and the payout's next state, fenced by the claim's token. False: claim lost."""
    now = clock.now_utc()
    http_status = getattr(exc, "http_status", None)
    code = getattr(exc, "code", None) if exc is not None else (result.code if result else None)
    message = (str(exc) if exc is not None else (result.message if result else None))
    params = {
        "id": c.id, "token": c.token, "state": state, "now": now,
        "next_at": now + timedelta(seconds=delay) if delay is not None else None,
        "error": error[:2000] if error else None, "maybe_sent": maybe_sent,
        "ref": result.provider_ref if result else None,
        "pstatus": str(result.code) if result and result.code is not None else None,
        "final": state in rules.FINAL,
        "complete_at": now if state == rules.SUCCEEDED else None,
        "submitting": PayoutState.SUBMITTING,
    }
    with runtime.db.session() as s:
        done = s.execute(text("""
            UPDATE payouts SET state = :state, lease_token = NULL, lease_until = NULL, claimed_from = NULL,
                   next_attempt_at = :next_at, updated_at = :now,
                   last_error = :error, maybe_sent = coalesce(CAST(:maybe_sent AS boolean), maybe_sent),
                   provider_ref = coalesce(:ref, provider_ref), provider_status = coalesce(:pstatus, provider_status),
                   completed_at = CASE WHEN :final THEN :now ELSE completed_at END,
                   next_completion_at = coalesce(:complete_at, next_completion_at)
            WHERE id = :id AND state = :submitting AND lease_token = :token RETURNING id"""), params).first()
        if done is None:  # the call's own row still tells what came back, marked as not applied
            message = f"[claim lost: not applied to the payout] {message or ''}".strip()
        s.execute(text("""
            UPDATE payout_attempts SET finished_at = :now, outcome = :outcome, http_status = :http,
                   provider_code = :code, message = :message WHERE id = :aid"""),
            {"now": now, "outcome": outcome, "http": http_status, "code": None if code is None else str(code),
             "message": (message or "")[:2000] or None, "aid": attempt_id})
    if done is None:
        log.warning("payout %s: claim lost before the outcome (%s) was written; the next round asks the provider",
                    c.id, outcome)
        return False
    return True


def _after_result(runtime: Runtime, c: Claimed, aid: int, result: PayoutResult, checks: int) -> str:
    cfg = runtime.payouts().settings
    state, outcome = rules.from_result(result)
    delay = None
    error = None
    if state == rules.SUBMITTED:
        if checks >= cfg.max_checks:
            state, error = rules.NEEDS_REVIEW, f"still pending at the provider after {checks} checks"
        else:
            delay = rules.ladder_delay(checks, cfg.check_ladder, cfg.jitter)
    elif state == rules.FAILED:
        error = f"the provider reports the payout failed: {result.code} {result.message or ''}".strip()
        log.warning("payout %s failed at %s: %s", c.id, c.provider, error)
    _finish(runtime, c, aid, outcome=outcome, state=state, delay=delay, error=error, maybe_sent=True, result=result)
    return state


def _send(runtime: Runtime, c: Claimed, rail) -> str:
    cfg = runtime.payouts().settings
    started = _start_attempt(runtime, c, AttemptKind.SUBMIT, clock.now_utc())
    if started is None:
        return "lease_lost"
    aid, attempts = started
    try:
        result = rail.send(rails.request_for(c.row))
    except Exception as exc:  # every error is classified and recorded
        t = rules.classify_send_error(exc, attempts, cfg)
        if t.alert:
            log.warning("payout %s (%s) → %s: %s", c.id, c.provider, t.state, t.reason)
        _finish(runtime, c, aid, outcome=t.outcome, state=t.state, delay=t.delay, error=t.reason,
                maybe_sent=True if t.maybe_sent else None, exc=exc)
        return t.state
    return _after_result(runtime, c, aid, result, c.row.checks)


def _find_then_send(runtime: Runtime, c: Claimed, rail) -> str:
    cfg = runtime.payouts().settings
    started = _start_attempt(runtime, c, AttemptKind.FIND, clock.now_utc())
    if started is None:
        return "lease_lost"
    aid, checks = started
    try:
        result = rail.find(c.key)
    except Exception as exc:  # every error is classified (a crash too: it must not hold the claim)
        stay = c.prior if c.prior in (rules.UNKNOWN, rules.SUBMITTED) else rules.UNKNOWN
        t = rules.classify_find_error(exc, checks, cfg, stay)
        if t.alert:
            log.warning("payout %s (%s): find failed → %s: %s", c.id, c.provider, t.state, t.reason)
        _finish(runtime, c, aid, outcome=t.outcome, state=t.state, delay=t.delay, error=t.reason, exc=exc)
        return t.state
    if result is not None:
        if result.unsent:
            # Found, but it moved no money and send() with the same key continues it (e.g. signs a draft).
            with runtime.db.session() as s:
                s.execute(text("""UPDATE payout_attempts SET finished_at = :now, outcome = :pending,
                                  provider_code = :code, message = :m WHERE id = :aid"""),
                          {"now": clock.now_utc(), "code": str(result.code), "aid": aid,
                           "pending": AttemptOutcome.PENDING,
                           "m": f"unsigned draft {result.provider_ref} found by key: nothing was paid; sending it"})
            return _send(runtime, c, rail)
        return _after_result(runtime, c, aid, result, checks)
    if c.prior == rules.SUBMITTED:
        # The provider accepted it once and now does not know it: a person must look.
        _finish(runtime, c, aid, outcome=AttemptOutcome.NOT_FOUND, state=rules.NEEDS_REVIEW, delay=None,
                error="the provider no longer knows a payout it had accepted")
        return rules.NEEDS_REVIEW
    # Never reached the provider: a new send under the same key is safe. Keep the claim and send now.
    with runtime.db.session() as s:
        s.execute(text("""UPDATE payout_attempts SET finished_at = :now, outcome = :not_found,
                          message = 'the provider has no payout with this key: sending' WHERE id = :aid"""),
                  {"now": clock.now_utc(), "aid": aid, "not_found": AttemptOutcome.NOT_FOUND})
        s.execute(text("UPDATE payouts SET maybe_sent = false WHERE id = :id AND lease_token = :token"),
                  {"id": c.id, "token": c.token})
    return _send(runtime, c, rail)


def process(runtime: Runtime, c: Claimed) -> str:
    """Drive one claimed payout one step; returns the state it was left in."""
    try:
        rail = rails.rail_for(runtime, c.provider)
    except ConfigError as exc:
        with runtime.db.session() as s:
            s.execute(text("""UPDATE payouts SET state = :needs_review, lease_token = NULL, lease_until = NULL,
                              claimed_from = NULL, updated_at = now(), last_error = :e
                              WHERE id = :id AND lease_token = :token"""),
                      {"e": f"provider {c.provider!r}: {exc}", "id": c.id, "token": c.token,
                       "needs_review": PayoutState.NEEDS_REVIEW})
        return rules.NEEDS_REVIEW
    if c.row.maybe_sent or c.prior in (rules.UNKNOWN, rules.SUBMITTED):
        return _find_then_send(runtime, c, rail)
    hold = _hold_before_first_send(runtime, c)
    if hold is not None:
        return hold
    return _send(runtime, c, rail)


ROUTE_OFF_RETRY = 300  # seconds: a payout of a switched-off route waits, and is looked at again later


def _hold_before_first_send(runtime: Runtime, c: Claimed) -> str | None:
    """Nothing has been sent yet: check again, on the mirror as it is now, that paying is still right.

    The bid may have left its payout status since the payout was created (an operator cancelled it, the
    engine archived it), or the route may have been switched off. Money must not leave on an old decision.
    Returns the state the payout was put in, or None to go ahead.
    """
    with runtime.db.session() as s:
        # Also the person's off switch (route_switches) and the approvals that count (worker/actions/payouts.py).
        bid = s.execute(text(f"""SELECT b.exchanger, b.status, b.archived_at, p.amount,
                                       (SELECT rs.enabled FROM route_switches rs WHERE rs.exchanger = b.exchanger)
                                           AS switched_on,
                                       {COUNTED_APPROVALS.format(payout="p.id")} AS approvals
                                FROM payouts p JOIN bids b ON b.id = p.bid_id WHERE p.id = :id"""),
                        {"id": c.id}).first()
    route = runtime.payouts().routes.get(bid.exchanger) if bid is not None else None
    four_eyes = rules.missing_approvals(route, bid.amount, bid.approvals) if route and bid else None
    if route is not None and bid is not None and (not route.enabled or bid.switched_on is False):
        state, delay, reason = rules.PENDING, ROUTE_OFF_RETRY, "payouts are switched off for this exchanger"
    elif four_eyes:
        state, delay, reason = rules.NEEDS_REVIEW, None, four_eyes
    elif bid is None or route is None:
        state, delay, reason = rules.NEEDS_REVIEW, None, "no payout route for this exchanger any more"
    elif bid.archived_at is not None:
        state, delay, reason = rules.NEEDS_REVIEW, None, "the bid was archived on the exchanger before payment"
    elif bid.status not in route.trigger_statuses:
        state, delay, reason = (rules.NEEDS_REVIEW, None,
                                f"the bid is now {bid.status!r}, no longer a payout status: a person must decide")
    else:
        return None
    with runtime.db.session() as s:
        s.execute(text("""UPDATE payouts SET state = :state, lease_token = NULL, lease_until = NULL,
                                 claimed_from = NULL, updated_at = :now, last_error = :e, next_attempt_at = :next_at
                          WHERE id = :id AND state = :submitting AND lease_token = :token"""),
                  {"state": state, "now": clock.now_utc(), "e": reason, "id": c.id, "token": c.token,
                   "submitting": PayoutState.SUBMITTING,
                   "next_at": clock.now_utc() + timedelta(seconds=delay) if delay else None})
    log.warning("payout %s held before its first send: %s", c.id, reason)
    return state


def submit_due(runtime: Runtime, now: datetime | None = None, *, pool: ThreadPoolExecutor | None = None) -> dict:
    """Claim and process one batch of due payouts; returns {state: count}."""
    out: dict[str, int] = {}
    for _, state in _process_batch(runtime, claim(runtime, now), pool):
        out[state] = out.get(state, 0) + 1
    return out


def submit_ids(runtime: Runtime, ids: list[int], now: datetime | None = None) -> list[tuple[int, str]]:
    """Claim and process these payouts if they are due (the event path); returns (id, state) of each one
    processed. The same claim as the tick's: a payout another worker holds or that is settled is skipped."""
    return _process_batch(runtime, claim(runtime, now, len(ids), ids=ids) if ids else [], None)


def _process_batch(runtime: Runtime, batch: list[Claimed], pool: ThreadPoolExecutor | None) -> list[tuple[int, str]]:
    """Process a claimed batch, side by side. The whole batch, waiting items included, is renewed by the
    heartbeat until each item is done."""
    if not batch:
        return []
    own = pool is None and len(batch) > 1
    if own:
        pool = ThreadPoolExecutor(min(THREADS, len(batch)), thread_name_prefix="payout")
    try:
        with leases.hold(runtime.db, lease_kind(runtime), batch[0].token, [c.id for c in batch]) as lease:
            def one(c: Claimed) -> str:
                try:
                    return process(runtime, c)
                finally:
                    lease.done(c.id)

            if pool is None:  # one payout (an event): no thread to start
                return [(batch[0].id, str(one(batch[0])))]
            futures = [pool.submit(one, c) for c in batch]
            wait(futures)  # every item ends while the batch is still renewed, even if one of them failed
        # an item's unexpected error is raised here; its claim is reaped
        return [(c.id, str(f.result())) for c, f in zip(batch, futures, strict=True)]
    finally:
        if own and pool is not None:
            pool.shutdown(wait=True)


# -- 4. completion ---------------------------------------------------------------------------------

def _claim_completions(runtime: Runtime, now: datetime, limit: int, ids: list[int] | None = None) -> list[Any]:
    """Lease due completions (only those of ``ids`` if given): not due while held (next_completion_at
    NULL), the reaper makes them due again."""
    only = "" if ids is None else "AND id = ANY(:ids)"
    with runtime.db.session() as s:
        return list(s.execute(text(f"""
            WITH due AS (
                SELECT id FROM payouts WHERE state = :succeeded AND bid_completed_at IS NULL
                  AND next_completion_at <= :now {only} ORDER BY next_completion_at LIMIT :limit FOR UPDATE SKIP LOCKED)
            UPDATE payouts p SET next_completion_at = NULL, lease_token = :token, lease_until = :lease,
                   completion_attempts = completion_attempts + 1
            FROM due WHERE p.id = due.id
            RETURNING p.id, p.exchanger, p.remote_id, p.completion_attempts, p.lease_token AS token"""),
            {"now": now, "limit": limit, "token": leases.new_token(), "lease": _lease_until(runtime, now),
             "succeeded": PayoutState.SUCCEEDED, "ids": ids}).all())


def _start_completion(runtime: Runtime, row: Any, now: datetime) -> int | None:
    """Write the 'complete' attempt row (renewing the lease); None if the claim was lost."""
    with runtime.db.session() as s:
        held = s.execute(text("""UPDATE payouts SET lease_until = greatest(lease_until, :until)
                                 WHERE id = :id AND lease_token = :token RETURNING id"""),
                         {"id": row.id, "token": row.token, "until": _lease_until(runtime, now)}).first()
        if held is None:
            return None
        return s.execute(text("""
            INSERT INTO payout_attempts (payout_id, n, kind, started_at, outcome)
            VALUES (:id, (SELECT coalesce(max(n), 0) + 1 FROM payout_attempts WHERE payout_id = :id), :complete,
                    :now, :started) RETURNING id"""),
            {"id": row.id, "now": now, "complete": AttemptKind.COMPLETE, "started": AttemptOutcome.STARTED}).scalar()


def _complete_one(runtime: Runtime, row: Any) -> bool:
    cfg = runtime.payouts().settings
    aid = _start_completion(runtime, row, clock.now_utc())
    if aid is None:
        log.warning("payout %s: completion claim lost before success_bid; another worker has it", row.id)
        return False
    outcome: str = AttemptOutcome.SUCCEEDED
    message: str | None = None
    exc_seen: Exception | None = None
    try:
        client = runtime.premium(row.exchanger)
        runtime.limiter(row.exchanger).acquire()
        try:
            message = f"success_bid -> {client.success_bid(id=row.remote_id)}"
        except NotFoundError:
            # "no bid exists" is also the answer for a bid already in success: read it back.
            runtime.limiter(row.exchanger).acquire()
            bid = client.bid_info(id=row.remote_id)
            if bid.status != "success":
                raise
            message = "already success on the exchanger"
    except (ProviderError, ConfigError) as exc:
        outcome, message, exc_seen = rules.error_outcome(exc), f"{type(exc).__name__}: {exc}", exc
    now = clock.now_utc()
    ok = exc_seen is None
    delay = None if ok else rules.ladder_delay(row.completion_attempts - 1, cfg.completion_ladder, cfg.jitter)
    code = getattr(exc_seen, "code", None)  # a ConfigError has none
    with runtime.db.session() as s:
        kept = s.execute(text("""
            UPDATE payouts SET bid_completed_at = :done, completion_error = :err, next_completion_at = :next,
                   updated_at = :now, lease_token = NULL, lease_until = NULL
            WHERE id = :id AND lease_token = :token RETURNING id"""),
            {"done": now if ok else None, "err": None if ok else message, "now": now, "id": row.id,
             "token": row.token, "next": now + timedelta(seconds=delay) if delay is not None else None}).first()
        s.execute(text("""UPDATE payout_attempts SET finished_at = :now, outcome = :o, http_status = :http,
                          provider_code = :code, message = :m WHERE id = :aid"""),
                  {"now": now, "o": outcome, "http": getattr(exc_seen, "http_status", None),
                   "code": None if code is None else str(code),
                   "m": (("" if kept else "[claim lost: not applied to the payout] ") + (message or ""))[:2000],
                   "aid": aid})
    if kept is None:  # taken back meanwhile: the next holder repeats success_bid, which is harmless
        log.warning("payout %s: completion claim lost before its outcome (%s) was written", row.id, outcome)
        return False
    if not ok:
        log.warning("payout %s: marking bid %s/%s success failed (try %s): %s", row.id, row.exchanger,
                    row.remote_id, row.completion_attempts, message)
        return False
    try:  # the mirror's history shows the change now rather than at the next poll
        from worker import poll

        poll.refresh(runtime, row.exchanger, row.remote_id, ChangeSource.POLL)
    except Exception as exc:  # the poll ladder will catch up
        log.info("payout %s: refresh of bid %s/%s after success_bid failed: %s", row.id, row.exchanger,
                 row.remote_id, exc)
    return True


def complete_due(runtime: Runtime, now: datetime | None = None, limit: int = 50) -> int:
    """Complete the due bids of one claim, side by side (each is one success_bid and one bid_info)."""
    return _complete_rows(runtime, _claim_completions(runtime, _now(now), limit))


def complete_ids(runtime: Runtime, ids: list[int], now: datetime | None = None) -> int:
    """Complete these payouts' bids if their completion is due (the event path); returns how many."""
    return _complete_rows(runtime, _claim_completions(runtime, _now(now), len(ids), ids) if ids else [])


def _complete_rows(runtime: Runtime, rows: list[Any]) -> int:
    if not rows:
        return 0
    with leases.hold(runtime.db, lease_kind(runtime), rows[0].token, [r.id for r in rows]) as lease:
        def one(r: Any) -> bool:
            try:
                return _complete_one(runtime, r)
            finally:
                lease.done(r.id)

        if len(rows) == 1:
            return int(one(rows[0]))
        with ThreadPoolExecutor(min(THREADS, len(rows)), thread_name_prefix="payout-complete") as pool:
            futures = [pool.submit(one, r) for r in rows]
            wait(futures)  # every item ends while the claim is still renewed
        return sum(int(f.result()) for f in futures)


# -- the tick --------------------------------------------------------------------------------------

def tick(runtime: Runtime, now: datetime | None = None) -> dict:
    """One round of everything (what the beat task runs)."""
    return {
        "created": create_due_payouts(runtime, now),
        "reaped": reap(runtime, now),
        "submitted": submit_due(runtime, now),
        "completed": complete_due(runtime, now),
    }


def run_until_settled(runtime: Runtime, *, rounds: int = 20, now: datetime | None = None) -> dict:
    """Tick until nothing is due (tests, demo). ``now`` moves nothing: pass later times to skip ladders."""
    total: dict[str, Any] = {}
    for _ in range(rounds):
        r = tick(runtime, now)
        if not (r["created"] or r["reaped"] or r["submitted"] or r["completed"]):
            break
        total = r
    return total


_rng = random.Random()
