"""``exsync worker --beat`` (what ``exsync run`` runs on one host): beat is a thread of the worker, so a
Redis or Postgres restart under it must not end the periodic jobs. Real parts: a Redis and a Postgres of the
test's own, restarted while the worker runs under the ``exsync run`` supervisor; the proof is in
``periodic_runs`` (worker/periodic.py): the poll round's slots keep being run after each restart."""
from __future__ import annotations

import os
import textwrap
import threading
import time

import psycopg2
import pytest

from core.config import load_settings
from devtools.embedded import EmbeddedPostgres
from models.migrate import upgrade
from tests.support import postgres_server
from tests.support.config import make_env
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(240)


def _last_slot(url: str) -> int | None:
    """The newest poll-round slot that ran (None: none yet, or Postgres is away)."""
    try:
        conn = psycopg2.connect(url, connect_timeout=2)
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT max(slot) FROM periodic_runs WHERE job = 'poll-due'")
            return cur.fetchone()[0]
    except psycopg2.Error:
        return None
    finally:
        conn.close()


def test_beat_in_the_worker_keeps_running_slots_through_redis_and_postgres_restarts(tmp_path, premium_sandbox):
    from devtools.supervisor import Stack
    from providers.premium.sandbox import DEFAULT_LOGIN

    pg = EmbeddedPostgres(tmp_path / "pg", database="exsync")
    upgrade(pg.url)
    redis = RedisServer(tmp_path)
    redis.start()
    config = tmp_path / "exsync.toml"
    config.write_text(textwrap.dedent(f"""
        [settings]
        poll_interval = 1

        [exchangers.main]
        base_url = "{premium_sandbox.url}"
        api_login = "{DEFAULT_LOGIN}"
        timeout = 5
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(make_env(config, pg.url, redis.url, EXSYNC_LOG_LEVEL="INFO", EXSYNC_DATA_DIR=str(tmp_path / "data"),
                        EXSYNC_CANARY_INTERVAL="0.5", EXSYNC_CANARY_STALE_AFTER="6"))
    log = open(tmp_path / "stack.log", "w+")
    stack = Stack(load_settings(env), env, children=("worker+beat",), max_restarts=20, output=log)
    stop = threading.Event()

    def supervise() -> None:  # the supervisor's loop, as `exsync run` runs it
        while not stop.wait(0.25):
            stack.check()

    checker = threading.Thread(target=supervise, daemon=True)

    def runs_on_after(slot: int, what: str) -> int:
        return wait_for(lambda: (s := _last_slot(pg.url)) is not None and s > slot and s, 60,
                        f"poll rounds after {what}; log:\n" + (tmp_path / "stack.log").read_text()[-3000:])

    try:
        stack.start_children()
        checker.start()
        first = runs_on_after(-1, "the start")
        first = runs_on_after(first, "a second slot")  # beat sends a slot every second, the worker runs it

        redis.kill()
        time.sleep(3)  # a few slots without a broker: beat's sends fail
        redis.start()
        after_redis = runs_on_after(int(time.time()), "the Redis restart")

        postgres_server.restart(pg)  # every connection is cut: the worker's pool and the supervisor's monitor alike
        runs_on_after(max(after_redis, int(time.time())), "the Postgres restart")
        assert all(c.running() or c.restart_at is not None for c in stack.children)
    finally:
        stop.set()
        checker.join(5)
        stack.stop()
        log.close()
        redis.kill()
        postgres_server.stop(pg)
