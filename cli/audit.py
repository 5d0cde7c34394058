"""``audit list``: the audit trail, newest first, filtered in the database."""
from __future__ import annotations

import json
from datetime import datetime

import click

from cli.base import Cli, cli, pass_cli
from cli.output import _fmt, _table
from models.states import AuditAction, values


@cli.group()
def audit() -> None:
    """The audit trail: every action of a person, and every login."""


@audit.command("list")
@click.option("--actor", metavar="NAME")
@click.option("--action", type=click.Choice(values(AuditAction)))
@click.option("--object-type", type=click.Choice(["payout", "inbox_event", "route", "operator"]))
@click.option("--object", "object_id", metavar="ID", help="With --object-type: one object's rows.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
              help="UTC, e.g. 2026-01-31 or 2026-01-31T12:00:00.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_cli
def audit_list(state: Cli, actor: str | None, action: str | None, object_type: str | None, object_id: str | None,
               since: datetime | None, limit: int, as_json: bool) -> None:
    """Newest first."""
    from datetime import timezone

    from models.console import list_audit

    if object_id is not None and object_type is None:
        raise click.UsageError("--object needs --object-type")
    with state.runtime().db.session() as session:
        rows = list_audit(session, actor=actor, action=action, object_type=object_type, object_id=object_id,
                          since=since.replace(tzinfo=timezone.utc) if since else None, limit=limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    _table(rows, [("ID", "id"), ("AT", lambda r: _fmt(r["at"])), ("ACTOR", "actor"), ("VIA", "via"),
                  ("ACTION", "action"), ("OBJECT", lambda r: f"{r['object_type']}:{r['object_id']}"),
                  ("REASON", lambda r: (r["reason"] or "-")[:50]),
                  ("CHANGE", lambda r: _change(r["before"], r["after"]))], empty="no audit rows")


def _change(before: dict | None, after: dict | None) -> str:
    before, after = before or {}, after or {}
    keys = [k for k in after if before.get(k) != after.get(k)] or list(after)
    return ", ".join(f"{k}: {_fmt(before.get(k))} → {_fmt(after.get(k))}" for k in keys)[:80] or "-"
