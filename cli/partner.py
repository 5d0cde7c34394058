"""``partner show|sync|payout``."""
from __future__ import annotations

import click

from cli.base import Cli, cli, pass_cli
from cli.output import _fmt, _money, _table
from core.config import ConfigError


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
                              ("ACCOUNT", "account"),
                              ("AMOUNT", lambda p: _money(p["pay_amount"], p["pay_currency_code"])),
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
