"""An exsync configuration for tests: the TOML file, the environment that goes with it, the tokens.

One exchanger ``main`` pointed at a Premium sandbox; ``extra`` appends more TOML (payout providers and
routes). ``edge_toml`` configures a gateway and a Paysera provider so that every receiver of the web app is
live (the fuzz tests, the OpenAPI run, the live web server).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

WEBHOOK_TOKEN = "whtok_" + "a1b2c3d4e5f6g7h8"
API_TOKEN = "apitoken-0123456789abcdef"


def write_config(tmp_path: Path, sandbox_url: str, *, extra: str = "") -> Path:
    from providers.premium.sandbox import DEFAULT_LOGIN

    path = tmp_path / "exsync.toml"
    path.write_text(textwrap.dedent(f"""
        [settings]
        sweep_interval = 60
        sweep_overlap = 300

        [exchangers.main]
        base_url = "{sandbox_url}"
        api_login = "{DEFAULT_LOGIN}"
        timeout = 5
        rate_limit = 200
    """) + extra)
    return path


def make_env(config_path: Path, database_url: str | None, redis_url: str | None, **more: str) -> dict:
    from providers.premium.sandbox import DEFAULT_KEY

    env = {
        "EXSYNC_CONFIG": str(config_path),
        "EXSYNC_EXCHANGER_MAIN_API_KEY": DEFAULT_KEY,
        "EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "EXSYNC_API_TOKEN": API_TOKEN,
    }
    if database_url:
        env["EXSYNC_DATABASE_URL"] = database_url
    if redis_url:
        env["EXSYNC_REDIS_URL"] = redis_url
    env.update(more)
    return env


def edge_toml(paysera_pem: str) -> str:
    """[providers] gw (gateway) and ps (paysera) and a route: every receiver has a configured provider."""
    from providers.paysera.sandbox import DEFAULT_MAC_ID

    return f"""
[payouts]
lease_seconds = 30

[providers.gw]
type = "gateway"
base_url = "http://127.0.0.1:9"
api_key_env = "EXSYNC_EDGE_GW_KEY"
secret_env = "EXSYNC_EDGE_GW_SECRET"

[providers.ps]
type = "paysera"
base_url = "http://127.0.0.1:9"
mac_id = "{DEFAULT_MAC_ID}"
mac_key_env = "EXSYNC_EDGE_PS_MAC_KEY"
callback_public_key_pem = '''{paysera_pem}'''

[routes.main]
trigger_statuses = ["realpay"]

[[routes.main.rules]]
currency = "RUB"
provider = "gw"
destination_field = "account2"
"""


def forget_webhook_failures(redis_url: str) -> None:
    """Each test starts with no webhook failures counted against any source (webhooks/throttle.py):
    every test client and live server here sends from the same few addresses."""
    from core.redis_url import client as redis_client

    r = redis_client(redis_url)
    for key in r.scan_iter("exsync:webhook-failures:*"):
        r.delete(key)
