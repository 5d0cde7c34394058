"""``exsync demo``: the real stack against in-process Premium, ZaleyCash and gateway sandboxes, with a live view.

- The sandbox runs in this process on a free port, with some latency and about 30% of its callbacks
  dropped, duplicated or held back (reordered); its autopilot moves bids through their statuses.
- A demo config (``exsync.toml``) and generated secrets (``secrets.env``) are written to
  ``<data_dir>/demo/``; the stack (``devtools.supervisor.Stack``, the same as ``exsync run``) runs on them
  with its own embedded Postgres and Redis there. The demo never uses EXSYNC_DATABASE_URL/REDIS_URL:
  it must not write made-up bids into a real database. Each run mirrors into a database of its own
  (``demo_<time>``, named in ``<data_dir>/demo/database``), because its fresh sandbox knows none of the
  old bids and numbers its own from 1: earlier runs stay there to be looked at (``exsync payouts list``
  finds the latest by itself) until ``exsync demo --fresh`` (``make demo FRESH=1``) removes them.
- Bids are created THROUGH EXSYNC (``worker.bids.create_bid``, with exsync's callback URL), so the
  sandbox's callbacks reach our webhook, and polls and sweeps catch what the callbacks miss.
- Payouts: the ZaleyCash and gateway sandboxes run in this process too, with injected faults (errors
  before anything runs, and money calls that commit and then lose their answer). The demo config routes
  the Premium sandbox's ZC-RUB direction to ZaleyCash (destination: a child user id, as ``account2``) and
  its card-RUB direction to the gateway; the supervised worker pays every bid that reaches ``realpay``
  and marks it ``success`` on the Premium sandbox. The autopilot's paths stop at ``realpay`` so that
  exsync, not the sandbox, finishes those bids. At the end the sandboxes' own ledgers are checked: no
  payout may have executed twice.
- The view shows, per bid, the sandbox's truth against the mirror and the bid's payout. On a terminal it
  redraws in place; with CI=true or no TTY it prints a summary line now and then. Logs of every process go to
  ``<data_dir>/demo/exsync.log``.

(Over 500 lines: the stack, three sandboxes, the traffic and the live view are one short-lived program a
person watches; split, each part would only be used by the others.)
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
from typing import IO, Any

import click
from sqlalchemy import func, select

from core.config import Settings, load_settings
from core.logs import setup_logging
from core.runtime import Runtime
from devtools.embedded import DataDirBusy
from devtools.supervisor import GaveUp, MigrationFailed, Stack, stop_on_signals
from models import Bid, BidStatusChange
from models.states import AttemptOutcome, PayoutState

log = logging.getLogger("exsync.demo")

EXCHANGER = "demo"
LATENCY = 0.05
CALLBACK_FAULTS: dict[str, Any] = {"callback_drop_rate": 0.10, "callback_duplicate_rate": 0.10,
                                   "callback_reorder_rate": 0.10}
AUTOPILOT_INTERVAL = 1.5
AUTOPILOT_STEP = 0.6  # chance per tick that a tracked bid takes its next step
REFRESH = 1.5  # seconds between two redraws of the live view
PLAIN_EVERY = 10.0  # seconds between two summary lines without a TTY
SETTLE = 45.0  # after --duration: how long to let the mirror and the payouts catch up before the summary
STOP_TIMEOUT = 10.0

# The autopilot's paths (with weights). Every path that reaches realpay STOPS there and no path starts
# from realpay: a bid in realpay is exsync's to pay out and to mark success (success_bid). The sandbox's
# default paths go on to success by themselves, which would race the payout.
AUTOPILOT_PATHS = (
    (("new", "payed", "realpay"), 5),
    (("new", "techpay", "payed", "coldpay", "realpay"), 2),
    (("new", "payed", "my1", "realpay"), 1),
    (("new", "cancel"), 1),
    (("new", "payed", "error"), 1),
)

# Payout sandboxes: faults that make retries and unknown outcomes visible. error_rate: answered 500
# before anything runs (retried on the ladder); fail_after_commit_rate: the money moved, the answer is
# lost (ZaleyCash hangs past our timeout, the gateway answers 502): unknown, resolved by asking first.
ZC_FAULTS: dict[str, Any] = {"error_rate": 0.15, "fail_after_commit_rate": 0.10, "fail_after_commit_mode": "hang",
             "hang_seconds": 2.5}
GW_FAULTS: dict[str, Any] = {"error_rate": 0.15, "fail_after_commit_rate": 0.10, "process_delay": 1.0}
PROVIDER_TIMEOUT = 1.5  # below ZC_FAULTS["hang_seconds"]: a hang is a read timeout, i.e. an unknown outcome
ZC_USERS = ("1001", "1002")  # active children of the ZaleyCash sandbox's agent: the payout destinations
ZC_RUB, CARD_RUB = 3, 2  # the Premium sandbox's directions USDT -> ZC RUB and USDT -> card RUB
LOTS = Decimal("1000000000")  # payout balances: the demo is about faults, not about running dry

# Requests the sandbox accepts, one per direction it can pay out through its API (direction 4 is
# merchant-paid), with a weight. Amounts are drawn within each direction's limits. Direction 1 (BTC ->
# USDT) has no payout route: its bids in realpay wait for a person. ZC RUB's account2 is drawn from ZC_USERS.
REQUESTS = [
    (1, 1, (Decimal("0.01"), Decimal("0.5")), {"account2": "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE",
                                               "cf6": "demo@example.com"}),
    (CARD_RUB, 3, (Decimal("50"), Decimal("2000")), {"account1": "TXdemoSender000000000000000000001",
                                                     "account2": "4111111111111111", "cf1": "Demo",
                                                     "cf3": "Customer", "cf6": "demo@example.com"}),
    (ZC_RUB, 4, (Decimal("20"), Decimal("500")), {"account2": ZC_USERS[0], "cf6": "demo@example.com"}),
]
# Payout states in which something is still to happen without a person.
MOVING = (PayoutState.PENDING, PayoutState.SUBMITTING, PayoutState.SUBMITTED, PayoutState.UNKNOWN, PayoutState.PARKED)


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
        "EXSYNC_DEMO_ZC_SECRET": _alnum(40),
        "EXSYNC_DEMO_GW_API_KEY": _alnum(32),
        "EXSYNC_DEMO_GW_SECRET": _alnum(40),
    }


def write_demo_files(demo_dir: Path, sandbox_url: str, api_login: str, bind: str, secret_env: dict[str, str],
                     zc_url: str, gw_url: str) -> Path:
    """``exsync.toml`` (the sandbox as exchanger "demo", its payout routes) and ``secrets.env``; the TOML's path."""
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

        # Payouts: short ladders, so retries and unknown outcomes resolve while you watch.
        [payouts]
        lease_seconds = 20
        max_attempts = 6
        retry_ladder = [2, 4, 8]
        check_ladder = [2, 4, 8]
        completion_ladder = [2, 5, 10]
        park_seconds = 30
        jitter = 0.2

        [providers.zc]
        type = "zaleycash"
        base_url = "{zc_url}"
        secret_key_env = "EXSYNC_DEMO_ZC_SECRET"
        status_path = "/api/v2/money/transfer/status"
        timeout = {PROVIDER_TIMEOUT}

        [providers.gw]
        type = "gateway"
        base_url = "{gw_url}"
        api_key_env = "EXSYNC_DEMO_GW_API_KEY"
        secret_env = "EXSYNC_DEMO_GW_SECRET"
        timeout = {PROVIDER_TIMEOUT}

        [routes.{EXCHANGER}]
        enabled = true
        trigger_statuses = ["realpay"]

        [[routes.{EXCHANGER}.rules]]       # USDT -> ZC RUB: to the ZaleyCash child user in account2
        currency = "RUB"
        psys_get = "ZaleyCash"
        provider = "zc"
        destination_field = "account2"
        min_amount = "1"
        max_amount = "1000000"

        [[routes.{EXCHANGER}.rules]]       # USDT -> card RUB: to the card number in account2
        currency = "RUB"
        psys_get = "Visa/MasterCard"
        provider = "gw"
        destination_field = "account2"
        min_amount = "1"
        max_amount = "1000000"
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
    payouts: dict[int, "PayoutRow"] = field(default_factory=dict)  # remote_id -> its payout
    payout_stats: "PayoutStats" = field(default_factory=lambda: PayoutStats())

    @property
    def mirrored(self) -> int:
        return sum(1 for c in self.created if c.remote_id in self.mirror)

    @property
    def in_sync(self) -> int:
        return sum(1 for c in self.created if self.mirror.get(c.remote_id, ("",))[0] == self.truth.get(c.remote_id))

    @property
    def history_rows(self) -> int:
        return sum(rows for _, rows in self.mirror.values())


