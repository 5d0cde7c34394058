"""The beat schedule: every periodic job, sent at the start of each interval window with its slot.

Run one beat per host, or more: each entry is aligned on the wall clock (``SlotSchedule``: due when a
new window begins, not ``interval`` after the last send), so every beat sends the same slot numbers, and
the task runs a slot once (worker/periodic.py). A beat holds no state of its own (``SlotScheduler`` keeps
the schedule in memory, no schedule file): periodic_runs in Postgres is the record of what ran, so beats
on one host cannot share a file by accident, and a restarted beat simply sends the next slot.

Every entry expires after its own interval: ticks queued while no worker runs are dropped, not piled up.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from celery.beat import BeatLazyFunc, Scheduler
from celery.schedules import schedstate
from celery.schedules import schedule as interval_schedule

from core.config import Settings
from worker import periodic

INBOX_SWEEP_SECONDS = 30
PAYOUTS_TICK_SECONDS = 5
PARTNER_SYNC_FACTOR = 5  # partner money moves slowly: every 5 sweep intervals
NOTIFY_SECONDS = 30

TASKS = {  # job (beat entry) -> task
    "poll-due": "worker.tasks.poll_due",
    "sweep": "worker.tasks.sweep_all",
    "requeue-inbox": "worker.tasks.requeue_inbox",
    "payouts-tick": "worker.tasks.payouts_tick",
    "partner-sync": "worker.tasks.partner_sync",
    "notify": "worker.tasks.notify",  # worker/notify.py
}


def intervals(settings: Settings) -> dict[str, int]:
    """Seconds between two runs of each job (the slot width; tasks read it here too)."""
    return {
        "poll-due": settings.poll_interval,
        "sweep": settings.sweep_interval,
        "requeue-inbox": INBOX_SWEEP_SECONDS,
        "payouts-tick": PAYOUTS_TICK_SECONDS,
        "partner-sync": settings.sweep_interval * PARTNER_SYNC_FACTOR,
        "notify": NOTIFY_SECONDS,
    }


class SlotSchedule(interval_schedule):
    """Due once per interval window of the wall clock: when the slot of now is past the slot of the last send.

    Celery's own interval schedule counts from the last send, so each beat keeps the phase it started
    with and drifts by its own lateness; this one puts every beat on the same boundaries.
    """

    def is_due(self, last_run_at: datetime) -> schedstate:
        width = self.seconds
        now = time.time()
        current = periodic.slot_of(width, now)
        to_next = periodic.slot_end(width, current) - now
        return schedstate(is_due=current > periodic.slot_of(width, last_run_at.timestamp()), next=to_next)

    def __repr__(self) -> str:
        return f"<slots of {self.human_seconds}>"


class SlotScheduler(Scheduler):
    """Celery's in-memory scheduler: nothing to persist (see the module doc)."""


def schedule(settings: Settings) -> dict:
    return {
        job: {
            "task": TASKS[job],
            "schedule": SlotSchedule(timedelta(seconds=seconds)),
            # Evaluated as each message is sent: the window it belongs to, and who sent it.
            "kwargs": {"slot": BeatLazyFunc(periodic.slot_of, seconds), "beat": BeatLazyFunc(periodic.identity)},
            "options": {"expires": seconds},
        }
        for job, seconds in intervals(settings).items()
    }
