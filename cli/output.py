"""Tables and values as the commands print them."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import click


def _hide_url_password(u: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(u)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return u


def _fmt(value: Any) -> str:

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
    click.echo("  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


# -- payouts ---------------------------------------------------------------------------------------
