"""``notify test``: one test message to every notification target (docs/notifications.md)."""
from __future__ import annotations

import click

from cli.base import Cli, cli, pass_cli
from core.config import ConfigError


@cli.group()
def notify() -> None:
    """Notifications to a person (EXSYNC_NOTIFY_URLS; see docs/notifications.md)."""


@notify.command("test")
@pass_cli
def notify_test(state: Cli) -> None:
    """Send one test message to every target and say which got it; exit 1 when one failed. Nothing is
    recorded: the real notifications are not affected."""
    from worker.notify import console, targets

    settings = state.settings()
    to = targets(settings)
    if not to:
        raise ConfigError(settings.notify.urls_env, "is not set: there is no notification target to test")
    failed = 0
    for target in to:
        ok = target.send("exsync: test notification",
                         f"A test from `exsync notify test`. Notifications link to pages under {console(settings)}")
        click.echo(f"{target.label}: {'sent' if ok else 'FAILED'}")
        failed += not ok
    if failed:
        raise click.ClickException(f"{failed} of {len(to)} target(s) did not accept the message")
