"""Configuration: ``EXSYNC_*`` environment variables plus one TOML file (``EXSYNC_CONFIG``).

Secrets (API keys, webhook tokens, the API bearer token) come only from the environment; the TOML
file names the variable that holds each one. Any wrong or missing value raises ``ConfigError`` whose
message starts with the key at fault, and start-up stops there.

TOML layout::

    [settings]                       # all optional
    public_url = "https://exsync.example.com"   # base of the callback URLs given to the engine
    sweep_interval = 60              # seconds between get_exchanges sweeps
    sweep_overlap = 300              # seconds each sweep window re-reads behind its cursor
    poll_batch = 200                 # bids claimed per poll round
    poll_give_up_after = 604800      # seconds a live bid is polled before its poll "gave up"
    inbox_retry_after = 60           # seconds before an unprocessed inbox event is re-enqueued
    inbox_max_attempts = 10
    webhook_max_body = 65536         # bytes

    [settings.poll_ladder]           # seconds between polls, per status; the last step repeats
    default = [30, 60, 120, 300]
    new = [60, 120, 300, 600]

    [exchangers.main]
    base_url = "https://exchanger.example.com"
    api_login = "…32 letters/digits…"
    api_key_env = "EXSYNC_MAIN_API_KEY"            # default EXSYNC_EXCHANGER_<NAME>_API_KEY
    webhook_token_env = "EXSYNC_MAIN_WEBHOOK_TOKEN" # default EXSYNC_EXCHANGER_<NAME>_WEBHOOK_TOKEN
    lang = "en_US"                                 # optional API-LANG
    timeout = 15                                   # seconds, every call
    rate_limit = 10                                # requests per second from one worker process
    allowed_ips = ["203.0.113.7"]                  # optional callback source allow-list
    enabled = true
"""
from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from models.db import normalize_url

ENV_PREFIX = "EXSYNC_"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PREMIUM_CRED_RE = re.compile(r"^[A-Za-z0-9]{32}$")

DEFAULT_LADDER: dict[str, tuple[int, ...]] = {
    # Statuses where the customer or the operator is expected to act soon.
    "default": (30, 60, 120, 300, 600),
    "new": (60, 120, 300, 600),
    "techpay": (30, 60, 120, 300),
    "payed": (15, 30, 60, 120, 300),
    "coldpay": (30, 60, 120, 300),
    "realpay": (15, 30, 60, 120),
}


