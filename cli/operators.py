"""``operators add|list|disable|enable|passwd|role|totp`` (docs/console.md).

A password is read from standard input (its first line), never from an argument: arguments land in shell
history and in ``ps``. Without ``--by`` a change is made as ``cli:<login>`` — whoever can reach the
database creates the first admin this way; with ``--by NAME`` NAME must be an enabled admin.
"""
from __future__ import annotations

import sys

import click

from cli.base import Cli, cli, pass_cli, reason_option
from cli.output import _fmt, _table
from models.states import OperatorRole, values


@cli.group()
def operators() -> None:
    """Named operators of the console and the CLI's actions."""


def _actor(by: str | None):
    from worker.actions import Actor

    return Actor(by, "cli") if by else Actor.shell()


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    if not line:
        raise click.UsageError("give the password on standard input (e.g. `printf '%s\\n' \"$PW\" | exsync …`)")
    return line.rstrip("\r\n")


def _act(fn, *args, **kwargs):
    from worker.actions import Refused

    try:
        return fn(*args, **kwargs)
    except Refused as exc:
        raise click.ClickException(str(exc)) from None


by_option = click.option("--by", metavar="ADMIN", help="The admin making the change (default: cli:$USER).")


@operators.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(values(OperatorRole)), required=True)
@by_option
@pass_cli
def operators_add(state: Cli, name: str, role: str, by: str | None) -> None:
    """Create an operator; the password is the first line of standard input."""
    from worker.actions import operators as ops

    password = _read_password()
    _act(ops.add, state.runtime(), _actor(by), name, role, password)
    click.echo(f"operator {name} added ({role})")


@operators.command("list")
@pass_cli
def operators_list(state: Cli) -> None:
    """Every operator, disabled ones included."""
    from worker.actions import operators as ops

    rows = ops.list_operators(state.runtime())
    _table(rows, [("NAME", "name"), ("ROLE", "role"), ("DISABLED", lambda r: "yes" if r["disabled"] else "-"),
                  ("TOTP", lambda r: "on" if r["totp"] else "-"), ("CREATED", lambda r: _fmt(r["created_at"])),
                  ("LAST_LOGIN", lambda r: _fmt(r["last_login_at"]))], empty="no operators")


@operators.command("disable")
@click.argument("name")
@reason_option
@by_option
@pass_cli
def operators_disable(state: Cli, name: str, reason: str, by: str | None) -> None:
    """Refuse the operator's logins and end their sessions (the audit trail keeps their name)."""
    from worker.actions import operators as ops

    _act(ops.disable, state.runtime(), _actor(by), name, reason)
    click.echo(f"operator {name} disabled")


@operators.command("enable")
@click.argument("name")
@reason_option
@by_option
@pass_cli
def operators_enable(state: Cli, name: str, reason: str, by: str | None) -> None:
    """Let a disabled operator log in again."""
    from worker.actions import operators as ops

    _act(ops.enable, state.runtime(), _actor(by), name, reason)
    click.echo(f"operator {name} enabled")


@operators.command("passwd")
@click.argument("name")
@by_option
@pass_cli
def operators_passwd(state: Cli, name: str, by: str | None) -> None:
    """Set a new password (first line of standard input); the operator's sessions end."""
    from worker.actions import operators as ops

    password = _read_password()
    _act(ops.set_password, state.runtime(), _actor(by), name, password)
    click.echo(f"operator {name}: password changed")


@operators.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(values(OperatorRole)))
@reason_option
@by_option
@pass_cli
def operators_role(state: Cli, name: str, role: str, reason: str, by: str | None) -> None:
    """Change an operator's role."""
    from worker.actions import operators as ops

    _act(ops.set_role, state.runtime(), _actor(by), name, role, reason)
    click.echo(f"operator {name} is now {role}")


@operators.command("totp")
@click.argument("name")
@click.option("--on/--off", "on", required=True, help="Turn the second factor on (prints the secret once) or off.")
@by_option
@pass_cli
def operators_totp(state: Cli, name: str, on: bool, by: str | None) -> None:
    """Turn the TOTP second factor on or off; on prints the secret and its otpauth:// URI once."""
    import pyotp

    from worker.actions import operators as ops

    secret = _act(ops.set_totp, state.runtime(), _actor(by), name, on)
    if secret is None:
        click.echo(f"operator {name}: TOTP off")
        return
    click.echo(f"operator {name}: TOTP on; add this to an authenticator app (shown once):")
    click.echo(f"  secret: {secret}")
    click.echo(f"  uri:    {pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name='exsync')}")
