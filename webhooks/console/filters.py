"""How the console's templates print values: amounts as plain Decimals, times in UTC, JSON compactly."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def money(amount: Decimal | None, currency: str | None) -> str:
    """9180 RUB, never 9180.000000000000000000 RUB."""
    if amount is None:
        return "-"
    text = format(amount.normalize(), "f") if isinstance(amount, Decimal) else str(amount)
    return f"{text} {currency or ''}".strip()


def show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, Decimal):
        return money(value, None)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    return str(value)


def change(before: dict | None, after: dict | None) -> str:
    """``state: needs_review → pending, …``: the keys that changed (every key of a creation)."""
    before, after = before or {}, after or {}
    keys = [k for k in after if before.get(k) != after.get(k)] or list(after)
    return ", ".join(f"{k}: {show(before.get(k))} → {show(after.get(k))}" for k in keys) or "-"


def without(args: Any, name: str) -> str:
    """The query string of ``args`` without ``name`` (the pager's links keep the filters)."""
    return urlencode([(k, v) for k, v in args.items(multi=True) if k != name])
