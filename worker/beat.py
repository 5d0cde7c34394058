"""The beat schedule. Run exactly one beat; each job also takes an advisory lock or claims rows with
SKIP LOCKED, so a second beat (or a tick that overlaps a slow run) does no harm.

Every entry expires after its own interval: ticks queued while no worker runs are dropped, not piled up.
"""
from __future__ import annotations

from datetime import timedelta

from core.config import Settings

INBOX_SWEEP_SECONDS = 30
PAYOUTS_TICK_SECONDS = 5
PARTNER_SYNC_FACTOR = 5  # partner money moves slowly: every 5 sweep intervals
NOTIFY_SECONDS = 30


def schedule(settings: Settings) -> dict:
    return {
        "poll-due": {
            "task": "worker.tasks.poll_due",
            "schedule": timedelta(seconds=settings.poll_interval),
            "options": {"expires": settings.poll_interval},
        },
        "sweep": {
            "task": "worker.tasks.sweep_all",
            "schedule": timedelta(seconds=settings.sweep_interval),
            "options": {"expires": settings.sweep_interval},
        },
        "requeue-inbox": {
            "task": "worker.tasks.requeue_inbox",
            "schedule": timedelta(seconds=INBOX_SWEEP_SECONDS),
            "options": {"expires": INBOX_SWEEP_SECONDS},
        },
        "payouts-tick": {
            "task": "worker.tasks.payouts_tick",
            "schedule": timedelta(seconds=PAYOUTS_TICK_SECONDS),
            "options": {"expires": PAYOUTS_TICK_SECONDS},
        },
        "notify": {  # worker/notify.py
            "task": "worker.tasks.notify",
            "schedule": timedelta(seconds=NOTIFY_SECONDS),
            "options": {"expires": NOTIFY_SECONDS},
        },
        "partner-sync": {
            "task": "worker.tasks.partner_sync",
            "schedule": timedelta(seconds=settings.sweep_interval * PARTNER_SYNC_FACTOR),
            "options": {"expires": settings.sweep_interval * PARTNER_SYNC_FACTOR},
        },
    }
