"""``exsync run``: the whole stack in one command.

1. With no ``EXSYNC_DATABASE_URL`` / ``EXSYNC_REDIS_URL``, start an embedded Postgres / Redis under
   ``data_dir`` (``postgres/``, ``redis/``); from here on everything sees ordinary URLs.
2. Run the migrations.
3. Start ``exsync web`` and ``exsync worker --beat`` as child processes (the commands of the Procfile and
   docker-compose, with beat as a thread of the worker: one host needs no beat process of its own), with
   the URLs in their environment.
4. Restart a child that dies, with back-off; a child dying more than ``max_restarts`` times a minute
   cannot start, so the stack stops and exits 1. Any exit counts, 0 included: the supervisor never asks a
   child to stop before ``stop``.
   A worker child is also restarted when it stops consuming: its canary (worker/liveness.py) has not
   run for ``supervisor_after`` seconds while the broker answers, read from the same Postgres rows as
   ``/readyz``. The worker's own watchdog normally stops it first (it waits ``stale_after``, a third
   less); this catches a process too stuck to do even that. Each worker restart is a row in
   ``worker_restarts``, which ``/metrics`` counts.
5. On SIGINT/SIGTERM: SIGTERM every child (graceful for gunicorn and Celery alike), SIGKILL what is left
   after ``stop_timeout``, then stop the embedded servers.

Each child runs in its own process group, so a terminal's Ctrl-C reaches only the supervisor (which
stops the children in order) and a kill reaches a child's own sub-processes (gunicorn workers) too.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Mapping

import click

from core.config import Settings
from devtools.embedded import DataDirBusy
from models.states import RestartReason

if TYPE_CHECKING:  # imported where used: `exsync web` and friends never load them
    from devtools.embedded import EmbeddedPostgres, EmbeddedRedis
    from worker.liveness import Monitor

log = logging.getLogger("exsync.supervisor")

# One host, small: beat runs as a thread of the worker (`exsync worker --beat`) and the web app as one
# gunicorn worker with threads unless EXSYNC_WEB_WORKERS asks for more. Separate beat and web processes
# cost ~65 MB each on a VPS that also runs the exchanger's PHP site (bench/footprint).
CHILDREN = ("web", "worker+beat")
COMMANDS = {"worker+beat": ["worker", "--beat"]}  # a child's name -> its exsync command, when they differ
MAX_RESTARTS = 5  # per child within RESTART_WINDOW
RESTART_WINDOW = 60.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
STOP_TIMEOUT = 30.0
STARTUP_TIMEOUT = 120.0
STALL_KILL_GRACE = 10.0  # a stalled worker gets SIGTERM (and SIGCONT), then SIGKILL after this


class MigrationFailed(RuntimeError):
    """The schema could not be brought up to date: nothing can start on it."""


class GaveUp(RuntimeError):
    """A child keeps dying: restarting it again would only hide the problem."""


def web_url(bind: str) -> str:
    """The URL to reach a bind address from this host (a wildcard bind is reached on loopback)."""
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"http://{host}:{port}"


def _parent_death_signal():
    """Linux: a child gets SIGTERM if the supervisor itself is killed (-9), so it cannot be orphaned."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only calls it
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


