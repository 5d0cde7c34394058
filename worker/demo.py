"""``exsync demo``: the real stack against an in-process Premium sandbox, with a live view.

- The sandbox runs in this process on a free port, with some latency and about 30% of its callbacks
  dropped, duplicated or held back (reordered); its autopilot moves bids through their statuses.
- A demo config (``exsync.toml``) and generated secrets (``secrets.env``) are written to
  ``<data_dir>/demo/``; the stack (``worker.supervisor.Stack``, the same as ``exsync run``) runs on them
  with its own embedded Postgres and Redis there. The demo never uses EXSYNC_DATABASE_URL/REDIS_URL:
  it must not write made-up bids into a real database. The folder is wiped at start, because the
  fresh sandbox knows none of the old bids.
- Bids are created THROUGH EXSYNC (``worker.bids.create_bid``, with exsync's callback URL), so the
  sandbox's callbacks reach our webhook, and polls and sweeps catch what the callbacks miss.
- The view shows, per bid, the sandbox's truth against the mirror. On a terminal it redraws in place;
  with CI=true or no TTY it prints a summary line now and then. Logs of every process go to
  ``<data_dir>/demo/exsync.log``.
"""
from __future__ import annotations

import collections
import logging
import os
import random
import secrets
import shutil
import socket
import string
import sys
import textwrap
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO

import click
from sqlalchemy import func, select

from models import Bid, BidStatusChange
from worker.config import Settings, load_settings
from worker.logs import setup_logging
from worker.runtime import Runtime
from worker.supervisor import GaveUp, Stack, stop_on_signals

log = logging.getLogger("exsync.demo")

EXCHANGER = "demo"
LATENCY = 0.05
CALLBACK_FAULTS = {"callback_drop_rate": 0.10, "callback_duplicate_rate": 0.10, "callback_reorder_rate": 0.10}
AUTOPILOT_INTERVAL = 2.0
REFRESH = 1.5  # seconds between two redraws of the live view
PLAIN_EVERY = 10.0  # seconds between two summary lines without a TTY
SETTLE = 45.0  # after --duration: how long to let the mirror catch up before the summary
STOP_TIMEOUT = 10.0

# Requests the sandbox accepts, one per direction it can pay out through its API (direction 4 is
# merchant-paid). Amounts are drawn within each direction's limits.
REQUESTS = [
    (1, (Decimal("0.01"), Decimal("0.5")), {"account2": "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE", "cf6": "demo@example.com"}),
    (2, (Decimal("50"), Decimal("2000")), {"account1": "TXdemoSender000000000000000000001", "account2": "4111111111111111",
                                           "cf1": "Demo", "cf3": "Customer", "cf6": "demo@example.com"}),
    (3, (Decimal("20"), Decimal("500")), {"account2": "ZC0012345678", "cf6": "demo@example.com"}),
]


