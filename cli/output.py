"""Tables and values as the commands print them."""
from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

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
        return _plain(value)
    if isinstance(value, (dict, list)):
        return _json(value)
    return str(value)


def _plain(amount: Decimal) -> str:
    """A Decimal as the operator writes it: no exponent, no trailing zeros (Numeric(38,18) keeps 18)."""
    return format(amount.normalize(), "f")


def _json(value: Any, **kw: Any) -> str:
    """JSON for the CLI's --json output: amounts as plain Decimal strings, times in ISO 8601."""
    def default(v: Any) -> Any:
        if isinstance(v, Decimal):
            return _plain(v)
        if isinstance(v, datetime):
            return v.isoformat()
        return str(v)

    return json.dumps(value, default=default, **kw)


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


class Progress:
    """A counter on one line of stderr (``sweeping main: 1500 bids``), redrawn in place on a terminal and
    silent elsewhere. Log lines written meanwhile (any root handler: exsync's one redacting handler) clear
    the line first and the counter is drawn again below them: no log line lands on it."""

    def __init__(self, label: str, unit: str, stream: IO[str] | None = None) -> None:
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.count = 0
        self._lock = threading.RLock()
        self._handlers: list[logging.Handler] = []

    def __enter__(self) -> "Progress":
        for handler in logging.getLogger().handlers:
            emit = handler.emit

            def around(record: logging.LogRecord, emit=emit) -> None:
                with self._lock:
                    self._clear()
                    emit(record)
                    self._draw()

            handler.emit = around  # type: ignore[method-assign]  # this instance only, until __exit__
            self._handlers.append(handler)
        self._draw()
        return self

    def __exit__(self, *exc: Any) -> None:
        for handler in self._handlers:
            del handler.emit  # the class's own again
        self._handlers.clear()
        self._clear()

    def update(self, n: int) -> None:
        with self._lock:
            self.count += n
            self._draw()

    def _draw(self) -> None:
        if self.tty:
            self.stream.write(f"\r\x1b[K{self.label}: {self.count} {self.unit}")
            self.stream.flush()

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# -- payouts ---------------------------------------------------------------------------------------
