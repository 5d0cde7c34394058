"""Celery tasks. Each one is idempotent: at-least-once delivery may run it twice, or concurrently."""
from __future__ import annotations

import contextlib
import logging
import threading

from celery.signals import worker_shutting_down

from core import clock
from core import runtime as runtime_mod
from worker import inbox, poll
from worker import sweep as sweep_mod
from worker.celery_app import app
from worker.locks import try_lock

log = logging.getLogger("exsync.tasks")

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


@app.task(name="worker.tasks.poll_due")
def poll_due() -> dict:
    rt = runtime_mod.get()
    # Claims use SKIP LOCKED, so concurrent pollers are safe; the lock only keeps ticks from stacking up.
    with try_lock(rt.db.engine, "poll_due") as got:
        if not got:
            return {"skipped": True}
        r = poll.poll_due(rt, budget_seconds=max(5.0, rt.settings.poll_interval * 10), idle_wait=0.5,
                        stop=_shutting_down)
        return {"claimed": r.claimed, "changed": r.changed, "errors": r.errors,
                "max_lag": max(r.lags, default=0.0)}


@app.task(name="worker.tasks.sweep")
def sweep(exchanger: str) -> dict:
    r = sweep_mod.sweep_exchanger(runtime_mod.get(), exchanger)
    return {"skipped": r.skipped, "seen": r.seen, "inserted": r.inserted, "changed": r.changed}


@app.task(name="worker.tasks.sweep_all")
def sweep_all() -> list[str]:
    names = [n for n, ex in runtime_mod.get().settings.exchangers.items() if ex.enabled]
    for name in names:
        sweep.delay(name)
    return names


@app.task(name="worker.tasks.requeue_inbox")
def requeue_inbox() -> int:
    rt = runtime_mod.get()
    ids = inbox.due_events(rt, clock.now_utc())
    for event_id in ids:
        process_inbox_event.delay(event_id)
    if ids:
        log.info("re-enqueued %s inbox events", len(ids))
    return len(ids)


@app.task(name="worker.tasks.payouts_tick")
def payouts_tick() -> dict:
    """Create due payouts, reap lost calls, submit/check due payouts, complete bids (worker.payouts.engine).

    Claims use SKIP LOCKED with leases, so concurrent ticks are safe; the lock keeps ticks from stacking.
    """
    from worker.payouts import engine as payout_engine

    rt = runtime_mod.get()
    if not rt.payouts().routes:
        return {"skipped": True}
    with try_lock(rt.db.engine, "payouts_tick") as got:
        if not got:
            return {"skipped": True}
        return payout_engine.tick(rt)


@app.task(name="worker.tasks.partner_sync")
def partner_sync(exchanger: str | None = None) -> dict:
    """Mirror partner info, exchanges and payouts (worker.partner) of one exchanger, or of every enabled one.

    Each exchanger is synced under its own advisory lock; one that has no partner program is recorded
    (``partner_accounts.last_error``) and skipped, and does not stop the others.
    """
    from worker import partner as partner_mod

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
def notify(from_beat: bool = True) -> dict:
    """Tell a person what needs them (worker/notify.py): one message per thing, and a daily digest."""
    from worker import notify as notify_mod

    return notify_mod.run(runtime_mod.get(), clock.now_utc(), from_beat=from_beat)
