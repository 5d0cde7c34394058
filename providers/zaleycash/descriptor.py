"""ZaleyCash as exsync sees it: config schema, rail, sandbox. No callbacks (ZaleyCash sends none).

    [providers.zc]
    type = "zaleycash"
    base_url = "https://zaleycash.com"
    secret_key_env = "EXSYNC_ZC_SECRET"           # the env var holding the secret key
    status_path = "/api/v2/money/transfer/status" # optional; without it find() re-sends under the same key
    currencies = { RUB = 1, USD = 2 }             # optional: our currency → ZaleyCash code
"""
from __future__ import annotations

from typing import Any, Mapping

from providers.descriptor import Descriptor, Option, PayoutStore, ProviderConfig
from providers.payouts import PayoutRail

DEFAULT_CURRENCIES = {"RUB": 1, "USD": 2, "EUR": 3, "KZT": 4}


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    return value


def _currencies(value: Mapping[str, int]) -> dict[str, int]:
    return {str(code).upper(): n for code, n in value.items()}


def rail(cfg: ProviderConfig, store: PayoutStore) -> PayoutRail:
    from providers.zaleycash import ZaleyCashClient, ZaleyCashRail

    client = ZaleyCashClient(cfg.base_url, cfg.secrets["secret_key"], timeout=cfg.timeout,
                             status_path=cfg.options.get("status_path"))
    # The stored payout lets find() probe by re-sending the same operation after a restart.
    return ZaleyCashRail(client, name=cfg.name, currencies=cfg.options.get("currencies"),
                         request_lookup=store.request)


def sandbox(**knobs: Any) -> Any:
    from providers.zaleycash.sandbox import create_app

    return create_app(**knobs)


def describe_sandbox(app: Any, url: str) -> str:
    from providers.zaleycash.sandbox import describe

    return describe(url)


DESCRIPTOR = Descriptor(
    type="zaleycash",
    title="ZaleyCash",
    options=(
        Option("secret_key_env", "secret", required=True, help="the env var holding the secret key"),
        Option("status_path", "text", check=_path, help="transfer status endpoint; without it find() re-sends"),
        Option("currencies", "table", minimum=1, default=DEFAULT_CURRENCIES, check=_currencies,
               help="our currency code → ZaleyCash currency number"),
    ),
    rail=rail,
    sandbox=sandbox,
    describe_sandbox=describe_sandbox,
    currencies=lambda options: options.get("currencies"),
)
