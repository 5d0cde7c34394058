"""Celery tasks. Each one is idempotent: at-least-once delivery may run it twice, or concurrently."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from celery.signals import worker_shutting_down

from core import clock
from core import runtime as runtime_mod
from models import liveness
from worker import beat as beat_mod
from worker import inbox, periodic, poll
from worker import sweep as sweep_mod
from worker.celery_app import app
from worker.locks import try_lock

log = logging.getLogger("exsync.tasks")

POLL_TASKS_PER_WORKER = 2  # two polling loops per process keep its fetch pool busy while one claims
POLL_IDLE_WAIT = 0.5  # seconds a polling loop waits when nothing is due (the lag while idle; 2 loops per worker)
LIVE_WITHIN = 60.0  # a worker whose canary ran within this many seconds counts for the fan-out

# Set when the worker begins a warm shutdown: a long polling round ends at its next batch instead of
# holding the shutdown for its whole budget (what it leased is simply polled again after the lease).
_shutting_down = threading.Event()


@worker_shutting_down.connect
def _on_shutdown(**_):
    _shutting_down.set()


@app.task(name="worker.tasks.process_inbox_event")
def process_inbox_event(event_id: int) -> str:
    return inbox.process_event(runtime_mod.get(), int(event_id))


@app.task(name="worker.tasks.refresh_bid")
def refresh_bid(exchanger: str, remote_id: int, source: str = "poll") -> str:
    out = poll.refresh(runtime_mod.get(), exchanger, int(remote_id), source)
    return "missing" if out is None else f"{out.from_status} -> {out.status}"


def _once(job: str, slot: int | None, beat: str | None):
    """Run a periodic job's slot once (worker/periodic.py); a copy of a slot already taken yields False."""
    rt = runtime_mod.get()
    return periodic.once(rt.db, job, beat_mod.intervals(rt.settings)[job], slot, beat)


@app.task(name="worker.tasks.poll_due")
def poll_due(slot: int | None = None, beat: str | None = None) -> dict:
    """One polling round per slot: fans out into ``poll_batch`` tasks that poll until the slot ends.

    No lock: the tasks claim due rows with SKIP LOCKED, so every worker process that takes one polls
    beside the others. ``POLL_TASKS_PER_WORKER`` per live worker (worker_liveness), so each takes part.
    """
    rt = runtime_mod.get()
    interval = rt.settings.poll_interval
    with _once("poll-due", slot, beat) as mine:
        if not mine:
            return periodic.skipped("poll-due", slot)
        until = periodic.slot_end(interval, periodic.slot_of(interval) if slot is None else slot)
        n = poll_fanout(rt)
        expires = datetime.fromtimestamp(until, timezone.utc)
        for _ in range(n):
            poll_batch.apply_async((until,), expires=expires)  # one not started by the slot's end is dropped
        return {"slot": slot, "poll_tasks": n}


def poll_fanout(rt) -> int:
    """How many poll_batch tasks one round sends: POLL_TASKS_PER_WORKER for each worker heard of lately."""
    with rt.db.session() as session:
        workers = len(liveness.live_workers(session, LIVE_WITHIN))
    return max(1, workers) * POLL_TASKS_PER_WORKER


@app.task(name="worker.tasks.poll_batch")
def poll_batch(until: float) -> dict:
    """Poll due bids, batch after batch, until ``until`` (epoch seconds: the end of its round's slot).

    Every poll_batch of a process shares one pool of FETCH_THREADS, so a process sends at most that
    many bid_info calls at once however many of these it runs.
    """
    rt = runtime_mod.get()
    budget = float(until) - time.time()
    if budget <= 0:
        return {"skipped": "slot over"}
    r = poll.poll_due(rt, budget_seconds=budget, idle_wait=POLL_IDLE_WAIT, pool=_poll_pool(), stop=_shutting_down)
    return {"claimed": r.claimed, "changed": r.changed, "errors": r.errors, "max_lag": max(r.lags, default=0.0)}


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _poll_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(poll.FETCH_THREADS, thread_name_prefix="poll")
        return _pool


@app.task(name="worker.tasks.sweep")
def sweep(exchanger: str) -> dict:
    r = sweep_mod.sweep_exchanger(runtime_mod.get(), exchanger)
    return {"skipped": r.skipped, "seen": r.seen, "inserted": r.inserted, "changed": r.changed}