class Child:
    def __init__(self, name: str, env: Mapping[str, str], output: IO | None = None) -> None:
        command = COMMANDS.get(name, [name])
        self.name = command[0]  # web, worker, beat: what it is, whatever else it runs
        self.output = output  # None: the supervisor's own stdout/stderr
        if self.name == "web" and not env.get("EXSYNC_WEB_WORKERS"):
            command = [*command, "--workers", "1"]
        self.argv = [sys.executable, "-m", "cli", *command]  # == `exsync …`, wherever exsync is installed
        self.env = dict(env)
        self.proc: subprocess.Popen | None = None
        self.deaths: list[float] = []
        self.restart_at: float | None = None
        self.started_at = 0.0
        self.stalled_at: float | None = None  # when the supervisor found it no longer consuming
        self.next_liveness_check = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True, stdout=self.output,
                                     stderr=self.output, preexec_fn=_parent_death_signal())
        self.started_at = time.monotonic()
        self.stalled_at = None
        log.info("started %s (pid %s)", self.name, self.proc.pid)

    @property
    def hostname(self) -> str | None:
        """A worker child's Celery hostname (what its liveness row is keyed by)."""
        from worker.liveness import worker_hostname

        return worker_hostname(self.proc.pid) if self.proc is not None and self.name == "worker" else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_group(self, sig: int) -> None:
        """Signal the child and everything it started (its process group = its pid)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)


class Stack:
    """The embedded services, the migrations and the supervised children. ``start`` / ``check`` / ``stop``."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None, *,
                 children: tuple[str, ...] = CHILDREN, max_restarts: int = MAX_RESTARTS,
                 stop_timeout: float = STOP_TIMEOUT, output: IO | None = None, database: str = "exsync") -> None:
        self.settings = settings
        self.output = output
        self.database = database  # the embedded Postgres' database (the demo uses one per run)
        self.env = dict(os.environ if env is None else env)
        self.names = children
        self.max_restarts = max_restarts
        self.stop_timeout = stop_timeout
        self.children: list[Child] = []
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.monitor: Monitor | None = None  # worker liveness, once the URLs are known
        self.owns_data = False  # claimed the data folder's embedded services (devtools/embedded.py)
        self.web_url = web_url(self.env.get("EXSYNC_WEB_BIND") or settings.web_bind)

    @property
    def database_url(self) -> str:
        return self.env["EXSYNC_DATABASE_URL"]

    @property
    def redis_url(self) -> str:
        return self.env["EXSYNC_REDIS_URL"]

    def start_services(self) -> None:
        """Embedded Postgres/Redis where no URL is configured, then the migrations."""
        from devtools.embedded import EmbeddedPostgres, EmbeddedRedis, claim

        data = Path(self.settings.data_dir)
        if not (self.settings.database_url and self.settings.redis_url):
            claim(data)  # refuses a data folder in use; stops what a crashed owner left running
            self.owns_data = True
        if self.settings.database_url:
            self.env["EXSYNC_DATABASE_URL"] = self.settings.database_url
        else:
            log.info("no EXSYNC_DATABASE_URL: starting an embedded Postgres in %s", data / "postgres")
            self.postgres = EmbeddedPostgres(data / "postgres", self.database)
            self.env["EXSYNC_DATABASE_URL"] = self.postgres.url
        if self.settings.redis_url:
            self.env["EXSYNC_REDIS_URL"] = self.settings.redis_url
        else:
            log.info("no EXSYNC_REDIS_URL: starting an embedded Redis in %s", data / "redis")
            self.redis = EmbeddedRedis(data / "redis")
            self.env["EXSYNC_REDIS_URL"] = self.redis.url
        self.migrate()
        log.info("database schema is up to date")

    def migrate(self) -> None:
        """``exsync migrate`` as a child that exits: Alembic and every model stay out of this long-lived
        process (bench/footprint), and its errors read as they do when an operator runs it."""
        done = subprocess.run([sys.executable, "-m", "cli", "migrate"], env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise MigrationFailed(f"exsync migrate exited with {done.returncode}: {done.stdout.strip()[-2000:]}")

    def start_children(self) -> None:
        if any(COMMANDS.get(n, [n])[0] == "worker" for n in self.names) and self.monitor is None:
            from worker.liveness import Monitor, Thresholds

            self.monitor = Monitor(self.database_url, self.redis_url, Thresholds.for_settings(self.settings, self.env))
        for name in self.names:
            child = Child(name, self.env, self.output)
            child.start()
            self.children.append(child)

    def check(self) -> None:
        """Restart children that died or (workers) stopped consuming, with back-off; ``GaveUp`` when one
        keeps dying."""
        from worker.liveness import EXIT_STALLED

        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None and not child.running():
                code = child.proc.returncode if child.proc else None
                child.kill_group(signal.SIGKILL)  # whatever it left behind (gunicorn workers)
                stalled = child.stalled_at is not None or code == EXIT_STALLED
                if child.name == "worker" and self.monitor is not None:
                    reason = RestartReason.STALLED if stalled else RestartReason.EXITED
                    self.monitor.record_restart(child.hostname, reason, code)
                child.deaths = [t for t in child.deaths if now - t < RESTART_WINDOW] + [now]
                if len(child.deaths) > self.max_restarts:
                    raise GaveUp(f"{child.name} exited {len(child.deaths)} times within {RESTART_WINDOW:g}s "
                                 f"(last exit code {code}); see its log lines above")
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(child.deaths) - 1))
                log.warning("%s %s with code %s; restarting in %.1fs", child.name,
                            "stopped consuming and exited" if stalled else "exited", code, delay)
                child.restart_at = now + delay
            elif child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.start()
            elif child.name == "worker" and self.monitor is not None and child.hostname is not None:
                self._check_consuming(child, child.hostname, self.monitor, now)

    def _check_consuming(self, child: Child, hostname: str, monitor: Monitor, now: float) -> None:
        """Stop a worker that no longer consumes; the next ``check`` restarts it like any exited child."""
        if child.stalled_at is not None:
            if now - child.stalled_at > STALL_KILL_GRACE:
                child.kill_group(signal.SIGKILL)
            return
        if now < child.next_liveness_check:
            return
        child.next_liveness_check = now + min(monitor.thresholds.interval, 2.0)
        stalled = monitor.stalled_for(hostname, now - child.started_at)
        if stalled > monitor.thresholds.supervisor_after:
            log.error("worker %s has not consumed for %.0fs while the broker answers: restarting it",
                      child.hostname, stalled)
            child.stalled_at = now
            child.kill_group(signal.SIGTERM)
            child.kill_group(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.web_url + "/healthz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_healthy(self, stop: threading.Event, timeout: float = STARTUP_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            self.check()
            if self.healthy():
                return True
            stop.wait(0.5)
        return False

    def stop(self) -> None:
        """Children first (SIGTERM, then SIGKILL after stop_timeout), then the embedded servers."""
        for child in self.children:
            if child.running():
                child.kill_group(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs: killing it", child.name, self.stop_timeout)
            child.kill_group(signal.SIGKILL)  # the leader if it hung, stragglers of its group otherwise
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(5)
        self.children.clear()
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.owns_data:
            from devtools.embedded import release

            release(Path(self.settings.data_dir))
            self.owns_data = False

    def describe(self) -> list[str]:
        data = Path(self.settings.data_dir)
        stuck = ("operator page: /stuck, Bearer or Basic with EXSYNC_API_TOKEN" if self.settings.api_token
                 else "no operator page: set EXSYNC_API_TOKEN to open /stuck and /api/v1")
        return [
            f"web       {self.web_url}  (health: /healthz, metrics: /metrics; {stuck})",
            "postgres  " + (f"embedded in {data / 'postgres'}" if self.postgres else "EXSYNC_DATABASE_URL"),
            "redis     " + (f"embedded in {data / 'redis'}" if self.redis else "EXSYNC_REDIS_URL"),
            "children  " + ", ".join(f"{c.name} (pid {c.pid})" for c in self.children),
        ]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An Event set by SIGINT/SIGTERM/SIGHUP for the duration of the block (main thread only)."""
    stop = threading.Event()
    received: list[int] = []

    def handler(signum: int, _frame) -> None:
        received.append(signum)
        stop.set()

    # SIGHUP: the terminal was closed. Its default action ends the process without any clean-up, which left
    # the embedded Postgres and Redis running; stop everything in order instead.
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield stop
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if received:
            log.info("received %s: stopped", signal.Signals(received[0]).name)


def port_taken(bind: str) -> str | None:
    """Why ``bind`` cannot be listened on (None: it can), checked as gunicorn binds (SO_REUSEADDR)."""
    import socket

    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def run_stack(settings: Settings, *, duration: float | None = None, stop_timeout: float = STOP_TIMEOUT,
              log_json: bool = False) -> int:
    """Run until a signal (or ``duration`` seconds after the web app is healthy). Returns the exit code."""
    env = dict(os.environ)
    if log_json:
        env["EXSYNC_LOG_JSON"] = "1"
    stack = Stack(settings, env, stop_timeout=stop_timeout)
    taken = port_taken(env.get("EXSYNC_WEB_BIND") or settings.web_bind)
    if taken:  # gunicorn would retry it for ever while `run` waited on another server's /healthz
        log.error("cannot listen on %s: %s (EXSYNC_WEB_BIND chooses another address)",
                  env.get("EXSYNC_WEB_BIND") or settings.web_bind, taken)
        return 1
    with stop_on_signals() as stop:
        try:
            stack.start_services()
            if stop.is_set():
                return 0
            stack.start_children()
            if not stack.wait_healthy(stop):
                if stop.is_set():
                    return 0
                log.error("the web app did not answer %s/healthz within %.0fs", stack.web_url, STARTUP_TIMEOUT)
                return 1
            click.echo("exsync is running")
            for line in stack.describe():
                click.echo("  " + line)
            click.echo("  Ctrl-C stops everything." if duration is None else f"  stopping in {duration:g}s.")
            deadline = None if duration is None else time.monotonic() + duration
            while not stop.wait(0.5):
                stack.check()
                if deadline is not None and time.monotonic() >= deadline:
                    break
            return 0
        except GaveUp as exc:
            log.error("giving up: %s", exc)
            return 1
        except MigrationFailed as exc:
            log.error("%s", exc)
            return 1
        except DataDirBusy as exc:
            log.error("%s", exc)
            return 1
        finally:
            stack.stop()