@dataclass
class PayoutRow:
    id: int
    key: str
    state: str
    attempts: int
    provider: str | None
    bid_done: bool
    note: str | None


@dataclass
class PayoutStats:
    """The summary line's figures, counted from ``payouts`` and ``payout_attempts``."""

    total: int = 0
    succeeded: int = 0
    completed: int = 0  # succeeded and the bid marked success on the exchanger
    retried: int = 0  # payouts that met a retryable error (5xx, 429, refused) and were sent again
    unknown_resolved: int = 0  # payouts whose outcome was unknown once and is now known (final)
    unknown_now: int = 0
    in_flight: int = 0
    failed: int = 0
    waiting: int = 0  # needs_review: waiting for a person


def _payouts(runtime) -> tuple[dict[int, PayoutRow], PayoutStats]:
    from sqlalchemy import text

    with runtime.db.session() as session:
        rows = session.execute(text("""
            SELECT p.id, p.remote_id, p.idempotency_key, p.state, p.attempts, p.provider,
                   p.bid_completed_at IS NOT NULL AS bid_done, coalesce(p.last_error, p.completion_error) AS note,
                   EXISTS (SELECT 1 FROM payout_attempts a WHERE a.payout_id = p.id AND a.outcome = :retryable)
                       AS retried,
                   EXISTS (SELECT 1 FROM payout_attempts a WHERE a.payout_id = p.id AND a.outcome = ANY(:unclear))
                       AS was_unknown
            FROM payouts p WHERE p.exchanger = :ex ORDER BY p.id"""),
            {"ex": EXCHANGER, "retryable": AttemptOutcome.RETRYABLE,
             "unclear": [AttemptOutcome.UNKNOWN, AttemptOutcome.LOST]}).all()
    out: dict[int, PayoutRow] = {}
    st = PayoutStats(total=len(rows))
    for r in rows:
        out[int(r.remote_id)] = PayoutRow(r.id, r.idempotency_key, r.state, r.attempts, r.provider, r.bid_done, r.note)
        st.succeeded += r.state == PayoutState.SUCCEEDED
        st.completed += r.state == PayoutState.SUCCEEDED and r.bid_done
        st.failed += r.state == PayoutState.FAILED
        st.waiting += r.state == PayoutState.NEEDS_REVIEW
        st.retried += bool(r.retried)
        st.unknown_resolved += bool(r.was_unknown) and r.state in (PayoutState.SUCCEEDED, PayoutState.FAILED)
        st.unknown_now += r.state == PayoutState.UNKNOWN
        st.in_flight += r.state in MOVING
    return out, st


