"""The Celery app: Redis broker, at-least-once delivery, every task idempotent.

acks_late + reject_on_worker_lost: a task whose worker dies is delivered again. The visibility timeout
bounds how long an unacked message waits before redelivery, so no task uses an ETA/countdown longer than
it; long waits live in Postgres rows that beat scans (poll schedule, inbox retries).
"""
from __future__ import annotations

import os

from celery import Celery

from core.config import Settings

VISIBILITY_TIMEOUT = 3600
MAX_COUNTDOWN = 300  # every countdown we use stays far below the visibility timeout

app = Celery("exsync", include=["worker.tasks", "worker.payouts.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_failure_or_timeout=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue="exsync",
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    worker_hijack_root_logger=False,
    timezone="UTC",
    enable_utc=True,
)


def configure(settings: Settings) -> Celery:
    """Point the app at the configured broker and install the beat schedule."""
    from worker.beat import schedule

    app.conf.update(broker_url=settings.redis_url, beat_schedule=schedule(settings))
    return app


# `celery -A worker.celery_app …` from a shell or a container: configure from the environment.
if os.environ.get("EXSYNC_REDIS_URL"):
    from core import runtime as _runtime

    configure(_runtime.get().settings)
