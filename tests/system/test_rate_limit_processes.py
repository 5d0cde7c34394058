"""One rate limit per exchanger across processes, measured where it matters: at the engine sandbox.

Three real ``exsync worker`` processes (threads pool, 8 threads each) and a real ``exsync beat`` work
against an engine with a large set of live bids, all due: whatever polling (and sweeping) beat schedules,
plus a steady stream of re-reads (``refresh_bid``, what callbacks and operators trigger, at 0.8 of the
limit) that keeps all three processes calling the engine whatever the polling rounds' shape. Alone, each
process would send the configured rate; together they must not: the sandbox's own request log (the
arrival time of every API call) never holds more than the configured rate in any sliding second, beyond an
allowance for calls that a stalled process sends late and together (three times the rate is what
per-process buckets gave); over any 5 s the surplus is at most one second's worth, and over the whole run
the rate holds within 3 %.

The second test kills the Redis they share (the broker, and the limit) under them and starts it again:
the work in the workers' hands goes on at their local shares (no error reaches a task), the engine still
never sees more than the limit, and every worker shares the limit through Redis again once it answers.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from core.config import load_settings
from core.ratelimit import limit_key
from core.runtime import Runtime
from providers.premium.sandbox import DEFAULT_LOGIN
from tests.support.config import make_env, write_config
from tests.support.redis_server import RedisServer
from tests.support.sandboxes import running
from tests.support.wait import wait_for
from worker.sweep import sweep_exchanger

pytestmark = pytest.mark.timeout(240)

CI = os.environ.get("CI") == "true"
RATE = 25  # engine calls per second, the configured limit
BIDS = 500 if CI else 1200
WORKERS = 3
# Calls are granted 1/RATE apart, but a worker process that the machine stalls for a moment sends the calls
# whose slots passed meanwhile together: the sandbox may see some more than RATE in one second (seen: up to
# 38, with a load average of 28 on the 2 cores), never the 3 x RATE of per-process buckets; over 5 s the
# surplus is at most what one second of stall holds back.
JITTER = RATE // 2
WINDOW = 5.0




class Feeder(threading.Thread):
    """Publishes re-reads of the bids, round robin, ``rate`` per second; survives a broker that is down."""

    def __init__(self, url: str, remote_ids: list[int], rate: float) -> None:
        from celery import Celery

        super().__init__(daemon=True)
        self.app = Celery("loadgen", broker=url)
        self.app.conf.update(task_default_queue="exsync", broker_connection_timeout=1,
                             broker_transport_options={"max_retries": 0})
        self.ids, self.rate = itertools.cycle(remote_ids), rate
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1 / self.rate):
            try:
                with self.app.connection_for_write() as conn:
                    self.app.send_task("worker.tasks.refresh_bid", args=["main", next(self.ids), "poll"],
                                       connection=conn, retry=False)
            except Exception:  # noqa: BLE001 — the broker is down: the callback would come again
                time.sleep(0.2)


@pytest.fixture
def broker(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def engine_site():
    with running("premium", seed=99, latency=0.005) as srv:
        yield srv


@pytest.fixture
def fleet(tmp_path, db, database_url, broker, engine_site):
    """The live bids mirrored and due; ``start()`` starts the three workers and beat on the broker."""
    cfg = write_config(tmp_path, engine_site.url)
    cfg.write_text(cfg.read_text().replace("rate_limit = 200", f"rate_limit = {RATE}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(make_env(cfg, database_url, broker.url, EXSYNC_LOG_LEVEL="INFO", EXSYNC_WORKER_CONCURRENCY="8",
                        EXSYNC_DATA_DIR=str(tmp_path / "data")))
    ids = engine_site.engine.bulk_add(BIDS, spread_seconds=600, statuses=["new", "payed"])
    # The mirror, filled by one sweep from this process (its own bucket, before anything is measured).
    setup = Runtime(load_settings({k: v for k, v in env.items() if k != "EXSYNC_REDIS_URL"}))
    sweep_exchanger(setup, "main")
    with setup.db.engine.begin() as conn:
        assert conn.execute(text("UPDATE bid_polls SET next_poll_at = now() - interval '1 second'")).rowcount == BIDS
    setup.close()
    procs: list[subprocess.Popen] = []
    logs = [tmp_path / f"worker{i}.log" for i in range(WORKERS)]

    def start() -> None:
        for log, cmd in [*((log, "worker") for log in logs), (tmp_path / "beat.log", "beat")]:
            procs.append(subprocess.Popen([sys.executable, "-m", "cli", cmd], env=env, stdout=open(log, "w"),
                                          stderr=subprocess.STDOUT))

    yield types.SimpleNamespace(ids=ids, logs=logs, procs=procs, start=start,
                                key=limit_key("main", engine_site.url, DEFAULT_LOGIN))
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def read(path: Path) -> str:
    return path.read_text(errors="replace")


def sharing(url: str, key: str) -> int:
    """How many processes share the limit now (the limiter's own record in Redis)."""
    try:
        return int(redis.Redis.from_url(url, socket_connect_timeout=1).zcard(key + ":who"))
    except redis.RedisError:
        return 0


def start_load(fleet, broker) -> Feeder:
    fleet.start()
    feeder = Feeder(broker.url, fleet.ids, RATE * 0.8)
    feeder.start()
    wait_for(lambda: sharing(broker.url, fleet.key) == WORKERS, 60, "three workers sharing the limit",
             *fleet.procs)
    return feeder


def test_three_workers_keep_to_one_rate_at_the_engine(fleet, broker, engine_site):
    feeder = start_load(fleet, broker)
    try:
        measure_from = time.time()
        time.sleep(12 if CI else 20)  # load flows: polling alone has BIDS due at once, far beyond the limit
        measured = engine_site.engine.request_log.summary(since=measure_from)
    finally:
        feeder.stop.set()
    span = measured["last"] - measured["first"]
    mean = (measured["total"] - 1) / span
    print(f"\n[rate-limit] {WORKERS} workers, limit {RATE}/s: {measured['total']} engine calls in {span:.1f} s = "
          f"{mean:.1f}/s ({measured['by_key']}), busiest sliding second {measured['max_in_window']}, busiest "
          f"{WINDOW:g} s {engine_site.engine.request_log.max_in_window(WINDOW, since=measure_from)}")
    assert measured["max_in_window"] <= RATE + JITTER, measured["per_second"]
    assert engine_site.engine.request_log.max_in_window(WINDOW, since=measure_from) <= RATE * (WINDOW + 1)
    assert mean <= RATE * 1.03, mean
    assert mean >= RATE * 0.7, mean  # the limit is used, not starved
    assert sharing(broker.url, fleet.key) == WORKERS  # every process took part, through the shared limit
    for log in fleet.logs:
        assert "raised unexpected" not in read(log), read(log)[-3000:]  # and no task failed
    assert all(p.poll() is None for p in fleet.procs)


def test_redis_restarted_under_three_workers(fleet, broker, engine_site):
    feeder = start_load(fleet, broker)
    try:
        measure_from = time.time()
        time.sleep(4)
        broker.kill()  # the broker and the shared limit go; what is in the workers' hands goes on
        killed = time.time()
        time.sleep(3)
        during = engine_site.engine.request_log.summary(since=killed)
        broker.start()
        wait_for(lambda: sharing(broker.url, fleet.key) == WORKERS, 60, "three workers sharing the limit again",
                 *fleet.procs)
        time.sleep(6)
        measured = engine_site.engine.request_log.summary(since=measure_from)
    finally:
        feeder.stop.set()
    logs = [read(log) for log in fleet.logs]
    print(f"\n[rate-limit] Redis down 3 s under {WORKERS} workers: {during['total']} engine calls while down; "
          f"busiest sliding second over the run {measured['max_in_window']} (limit {RATE}); per second "
          f"{[n for _, n in measured['per_second']]}")
    assert measured["max_in_window"] <= RATE + JITTER, measured["per_second"]
    assert engine_site.engine.request_log.max_in_window(WINDOW, since=measure_from) <= RATE * (WINDOW + 1)
    # The work in the workers' hands (the polling at least) went on, on the local shares.
    assert during["total"] > 0
    fell_back = [log for log in logs if "Redis did not answer" in log]
    assert fell_back, logs[0][-3000:]
    for log in fell_back:
        assert f"keeps to {RATE / WORKERS:g} calls/s ({RATE:g} shared by {WORKERS})" in log, log[-3000:]
        assert "Redis answers again" in log.split("Redis did not answer", 1)[1], log[-3000:]
    for log in logs:
        # No task failed, and nothing of the limiter shows in any traceback.
        assert "raised unexpected" not in log and "ratelimit.py" not in log, log[-3000:]
    assert all(p.poll() is None for p in fleet.procs)