@app.task(name="worker.tasks.sweep_all")
def sweep_all(slot: int | None = None, beat: str | None = None) -> dict:
    """One sweep of every enabled exchanger per slot (a sweep still running from the last slot keeps its
    exchanger's advisory lock, worker/sweep.py, and the new one is skipped)."""
    with _once("sweep", slot, beat) as mine:
        if not mine:
            return periodic.skipped("sweep", slot)
        names = [n for n, ex in runtime_mod.get().settings.exchangers.items() if ex.enabled]
        for name in names:
            sweep.delay(name)
        return {"slot": slot, "sweeps": names}


@app.task(name="worker.tasks.requeue_inbox")
def requeue_inbox(slot: int | None = None, beat: str | None = None) -> dict:
    with _once("requeue-inbox", slot, beat) as mine:
        if not mine:
            return periodic.skipped("requeue-inbox", slot)
        rt = runtime_mod.get()
        ids = inbox.due_events(rt, clock.now_utc())
        for event_id in ids:
            process_inbox_event.delay(event_id)
        if ids:
            log.info("re-enqueued %s inbox events", len(ids))
        return {"slot": slot, "requeued": len(ids)}


@app.task(name="worker.tasks.payouts_tick")
def payouts_tick(slot: int | None = None, beat: str | None = None) -> dict:
    """Create due payouts, reap lost calls, submit/check due payouts, complete bids (worker.payouts.engine).

    The safety net: a bid's move starts its payout at once (worker/payouts/events.py); the tick does what
    no event delivered, and every retry on a ladder. Once per slot; the advisory lock only keeps a tick
    that outlasts its interval from running beside the next slot's (claims use SKIP LOCKED with leases, so
    that and the event tasks running beside it are safe, just wasteful).
    """
    from worker.payouts import engine as payout_engine

    with _once("payouts-tick", slot, beat) as mine:
        if not mine:
            return periodic.skipped("payouts-tick", slot)
        rt = runtime_mod.get()
        if not rt.payouts().routes:
            return {"skipped": "no payout routes"}
        with try_lock(rt.db.engine, "payouts_tick") as got:
            if not got:
                return {"skipped": "previous tick still running"}
            return payout_engine.tick(rt)


@app.task(name="worker.tasks.partner_sync")
def partner_sync(exchanger: str | None = None, slot: int | None = None, beat: str | None = None) -> dict:
    """Mirror partner info, exchanges and payouts (worker.partner) of one exchanger, or of every enabled one.

    Each exchanger is synced under its own advisory lock; one that has no partner program is recorded
    (``partner_accounts.last_error``) and skipped, and does not stop the others.
    """
    from worker import partner as partner_mod

    with _once("partner-sync", slot, beat) as mine:
        if not mine:
            return periodic.skipped("partner-sync", slot)
        rt = runtime_mod.get()
        names = [exchanger] if exchanger else [n for n, ex in rt.settings.exchangers.items() if ex.enabled]
        out: dict = {}
        for name in names:
            try:
                r = partner_mod.sync_partner(rt, name)
            except Exception as exc:  # stored as last_error; the next beat tries again
                log.warning("partner sync %s failed: %s", name, exc)
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            out[name] = {"skipped": r.skipped, "reason": r.reason, "exchanges_inserted": r.exchanges_inserted,
                         "exchanges_changed": r.exchanges_changed, "payouts_inserted": r.payouts_inserted,
                         "payouts_changed": r.payouts_changed}
        return out


@app.task(name="worker.tasks.canary", acks_late=False)
def canary(hostname: str, sent_at: float) -> str:
    """Proof that this worker consumes (worker/liveness.py). Acked on receipt: a lost canary is simply
    replaced by the next one, and it never adds to the unacked messages a reconnect has to restore."""
    from worker import liveness
    from worker import notify as notify_mod

    ran = liveness.canary_ran(runtime_mod.get(), hostname, float(sent_at))
    # Beat gone: a worker tells it (worker/notify.py). Only after the canary was recorded (Postgres answers),
    # and it never fails the canary.
    with contextlib.suppress(Exception):
        if ran == hostname and notify_mod.beat_late(runtime_mod.get(), clock.now_utc()):
            notify.delay(from_beat=False)
    return ran


@app.task(name="worker.tasks.notify")
def notify(slot: int | None = None, beat: str | None = None, from_beat: bool = True) -> dict:
    """Tell a person what needs them (worker/notify.py): one message per thing, and a daily digest.

    Once per slot like every periodic job; a worker that finds beat late sends it without a slot."""
    from worker import notify as notify_mod

    rt = runtime_mod.get()
    now = clock.now_utc()
    if from_beat:  # any beat's copy, run or skipped, shows that a beat is alive
        notify_mod.beat_heartbeat(rt, now)
    with _once("notify", slot, beat) as mine:
        if not mine:
            return periodic.skipped("notify", slot)
        return notify_mod.run(rt, now, from_beat=False)