def _payout_line(st: PayoutStats) -> str:
    return (f"payouts: {st.succeeded} succeeded ({st.completed} bids marked success) · {st.retried} retried · "
            f"{st.unknown_resolved} unknown→resolved ({st.unknown_now} unknown now) · {st.in_flight} in flight · "
            f"{st.failed} failed · {st.waiting} waiting for a person")


def ledger_check(zc_engine, gw_engine, payouts: dict[int, PayoutRow]) -> tuple[bool, list[str]]:
    """From the sandboxes' own ledgers: did any payout execute more than once? Did each succeeded one once?"""
    zc_runs = {op: zc_engine.executed(op) for op in list(zc_engine.ledger)}
    gw_runs: collections.Counter = collections.Counter(
        e["external_id"] for e in list(gw_engine.ledger) if e["type"] == "debit")
    twice = sorted([f"zaleycash {k} ×{n}" for k, n in zc_runs.items() if n > 1]
                   + [f"gateway {k} ×{n}" for k, n in gw_runs.items() if n > 1])
    runs = {"zc": zc_runs, "gw": gw_runs}
    missing = sorted(p.key for p in payouts.values()
                     if p.state == PayoutState.SUCCEEDED and runs.get(p.provider or "", {}).get(p.key, 0) != 1)
    lines = [f"ledger check: zaleycash executed {len(zc_runs)} transfer(s), gateway debited {len(gw_runs)} "
             f"payout(s); executed twice: {', '.join(twice) if twice else 'none'}"]
    if missing:
        lines.append(f"ledger check: succeeded payouts not executed exactly once: {', '.join(missing)}")
    ok = not twice and not missing
    lines.append("ledger check: OK, no payout executed twice" if ok else "ledger check: FAILED")
    return ok, lines


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


