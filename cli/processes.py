"""Process commands: ``run`` (everything, supervised), ``demo``, ``web``, ``worker``, ``beat``, ``migrate``,
``sandbox``."""
from __future__ import annotations

import gc
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from cli.base import Cli, cli, pass_cli, require_broker, require_database
from core.config import Settings

WEB_THREADS = 8  # per gunicorn worker; see `web` for why gthread
BEAT_SCHEDULER = "worker.beat:SlotScheduler"
UNIX_PATH_MAX = 107  # bytes of a Unix socket path (sun_path is 108 with its NUL)


def control_socket(data_dir: Path, bind: str) -> str | None:
    """This web instance's gunicorn control socket (``gunicornc -s PATH``): ``<data dir>/run/web-<bind>.ctl``.

    gunicorn >= 25.1 otherwise opens ``$XDG_RUNTIME_DIR/gunicorn.ctl`` or ``~/.gunicorn/gunicorn.ctl``, one path
    for every gunicorn of the user: a second instance takes it over and the first one's shutdown unlinks it
    under the second. Two live instances never share a bind address, so the path is theirs alone; one that
    cannot bind exits before it opens its socket. None (no control socket) when the path is too long for a
    Unix socket.
    """
    name = "web-" + re.sub(r"[^A-Za-z0-9._-]", "_", bind) + ".ctl"
    path = (data_dir / "run" / name).absolute()
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        return None
    return str(path)



