"""Proof that a Celery worker still consumes from the broker, and what happens when it does not.

Celery on Redis has failed here in two ways that no version fixes for good (celery#8030, #10205, #10302,
kombu#2629): the process exits after a Redis restart (celery 5.7.0 closes the connection again after
``collect()``; kombu then restores the unacked messages of a half-closed channel through a transport
already detached: ``AttributeError: 'NoneType' object has no attribute 'hostname'`` in ``_connparams``,
"Unrecoverable error"), or it stays up and silently stops consuming. So every ``exsync worker`` proves
that it consumes:

* **Canary.** Every ``interval`` seconds the worker publishes a ``worker.tasks.canary`` task to a queue
  only it consumes (``exsync.canary.<hostname>``; the hostname includes the pid, so a restarted worker
  has a new queue). Running the canary is the proof: the broker delivered a message to this process's
  consumer, which handed it to a pool thread. The run is recorded in memory (for the watchdog) and in
  Postgres (``worker_liveness``, read by ``/readyz``, ``/metrics`` and the ``exsync run`` supervisor).
* **Watchdog.** When no canary ran for ``stale_after`` seconds while the broker answers PING, the worker
  does not consume: it stops itself (a warm shutdown, then a hard exit if that hangs) with exit code
  ``EXIT_STALLED``, so ``restart:`` policies, systemd ``Restart=on-failure`` and the supervisor start a
  fresh one. Time the broker is down does not count: the clock restarts when the broker answers.
* **Exit status.** Celery's ``worker_main`` drops the worker's exit code, and its "Unrecoverable error"
  path returns like a normal stop. ``Guard.exit_code`` makes every stop that no SIGTERM/SIGINT/SIGQUIT
  asked for a non-zero status.

Thresholds (``Thresholds.for_settings``). The canary waits behind the tasks the worker already holds:
with ``worker_prefetch_multiplier=1`` the consumer holds at most ``concurrency`` unacknowledged messages,
so while every pool thread runs a long task it fetches nothing until one ends. tests/system/test_broker_restart.py
measures that worst case (every thread busy with back-to-back 2 s tasks): the canary's age peaks at about
one task length (1.75 s), never the sum of them. The longest regular task is a polling round
(``max(5, 10 × poll_interval)`` s, 20 s by default; poll_due, payouts_tick and each sweep run one at a time
under advisory locks, and the other tasks are one provider call bounded by its timeout), so
``stale_after`` is three rounds and at least 60 s: a busy worker stays far below it, a worker that no
longer consumes is replaced within about a minute. The supervisor waits 1.5 times as long, so the
gentler in-process stop goes first. Override with ``EXSYNC_CANARY_INTERVAL`` and
``EXSYNC_CANARY_STALE_AFTER`` (seconds).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from core.config import ConfigError, Settings

log = logging.getLogger("exsync.liveness")

CANARY_TASK = "worker.tasks.canary"
EXIT_UNREQUESTED = 1  # Celery stopped without being asked (e.g. its "Unrecoverable error" path)
EXIT_STALLED = 3  # the watchdog stopped a worker that no longer consumed
SUPERVISOR_FACTOR = 1.5  # the supervisor waits longer than the in-process watchdog, which stops more gently
KEEP_SECONDS = 86400.0  # worker_liveness rows not updated for a day are forgotten
METRICS_WINDOW = 3600.0  # /metrics shows workers heard of within the last hour


def worker_hostname(pid: int | None = None, host: str | None = None) -> str:
    """The Celery hostname of the ``exsync worker`` process ``pid`` (the supervisor computes its child's)."""
    return f"exsync-{pid or os.getpid()}@{host or socket.gethostname()}"


def canary_queue(hostname: str) -> str:
    return f"exsync.canary.{hostname}"


def poll_round_seconds(settings: Settings) -> float:
    """How long one poll_due task may run (worker/tasks.py gives a round this budget)."""
    return max(5.0, settings.poll_interval * 10.0)


@dataclass(frozen=True)
class Thresholds:
    interval: float  # seconds between two canaries
    stale_after: float  # no canary ran for this long while the broker answers: the worker does not consume

    @property
    def supervisor_after(self) -> float:
        return self.stale_after * SUPERVISOR_FACTOR

    @classmethod
    def for_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> "Thresholds":
        env = os.environ if env is None else env
        interval = _seconds(env, "EXSYNC_CANARY_INTERVAL", 5.0)
        stale_after = _seconds(env, "EXSYNC_CANARY_STALE_AFTER", max(60.0, 3 * poll_round_seconds(settings)))
        if stale_after < 2 * interval:
            raise ConfigError("EXSYNC_CANARY_STALE_AFTER",
                              f"must be at least twice EXSYNC_CANARY_INTERVAL ({interval:g}s), got {stale_after:g}")
        return cls(interval=interval, stale_after=stale_after)


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(key, f"must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 86400:
        raise ConfigError(key, f"must be between 0 and 86400 seconds, got {raw!r}")
    return value


def stale_for(now: float, *, since: float, last_consumed: float | None, broker_up_since: float | None) -> float:
    """Seconds the worker has gone without proof of consumption that count against it (monotonic times).

    ``since`` is when watching began; the broker being down stops the clock (``broker_up_since`` None:
    0), and it restarts when the broker answers again.
    """
    if broker_up_since is None:
        return 0.0
    return now - max(since, broker_up_since, last_consumed if last_consumed is not None else since)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _broker_client(url: str):
    import redis

    from core.redis_url import for_redis_py

    # Short timeouts: a broker that does not answer within 2 s counts as down, which stops the clock.
    return redis.Redis.from_url(for_redis_py(url), socket_timeout=2, socket_connect_timeout=2)


class Guard:
    """Watchdog and exit status of one ``exsync worker`` process (``install`` before ``worker_main``)."""

    def __init__(self, app, settings: Settings, *, hostname: str | None = None,
                 thresholds: Thresholds | None = None, db=None) -> None:
        self.app = app
        self.settings = settings
        self.hostname = hostname or worker_hostname()
        self.queue = canary_queue(self.hostname)
        self.thresholds = thresholds or Thresholds.for_settings(settings)
        self._db = db
        self.worker = None  # Celery's WorkController, for its exit code
        self.requested: str | None = None  # the signal that asked for the shutdown
        self.stalled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_consumed: float | None = None
        self._lock = threading.Lock()

    # -- wiring ---------------------------------------------------------------------------------------

    def install(self) -> "Guard":
        from celery.signals import worker_init, worker_ready, worker_shutting_down

        global _current
        _current = self
        worker_init.connect(self._on_worker_init, weak=False)
        worker_ready.connect(self._on_worker_ready, weak=False)
        worker_shutting_down.connect(self._on_shutting_down, weak=False)
        return self

    def _on_worker_init(self, sender=None, **_: Any) -> None:
        self.worker = sender

    def _on_worker_ready(self, **_: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="exsync-liveness", daemon=True)
            self._thread.start()

    def _on_shutting_down(self, sig=None, **_: Any) -> None:
        # Sent by Celery's SIGTERM/SIGINT/SIGQUIT handlers only (never by its own failures).
        self.requested = str(sig or "signal")
        self._stop.set()

    @property
    def db(self):
        if self._db is None:
            from core import runtime as runtime_mod

            self._db = runtime_mod.get().db
        return self._db

    # -- the canary -----------------------------------------------------------------------------------

    def consumed(self) -> None:
        """This process ran one of its canaries (called from the task, in a pool thread)."""
        with self._lock:
            self._last_consumed = time.monotonic()

    def publish(self) -> bool:
        try:
            self.app.send_task(CANARY_TASK, args=[self.hostname, time.time()], queue=self.queue,
                               expires=self.thresholds.stale_after, retry=False)
            return True
        except Exception as exc:  # the broker may be restarting; the next tick tries again
            log.debug("canary not published: %s", exc)
            return False

    # -- the watchdog ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._watch()
        except Exception:  # a bug here must not pass silently: the supervisor and /readyz still watch the rows
            log.exception("worker liveness watchdog of %s failed", self.hostname)

    def _watch(self) -> None:
        self._write(lambda s: _models().record_started(s, self.hostname))
        self._write(lambda s: _models().prune(s, KEEP_SECONDS))
        broker = _broker_client(self.settings.redis_url or "")  # `exsync worker` requires the broker URL
        since = time.monotonic()
        broker_up_since: float | None = None
        while not self._stop.wait(self.thresholds.interval):
            try:
                broker.ping()
                if broker_up_since is None:
                    broker_up_since = time.monotonic()
            except Exception:  # down or unreachable: not this worker's fault, stop the clock
                broker_up_since = None
                continue
            self.publish()
            with self._lock:
                last = self._last_consumed
            stale = stale_for(time.monotonic(), since=since, last_consumed=last, broker_up_since=broker_up_since)
            if stale > self.thresholds.stale_after and not self._stop.is_set():
                self._fire(stale)
                return

    def _fire(self, stale: float) -> None:
        from celery.worker import state

        self.stalled = True
        log.critical("worker %s has not consumed its canary for %.0fs while the broker answers: it no longer "
                     "consumes; stopping with exit code %s so it is restarted", self.hostname, stale, EXIT_STALLED)
        # A warm shutdown if the event loop still turns (it checks this flag every iteration) ...
        state.should_stop = EXIT_STALLED
        # ... and a hard exit if it does not: a stuck loop never looks at the flag.
        timer = threading.Timer(self.thresholds.stale_after, _hard_exit, args=(self.hostname,))
        timer.daemon = True
        timer.start()

    def _write(self, action: Callable) -> None:
        try:
            with self.db.session() as session:
                action(session)
        except Exception as exc:  # Postgres down: liveness is best effort, the work is not
            log.warning("worker liveness not recorded: %s", type(exc).__name__)

    # -- the exit status ------------------------------------------------------------------------------

    def exit_code(self) -> int:
        """0 for a requested shutdown, non-zero for any other stop (logged)."""
        self._stop.set()
        celery_code = getattr(self.worker, "exitcode", None)
        if self.stalled:
            return EXIT_STALLED
        if self.requested is not None:
            self._write(lambda s: _models().record_stopped(s, self.hostname))
            return 0
        code = celery_code if isinstance(celery_code, int) and celery_code != 0 else EXIT_UNREQUESTED
        log.error("worker %s stopped without a shutdown request (Celery exit code %s): exiting with %s so it is "
                  "restarted", self.hostname, celery_code, code)
        return code


def _hard_exit(hostname: str) -> None:
    log.critical("worker %s did not finish its warm shutdown: exiting now", hostname)
    logging.shutdown()
    os._exit(EXIT_STALLED)


def _models():
    from models import liveness

    return liveness


_current: Guard | None = None


def canary_ran(runtime, hostname: str, sent_at: float) -> str:
    """The canary task's body: mark this process as consuming, then record it in Postgres."""
    if _current is not None and _current.hostname == hostname:
        _current.consumed()
    try:
        with runtime.db.session() as session:
            _models().record_canary(session, hostname, _utc(sent_at))
    except Exception as exc:  # Postgres down: the watchdog has its proof, the next canary writes
        log.warning("canary of %s not recorded: %s", hostname, type(exc).__name__)
        return "not recorded"
    return hostname


class Monitor:
    """The supervisor's view of its worker children: Postgres liveness rows and a broker PING.

    One plain psycopg2 connection, opened on demand and dropped on any error (the next check reconnects):
    the supervisor lives as long as the stack and must stay small, so it does without SQLAlchemy."""

    def __init__(self, database_url: str, redis_url: str, thresholds: Thresholds) -> None:
        from models.supervision import dbapi_dsn

        self._dsn = dbapi_dsn(database_url)
        self._conn: Any = None
        self.thresholds = thresholds
        self._broker = _broker_client(redis_url)
        self._broker_up_since: float | None = None

    def _run(self, *statements: tuple[str, dict]) -> Any:
        """Run the statements in one transaction; the first row's first value of the last one."""
        import psycopg2

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg2.connect(self._dsn, connect_timeout=5, application_name="exsync-supervisor")
            with self._conn, self._conn.cursor() as cur:  # commits, or rolls back on error
                for sql, params in statements:
                    cur.execute(sql, params)
                row = cur.fetchone() if cur.description else None
            return row[0] if row else None
        except Exception:
            self._drop()
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def broker_up_for(self) -> float:
        """Seconds the broker has answered without a break (0 when it does not answer now)."""
        try:
            self._broker.ping()
        except Exception:  # down or unreachable: whatever the error, the clock restarts
            self._broker_up_since = None
            return 0.0
        if self._broker_up_since is None:
            self._broker_up_since = time.monotonic()
        return time.monotonic() - self._broker_up_since

    def stalled_for(self, hostname: str, running_for: float) -> float:
        """Seconds ``hostname`` has gone without consuming while the broker answered (0: fine or unknown)."""
        broker_up = self.broker_up_for()
        if broker_up <= 0:
            return 0.0
        from models import supervision

        try:
            age = self._run((supervision.CONSUMED_AGE, {"h": hostname}))
        except Exception as exc:  # Postgres down: no verdict, and no restart on a guess
            log.warning("liveness of %s unknown: %s", hostname, type(exc).__name__)
            return 0.0
        # No row yet: the worker has not reached "ready"; its start is the last proof.
        age = running_for if age is None else float(age)
        return min(age, running_for, broker_up)

    def record_restart(self, hostname: str | None, reason: str, exit_code: int | None) -> None:
        """Count the restart; the replaced worker's row is closed, so it no longer shows as a worker."""
        from models import supervision
        from models.states import RestartReason

        statements = [(supervision.RECORD_RESTART, {"h": hostname, "reason": RestartReason(reason).value,
                                                    "code": exit_code})]
        if hostname:
            statements.append((supervision.RECORD_STOPPED, {"h": hostname}))
        try:
            self._run(*statements)
        except Exception as exc:  # Postgres down: the restart happened anyway, only its count is lost
            log.warning("worker restart not recorded: %s", type(exc).__name__)

    def close(self) -> None:
        self._drop()
        self._broker.close()
