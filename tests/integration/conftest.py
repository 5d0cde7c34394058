"""Integration level: exsync's parts in this process against the real Postgres and Redis (tests/conftest.py)
and, where a test asks for it, a real Celery worker; the web app through Flask's test client."""
from __future__ import annotations

import pytest


@pytest.fixture
def celery_app(runtime):
    from worker.celery_app import app, configure

    configure(runtime.settings)
    app.conf.update(task_always_eager=False)
    return app


@pytest.fixture
def celery_worker(celery_app):
    """A real Celery worker (threads pool) consuming from the real Redis broker."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(celery_app, pool="threads", concurrency=4, perform_ping_check=False,
                      shutdown_timeout=30, loglevel="WARNING") as worker:
        yield worker


@pytest.fixture
def broker(celery_app, runtime):
    """The configured Celery app's queue in Redis, emptied before and after (no worker consumes it)."""
    from core.redis_url import client as redis_client

    r = redis_client(runtime.settings.redis_url)
    r.delete("exsync")
    yield r
    r.delete("exsync")


@pytest.fixture
def web_app(runtime):
    from webhooks.app import create_app

    app = create_app(runtime)
    app.testing = True
    return app


@pytest.fixture
def client(web_app):
    return web_app.test_client()