@cli.command()
@click.option("--for", "duration", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop SECONDS after the web app answers /healthz (smoke tests; 0 = start, check, stop).")
@click.option("--stop-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="How long children may take to stop after SIGTERM before they are killed.")
@pass_cli
def run(state: Cli, duration: float | None, stop_timeout: float) -> None:
    """Migrate, then run web, worker and beat supervised (embedded Postgres/Redis when no URL is set)."""
    from core.config import unknown_variables
    from devtools.supervisor import run_stack

    settings = state.settings()
    for name in unknown_variables():  # a typo here can mean an embedded database instead of the real one
        click.echo(f"warning: {name} is not a variable exsync reads (see exsync check-config)", err=True)
    sys.exit(run_stack(settings, duration=duration, stop_timeout=stop_timeout, log_json=state.log_json))


@cli.command()
@click.option("--duration", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Stop after SECONDS (default: Ctrl-C).")
@click.option("--bids", "bid_count", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many bids to create through exsync.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds between two bid creations.")
@click.option("--fresh", is_flag=True, help="Remove the data earlier demos kept (it stays until then).")
@pass_cli
def demo(state: Cli, duration: float | None, bid_count: int, interval: float, fresh: bool) -> None:
    """Run the stack against an in-process Premium sandbox with faulty callbacks, and watch it converge.

    Each run keeps its data (its own database in the embedded Postgres under EXSYNC_DATA_DIR/demo) after it
    ends: `exsync payouts list` and friends find the latest run by themselves; --fresh removes it all."""
    from devtools.demo import run_demo

    sys.exit(run_demo(duration=duration, bids=bid_count, interval=interval, log_json=state.log_json, fresh=fresh))


@cli.command()
@click.option("--bind", metavar="HOST:PORT", help="Listen address (default: EXSYNC_WEB_BIND).")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (default: EXSYNC_WEB_WORKERS).")
@click.option("--threads", type=click.IntRange(1, 256), default=WEB_THREADS, show_default=True,
              help="Threads per worker process.")
@pass_cli
def web(state: Cli, bind: str | None, workers: int | None, threads: int) -> None:
    """The webhook receivers, the bid API and the operator pages, on gunicorn.

    gthread workers: each callback spends most of its time waiting for the inbox row's COMMIT (an fsync
    at Postgres' default durability); threads overlap those waits and let Postgres group commits,
    where a sync worker would idle through each one. They also keep connections alive for load balancers.

    Each instance has its own gunicorn control socket, ``EXSYNC_DATA_DIR/run/web-<bind>.ctl`` (see
    ``control_socket``), so several instances on one host never share it.
    """
    from gunicorn.app.base import BaseApplication

    from core.logs import GunicornLogger

    settings = state.settings()
    require_database(settings)
    require_broker(settings)
    bind = bind or settings.web_bind
    options: dict[str, Any] = {
        "bind": bind,
        "workers": workers or settings.web_workers,
        "worker_class": "gthread",
        "threads": threads,
        "logger_class": GunicornLogger,
        "loglevel": settings.log_level.lower(),
        "proc_name": "exsync-web",
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"  # heartbeat files off overlay/disk (containers)
    ctl = control_socket(settings.data_dir, bind)
    try:
        if ctl is None:
            raise OSError(f"a path under {settings.data_dir} would be longer than a Unix socket allows")
        Path(ctl).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        options["control_socket"] = ctl
    except OSError as exc:  # a read-only or too deep data dir: serve without one rather than not at all
        logging.getLogger("exsync.web").warning("no gunicorn control socket for this instance: %s", exc)
        options["control_socket_disable"] = True

    # The modules (Flask, SQLAlchemy, the models, every receiver), not the app: imported before gunicorn forks,
    # their pages are shared by the master and its workers (~25 MB less per instance, bench/footprint). The
    # app itself — its engine, its Redis clients, the console's key read from Postgres — is made in each
    # worker after the fork (``load``), so no connection or thread is ever shared across processes.
    import webhooks.app  # noqa: F401

    gc.freeze()  # the collector would otherwise write to every shared object's page, copying it

    class Web(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            from webhooks.wsgi import app

            return app

    Web().run()


def _celery(settings: Settings):
    """The configured Celery app, with Celery's own logging setup disabled (ours is in place)."""
    from celery.signals import setup_logging as celery_setup_logging

    from core import runtime as runtime_mod
    from worker.celery_app import configure

    require_database(settings)
    require_broker(settings)
    runtime_mod.install(runtime_mod.Runtime(settings))  # tasks use the settings validated here
    celery_setup_logging.connect(_keep_our_logging, weak=False)
    return configure(settings)


def _keep_our_logging(**_: Any) -> None:
    """Connected to Celery's setup_logging signal: its presence tells Celery to leave logging alone."""


@cli.command()
@click.option("--beat", "with_beat", is_flag=True,
              help="Also send the periodic jobs from a thread of this worker (one host: no beat process).")
@pass_cli
def worker(state: Cli, with_beat: bool) -> None:
    """A Celery worker (threads pool, EXSYNC_WORKER_CONCURRENCY threads).

    Threads rather than prefork: every task waits on provider HTTP calls and Postgres, so threads give
    the same throughput in one process, share one connection pool and one rate limiter per exchanger,
    and start in a second.

    It proves it consumes (a canary through its own queue, worker/liveness.py) and stops itself when it
    no longer does. Exit status: 0 after SIGTERM/SIGINT/SIGQUIT, non-zero for any other stop (Celery's
    "Unrecoverable error" path returns like a clean stop, and worker_main drops the exit code), so
    ``Restart=on-failure`` and the ``exsync run`` supervisor restart it.

    ``--beat`` runs beat in a thread of this process (what ``exsync run`` does on one host): a beat process
    of its own costs ~65 MB for a loop that wakes once a second. Beat holds no state (worker/beat.py), so it
    dies and restarts with its worker; several such workers are as harmless as several beats.
    """
    from worker.liveness import Guard

    settings = state.settings()
    app = _celery(settings)
    guard = Guard(app, settings).install()
    if with_beat:
        _embed_beat(app, settings)
    app.worker_main([
        "worker", "--pool=threads", f"--concurrency={settings.worker_concurrency}",
        f"--loglevel={settings.log_level}", f"--hostname={guard.hostname}",
        f"--queues={app.conf.task_default_queue},{guard.queue}",
        # Neither is used (no remote revokes to sync, no event monitors), and each is one more consumer to
        # rebuild on every broker reconnect; mingle also holds each reconnect for a second.
        "--without-mingle", "--without-gossip",
    ])
    code = guard.exit_code()
    if code:
        sys.exit(code)


class _SandboxName(click.Choice):
    """The sandboxes' names, read from the provider registry only when ``exsync sandbox`` parses its argument
    or shows its help: loading every provider package (requests, cryptography) at import would weigh on
    every exsync process, the long-lived ones included (bench/footprint)."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # click.Choice keeps a plain attribute; this one is computed
    def choices(self) -> tuple[str, ...]:
        from devtools import sandboxes

        return sandboxes.providers()

    @choices.setter
    def choices(self, _value: Any) -> None:  # click.Choice.__init__ assigns it
        pass


def _embed_beat(app, settings: Settings) -> None:
    """Start beat in a thread once the worker is ready; stop it when the worker begins to shut down.

    Celery's own ``-B`` forks a beat process from the worker instead: a fork of a process that already runs
    threads, and a second process again."""
    from celery.beat import EmbeddedService
    from celery.signals import worker_ready, worker_shutting_down

    service = EmbeddedService(app, thread=True, scheduler_cls=BEAT_SCHEDULER)

    def start(**_: Any) -> None:
        service.start()

    def stop(**_: Any) -> None:
        service.stop()

    worker_ready.connect(start, weak=False)
    worker_shutting_down.connect(stop, weak=False)


@cli.command()
@pass_cli
def beat(state: Cli) -> None:
    """Celery beat: sends the periodic jobs. Run one per host or more: each job runs once per interval slot.

    No schedule file: the schedule lives in memory and periodic_runs in Postgres records what ran
    (worker/beat.py), so several beats, on one host or many, share nothing but the database.
    """
    settings = state.settings()
    app = _celery(settings)
    app.Beat(scheduler=BEAT_SCHEDULER, loglevel=settings.log_level, quiet=True).run()


@cli.command()
@pass_cli
def migrate(state: Cli) -> None:
    """Bring the database schema up to date (safe to run concurrently: one waits for the other)."""
    from models.migrate import current_head, upgrade

    upgrade(require_database(state.settings()))
    click.echo(f"database schema at {current_head()}")


@cli.command()
@click.argument("provider", type=_SandboxName(), metavar="PROVIDER")
@click.option("--port", type=click.IntRange(0, 65535), required=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--login", default=None, help="API-LOGIN it accepts (default: the sandbox's documented one).")
@click.option("--key", default=None, help="API-KEY it accepts (default: the sandbox's documented one).")
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Seconds per call.")
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of calls failing transiently (502 or maintenance).")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of callbacks never sent.")
@click.option("--duplicate-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of callbacks sent twice.")
@click.option("--reorder-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of callbacks held back behind newer ones.")
@click.option("--maintenance", type=click.Choice(["off", "method", "api"]), default="off", show_default=True)
@click.option("--autopilot", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="Move bids through their statuses every SECONDS (0: off).")
@click.option("--fail-after-commit-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Payout sandboxes: share of money calls that commit, then lose their answer.")
@click.option("--seed", type=int, default=None, help="Seed for ids and faults (repeatable runs).")
def sandbox(provider: str, port: int, host: str, login: str | None, key: str | None, latency: float,
            error_rate: float, drop_rate: float, duplicate_rate: float, reorder_rate: float, maintenance: str,
            autopilot: float, fail_after_commit_rate: float, seed: int | None) -> None:
    """Serve a provider sandbox (a faithful fake of its API) until Ctrl-C. LOCAL USE ONLY.

    The callback and maintenance options are the Premium sandbox's; --fail-after-commit-rate is the
    payout sandboxes' (every payout provider in providers/registry.py).
    """
    from devtools import sandboxes
    from providers.sandbox import serve

    premium = dict(login=login, key=key, maintenance=False if maintenance == "off" else maintenance,
                   callback_drop_rate=drop_rate, callback_duplicate_rate=duplicate_rate,
                   callback_reorder_rate=reorder_rate)
    app = sandboxes.build(provider, latency=latency, error_rate=error_rate,
                          fail_after_commit_rate=fail_after_commit_rate, seed=seed, premium=premium)
    server = serve(app, host=host, port=port)
    if autopilot and provider == "premium":
        app.engine.start_autopilot(autopilot)
    for line in sandboxes.banner(provider, app, server.url):
        click.echo(line)
    try:
        _wait_for_signal()
    finally:
        server.shutdown()
        sandboxes.close(app)


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
