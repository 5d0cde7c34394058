"""``inbox list|replay|dismiss``."""
from __future__ import annotations

import click

from cli.base import Cli, by_option, cli, pass_cli, reason_option
from cli.output import _fmt, _json, _table
from models.states import InboxState, values


@cli.group()
def inbox() -> None:
    """Received webhook events."""


@inbox.command("list")
@click.option("--state", "event_state", type=click.Choice(values(InboxState)))
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
        ("PAYLOAD", lambda e: _json(e["payload"]) if e["payload"] else ""),
        ("LAST_ERROR", lambda e: (e["last_error"] or "")[:60]),
    ], empty="no events")


def _actor(by: str):
    from worker.actions import Actor

    return Actor(by, "cli")


@inbox.command("replay")
@click.argument("event_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@click.option("--all-failed", is_flag=True, help="Every failed and dead event.")
@by_option
@reason_option
@pass_cli
def inbox_replay(state: Cli, event_ids: tuple[int, ...], all_failed: bool, by: str, reason: str) -> None:
    """Process events again (with fresh attempts)."""
    from worker.actions import Refused
    from worker.actions import inbox as actions

    if bool(event_ids) == all_failed:
        raise click.UsageError("give event IDs or --all-failed (not both)")
    rt = state.runtime()
    try:
        ids = actions.replay(rt, _actor(by), list(event_ids) or None, reason)
    except Refused as exc:
        raise click.ClickException(str(exc)) from None
    if event_ids and len(ids) < len(event_ids):
        missing = sorted(set(event_ids) - set(ids))
        click.echo(f"skipped (unknown or already processed): {', '.join(map(str, missing))}", err=True)
    broker = rt.settings.redis_url or _embedded_broker(rt.settings)
    if ids and broker:
        import dataclasses

        from worker.celery_app import configure
        from worker.tasks import process_inbox_event

        configure(dataclasses.replace(rt.settings, redis_url=broker))
        for event_id in ids:
            process_inbox_event.delay(event_id)
        click.echo(f"replaying {len(ids)} event(s): {', '.join(map(str, ids))}")
    elif ids:
        click.echo(f"{len(ids)} event(s) reset to received and due now; beat's inbox sweep enqueues them "
                   f"within 30 s (no EXSYNC_REDIS_URL here to enqueue them at once)")
    else:
        click.echo("nothing to replay")


@inbox.command("dismiss")
@click.argument("event_id", type=click.IntRange(min=1))
@by_option
@reason_option
@pass_cli
def inbox_dismiss(state: Cli, event_id: int, by: str, reason: str) -> None:
    """A failed or dead event needs nothing more: it leaves /stuck (the audit trail says who and why)."""
    from worker.actions import Refused
    from worker.actions import inbox as actions

    try:
        actions.dismiss(state.runtime(), _actor(by), event_id, reason)
    except Refused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"inbox event {event_id}: dismissed by {by}")
def _embedded_broker(settings) -> str | None:
    """Without EXSYNC_REDIS_URL: the embedded Redis of a running `exsync run` or demo, if any."""
    from devtools.embedded import find_redis

    url = find_redis(settings.data_dir)
    if url:
        click.echo(f"using the running embedded Redis ({url})", err=True)
    return url
