"""The ``exsync`` command line.

Process commands: ``run`` (everything, supervised), ``demo``, ``web``, ``worker``, ``beat``, ``migrate``,
``sandbox``. Operator commands: ``reconcile``, ``bids list|show|create``, ``inbox list|replay|dismiss``,
``payouts …``, ``operators …``, ``audit list``, ``check-config``, ``notify test``.

Errors are answered, never dumped: a ``ConfigError`` anywhere becomes ``config error: <key>: <problem>``
on stderr with exit code 2 (the same code click uses for bad arguments); a database, broker or provider
failure becomes one redacted line with exit code 1. One module per command group; ``cli.base`` holds
the root group and what every command shares. Nothing imports this package: it is the composition root.
"""
from __future__ import annotations

from cli import (  # noqa: F401  (register the commands)
    audit,
    bids,
    check_config,
    inbox,
    notify,
    operators,
    partner,
    payouts,
    processes,
)
from cli.base import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> int:
    return cli.main(args=argv, prog_name="exsync")