WIDTH = 100  # the live view fits 100 columns (fewer when the terminal is narrower)


def _fit(lines: list[str], width: int) -> list[str]:
    """Lines wrapped to ``width`` visible columns (a wrapped line loses its colour; continuations indented)."""
    out = []
    for line in lines:
        plain = click.unstyle(line)
        out += [line] if len(plain) <= width else textwrap.wrap(plain, width, subsequent_indent="  ")
    return out


def _render(view: View, total: int, header: list[str], footer: str) -> str:
    size = shutil.get_terminal_size((WIDTH, 30))
    width = min(WIDTH, size.columns)
    top = _fit([*header, _summary_line(view, total), _payout_line(view.payout_stats)], width)
    rows = size.lines - len(top) - 7
    lines = top
    if view.failed:
        lines.append(click.style(f"{view.failed} bid creation(s) failed (see the log)", fg="red"))
    lines.append("")
    lines.append(f"  {'BID':>5}  {'DIR':>3}  {'SANDBOX':<13} {'MIRROR':<13} {'HISTORY':>7}  "
                 f"{'PAYOUT':<13} {'TRIES':>5}  {'VIA':<4}")
    for c in list(reversed(view.created))[:max(3, rows)]:
        truth = view.truth.get(c.remote_id, "(archived)")
        status, hist = view.mirror.get(c.remote_id, (None, 0))
        if status is None:
            mark = click.style("not mirrored yet …", fg="yellow")
        elif status == truth:
            mark = click.style("in sync ✓", fg="green")
        else:
            mark = click.style("catching up …", fg="yellow")
        p = view.payouts.get(c.remote_id)
        pay = f"{(p.state if p else '-'):<13} {(p.attempts if p else ''):>5}  {((p.provider or '-') if p else ''):<4}"
        lines.append(f"  {c.remote_id:>5}  {c.direction_id:>3}  {truth:<13} {status or '-':<13} {hist:>7}  "
                     f"{pay}  {mark}")
    if len(view.created) > rows:
        lines.append(f"  … and {len(view.created) - rows} older bids")
    lines += ["", *_fit([footer], width)]
    # Home, overwrite each line, clear the rest: no flicker from clearing the whole screen.
    return "\x1b[H" + "".join(line + "\x1b[K\n" for line in lines) + "\x1b[J"


def _create_one(runtime, view: View, rng: random.Random) -> None:
    from worker.bids import create_bid

    direction_id, _, (lo, hi), fields = rng.choices(REQUESTS, [w for _, w, _, _ in REQUESTS])[0]
    if direction_id == ZC_RUB:
        fields = dict(fields, account2=rng.choice(ZC_USERS))
    amount = (lo + (hi - lo) * Decimal(rng.random())).quantize(lo)
    try:
        bid, _ = create_bid(runtime, EXCHANGER, direction_id=direction_id, calc_amount=amount, fields=fields)
    except Exception as exc:  # shown as a count; the log has the reason
        view.failed += 1
        log.warning("demo: creating a bid failed: %s: %s", type(exc).__name__, exc)
        return
    view.created.append(Created(int(bid["remote_id"]), direction_id, amount))


def prepare_dir(demo_dir: Path, *, fresh: bool) -> str:
    """The demo folder, emptied with ``fresh`` (after stopping what a crashed demo left running there), and
    the name of this run's database, recorded in ``demo/database`` for the CLI."""
    from devtools.embedded import DATABASE_FILE, claim, release

    if fresh and demo_dir.exists():
        claim(demo_dir)  # refuses while a demo runs; stops a crashed one's Postgres and Redis
        release(demo_dir)
        shutil.rmtree(demo_dir)
        click.echo(f"exsync demo: --fresh: removed the data of earlier demos in {demo_dir}")
    elif (demo_dir / "postgres").exists():
        click.echo(f"exsync demo: earlier demos' data is kept in {demo_dir} (`exsync demo --fresh`, or "
                   f"`make demo FRESH=1`, removes it); this run gets a database of its own")
    demo_dir.mkdir(parents=True, exist_ok=True)
    database = time.strftime("demo_%Y%m%d_%H%M%S", time.gmtime())
    (demo_dir / DATABASE_FILE).write_text(database + "\n")
    return database


