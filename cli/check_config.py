"""``check-config``: every setting, as parsed, with secrets masked."""
from __future__ import annotations

from typing import Mapping

import click

from cli.base import Cli, ConfigFailure, cli, pass_cli
from cli.output import _fmt, _hide_url_password
from core.config import PayoutConfig, Settings, unknown_variables


@cli.command("check-config")
@pass_cli
def check_config(state: Cli) -> None:
    """Load the configuration, print it with secrets hidden; exit 2 naming the first bad key."""
    from sqlalchemy.engine import make_url

    s = state.settings()

    def url(u: str | None, what: str) -> str:
        if not u:
            return f"embedded {what} under {s.data_dir} (exsync run / demo only)"
        if u.startswith("postgres"):
            return make_url(u).render_as_string(hide_password=True)
        return _hide_url_password(u)

    lines = [
        f"database      {url(s.database_url, 'Postgres')}",
        f"redis         {url(s.redis_url, 'Redis')}",
        f"data_dir      {s.data_dir}",
        f"public_url    {s.public_url}",
        f"web           {s.web_bind}, {s.web_workers} workers, "
        + (f"{s.trusted_proxies} trusted proxies (the source is taken from X-Forwarded-For)" if s.trusted_proxies
           else "no trusted proxies (the source is the TCP peer; X-Forwarded-For ignored)"),
        f"worker        {s.worker_concurrency} threads",
        f"api           {'on (EXSYNC_API_TOKEN set)' if s.api_token else 'off (no EXSYNC_API_TOKEN)'}",
        f"log level     {s.log_level}",
        f"sweep         every {s.sweep_interval}s, overlap {s.sweep_overlap}s, pages of {s.sweep_page_size}",
        f"poll          every {s.poll_interval}s, batches of {s.poll_batch}, give up after {s.poll_give_up_after}s",
        f"inbox         retry after {s.inbox_retry_after}s, at most {s.inbox_max_attempts} attempts",
        f"webhooks      bodies up to {s.webhook_max_body} bytes; after {s.webhook_fail_limit} failures from one "
        f"source in {s.webhook_fail_window}s its failures are answered 429",
        "poll ladder   " + "; ".join(f"{k}: {','.join(map(str, v))}" for k, v in s.poll_ladder.items()),
        f"exchangers    {len(s.exchangers) or 'none'}",
    ]
    for ex in s.exchangers.values():
        lines += [
            f"  {ex.name}{'' if ex.enabled else ' (disabled)'}",
            f"    base_url      {ex.base_url}",
            f"    api_login     {ex.api_login[:4]}…  api_key ***  webhook token ***",
            f"    callback_url  {s.callback_url(ex.name)}",
            f"    timeout {ex.timeout:g}s, rate limit {ex.rate_limit:g}/s, lang {ex.lang or '-'}, "
            f"allowed_ips {', '.join(map(str, ex.allowed_ips)) or 'any'}",
        ]
    lines += _payout_summary(s.payouts)
    lines += _notify_summary(s)
    from core.logs import redactor

    red = redactor(s)  # every secret, payout credentials and notification URLs included
    for line in lines:
        click.echo(red.redact(line))
    unknown = unknown_variables()
    if unknown:
        raise ConfigFailure(f"{unknown[0]}: is not a variable exsync reads (a typo, or a secret of something no "
                            f"longer configured?)" + (f"; also {', '.join(unknown[1:])}" if unknown[1:] else ""))
    click.echo("config OK")


def _notify_summary(s: Settings) -> list[str]:
    """check-config's lines for [notifications]; each apprise URL by its scheme only (it holds a token)."""
    n = s.notify
    targets = ", ".join(f"{u.partition('://')[0]}://***" for u in n.urls)
    floors = "; ".join(f"{p} {c} under {_fmt(v)}" for p, cur in n.balance_low.items() for c, v in cur.items())
    told = f": {targets}" if targets else " (nobody is told; /stuck still shows everything)"
    return [
        f"notify        {len(n.urls) or 'no'} target(s) from {n.urls_env}{told}",
        f"  digest      {'off' if n.digest_hour is None else f'daily after {n.digest_hour:02d}:00 UTC'}; "
        f"beat gone after {n.beat_gone_after}s; balances read every {n.balance_check_interval}s",
        f"  floors      {floors or 'none'}",
        f"  links       {s.public_url.rstrip('/')}/console/…",
    ]


def _payout_summary(pc: PayoutConfig) -> list[str]:
    """check-config's lines for [payouts], [providers.*] and [routes.*]; secrets only by variable name."""
    p = pc.settings

    def ladder(v) -> str:
        return ",".join(map(str, v))

    lines = [
        f"payouts       lease {p.lease_seconds}s, {p.max_attempts} attempts (retry {ladder(p.retry_ladder)}), "
        f"checks {ladder(p.check_ladder)} up to {p.max_checks}, park {p.park_seconds}s, "
        f"completion {ladder(p.completion_ladder)}, jitter {p.jitter:g}, batches of {p.batch}",
        f"providers     {len(pc.providers) or 'none'}",
    ]
    for pr in pc.providers.values():
        opts = []
        for k, v in pr.options.items():
            if isinstance(v, Mapping):
                v = ", ".join(f"{c}={n}" for c, n in v.items())
            elif isinstance(v, str) and "\n" in v.strip():  # a key read from a file or given inline
                v = f"({len(v.strip().splitlines())} lines)"
            opts.append(f"{k} {v}")
        lines += [
            f"  {pr.name} ({pr.type})",
            f"    base_url      {pr.base_url}",
            f"    timeout {pr.timeout:g}s; " + ", ".join(f"{k} ***" for k in pr.secrets),
        ]
        if opts:
            lines.append("    " + "; ".join(opts))
    lines.append(f"routes        {len(pc.routes) or 'none'}")
    for r in pc.routes.values():
        ceiling = (f"auto-pay up to {_fmt(r.auto_pay_ceiling)}" if r.auto_pay_ceiling is not None
                   else "no auto-pay ceiling")
        lines.append(f"  {r.exchanger}{'' if r.enabled else ' (disabled)'}: on {', '.join(r.trigger_statuses)}; "
                     f"{ceiling}; {len(r.rules)} rule(s)")
        for i, rule in enumerate(r.rules):
            via = f" via {rule.psys_get}" if rule.psys_get else ""
            limits = f"{_fmt(rule.min_amount) if rule.min_amount is not None else '-'}.." \
                     f"{_fmt(rule.max_amount) if rule.max_amount is not None else '-'}"
            lines.append(f"    [{i}] {rule.currency}{via} → {rule.provider} to {rule.destination_field}, "
                         f"amount {limits}")
        if not r.rules:
            lines.append("    (no rules: every bid in a trigger status waits for a person)")
    return lines


# -- output helpers ---------------------------------------------------------------------------------
