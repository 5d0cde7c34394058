"""The ``exsync`` command line.

Process commands: ``run`` (everything, supervised), ``demo``, ``web``, ``worker``, ``beat``, ``migrate``,
``sandbox``. Operator commands: ``reconcile``, ``bids list|show|create``, ``inbox list|replay``,
``check-config``.

Errors are answered, never dumped: a ``ConfigError`` anywhere becomes ``config error: <key>: <problem>``
on stderr with exit code 2 (the same code click uses for bad arguments); a database, broker or provider
failure becomes one redacted line with exit code 1.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import click

from worker.config import ConfigError, Settings, load_settings

WEB_THREADS = 8  # per gunicorn worker; see `web` for why gthread

from worker.sandboxes import PROVIDERS as SANDBOX_PROVIDERS  # noqa: E402


class ConfigFailure(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"config error: {self.message}", err=True)


class ExsyncGroup(click.Group):
    """Turns expected failures into one line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import OperationalError as DbError

        from providers.errors import ProviderError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise ConfigFailure(str(exc)) from None
        except DbError as exc:
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise click.ClickException(_redact(ctx, f"database unavailable (EXSYNC_DATABASE_URL): {detail}")) from None
        except ProviderError as exc:
            raise click.ClickException(_redact(ctx, f"provider error: {exc}")) from None


def _redact(ctx: click.Context, text: str) -> str:
    state = ctx.find_object(Cli)
    if state is None or state._settings is None:
        return text
    from worker.logs import redactor

    return redactor(state._settings).redact(text)


@dataclass
class Cli:
    """What the commands share: settings loaded once (with logging set up), a runtime on demand."""

    log_json: bool = False
    _settings: Settings | None = None
    _runtime: Any = None
    _payouts: Any = None

    def settings(self) -> Settings:
        if self._settings is None:
            from worker.logs import setup_logging
            from worker.payout_config import load_payout_config_from_env

            settings = load_settings()
            # The payout sections too: a bad [providers.*]/[routes.*] stops every command at start-up
            # (run, web, worker, beat included) rather than the first payout tick.
            self._payouts = load_payout_config_from_env()
            self._settings = settings
            setup_logging(self._settings, json=self.log_json)
        return self._settings

    def payouts(self):
        """The PayoutConfig validated with the settings."""
        self.settings()
        return self._payouts

    def runtime(self):
        """A Runtime for this command, passed explicitly (the process-wide one is left alone)."""
        if self._runtime is None:
            from worker.runtime import Runtime

            settings = self.settings()
            require_database(settings)
            self._runtime = Runtime(settings)
        return self._runtime

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()


def require_database(settings: Settings) -> None:
    if not settings.database_url:
        raise ConfigError("EXSYNC_DATABASE_URL", "is not set (only `exsync run` and `exsync demo` start an embedded Postgres)")


def require_broker(settings: Settings) -> None:
    if not settings.redis_url:
        raise ConfigError("EXSYNC_REDIS_URL", "is not set (only `exsync run` and `exsync demo` start an embedded Redis)")


pass_cli = click.make_pass_decorator(Cli)


@click.group("exsync", cls=ExsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-json", is_flag=True, envvar="EXSYNC_LOG_JSON",
              help="Log one JSON object per line (env EXSYNC_LOG_JSON=1).")
@click.version_option(package_name="exsync")
@click.pass_context
def cli(ctx: click.Context, log_json: bool) -> None:
    """exsync: mirror a Premium Exchanger site's bids into Postgres, and pay them out."""
    state = Cli(log_json=log_json)
    ctx.obj = state
    ctx.call_on_close(state.close)


# -- processes ------------------------------------------------------------------------------------