def run_demo(*, duration: float | None, bids: int, interval: float, log_json: bool = False,
             fresh: bool = False) -> int:
    from providers.gateway import sandbox as gw_sandbox
    from providers.premium.sandbox import create_app
    from providers.sandbox import serve
    from providers.zaleycash import sandbox as zc_sandbox

    data_dir = Path(os.environ.get("EXSYNC_DATA_DIR") or Settings.data_dir)
    demo_dir = data_dir / "demo"
    try:
        database = prepare_dir(demo_dir, fresh=fresh)
    except DataDirBusy as exc:
        click.echo(f"exsync demo: {exc}", err=True)
        return 1
    login, secret_env = _alnum(32), demo_secrets()
    app = create_app(login, secret_env["EXSYNC_EXCHANGER_DEMO_API_KEY"], latency=LATENCY, **CALLBACK_FAULTS)
    zc_app = zc_sandbox.create_app(secret_key=secret_env["EXSYNC_DEMO_ZC_SECRET"], latency=LATENCY,
                                   balances={1: LOTS}, **ZC_FAULTS)
    gw_app = gw_sandbox.create_app(api_key=secret_env["EXSYNC_DEMO_GW_API_KEY"],
                                   secret=secret_env["EXSYNC_DEMO_GW_SECRET"], latency=LATENCY, balance=LOTS,
                                   **GW_FAULTS)
    servers = []
    try:
        sandbox = serve(app, "127.0.0.1", 0)
        servers.append(sandbox)
        zc_server = serve(zc_app, "127.0.0.1", 0)
        servers.append(zc_server)
        gw_server = serve(gw_app, "127.0.0.1", 0)
        servers.append(gw_server)
        bind = os.environ.get("EXSYNC_WEB_BIND") or _default_bind()
        env = {k: v for k, v in os.environ.items()
               if k not in ("EXSYNC_DATABASE_URL", "EXSYNC_REDIS_URL", "EXSYNC_CONFIG")
               and not k.startswith(("EXSYNC_EXCHANGER_", "EXSYNC_DEMO_"))}
        config = write_demo_files(demo_dir, sandbox.url, login, bind, secret_env, zc_server.url, gw_server.url)
        env.update(secret_env, EXSYNC_DATA_DIR=str(demo_dir), EXSYNC_WEB_BIND=bind, EXSYNC_CONFIG=str(config))
        if log_json:
            env["EXSYNC_LOG_JSON"] = "1"
        with open(demo_dir / "exsync.log", "a", buffering=1) as logfile:
            demo = Demo(load_settings(env), env, app, sandbox, login, logfile, live=_is_live(),
                        zc=zc_server, gw=gw_server, database=database)
            return demo.run(duration=duration, total=bids, interval=interval, log_json=log_json)
    finally:
        for server in reversed(servers):
            server.shutdown()
        app.engine.close()
        gw_app.engine.close()
        zc_app.engine.close()


DEMO_OPERATOR = "demo"


def demo_operator(runtime: Runtime) -> str:
    """The demo's console operator (an admin), with a fresh password each run (printed in the header)."""
    from worker.actions import Actor, Refused
    from worker.actions import operators as ops

    password = _alnum(16)
    try:
        ops.add(runtime, Actor.shell(), DEMO_OPERATOR, "admin", password, reason="the demo's operator")
    except Refused:  # an earlier demo's (the data is kept): a new password
        ops.set_password(runtime, Actor.shell(), DEMO_OPERATOR, password, reason="a new demo run")
    return password


def _is_live() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


