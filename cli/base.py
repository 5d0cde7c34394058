"""What every command shares: the root group, expected failures as one line, settings loaded once."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import click

from core.config import ConfigError, Settings, load_settings


class ConfigFailure(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"config error: {self.message}", err=True)


class ExsyncGroup(click.Group):
    """Turns expected failures into one line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import OperationalError as DbError

        from providers.errors import ProviderError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise ConfigFailure(str(exc)) from None
        except DbError as exc:
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise click.ClickException(_redact(ctx, f"database unavailable (EXSYNC_DATABASE_URL): {detail}")) from None
        except ProviderError as exc:
            raise click.ClickException(_redact(ctx, f"provider error: {exc}")) from None


def _redact(ctx: click.Context, text: str) -> str:
    state = ctx.find_object(Cli)
    if state is None or state._settings is None:
        return text
    from core.logs import redactor

    return redactor(state._settings).redact(text)


@dataclass
class Cli:
    """What the commands share: settings loaded once (with logging set up), a runtime on demand."""

    log_json: bool = False
    _settings: Settings | None = None
    _runtime: Any = None
    _embedded: Any = None  # an embedded Postgres this command started (devtools.embedded.Found)

    def settings(self) -> Settings:
        """Every setting, the payout sections included: a bad value stops every command at start-up
        (run, web, worker, beat too) rather than at the first use."""
        if self._settings is None:
            from core.logs import setup_logging

            self._settings = load_settings()
            setup_logging(self._settings, json=self.log_json)
        return self._settings

    def runtime(self):
        """A Runtime for this command, passed explicitly (the process-wide one is left alone). Without
        EXSYNC_DATABASE_URL, the embedded Postgres of `exsync run` or `exsync demo` under the data folder
        (EXSYNC_DATA_DIR, default .exsync-data) is used — started for this command if it is stopped — and
        the command says which."""
        if self._runtime is None:
            import dataclasses

            from core.runtime import Runtime

            settings = self.settings()
            if not settings.database_url:
                settings = dataclasses.replace(settings, database_url=self._embedded_database(settings))
                self._settings = settings
            self._runtime = Runtime(settings)
        return self._runtime

    def _embedded_database(self, settings: Settings) -> str:
        from devtools.embedded import find_postgres

        found = find_postgres(settings.data_dir)
        if found is None:
            raise ConfigError("EXSYNC_DATABASE_URL", f"is not set, and no embedded Postgres of `exsync run` or "
                                                     f"`exsync demo` is in {settings.data_dir} (EXSYNC_DATA_DIR)")
        what = "the demo's" if found.where.parent.parent.name == "demo" else "`exsync run`'s"
        if found.started is not None:
            self._embedded = found
            click.echo(f"using {what} embedded Postgres in {found.where} (started for this command, stopped after "
                       f"it; EXSYNC_DATABASE_URL={found.url})", err=True)
        else:
            click.echo(f"using {what} running embedded Postgres in {found.where} "
                       f"(EXSYNC_DATABASE_URL={found.url})", err=True)
        return found.url

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
        if self._embedded is not None:
            self._embedded.started.stop()
            self._embedded = None


def require_database(settings: Settings) -> str:
    """The database URL, or a ConfigError naming the variable."""
    if not settings.database_url:
        raise ConfigError("EXSYNC_DATABASE_URL",
                          "is not set (only `exsync run` and `exsync demo` start an embedded Postgres)")
    return settings.database_url


def require_broker(settings: Settings) -> str:
    """The broker URL, or a ConfigError naming the variable."""
    if not settings.redis_url:
        raise ConfigError("EXSYNC_REDIS_URL",
                          "is not set (only `exsync run` and `exsync demo` start an embedded Redis)")
    return settings.redis_url


pass_cli = click.make_pass_decorator(Cli)


@click.group("exsync", cls=ExsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-json", is_flag=True, envvar="EXSYNC_LOG_JSON",
              help="Log one JSON object per line (env EXSYNC_LOG_JSON=1).")
@click.version_option(package_name="exsync")
@click.pass_context
def cli(ctx: click.Context, log_json: bool) -> None:
    """exsync: mirror a Premium Exchanger site's bids into Postgres, and pay them out."""
    state = Cli(log_json=log_json)
    ctx.obj = state
    ctx.call_on_close(state.close)


# The options of every action of a person (payouts, inbox): each goes through worker/actions, as the
# console's do, which checks the role and writes the audit row.
by_option = click.option("--by", default=lambda: os.environ.get("USER", "operator"), show_default="$USER",
                         help="The operator acting (an enabled operator with the role the action needs).")
reason_option = click.option("--reason", required=True, help="Why (kept in the audit trail).")
