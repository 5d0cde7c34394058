"""``reconcile`` and ``bids list|show|create``."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import click

from cli.base import Cli, cli, pass_cli
from cli.output import Progress, _fmt, _json, _money, _table
from core.config import ConfigError


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
        # get_exchanges gives no total, so the line counts bids seen rather than a percentage.
        with Progress(f"sweeping {name}", "bids seen") as bar:
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
            click.echo(_json(row))
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
    click.echo(_json(bid, indent=2))