class Demo:
    def __init__(self, settings: Settings, env: dict[str, str], app, sandbox, login: str, logfile: IO[str],
                 *, live: bool, zc, gw, database: str) -> None:
        self.settings = settings
        self.zc, self.gw = zc, gw  # the payout sandboxes' servers (.app.engine: their ledgers)
        self.app, self.engine, self.sandbox, self.login = app, app.engine, sandbox, login
        self.logfile = logfile
        self.log_path = Path(logfile.name)
        self.live = live
        self.database = database
        self.stack = Stack(settings, env, stop_timeout=STOP_TIMEOUT, output=logfile, database=database)
        self.view = View()
        self.runtime: Runtime | None = None
        self.console_password: str | None = None
        self.ledger_ok = True

    def refresh(self) -> None:
        view = self.view
        view.truth = self.engine.truth(self.login)
        view.mirror = _mirror(self.runtime)
        view.callbacks = _callbacks(self.engine)
        view.payouts, view.payout_stats = _payouts(self.runtime)

    def run(self, *, duration: float | None, total: int, interval: float, log_json: bool) -> int:
        """0 when the demo ran (Ctrl-C included), 1 when the stack failed or a payout executed twice."""
        rc = self._run(duration=duration, total=total, interval=interval, log_json=log_json)
        return rc if self.ledger_ok else 1

    def _run(self, *, duration: float | None, total: int, interval: float, log_json: bool) -> int:
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
                self.console_password = demo_operator(self.runtime)
                self.engine.start_autopilot(AUTOPILOT_INTERVAL, paths=AUTOPILOT_PATHS,
                                            step_probability=AUTOPILOT_STEP)
                self.loop(stop, duration, total, interval)
                if not stop.is_set():
                    self.settle(stop)
                self.refresh()
                return 0
            except GaveUp as exc:
                click.echo(f"giving up: {exc} (see {self.log_path})", err=True)
                return 1
            except MigrationFailed as exc:
                click.echo(f"exsync demo: {exc}", err=True)
                return 1
            except DataDirBusy as exc:
                click.echo(f"exsync demo: {exc}", err=True)
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
            f"payouts: bids in realpay are paid through the ZaleyCash sandbox {self.zc.url} (ZC RUB) or the "
            f"gateway sandbox {self.gw.url} (card RUB), each failing ~15% of calls before they run and losing "
            f"~10% of answers after the money moved; then exsync marks the bid success",
            f"stuck page: {web}/stuck (any user name; password: EXSYNC_API_TOKEN in "
            f"{self.settings.data_dir / 'secrets.env'})",
            f"console: {web}/console/ · operator {DEMO_OPERATOR}, password {self.console_password}",
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
                    click.echo("  " + _payout_line(self.view.payout_stats))
                    next_plain = now + PLAIN_EVERY
            stop.wait(0.2)

    def settled(self) -> bool:
        """The mirror equals the sandbox, every bid in realpay has its payout, and no payout is still moving
        (succeeded ones have marked their bid success)."""
        v = self.view
        if v.in_sync != len(v.created):
            return False
        for c in v.created:
            p = v.payouts.get(c.remote_id)
            if v.truth.get(c.remote_id) == "realpay" and p is None:
                return False
            if p is not None and (p.state in MOVING or (p.state == PayoutState.SUCCEEDED and not p.bid_done)):
                return False
        return True

    def settle(self, stop) -> None:
        """The autopilot stops; polls, sweeps and payouts get up to SETTLE seconds to finish."""
        self.engine.stop_autopilot()
        click.echo(f"no more changes in the sandbox; letting the mirror and the payouts catch up "
                   f"(at most {SETTLE:g}s) …")
        deadline = time.monotonic() + SETTLE
        while not stop.is_set() and time.monotonic() < deadline:
            self.stack.check()
            self.refresh()
            if self.settled():
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
        st = v.payout_stats
        click.echo(f"payouts:                     {st.total}")
        click.echo(f"  succeeded:                 {st.succeeded}")
        click.echo(f"  bids marked success:       {st.completed}")
        click.echo(f"  retried:                   {st.retried}")
        click.echo(f"  unknown→resolved:          {st.unknown_resolved}")
        click.echo(f"  still moving:              {st.in_flight}")
        click.echo(f"  failed:                    {st.failed}")
        click.echo(f"  waiting for a person:      {st.waiting}")
        mirrored_success = sum(1 for c in v.created if v.mirror.get(c.remote_id, ("",))[0] == "success")
        click.echo(f"bids in success (mirror):    {mirrored_success}")
        self.ledger_ok, lines = ledger_check(self.zc.app.engine, self.gw.app.engine, v.payouts)
        for line in lines:
            click.echo(line)
        demo_dir = Path(self.settings.data_dir)
        click.echo(f"this run's data stays in {demo_dir} (database {self.database}) until `make demo FRESH=1`: "
                   f"`EXSYNC_DATA_DIR={demo_dir.parent} exsync payouts list` (or bids, inbox) finds it by itself")