class ConfigError(Exception):
    """A configuration value is wrong or missing. ``key`` names it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class ExchangerConfig:
    name: str
    base_url: str
    api_login: str
    api_key: str = field(repr=False)
    webhook_token: str = field(repr=False)
    lang: str | None = None
    timeout: float = 15.0
    rate_limit: float = 10.0
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    enabled: bool = True

    def ip_allowed(self, ip: str | None) -> bool:
        if not self.allowed_ips:
            return True
        try:
            addr = ipaddress.ip_address(ip or "")
        except ValueError:
            return False
        return any(addr in net for net in self.allowed_ips)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None: start an embedded Postgres
    redis_url: str | None = None  # None: start an embedded Redis
    data_dir: Path = Path(".exsync-data")
    public_url: str = "http://127.0.0.1:8000"
    api_token: str | None = field(default=None, repr=False)  # bearer token of /api/v1; None: API off
    log_level: str = "INFO"
    web_bind: str = "127.0.0.1:8000"
    web_workers: int = 2
    worker_concurrency: int = 8
    sweep_interval: int = 60
    sweep_overlap: int = 300
    sweep_page_size: int = 500
    poll_interval: int = 2  # how often beat starts a polling round (a round polls for up to 10 intervals)
    poll_batch: int = 200
    poll_give_up_after: int = 7 * 24 * 3600
    poll_ladder: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: dict(DEFAULT_LADDER))
    inbox_retry_after: int = 60
    inbox_max_attempts: int = 10
    webhook_max_body: int = 64 * 1024
    webhook_fail_limit: int = 20  # failed authentications from one source within the window → 429
    webhook_fail_window: int = 60  # seconds
    exchangers: Mapping[str, ExchangerConfig] = field(default_factory=dict)
    # Values of the variables named by `*_env` keys of [providers.*]: payout credentials, redacted too.
    provider_secrets: tuple[str, ...] = field(default=(), repr=False)

    def exchanger(self, name: str) -> ExchangerConfig:
        try:
            return self.exchangers[name]
        except KeyError:
            raise ConfigError(f"exchangers.{name}", "no such exchanger is configured") from None

    def callback_url(self, exchanger: str) -> str:
        ex = self.exchanger(exchanger)
        return f"{self.public_url.rstrip('/')}/webhooks/premium/{ex.name}/{ex.webhook_token}"

    def secrets(self) -> list[str]:
        """Every secret value, for log and error redaction."""
        out = [self.api_token] if self.api_token else []
        for ex in self.exchangers.values():
            out += [ex.api_key, ex.webhook_token]
        out += list(self.provider_secrets)
        return [s for s in out if s]


# -- parsing helpers: each names the key it reads -------------------------------------------------


def _int(key: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a whole number, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(key, f"must be a whole number, got {value!r}") from None
    if not isinstance(value, int):
        raise ConfigError(key, f"must be a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(key, f"must be {bound}, got {value}")
    return value


def _float(key: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a number, got {value!r}") from None
    if not out > minimum:
        raise ConfigError(key, f"must be greater than {minimum:g}, got {value!r}")
    return out


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(key, f"must be true or false, got {value!r}")


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, "must be a non-empty string")
    return value.strip()


def _http_url(key: str, value: Any) -> str:
    value = _str(key, value)
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(key, f"must be an http(s) URL, got {value!r}")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ConfigError(key, f"must be the site root (scheme://host[:port]), got {value!r}")
    try:
        parts.port
    except ValueError:
        raise ConfigError(key, f"has a bad port: {value!r}") from None
    return value.rstrip("/")


def _db_url(key: str, value: str) -> str:
    value = _str(key, value)
    if not value.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        raise ConfigError(key, "must be a postgresql:// URL")
    return normalize_url(value)


def _redis_url(key: str, value: str) -> str:
    value = _str(key, value)
    if not value.startswith(("redis://", "rediss://", "redis+socket://", "unix://")):
        raise ConfigError(key, "must be a redis://, rediss:// or redis+socket:// URL")
    return value


def _ladder(key: str, value: Any) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table of status = [seconds, …]")
    out = dict(DEFAULT_LADDER)
    for status, steps in value.items():
        k = f"{key}.{status}"
        if not isinstance(steps, list) or not steps:
            raise ConfigError(k, "must be a non-empty list of seconds")
        out[status] = tuple(_int(f"{k}[{i}]", s, minimum=1) for i, s in enumerate(steps))
    return out


def _secret(key: str, env: Mapping[str, str], var: str) -> str:
    value = env.get(var)
    if value is None or not value.strip():
        raise ConfigError(var, f"is not set (the secret for {key})")
    return value.strip()


_EXCHANGER_KEYS = {
    "base_url", "api_login", "api_key_env", "webhook_token_env", "lang", "timeout",
    "rate_limit", "allowed_ips", "enabled",
}


def _exchanger(name: str, raw: Any, env: Mapping[str, str]) -> ExchangerConfig:
    key = f"exchangers.{name}"
    if not NAME_RE.match(name):
        raise ConfigError(key, "name must be lower-case letters, digits, '-' or '_' (at most 63)")
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    unknown = sorted(set(raw) - _EXCHANGER_KEYS)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "is not a known setting")
    if "base_url" not in raw:
        raise ConfigError(f"{key}.base_url", "is required")
    if "api_login" not in raw:
        raise ConfigError(f"{key}.api_login", "is required")
    login = _str(f"{key}.api_login", raw["api_login"])
    if not PREMIUM_CRED_RE.match(login):
        raise ConfigError(f"{key}.api_login", "must be exactly 32 letters or digits")
    env_name = re.sub(r"[^A-Z0-9]", "_", name.upper())
    key_var = _str(f"{key}.api_key_env", raw.get("api_key_env", f"EXSYNC_EXCHANGER_{env_name}_API_KEY"))
    token_var = _str(
        f"{key}.webhook_token_env",
        raw.get("webhook_token_env", f"EXSYNC_EXCHANGER_{env_name}_WEBHOOK_TOKEN"),
    )
    api_key = _secret(f"{key}.api_key_env", env, key_var)
    if not PREMIUM_CRED_RE.match(api_key):
        raise ConfigError(key_var, "must be exactly 32 letters or digits")
    token = _secret(f"{key}.webhook_token_env", env, token_var)
    if len(token) < 16 or not re.match(r"^[A-Za-z0-9_-]+$", token):
        raise ConfigError(token_var, "must be at least 16 URL-safe characters (letters, digits, '-', '_')")
    lang = raw.get("lang")
    if lang is not None and (not isinstance(lang, str) or not re.match(r"^[a-z]{2}_[A-Z]{2}$", lang)):
        raise ConfigError(f"{key}.lang", f"must look like en_US or ru_RU, got {lang!r}")
    nets = []
    ips = raw.get("allowed_ips", [])
    if not isinstance(ips, list):
        raise ConfigError(f"{key}.allowed_ips", "must be a list of addresses or networks")
    for i, ip in enumerate(ips):
        try:
            nets.append(ipaddress.ip_network(str(ip), strict=False))
        except ValueError:
            raise ConfigError(f"{key}.allowed_ips[{i}]", f"is not an IP address or network: {ip!r}") from None
    return ExchangerConfig(
        name=name,
        base_url=_http_url(f"{key}.base_url", raw["base_url"]),
        api_login=login,
        api_key=api_key,
        webhook_token=token,
        lang=lang,
        timeout=_float(f"{key}.timeout", raw.get("timeout", 15)),
        rate_limit=_float(f"{key}.rate_limit", raw.get("rate_limit", 10)),
        allowed_ips=tuple(nets),
        enabled=_bool(f"{key}.enabled", raw.get("enabled", True)),
    )


_SETTING_KEYS = {
    "public_url", "sweep_interval", "sweep_overlap", "sweep_page_size", "poll_interval", "poll_batch",
    "poll_give_up_after", "poll_ladder", "inbox_retry_after", "inbox_max_attempts", "webhook_max_body",
    "webhook_fail_limit", "webhook_fail_window",
}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment (``os.environ`` by default) and the TOML file it names."""
    env = dict(os.environ if env is None else env)
    doc: dict[str, Any] = {}
    path = env.get("EXSYNC_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("EXSYNC_CONFIG", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("EXSYNC_CONFIG", f"{path} is not valid TOML: {exc}") from None
    unknown_top = sorted(set(doc) - {"settings", "exchangers", "payouts", "routes", "providers"})
    if unknown_top:
        raise ConfigError(unknown_top[0], "is not a known section")
    raw = doc.get("settings", {})
    if not isinstance(raw, Mapping):
        raise ConfigError("settings", "must be a table")
    unknown = sorted(set(raw) - _SETTING_KEYS)
    if unknown:
        raise ConfigError(f"settings.{unknown[0]}", "is not a known setting")

    def pick(name: str, default: Any) -> tuple[str, Any]:
        """Environment beats the file: EXSYNC_SWEEP_INTERVAL overrides settings.sweep_interval."""
        var = ENV_PREFIX + name.upper()
        if var in env:
            return var, env[var]
        if name in raw:
            return f"settings.{name}", raw[name]
        return name, default

    kw: dict[str, Any] = {}
    for name, minimum, maximum in [
        ("sweep_interval", 1, None), ("sweep_overlap", 0, None), ("sweep_page_size", 1, 500),
        ("poll_interval", 1, None), ("poll_batch", 1, 10_000), ("poll_give_up_after", 60, None),
        ("inbox_retry_after", 1, None), ("inbox_max_attempts", 1, None),
        ("webhook_max_body", 256, 16 * 1024 * 1024), ("web_workers", 1, 64), ("worker_concurrency", 1, 256),
        ("webhook_fail_limit", 1, 1_000_000), ("webhook_fail_window", 1, 86_400),
    ]:
        key, value = pick(name, getattr(Settings, name))
        kw[name] = _int(key, value, minimum=minimum, maximum=maximum)
    key, value = pick("public_url", Settings.public_url)
    kw["public_url"] = _http_url(key, value) if key != "public_url" else value
    if "poll_ladder" in raw:
        kw["poll_ladder"] = _ladder("settings.poll_ladder", raw["poll_ladder"])

    if env.get("EXSYNC_DATABASE_URL"):
        kw["database_url"] = _db_url("EXSYNC_DATABASE_URL", env["EXSYNC_DATABASE_URL"])
    if env.get("EXSYNC_REDIS_URL"):
        kw["redis_url"] = _redis_url("EXSYNC_REDIS_URL", env["EXSYNC_REDIS_URL"])
    if env.get("EXSYNC_DATA_DIR"):
        kw["data_dir"] = Path(env["EXSYNC_DATA_DIR"])
    if env.get("EXSYNC_API_TOKEN") is not None and "EXSYNC_API_TOKEN" in env:
        token = env["EXSYNC_API_TOKEN"].strip()
        if len(token) < 16:
            raise ConfigError("EXSYNC_API_TOKEN", "must be at least 16 characters")
        kw["api_token"] = token
    level = env.get("EXSYNC_LOG_LEVEL", "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError("EXSYNC_LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    kw["log_level"] = level
    if env.get("EXSYNC_WEB_BIND"):
        bind = env["EXSYNC_WEB_BIND"]
        host, _, port = bind.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("EXSYNC_WEB_BIND", f"must be host:port, got {bind!r}")
        kw["web_bind"] = bind

    exchangers_raw = doc.get("exchangers", {})
    if not isinstance(exchangers_raw, Mapping):
        raise ConfigError("exchangers", "must be a table of [exchangers.<name>] tables")
    kw["exchangers"] = {name: _exchanger(name, ex, env) for name, ex in exchangers_raw.items()}
    kw["provider_secrets"] = _provider_secrets(doc.get("providers"), env)
    return Settings(**kw)


def _provider_secrets(providers: Any, env: Mapping[str, str]) -> tuple[str, ...]:
    """Every secret a payout provider table points at (its `*_env` keys), for redaction everywhere.

    Validation of these tables belongs to core.payout_config; here we only collect what must never be
    printed, so a log line can never leak a payout credential.
    """
    if not isinstance(providers, Mapping):
        return ()
    out = []
    for table in providers.values():
        if isinstance(table, Mapping):
            for key, var in table.items():
                if key.endswith("_env") and isinstance(var, str) and env.get(var, "").strip():
                    out.append(env[var].strip())
    return tuple(out)