@cli.command()
@click.option("--for", "duration", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop SECONDS after the web app answers /healthz (smoke tests; 0 = start, check, stop).")
@click.option("--stop-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="How long children may take to stop after SIGTERM before they are killed.")
@pass_cli
def run(state: Cli, duration: float | None, stop_timeout: float) -> None:
    """Migrate, then run web, worker and beat supervised (embedded Postgres/Redis when no URL is set)."""
    from worker.supervisor import run_stack

    sys.exit(run_stack(state.settings(), duration=duration, stop_timeout=stop_timeout, log_json=state.log_json))


@cli.command()
@click.option("--duration", type=click.FloatRange(min=1), metavar="SECONDS", help="Stop after SECONDS (default: Ctrl-C).")
@click.option("--bids", "bid_count", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many bids to create through exsync.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds between two bid creations.")
@pass_cli
def demo(state: Cli, duration: float | None, bid_count: int, interval: float) -> None:
    """Run the stack against an in-process Premium sandbox with faulty callbacks, and watch it converge."""
    from worker.demo import run_demo

    sys.exit(run_demo(duration=duration, bids=bid_count, interval=interval, log_json=state.log_json))


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
    """
    from gunicorn.app.base import BaseApplication

    from worker.logs import GunicornLogger

    settings = state.settings()
    require_database(settings)
    require_broker(settings)
    options = {
        "bind": bind or settings.web_bind,
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

    from worker import runtime as runtime_mod
    from worker.celery_app import configure

    require_database(settings)
    require_broker(settings)
    runtime_mod.install(runtime_mod.Runtime(settings))  # tasks use the settings validated here
    celery_setup_logging.connect(_keep_our_logging, weak=False)
    return configure(settings)


def _keep_our_logging(**_: Any) -> None:
    """Connected to Celery's setup_logging signal: its presence tells Celery to leave logging alone."""


@cli.command()
@pass_cli
def worker(state: Cli) -> None:
    """A Celery worker (threads pool, EXSYNC_WORKER_CONCURRENCY threads).

    Threads rather than prefork: every task waits on provider HTTP calls and Postgres, so threads give
    the same throughput in one process, share one connection pool and one rate limiter per exchanger,
    and start in a second.

    It proves it consumes (a canary through its own queue, worker/liveness.py) and stops itself when it
    no longer does. Exit status: 0 after SIGTERM/SIGINT/SIGQUIT, non-zero for any other stop (Celery's
    "Unrecoverable error" path returns like a clean stop, and worker_main drops the exit code), so
    ``Restart=on-failure`` and the ``exsync run`` supervisor restart it.
    """
    from worker.liveness import Guard

    settings = state.settings()
    app = _celery(settings)
    guard = Guard(app, settings).install()
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


@cli.command()
@pass_cli
def beat(state: Cli) -> None:
    """Celery beat: the periodic jobs. Run exactly one (a second one is harmless, but useless)."""
    settings = state.settings()
    app = _celery(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.Beat(schedule=str(settings.data_dir / "celerybeat-schedule"), loglevel=settings.log_level,
             quiet=True).run()


@cli.command()
@pass_cli
def migrate(state: Cli) -> None:
    """Bring the database schema up to date (safe to run concurrently: one waits for the other)."""
    from worker.migrate import current_head, upgrade

    settings = state.settings()
    require_database(settings)
    upgrade(settings.database_url)
    click.echo(f"database schema at {current_head()}")


@cli.command()
@click.argument("provider", type=click.Choice(SANDBOX_PROVIDERS), metavar="PROVIDER")
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
    payout sandboxes' (zaleycash, gateway, paysera).
    """
    from providers.sandbox_server import serve
    from worker import sandboxes

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


# -- operator commands ------------------------------------------------------------------------------


@cli.command()
@click.option("--exchanger", metavar="NAME", help="Only this exchanger (default: every enabled one).")
@pass_cli
def reconcile(state: Cli, exchanger: str | None) -> None:
    """Sweep get_exchanges now (from the stored cursor) and reconcile every bid it lists."""
    from worker.sweep import sweep_exchanger

    settings = state.settings()
    if exchanger:
        settings.exchanger(exchanger)  # ConfigError names an unknown one
        names = [exchanger]
    else:
        names = [name for name, ex in settings.exchangers.items() if ex.enabled]
    if not names:
        raise ConfigError("exchangers", "none is configured and enabled (EXSYNC_CONFIG)")
    rt = state.runtime()
    for name in names:
        # get_exchanges gives no total, so the bar counts bids seen rather than a percentage.
        with click.progressbar((x for x in ()), label=f"sweeping {name}", show_pos=True, file=sys.stderr) as bar:
            result = sweep_exchanger(rt, name, progress=bar.update)  # called with each page's size
        if result.skipped:
            click.echo(f"{name}: skipped (another sweep of this exchanger is running)")
            continue
        click.echo(f"{name}: seen {result.seen}, inserted {result.inserted}, changed {result.changed} "
                   f"({result.pages} pages; cursor now {_fmt(result.cursor_time)})")


@cli.group()
def bids() -> None:
    """The mirrored bids."""


@bids.command("list")
@click.option("--exchanger", metavar="NAME")
@click.option("--status")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_cli
def bids_list(state: Cli, exchanger: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Newest bids first."""
    from models.queries import list_bids

    with state.runtime().db.session() as session:
        rows = list_bids(session, exchanger=exchanger, status=status, limit=limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    _table(rows, [
        ("EXCHANGER", "exchanger"), ("REMOTE_ID", "remote_id"), ("STATUS", "status"),
        ("GIVE", lambda r: _money(r["amount_give"], r["currency_code_give"])),
        ("GET", lambda r: _money(r["amount_get"], r["currency_code_get"])),
        ("VIA", "created_via"), ("UPDATED", lambda r: _fmt(r["updated_at"])),
    ], empty="no bids")


@bids.command("show")
@click.argument("exchanger")
@click.argument("remote_id", type=int)
@pass_cli
def bids_show(state: Cli, exchanger: str, remote_id: int) -> None:
    """One bid with its status history and poll schedule."""
    from models.queries import get_bid

    with state.runtime().db.session() as session:
        bid = get_bid(session, exchanger, remote_id)
    if bid is None:
        raise click.ClickException(f"no bid {exchanger}/{remote_id} in the mirror")
    history, poll = bid.pop("history"), bid.pop("poll")
    width = max(len(k) for k in bid)
    for key, value in bid.items():
        if value is not None:
            click.echo(f"{key:<{width}}  {_fmt(value)}")
    click.echo("")
    click.echo("history:")
    _table(history, [
        ("RECORDED", lambda h: _fmt(h["recorded_at"])), ("FROM", lambda h: h["from_status"] or "-"),
        ("TO", "to_status"), ("SOURCE", "source"), ("OBSERVED", lambda h: _fmt(h["observed_at"])),
        ("NOTE", lambda h: h["note"] or ""),
    ], empty="  (none)")
    if poll:
        click.echo("")
        click.echo(f"poll: {poll['state']}, next {_fmt(poll['next_poll_at'])}, {poll['polls']} polls"
                   + (f", last error: {poll['last_error']}" if poll["last_error"] else ""))


def _decimal(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"not a number: {value!r}") from None
    if not out.is_finite() or out <= 0:
        raise click.BadParameter(f"must be a positive number, got {value!r}")
    return out


def _fields(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}")
        out[name.strip()] = value
    return out


@bids.command("create")
@click.option("--exchanger", required=True, metavar="NAME")
@click.option("--direction-id", required=True, type=click.IntRange(min=1))
@click.option("--amount", required=True, callback=_decimal, help="calc_amount, as the engine reads it.")
@click.option("--calc-action", type=click.IntRange(1, 4), default=1, show_default=True,
              help="What --amount means (the engine's calc_action).")
@click.option("--api-id", help="Your idempotency id (default: a new unique one). Re-using it returns the same bid.")
@click.option("--field", "fields", multiple=True, callback=_fields, metavar="NAME=VALUE",
              help="A form field of the direction (account2, cf6, …); repeat for each.")
@pass_cli
def bids_create(state: Cli, exchanger: str, direction_id: int, amount: Decimal, calc_action: int,
                api_id: str | None, fields: dict[str, str]) -> None:
    """Create a bid through exsync (with exsync's callback URL), store it, print it."""
    from providers.errors import ValidationError
    from worker.bids import LookupFailed, OutcomeUnknown, RequestError, create_bid

    state.settings().exchanger(exchanger)
    try:
        bid, created = create_bid(state.runtime(), exchanger, direction_id=direction_id, calc_amount=amount,
                                  calc_action=calc_action, api_id=api_id, fields=fields)
    except (ValidationError, RequestError) as exc:
        for name, problem in exc.fields.items():
            click.echo(f"  {name}: {problem}", err=True)
        who = "the exchanger" if isinstance(exc, ValidationError) else "exsync"
        raise click.ClickException(f"{who} refused the bid (fields above)") from None
    except (OutcomeUnknown, LookupFailed) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(("created" if created else "already existed (same api_id)") + ":")
    click.echo(json.dumps(bid, default=str, indent=2))


@cli.group()
def inbox() -> None:
    """Received webhook events."""


@inbox.command("list")
@click.option("--state", "event_state", type=click.Choice(["received", "processed", "failed", "dead", "rejected"]))
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_cli
def inbox_list(state: Cli, event_state: str | None, limit: int) -> None:
    """Newest events first."""
    from models.queries import list_inbox

    with state.runtime().db.session() as session:
        rows = list_inbox(session, state=event_state, limit=limit)
    _table(rows, [
        ("ID", "id"), ("RECEIVED", lambda e: _fmt(e["received_at"])), ("PROVIDER", "provider"),
        ("ENDPOINT", "endpoint"), ("STATE", "state"), ("ATTEMPTS", "attempts"),
        ("PAYLOAD", lambda e: json.dumps(e["payload"], default=str) if e["payload"] else ""),
        ("LAST_ERROR", lambda e: (e["last_error"] or "")[:60]),
    ], empty="no events")


@inbox.command("replay")
@click.argument("event_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@click.option("--all-failed", is_flag=True, help="Every failed and dead event.")
@pass_cli
def inbox_replay(state: Cli, event_ids: tuple[int, ...], all_failed: bool) -> None:
    """Process events again (with fresh attempts)."""
    from worker.inbox import replay

    if bool(event_ids) == all_failed:
        raise click.UsageError("give event IDs or --all-failed (not both)")
    rt = state.runtime()
    ids = replay(rt, event_ids=list(event_ids) or None)
    if event_ids and len(ids) < len(event_ids):
        missing = sorted(set(event_ids) - set(ids))
        click.echo(f"skipped (unknown or already processed): {', '.join(map(str, missing))}", err=True)
    if ids and rt.settings.redis_url:
        from worker.celery_app import configure
        from worker.tasks import process_inbox_event

        configure(rt.settings)
        for event_id in ids:
            process_inbox_event.delay(event_id)
        click.echo(f"replaying {len(ids)} event(s): {', '.join(map(str, ids))}")
    elif ids:
        click.echo(f"{len(ids)} event(s) reset to received; beat's inbox sweep enqueues them "
                   f"(no EXSYNC_REDIS_URL here to enqueue now)")
    else:
        click.echo("nothing to replay")


@cli.command("check-config")
@pass_cli
def check_config(state: Cli) -> None:
    """Load the configuration, print it with secrets hidden; exit 2 naming the first bad key."""
    from sqlalchemy.engine import make_url

    s = state.settings()

    def url(u: str | None, what: str) -> str:
        if not u:
            return f"embedded {what} under {s.data_dir} (exsync run / demo only)"
        if u.startswith("postgres"):
            return make_url(u).render_as_string(hide_password=True)
        return _hide_url_password(u)

    lines = [
        f"database      {url(s.database_url, 'Postgres')}",
        f"redis         {url(s.redis_url, 'Redis')}",
        f"data_dir      {s.data_dir}",
        f"public_url    {s.public_url}",
        f"web           {s.web_bind}, {s.web_workers} workers",
        f"worker        {s.worker_concurrency} threads",
        f"api           {'on (EXSYNC_API_TOKEN set)' if s.api_token else 'off (no EXSYNC_API_TOKEN)'}",
        f"log level     {s.log_level}",
        f"sweep         every {s.sweep_interval}s, overlap {s.sweep_overlap}s, pages of {s.sweep_page_size}",
        f"poll          every {s.poll_interval}s, batches of {s.poll_batch}, give up after {s.poll_give_up_after}s",
        f"inbox         retry after {s.inbox_retry_after}s, at most {s.inbox_max_attempts} attempts, "
        f"bodies up to {s.webhook_max_body} bytes",
        "poll ladder   " + "; ".join(f"{k}: {','.join(map(str, v))}" for k, v in s.poll_ladder.items()),
        f"exchangers    {len(s.exchangers) or 'none'}",
    ]
    for ex in s.exchangers.values():
        lines += [
            f"  {ex.name}{'' if ex.enabled else ' (disabled)'}",
            f"    base_url      {ex.base_url}",
            f"    api_login     {ex.api_login[:4]}…  api_key ***  webhook token ***",
            f"    callback_url  {s.callback_url(ex.name)}",
            f"    timeout {ex.timeout:g}s, rate limit {ex.rate_limit:g}/s, lang {ex.lang or '-'}, "
            f"allowed_ips {', '.join(map(str, ex.allowed_ips)) or 'any'}",
        ]
    lines += _payout_summary(state.payouts())
    from worker.logs import RedactSecrets

    red = RedactSecrets(s.secrets() + state.payouts().secrets())
    for line in lines:
        click.echo(red.redact(line))
    click.echo("config OK")


def _payout_summary(pc) -> list[str]:
    """check-config's lines for [payouts], [providers.*] and [routes.*]; secrets only by variable name."""
    p = pc.settings

    def ladder(v) -> str:
        return ",".join(map(str, v))

    lines = [
        f"payouts       lease {p.lease_seconds}s, {p.max_attempts} attempts (retry {ladder(p.retry_ladder)}), "
        f"checks {ladder(p.check_ladder)} up to {p.max_checks}, park {p.park_seconds}s, "
        f"completion {ladder(p.completion_ladder)}, jitter {p.jitter:g}, batches of {p.batch}",
        f"providers     {len(pc.providers) or 'none'}",
    ]
    for pr in pc.providers.values():
        opts = []
        for k, v in pr.options.items():
            if k == "currencies":
                v = ", ".join(f"{c}={n}" for c, n in v.items())
            opts.append(f"{k} {v}")
        lines += [
            f"  {pr.name} ({pr.type})",
            f"    base_url      {pr.base_url}",
            f"    timeout {pr.timeout:g}s; " + ", ".join(f"{k} ***" for k in pr.secrets),
        ]
        if opts:
            lines.append("    " + "; ".join(opts))
    lines.append(f"routes        {len(pc.routes) or 'none'}")
    for r in pc.routes.values():
        ceiling = f"auto-pay up to {_fmt(r.auto_pay_ceiling)}" if r.auto_pay_ceiling is not None else "no auto-pay ceiling"
        lines.append(f"  {r.exchanger}{'' if r.enabled else ' (disabled)'}: on {', '.join(r.trigger_statuses)}; "
                     f"{ceiling}; {len(r.rules)} rule(s)")
        for i, rule in enumerate(r.rules):
            via = f" via {rule.psys_get}" if rule.psys_get else ""
            limits = f"{_fmt(rule.min_amount) if rule.min_amount is not None else '-'}.." \
                     f"{_fmt(rule.max_amount) if rule.max_amount is not None else '-'}"
            lines.append(f"    [{i}] {rule.currency}{via} → {rule.provider} to {rule.destination_field}, "
                         f"amount {limits}")
        if not r.rules:
            lines.append("    (no rules: every bid in a trigger status waits for a person)")
    return lines


# -- output helpers ---------------------------------------------------------------------------------


def _hide_url_password(u: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(u)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return u


def _fmt(value: Any) -> str:
    from datetime import datetime

    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _money(amount: Decimal | None, currency: str | None) -> str:
    return "-" if amount is None else f"{_fmt(amount)} {currency or ''}".strip()


def _table(rows: list[dict], columns: list[tuple[str, Any]], *, empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    cells = [[str(col(r) if callable(col) else _fmt(r[col])) for _, col in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(columns)]
    click.echo("  ".join(h.ljust(w) for (h, _), w in zip(columns, widths)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


# -- payouts ---------------------------------------------------------------------------------------

@cli.group()
def payouts() -> None:
    """Payouts: list, show, approve, retry, cancel (see docs/payouts.md)."""


def _payout_action(state: Cli, payout_id: int, action) -> str:
    from worker.payouts.queries import Refused
    from worker.reconcile import now_utc

    try:
        with state.runtime().db.session() as session:
            return action(session, now_utc())
    except Refused as exc:
        raise click.ClickException(str(exc)) from None


@payouts.command("list")
@click.option("--state", "state_filter", type=click.Choice(["pending", "submitting", "submitted", "succeeded", "failed", "unknown",
                                            "needs_review", "cancelled", "parked"]))
@click.option("--exchanger", metavar="NAME")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_cli
def payouts_list(state: Cli, state_filter: str | None, exchanger: str | None, limit: int, as_json: bool) -> None:
    """Newest payouts first."""
    from worker.payouts.queries import list_payouts

    with state.runtime().db.session() as session:
        rows = list_payouts(session, state=state_filter, exchanger=exchanger, limit=limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    _table(rows, [
        ("ID", "id"), ("EXCHANGER", "exchanger"), ("BID", "remote_id"), ("PROVIDER", "provider"),
        ("AMOUNT", lambda r: _money(r["amount"], r["currency"])), ("STATE", "state"), ("TRIES", "attempts"),
        ("BID_DONE", lambda r: "yes" if r["bid_completed_at"] else "-"),
        ("NOTE", lambda r: (r["last_error"] or r["completion_error"] or "-")[:70]),
    ], empty="no payouts")


@payouts.command("show")
@click.argument("payout_id", type=click.IntRange(min=1))
@pass_cli
def payouts_show(state: Cli, payout_id: int) -> None:
    """One payout with every call made for it."""
    from worker.payouts.queries import get_payout

    with state.runtime().db.session() as session:
        p = get_payout(session, payout_id)
    if p is None:
        raise click.ClickException(f"no payout {payout_id}")
    log = p.pop("attempts_log")
    width = max(len(k) for k in p)
    for key, value in p.items():
        click.echo(f"{key:<{width}}  {_fmt(value)}")
    click.echo("")
    _table(log, [("N", "n"), ("KIND", "kind"), ("STARTED", "started_at"), ("OUTCOME", "outcome"),
                 ("HTTP", "http_status"), ("CODE", "provider_code"),
                 ("MESSAGE", lambda r: (r["message"] or "-")[:80])], empty="no attempts yet")


@payouts.command("approve")
@click.argument("payout_id", type=click.IntRange(min=1))
@click.option("--by", default=lambda: os.environ.get("USER", "operator"), show_default="$USER",
              help="Who approves (recorded).")
@pass_cli
def payouts_approve(state: Cli, payout_id: int, by: str) -> None:
    """needs_review → pending: pay it (above the auto-pay ceiling, or after a review)."""
    from worker.payouts import queries

    new = _payout_action(state, payout_id, lambda s, now: queries.approve(s, payout_id, by, now))
    click.echo(f"payout {payout_id}: approved by {by}, now {new}")


@payouts.command("retry")
@click.argument("payout_id", type=click.IntRange(min=1))
@pass_cli
def payouts_retry(state: Cli, payout_id: int) -> None:
    """failed / needs_review / parked → pending, attempts reset."""
    from worker.payouts import queries

    new = _payout_action(state, payout_id, lambda s, now: queries.retry(s, payout_id, now))
    click.echo(f"payout {payout_id}: queued again, now {new}")


@payouts.command("cancel")
@click.argument("payout_id", type=click.IntRange(min=1))
@click.option("--reason", help="Recorded as the payout's note.")
@pass_cli
def payouts_cancel(state: Cli, payout_id: int, reason: str | None) -> None:
    """Never pay it (only from pending, needs_review, parked or failed)."""
    from worker.payouts import queries

    _payout_action(state, payout_id, lambda s, now: queries.cancel(s, payout_id, now, reason))
    click.echo(f"payout {payout_id}: cancelled")


# -- partner money ---------------------------------------------------------------------------------

@cli.group()
def partner() -> None:
    """Partner (affiliate) money on the exchanger: show, sync, payout (see docs/partner.md)."""


def _partner_names(state: Cli, exchanger: str | None) -> list[str]:
    settings = state.settings()
    if exchanger:
        settings.exchanger(exchanger)  # ConfigError names an unknown one
        return [exchanger]
    names = [name for name, ex in settings.exchangers.items() if ex.enabled]
    if not names:
        raise ConfigError("exchangers", "none is configured and enabled (EXSYNC_CONFIG)")
    return names


@partner.command("show")
@click.option("--exchanger", metavar="NAME", help="Only this exchanger (default: every enabled one).")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="Recent payouts shown.")
@pass_cli
def partner_show(state: Cli, exchanger: str | None, limit: int) -> None:
    """Balance, payout currencies and recent payouts, as last synced."""
    from worker.partner import account_summary

    rt = None
    for name in _partner_names(state, exchanger):
        rt = rt or state.runtime()
        s = account_summary(rt, name, recent=limit)
        click.echo(f"== {name}")
        if s is None:
            click.echo("no partner data yet (run `exsync partner sync`)")
            continue
        click.echo(f"partner id   {_fmt(s['partner_id'])}")
        click.echo(f"balance      {_fmt(s['balance'])}   (min payout {_fmt(s['min_payout'])})")
        click.echo(f"exchanges    {s['exchanges']} referred, accrued reward {_fmt(s['accrued_reward'])}")
        click.echo(f"synced at    {_fmt(s['synced_at'])}")
        if s["last_error"]:
            click.echo(f"last error   {s['last_error']} (at {_fmt(s['last_error_at'])})")
        click.echo("currencies:")
        _table(s["currencies"], [("METHOD_ID", "id"), ("TITLE", "title"),
                                 ("COMMISSION", lambda c: f"{c['commission']}%" if c.get("commission") else "-"),
                                 ("AMOUNT", lambda c: c.get("amount") or "-")], empty="  (none)")
        click.echo("recent payouts:")
        _table(s["payouts"], [("ID", "remote_id"), ("TIME", lambda p: _fmt(p["time"])), ("METHOD", "method_id"),
                              ("ACCOUNT", "account"), ("AMOUNT", lambda p: _money(p["pay_amount"], p["pay_currency_code"])),
                              ("STATUS", lambda p: p["status_name"] or _fmt(p["status"])), ("VIA", "requested_via")],
               empty="  (none)")


@partner.command("sync")
@click.option("--exchanger", metavar="NAME", help="Only this exchanger (default: every enabled one).")
@pass_cli
def partner_sync(state: Cli, exchanger: str | None) -> None:
    """Mirror get_partner_info, get_partner_exchanges and get_partner_payouts into Postgres now."""
    from worker.partner import sync_partner

    rt = None
    for name in _partner_names(state, exchanger):
        rt = rt or state.runtime()
        r = sync_partner(rt, name)
        if r.skipped:
            why = "another partner sync is running" if r.reason == "locked" else r.reason
            click.echo(f"{name}: skipped: {why}")
            continue
        click.echo(f"{name}: balance {_fmt(r.balance)}; exchanges {r.exchanges_seen} seen, {r.exchanges_inserted} new, "
                   f"{r.exchanges_changed} changed; payouts {r.payouts_seen} seen, {r.payouts_inserted} new, "
                   f"{r.payouts_changed} changed")
        for w in r.warnings:
            click.echo(f"  warning: {w}", err=True)


@partner.command("payout")
@click.option("--exchanger", required=True, metavar="NAME")
@click.option("--method-id", required=True, type=click.IntRange(min=1), help="A payout currency id (`partner show`).")
@click.option("--account", required=True, help="Where the engine pays the partner (wallet, card, …), ≤ 200 chars.")
@pass_cli
def partner_payout(state: Cli, exchanger: str, method_id: int, account: str) -> None:
    """Request a partner payout (add_partner_payout), record it, print its id."""
    from providers.errors import PermanentError, UnknownOutcomeError
    from providers.premium.errors import PartnerProgramError
    from worker.partner import PartnerRequestError, request_payout, validate_request

    state.settings().exchanger(exchanger)
    try:
        validate_request(method_id, account, None)  # before touching the database or the engine
        payout_id = request_payout(state.runtime(), exchanger, method_id, account)
    except PartnerRequestError as exc:
        hint = {"method_id": "'--method-id'", "account": "'--account'"}.get(exc.field or "")
        if hint:
            raise click.BadParameter(str(exc), param_hint=hint) from None
        raise click.ClickException(str(exc)) from None
    except PartnerProgramError as exc:
        raise click.ClickException(f"{exchanger}: {exc.message}") from None
    except UnknownOutcomeError as exc:
        raise click.ClickException(f"{exchanger}: the payout may or may not have been made ({exc.message}); "
                                   "run `exsync partner sync` and `exsync partner show` before asking again") from None
    except PermanentError as exc:
        raise click.ClickException(f"{exchanger}: the exchanger refused the payout: {exc.message}") from None
    click.echo(f"partner payout requested: {payout_id}")


def main(argv: list[str] | None = None) -> int:
    return cli.main(args=argv, prog_name="exsync")


if __name__ == "__main__":
    main()