def _alnum(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _default_bind() -> str:
    """127.0.0.1:8000 when free, else any free port: the demo should start on a busy laptop too."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8000))
            return "127.0.0.1:8000"
        except OSError:
            pass
    return f"127.0.0.1:{_free_port()}"


def demo_secrets() -> dict[str, str]:
    """Fresh credentials for every run: the sandbox's API key, our webhook token and API token."""
    return {
        "EXSYNC_EXCHANGER_DEMO_API_KEY": _alnum(32),
        "EXSYNC_EXCHANGER_DEMO_WEBHOOK_TOKEN": secrets.token_urlsafe(24),
        "EXSYNC_API_TOKEN": secrets.token_urlsafe(24),
    }


def write_demo_files(demo_dir: Path, sandbox_url: str, api_login: str, bind: str, secret_env: dict[str, str]) -> Path:
    """``exsync.toml`` (the sandbox as exchanger "demo") and ``secrets.env``; returns the TOML's path."""
    path = demo_dir / "exsync.toml"
    path.write_text(textwrap.dedent(f"""\
        # Written by `exsync demo`: the Premium sandbox as exchanger "{EXCHANGER}". Short intervals, so the
        # demo shows polls and sweeps catching the callbacks the sandbox drops.
        [settings]
        public_url = "http://{bind}"
        sweep_interval = 15
        sweep_overlap = 60
        poll_interval = 2

        [settings.poll_ladder]
        default = [3, 5, 10]
        new = [3, 5, 10]
        techpay = [3, 5, 10]
        payed = [3, 5, 10]
        coldpay = [3, 5, 10]
        realpay = [3, 5, 10]

        [exchangers.{EXCHANGER}]
        base_url = "{sandbox_url}"
        api_login = "{api_login}"
        timeout = 5
        rate_limit = 50
        """))
    secrets_path = demo_dir / "secrets.env"
    secrets_path.write_text("".join(f"{k}={v}\n" for k, v in secret_env.items()))
    secrets_path.chmod(0o600)
    return path


@dataclass
class Created:
    remote_id: int
    direction_id: int
    amount: Decimal


@dataclass
class View:
    """What one redraw shows."""

    created: list[Created] = field(default_factory=list)
    failed: int = 0
    truth: dict[int, str] = field(default_factory=dict)
    mirror: dict[int, tuple[str, int]] = field(default_factory=dict)  # remote_id -> (status, history rows)
    callbacks: collections.Counter = field(default_factory=collections.Counter)

    @property
    def mirrored(self) -> int:
        return sum(1 for c in self.created if c.remote_id in self.mirror)

    @property
    def in_sync(self) -> int:
        return sum(1 for c in self.created if self.mirror.get(c.remote_id, ("",))[0] == self.truth.get(c.remote_id))

    @property
    def history_rows(self) -> int:
        return sum(rows for _, rows in self.mirror.values())


def _mirror(runtime) -> dict[int, tuple[str, int]]:
    with runtime.db.session() as session:
        rows = session.execute(
            select(Bid.remote_id, Bid.status, func.count(BidStatusChange.id))
            .outerjoin(BidStatusChange, BidStatusChange.bid_id == Bid.id)
            .where(Bid.exchanger == EXCHANGER)
            .group_by(Bid.id)
        ).all()
    return {rid: (status, n) for rid, status, n in rows}


def _callbacks(engine) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for item in list(engine.callback_log):
        counts[item["outcome"]] += 1
        counts["reordered"] += bool(item.get("reordered"))
    counts["pending"] = engine.callbacks_pending
    return counts


def _summary_line(view: View, total: int) -> str:
    cb = view.callbacks
    return (f"created {len(view.created)}/{total} · mirrored {view.mirrored} · in sync {view.in_sync} · "
            f"history rows {view.history_rows} · callbacks: {cb['delivered']} delivered, {cb['dropped']} dropped, "
            f"{cb['duplicated']} duplicated, {cb['reordered']} reordered")


def _render(view: View, total: int, header: list[str], footer: str) -> str:
    rows = shutil.get_terminal_size((100, 30)).lines - len(header) - 8
    lines = list(header)
    lines.append(_summary_line(view, total))
    if view.failed:
        lines.append(click.style(f"{view.failed} bid creation(s) failed (see the log)", fg="red"))
    lines.append("")
    lines.append(f"  {'BID':>5}  {'DIR':>3}  {'SANDBOX (truth)':<16} {'MIRROR':<16} {'HISTORY':>7}")
    for c in list(reversed(view.created))[:max(3, rows)]:
        truth = view.truth.get(c.remote_id, "(archived)")
        status, hist = view.mirror.get(c.remote_id, (None, 0))
        if status is None:
            mark = click.style("not mirrored yet …", fg="yellow")
        elif status == truth:
            mark = click.style("in sync ✓", fg="green")
        else:
            mark = click.style("catching up …", fg="yellow")
        lines.append(f"  {c.remote_id:>5}  {c.direction_id:>3}  {truth:<16} {status or '-':<16} {hist:>7}  {mark}")
    if len(view.created) > rows:
        lines.append(f"  … and {len(view.created) - rows} older bids")
    lines += ["", footer]
    # Home, overwrite each line, clear the rest: no flicker from clearing the whole screen.
    return "\x1b[H" + "".join(line + "\x1b[K\n" for line in lines) + "\x1b[J"


def _create_one(runtime, view: View, rng: random.Random) -> None:
    from worker.bids import create_bid

    direction_id, (lo, hi), fields = rng.choice(REQUESTS)
    amount = (lo + (hi - lo) * Decimal(rng.random())).quantize(lo)
    try:
        bid, _ = create_bid(runtime, EXCHANGER, direction_id=direction_id, calc_amount=amount, fields=fields)
    except Exception as exc:  # shown as a count; the log has the reason
        view.failed += 1
        log.warning("demo: creating a bid failed: %s: %s", type(exc).__name__, exc)
        return
    view.created.append(Created(int(bid["remote_id"]), direction_id, amount))


def run_demo(*, duration: float | None, bids: int, interval: float, log_json: bool = False) -> int:
    from providers.premium.sandbox import create_app, serve

    data_dir = Path(os.environ.get("EXSYNC_DATA_DIR") or Settings.data_dir)
    demo_dir = data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    login, secret_env = _alnum(32), demo_secrets()
    app = create_app(login, secret_env["EXSYNC_EXCHANGER_DEMO_API_KEY"], latency=LATENCY, **CALLBACK_FAULTS)
    sandbox = serve(app, "127.0.0.1", 0)
    bind = os.environ.get("EXSYNC_WEB_BIND") or _default_bind()
    env = {k: v for k, v in os.environ.items()
           if k not in ("EXSYNC_DATABASE_URL", "EXSYNC_REDIS_URL", "EXSYNC_CONFIG")
           and not k.startswith("EXSYNC_EXCHANGER_")}
    env.update(secret_env, EXSYNC_DATA_DIR=str(demo_dir), EXSYNC_WEB_BIND=bind,
               EXSYNC_CONFIG=str(write_demo_files(demo_dir, sandbox.url, login, bind, secret_env)))
    if log_json:
        env["EXSYNC_LOG_JSON"] = "1"
    try:
        with open(demo_dir / "exsync.log", "a", buffering=1) as logfile:
            demo = Demo(load_settings(env), env, app, sandbox, login, logfile, live=_is_live())
            return demo.run(duration=duration, total=bids, interval=interval, log_json=log_json)
    finally:
        sandbox.shutdown()
        app.engine.close()


def _is_live() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


class Demo:
    def __init__(self, settings: Settings, env: dict[str, str], app, sandbox, login: str, logfile: IO[str],
                 *, live: bool) -> None:
        self.settings = settings
        self.app, self.engine, self.sandbox, self.login = app, app.engine, sandbox, login
        self.logfile = logfile
        self.log_path = Path(logfile.name)
        self.live = live
        self.stack = Stack(settings, env, stop_timeout=STOP_TIMEOUT, output=logfile)
        self.view = View()
        self.runtime: Runtime | None = None

    def refresh(self) -> None:
        view = self.view
        view.truth = self.engine.truth(self.login)
        view.mirror = _mirror(self.runtime)
        view.callbacks = _callbacks(self.engine)

    def run(self, *, duration: float | None, total: int, interval: float, log_json: bool) -> int:
        setup_logging(self.settings, json=log_json, stream=self.logfile)
        click.echo(f"exsync demo: starting (embedded Postgres and Redis in {self.settings.data_dir}; "
                   f"logs in {self.log_path})")
        with stop_on_signals() as stop:
            try:
                self.stack.start_services()
                self.stack.start_children()
                if not self.stack.wait_healthy(stop):
                    if stop.is_set():
                        return 0
                    click.echo(f"the web app did not become healthy: see {self.log_path}", err=True)
                    return 1
                self.runtime = Runtime(load_settings(self.stack.env))
                self.engine.start_autopilot(AUTOPILOT_INTERVAL)
                self.loop(stop, duration, total, interval)
                if not stop.is_set():
                    self.settle(stop)
                self.refresh()
                return 0
            except GaveUp as exc:
                click.echo(f"giving up: {exc} (see {self.log_path})", err=True)
                return 1
            finally:
                self.engine.stop_autopilot()
                click.echo("stopping …")
                self.stack.stop()
                if self.runtime is not None:
                    self.runtime.close()
                self.print_summary()

    def loop(self, stop, duration: float | None, total: int, interval: float) -> None:
        web = self.stack.web_url
        header = [
            click.style("exsync demo", bold=True) + f" · sandbox {self.sandbox.url} · exsync web {web}",
            "bids are created through exsync (create_bid with exsync's callback URL); the sandbox drops, "
            "duplicates or reorders ~30% of its callbacks",
            f"stuck page: {web}/stuck (any user name; password: EXSYNC_API_TOKEN in "
            f"{self.settings.data_dir / 'secrets.env'})",
        ]
        footer = f"Ctrl-C to stop · logs: {self.log_path}"
        if self.live:
            click.echo("\x1b[2J", nl=False)  # once; each frame then overwrites in place
        else:
            for line in header:
                click.echo(line)
        rng = random.Random()
        started = time.monotonic()
        next_bid = next_draw = next_plain = started
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                return
            self.stack.check()
            if len(self.view.created) < total and now >= next_bid:
                _create_one(self.runtime, self.view, rng)
                next_bid = now + interval
            if now >= next_draw:
                self.refresh()
                next_draw = now + REFRESH
                if self.live:
                    click.echo(_render(self.view, total, header, footer), nl=False)
                elif now >= next_plain:
                    click.echo(_summary_line(self.view, total))
                    next_plain = now + PLAIN_EVERY
            stop.wait(0.2)

    def settle(self, stop) -> None:
        """The autopilot stops; polls and sweeps get up to SETTLE seconds to catch the last changes."""
        self.engine.stop_autopilot()
        click.echo(f"no more changes in the sandbox; letting the mirror catch up (at most {SETTLE:g}s) …")
        deadline = time.monotonic() + SETTLE
        while not stop.is_set() and time.monotonic() < deadline:
            self.stack.check()
            self.refresh()
            if self.view.in_sync == len(self.view.created):
                return
            stop.wait(1.0)

    def print_summary(self) -> None:
        v, cb = self.view, self.view.callbacks
        click.echo("")
        click.echo(f"bids created through exsync: {len(v.created)}" + (f" ({v.failed} failed)" if v.failed else ""))
        click.echo(f"mirrored in Postgres:        {v.mirrored}")
        click.echo(f"in sync with the sandbox:    {v.in_sync}")
        click.echo(f"history rows:                {v.history_rows}")
        click.echo(f"callbacks: {cb['delivered']} delivered, {cb['dropped']} dropped, {cb['duplicated']} "
                   f"duplicated, {cb['reordered']} reordered, {cb['failed']} failed")
