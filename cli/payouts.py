"""``payouts list|show|approve|retry|cancel``."""
from __future__ import annotations

import click

from cli.base import Cli, by_option, cli, pass_cli, reason_option
from cli.output import _fmt, _json, _money, _table
from models.states import PayoutState, values


@cli.group()
def payouts() -> None:
    """Payouts: list, show, approve, retry, cancel (see docs/payouts.md)."""


@payouts.command("list")
@click.option("--state", "state_filter", type=click.Choice(values(PayoutState)))
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
            click.echo(_json(row))
        return
    _table(rows, [
        ("ID", "id"), ("EXCHANGER", "exchanger"), ("BID", "remote_id"), ("PROVIDER", "provider"),
        ("AMOUNT", lambda r: _money(r["amount"], r["currency"])), ("STATE", "state"), ("TRIES", "attempts"),
        ("BID_DONE", lambda r: "yes" if r["bid_completed_at"] else "-"),
        ("NOTE", lambda r: (r["last_error"] or r["completion_error"] or "-")[:70]),
    ], empty="no payouts")


@payouts.command("show")
@click.argument("payout_id", type=click.IntRange(min=1), required=False)
@click.option("--bid", "remote_id", type=click.IntRange(min=1), metavar="BID",
              help="The payout of this bid (its number on the exchanger) instead of a payout id.")
@click.option("--exchanger", metavar="NAME", help="With --bid: the bid's exchanger (when several have that number).")
@pass_cli
def payouts_show(state: Cli, payout_id: int | None, remote_id: int | None, exchanger: str | None) -> None:
    """One payout with every call made for it: `show ID`, or `show --bid 1350` by its bid's number."""
    from models.queries import payout_ids_for_bid
    from worker.payouts.queries import get_payout

    if (payout_id is None) == (remote_id is None):
        raise click.UsageError("give a payout ID, or --bid BID (the bid's number on the exchanger)")
    if exchanger is not None and remote_id is None:
        raise click.UsageError("--exchanger goes with --bid")
    with state.runtime().db.session() as session:
        if remote_id is not None:
            found = payout_ids_for_bid(session, remote_id, exchanger)
            if not found:
                raise click.ClickException(f"no payout for bid {remote_id}" + (f" of {exchanger}" if exchanger else ""))
            if len(found) > 1:
                raise click.ClickException(f"bid {remote_id} has payouts on several exchangers "
                                           f"({', '.join(f'{ex}: payout {pid}' for ex, pid in found)}): "
                                           f"add --exchanger")
            payout_id = found[0][1]
        assert payout_id is not None  # given, or found by its bid
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


def _act(fn, *args):
    from worker.actions import Refused

    try:
        return fn(*args)
    except Refused as exc:
        raise click.ClickException(str(exc)) from None


@payouts.command("approve")
@click.argument("payout_id", type=click.IntRange(min=1))
@by_option
@reason_option
@pass_cli
def payouts_approve(state: Cli, payout_id: int, by: str, reason: str) -> None:
    """Approve a payout in needs_review: it is paid once it has every approval its route needs."""
    from worker.actions import Actor
    from worker.actions import payouts as actions

    new = _act(actions.approve, state.runtime(), Actor(by, "cli"), payout_id, reason)
    click.echo(f"payout {payout_id}: approved by {by}, now {new}")


@payouts.command("retry")
@click.argument("payout_id", type=click.IntRange(min=1))
@by_option
@reason_option
@pass_cli
def payouts_retry(state: Cli, payout_id: int, by: str, reason: str) -> None:
    """failed / needs_review / parked → pending, attempts reset."""
    from worker.actions import Actor
    from worker.actions import payouts as actions

    new = _act(actions.retry, state.runtime(), Actor(by, "cli"), payout_id, reason)
    click.echo(f"payout {payout_id}: queued again by {by}, now {new}")


@payouts.command("cancel")
@click.argument("payout_id", type=click.IntRange(min=1))
@by_option
@reason_option
@pass_cli
def payouts_cancel(state: Cli, payout_id: int, by: str, reason: str) -> None:
    """Never pay it (only from pending, needs_review, parked or failed)."""
    from worker.actions import Actor
    from worker.actions import payouts as actions

    _act(actions.cancel, state.runtime(), Actor(by, "cli"), payout_id, reason)
    click.echo(f"payout {payout_id}: cancelled by {by}")


# -- partner money ---------------------------------------------------------------------------------
