"""Configuration: ``EXSYNC_*`` environment variables plus one TOML file (``EXSYNC_CONFIG``), read once.

``load_settings()`` reads the environment and the file (once) and returns one typed ``Settings``: every
setting, the exchangers, and the payout sections (``Settings.payouts``, read by core/payout_config.py).
Secrets (API keys, webhook tokens, the API bearer token, payout credentials) come only from the
environment; the TOML file names the variable that holds each one. Any wrong or missing value raises
``ConfigError`` whose message starts with the key at fault, and start-up stops there.

Environment only: EXSYNC_DATABASE_URL, EXSYNC_REDIS_URL, EXSYNC_DATA_DIR, EXSYNC_API_TOKEN,
EXSYNC_LOG_LEVEL, EXSYNC_WEB_BIND, EXSYNC_WEB_WORKERS, EXSYNC_WORKER_CONCURRENCY, EXSYNC_TRUSTED_PROXIES
(how many reverse proxies in front of the web app append to X-Forwarded-For; 0: the TCP peer is the
source and forwarded headers are ignored). Every ``[settings]`` key may also be set as EXSYNC_<KEY>.

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
    rate_limit = 10                                # engine calls per second, all processes on all hosts together
    allowed_ips = ["203.0.113.7"]                  # optional callback source allow-list
    enabled = true

    [notifications]                  # all optional (docs/notifications.md)
    urls_env = "EXSYNC_NOTIFY_URLS"  # the variable holding the apprise URLs (secrets)
    digest_hour = 8                  # UTC; "off": no daily digest
    [notifications.balance_low.zc]   # per payout provider: currency = floor
    RUB = "5000"

``unknown_variables()`` lists the EXSYNC_* variables nothing reads (``exsync check-config`` refuses them).
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from models.urls import normalize_url
from providers.descriptor import ProviderConfig

ENV_PREFIX = "EXSYNC_"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PREMIUM_CRED_RE = re.compile(r"^[A-Za-z0-9]{32}$")
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECTIONS = ("settings", "exchangers", "payouts", "providers", "routes", "notifications")

MAX_LADDER_STEPS = 100
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


# -- the typed settings ------------------------------------------------------------------------------


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


# The payout sections ([payouts], [providers.<name>], [routes.<exchanger>]); read by core/payout_config.py.
# A provider's table becomes a ProviderConfig (providers/descriptor.py) by its descriptor's schema.


@dataclass(frozen=True)
class PayoutSettings:
    lease_seconds: int = 15
    max_attempts: int = 5
    retry_ladder: tuple[int, ...] = (30, 120, 600, 1800, 7200)
    check_ladder: tuple[int, ...] = (15, 60, 300, 900, 3600)
    max_checks: int = 100
    park_seconds: int = 3600
    completion_ladder: tuple[int, ...] = (10, 60, 300, 900)
    jitter: float = 0.2
    batch: int = 50


@dataclass(frozen=True)
class RouteRule:
    currency: str
    provider: str
    destination_field: str = "account2"
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    psys_get: str | None = None


@dataclass(frozen=True)
class RouteConfig:
    exchanger: str
    enabled: bool = True
    trigger_statuses: tuple[str, ...] = ("realpay",)
    auto_pay_ceiling: Decimal | None = None
    rules: tuple[RouteRule, ...] = ()
    # Four-eyes: a payout above approval_above is paid only once `approvers` distinct approvers approved it.
    approval_above: Decimal | None = None
    approvers: int = 2


@dataclass(frozen=True)
class PayoutConfig:
    settings: PayoutSettings = field(default_factory=PayoutSettings)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    routes: Mapping[str, RouteConfig] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        return [v for p in self.providers.values() for v in p.secrets.values() if v]

    def route(self, exchanger: str) -> RouteConfig | None:
        return self.routes.get(exchanger)


@dataclass(frozen=True)
class NotifySettings:
    """``[notifications]``: where a person is told that something needs them (worker/notify.py)."""

    # apprise URLs (Telegram, Slack, e-mail, a webhook …) from the variable ``urls_env`` names: secrets.
    urls: tuple[str, ...] = field(default=(), repr=False)
    urls_env: str = "EXSYNC_NOTIFY_URLS"
    digest_hour: int | None = 8  # UTC hour of the daily digest; None: no digest
    balance_check_interval: int = 300  # seconds between two balance reads per provider
    balance_low: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)  # provider → currency → floor
    beat_gone_after: int = 180  # seconds without beat's heartbeat before beat counts as gone

    def secrets(self) -> list[str]:
        return [part for url in self.urls for part in url_secrets(url)]


def url_secrets(url: str) -> list[str]:
    """An apprise URL and the parts of it that may be credentials (user, password, path segments and query
    values of 6 characters or more: bot tokens, webhook ids, API keys), for redaction."""
    parts = urlsplit(url)
    out = [url]
    try:
        out += [p for p in (parts.username, parts.password) if p and len(p) >= 6]
    except ValueError:
        pass
    out += [seg for seg in parts.path.split("/") if len(seg) >= 6]
    out += [v for chunk in parts.query.split("&") for v in [chunk.partition("=")[2]] if len(v) >= 6]
    host = parts.netloc.rpartition("@")[2]
    if len(host) >= 12 and "." not in host:  # a token in the host position (tgram://<bot token>/…)
        out.append(host)
    return out


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
    trusted_proxies: int = 0  # reverse proxies appending to X-Forwarded-For (0: the TCP peer is the source)
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
    payouts: PayoutConfig = field(default_factory=PayoutConfig)
    notify: NotifySettings = field(default_factory=NotifySettings)

    def exchanger(self, name: str) -> ExchangerConfig:
        try:
            return self.exchangers[name]
        except KeyError:
            raise ConfigError(f"exchangers.{name}", "no such exchanger is configured") from None

    def callback_url(self, exchanger: str) -> str:
        ex = self.exchanger(exchanger)
        return f"{self.public_url.rstrip('/')}/webhooks/premium/{ex.name}/{ex.webhook_token}"

    def secrets(self) -> list[str]:
        """Every secret value, for log and error redaction (payout credentials included)."""
        out = [self.api_token] if self.api_token else []
        for ex in self.exchangers.values():
            out += [ex.api_key, ex.webhook_token]
        out += self.payouts.secrets()
        out += self.notify.secrets()
        return [s for s in out if s]


# -- value readers: each names the key it reads (core/payout_config.py reads with them too) ---------------


def whole(key: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> int:
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


def number(key: str, value: Any, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a number, got {value!r}") from None
    if not math.isfinite(out) or not out > minimum:
        raise ConfigError(key, f"must be a number greater than {minimum:g}, got {value!r}")
    if maximum is not None and out > maximum:
        raise ConfigError(key, f"must be at most {maximum:g}, got {value!r}")
    return out


def boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(key, f"must be true or false, got {value!r}")


def text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, "must be a non-empty string")
    return value.strip()


def http_url(key: str, value: Any) -> str:
    """Any http(s) URL with a host."""
    value = text(key, value)
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(key, f"must be an http(s) URL, got {value!r}")
    return value


def site_url(key: str, value: Any) -> str:
    """The root of a site (``scheme://host[:port]``), as every client's ``base_url`` is."""
    value = http_url(key, value)
    parts = urlsplit(value)
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ConfigError(key, f"must be the site root (scheme://host[:port]), got {value!r}")
    try:
        _ = parts.port  # parsing the port is what raises
    except ValueError:
        raise ConfigError(key, f"has a bad port: {value!r}") from None
    return value.rstrip("/")


def table(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table")
    return value


def known(key: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    """Refuse the first key of ``raw`` that is not ``allowed`` (a typo must not pass silently)."""
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "is not a known setting")


def required(key: str, raw: Mapping[str, Any], name: str) -> Any:
    if name not in raw:
        raise ConfigError(f"{key}.{name}", "is required")
    return raw[name]


def env_var(key: str, value: Any) -> str:
    """The name of an environment variable (the file names where a secret is, never the secret). A value
    that looks like a secret pasted in by mistake is refused without being repeated."""
    var = text(key, value)
    if looks_like_secret(var):
        raise ConfigError(key, "must name an environment variable (UPPER_CASE_NAME); the value is not shown: it "
                               "looks like a secret itself — put the secret in the environment and its name here")
    if not ENV_VAR_RE.match(var):
        raise ConfigError(key, f"must name an environment variable, got {var!r}")
    return var


def looks_like_secret(value: str) -> bool:
    """Not the NAME of a variable: lower-case letters mixed with digits (a key, a token), or a long run
    without the underscores of a name."""
    mixed = any(c.islower() for c in value) and any(c.isdigit() for c in value)
    return mixed or (len(value) >= 24 and "_" not in value) or not value.isascii() or " " in value


def secret(key: str, env: Mapping[str, str], var: str) -> str:
    """The value of ``var``; the error names the variable, and the key that wants it."""
    value = env.get(var)
    if value is None or not value.strip():
        raise ConfigError(var, f"is not set (the secret for {key})")
    return value.strip()


def _db_url(key: str, value: str) -> str:
    value = text(key, value)
    if not value.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        raise ConfigError(key, "must be a postgresql:// URL")
    return normalize_url(value)


def _redis_url(key: str, value: str) -> str:
    value = text(key, value)
    if not value.startswith(("redis://", "rediss://", "redis+socket://", "unix://")):
        raise ConfigError(key, "must be a redis://, rediss:// or redis+socket:// URL")
    return value


def _ladder(key: str, value: Any) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, "must be a table of status = [seconds, …]")
    from models import statuses

    out = dict(DEFAULT_LADDER)
    for status, steps in value.items():
        k = f"{key}.{status}"
        if status != "default" and not statuses.is_valid(status):
            raise ConfigError(k, "is not a status of the engine (one of its statuses, my<N>, or default)")
        if not isinstance(steps, list) or not 0 < len(steps) <= MAX_LADDER_STEPS:
            raise ConfigError(k, f"must be a list of 1 to {MAX_LADDER_STEPS} delays in seconds")
        out[status] = tuple(whole(f"{k}[{i}]", s, minimum=1, maximum=86_400) for i, s in enumerate(steps))
    return out


def trusted_proxies(env: Mapping[str, str]) -> int:
    """EXSYNC_TRUSTED_PROXIES: 0 to 10 (empty or unset: 0)."""
    raw = env.get("EXSYNC_TRUSTED_PROXIES", "").strip() or "0"
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 10:
        raise ConfigError("EXSYNC_TRUSTED_PROXIES", f"must be a whole number from 0 to 10, got {raw!r}")
    return int(raw)


_EXCHANGER_KEYS = {
    "base_url", "api_login", "api_key_env", "webhook_token_env", "lang", "timeout",
    "rate_limit", "allowed_ips", "enabled",
}


def _exchanger(name: str, raw: Any, env: Mapping[str, str]) -> ExchangerConfig:
    key = f"exchangers.{name}"
    if not NAME_RE.match(name):
        raise ConfigError(key, "name must be lower-case letters, digits, '-' or '_' (at most 63)")
    raw = table(key, raw)
    known(key, raw, _EXCHANGER_KEYS)
    base_url = required(key, raw, "base_url")
    login = text(f"{key}.api_login", required(key, raw, "api_login"))
    if not PREMIUM_CRED_RE.match(login):
        raise ConfigError(f"{key}.api_login", "must be exactly 32 letters or digits")
    env_name = re.sub(r"[^A-Z0-9]", "_", name.upper())
    key_var = env_var(f"{key}.api_key_env", raw.get("api_key_env", f"EXSYNC_EXCHANGER_{env_name}_API_KEY"))
    token_var = env_var(
        f"{key}.webhook_token_env",
        raw.get("webhook_token_env", f"EXSYNC_EXCHANGER_{env_name}_WEBHOOK_TOKEN"),
    )
    api_key = secret(f"{key}.api_key_env", env, key_var)
    if not PREMIUM_CRED_RE.match(api_key):
        raise ConfigError(key_var, "must be exactly 32 letters or digits")
    token = secret(f"{key}.webhook_token_env", env, token_var)
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
        base_url=site_url(f"{key}.base_url", base_url),
        api_login=login,
        api_key=api_key,
        webhook_token=token,
        lang=lang,
        timeout=number(f"{key}.timeout", raw.get("timeout", 15), maximum=600),
        rate_limit=number(f"{key}.rate_limit", raw.get("rate_limit", 10), maximum=1_000_000),
        allowed_ips=tuple(nets),
        enabled=boolean(f"{key}.enabled", raw.get("enabled", True)),
    )


_SETTING_KEYS = {
    "public_url", "sweep_interval", "sweep_overlap", "sweep_page_size", "poll_interval", "poll_batch",
    "poll_give_up_after", "poll_ladder", "inbox_retry_after", "inbox_max_attempts", "webhook_max_body",
    "webhook_fail_limit", "webhook_fail_window",
}


def read_document(env: Mapping[str, str]) -> dict[str, Any]:
    """The TOML file ``EXSYNC_CONFIG`` names, as a dict (empty without one). The only place it is read."""
    path = env.get("EXSYNC_CONFIG")
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("EXSYNC_CONFIG", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("EXSYNC_CONFIG", f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise ConfigError(unknown[0], "is not a known section")
    return doc


# EXSYNC_* variables read outside load_settings: by the CLI, worker/liveness.py, and the test suite and
# benchmarks (they pass the environment on to the processes they start).
OTHER_VARIABLES = frozenset({
    "EXSYNC_LOG_JSON", "EXSYNC_CANARY_INTERVAL", "EXSYNC_CANARY_STALE_AFTER",
    "EXSYNC_TEST_DATABASE_URL", "EXSYNC_TEST_REDIS_URL", "EXSYNC_HARDENING_RESULTS",
    "EXSYNC_BENCH_DATABASE_URL", "EXSYNC_BENCH_REDIS_URL", "EXSYNC_BENCH_RESULTS",
})


class _Recording(dict):
    """The environment, remembering every variable the loader asked about (present or not)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """EXSYNC_* variables nothing reads: a typo (EXSYNC_DATABSE_URL would silently start an embedded
    Postgres) or a secret for a provider no longer configured. ``exsync check-config`` refuses them."""
    rec = _Recording(dict(os.environ if env is None else env))
    load_settings(rec)
    return sorted(k for k in rec if k.startswith(ENV_PREFIX) and k not in rec.asked and k not in OTHER_VARIABLES)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment (``os.environ`` by default) and the TOML file it names, once: every setting,
    the exchangers and the payout sections."""
    # core/payout_config.py reads its sections with the readers above, so it is imported here.
    from core.payout_config import load_payout_config

    env = env if isinstance(env, _Recording) else dict(os.environ if env is None else env)
    doc = read_document(env)
    raw = table("settings", doc.get("settings", {}))
    known("settings", raw, _SETTING_KEYS)

    def pick(name: str, default: Any) -> tuple[str, Any]:
        """Environment beats the file: EXSYNC_SWEEP_INTERVAL overrides settings.sweep_interval."""
        var = ENV_PREFIX + name.upper()
        if var in env:
            return var, env[var]
        if name in raw:
            return f"settings.{name}", raw[name]
        return name, default

    kw: dict[str, Any] = {}
    # Upper bounds: a value past them is a typo (an extra zero, milliseconds for seconds), never a setting.
    for name, minimum, maximum in [
        ("sweep_interval", 1, 86_400), ("sweep_overlap", 0, 7 * 86_400), ("sweep_page_size", 1, 500),
        ("poll_interval", 1, 3_600), ("poll_batch", 1, 10_000), ("poll_give_up_after", 60, 366 * 86_400),
        ("inbox_retry_after", 1, 86_400), ("inbox_max_attempts", 1, 1_000),
        ("webhook_max_body", 256, 16 * 1024 * 1024), ("web_workers", 1, 64), ("worker_concurrency", 1, 256),
        ("webhook_fail_limit", 1, 1_000_000), ("webhook_fail_window", 1, 86_400),
    ]:
        key, value = pick(name, getattr(Settings, name))
        kw[name] = whole(key, value, minimum=minimum, maximum=maximum)
    key, value = pick("public_url", Settings.public_url)
    kw["public_url"] = site_url(key, value) if key != "public_url" else value
    if "poll_ladder" in raw:
        kw["poll_ladder"] = _ladder("settings.poll_ladder", raw["poll_ladder"])

    if env.get("EXSYNC_DATABASE_URL"):
        kw["database_url"] = _db_url("EXSYNC_DATABASE_URL", env["EXSYNC_DATABASE_URL"])
    if env.get("EXSYNC_REDIS_URL"):
        kw["redis_url"] = _redis_url("EXSYNC_REDIS_URL", env["EXSYNC_REDIS_URL"])
    if env.get("EXSYNC_DATA_DIR"):
        kw["data_dir"] = Path(env["EXSYNC_DATA_DIR"])
    if "EXSYNC_API_TOKEN" in env:
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
    kw["trusted_proxies"] = trusted_proxies(env)

    exchangers_raw = doc.get("exchangers", {})
    if not isinstance(exchangers_raw, Mapping):
        raise ConfigError("exchangers", "must be a table of [exchangers.<name>] tables")
    kw["exchangers"] = {name: _exchanger(name, ex, env) for name, ex in exchangers_raw.items()}
    kw["payouts"] = load_payout_config(doc, env)
    kw["notify"] = _notifications(table("notifications", doc.get("notifications", {})), env, kw["payouts"])
    return Settings(**kw)


_NOTIFY_KEYS = {"urls_env", "digest_hour", "balance_check_interval", "balance_low", "beat_gone_after"}


def _notifications(raw: Mapping[str, Any], env: Mapping[str, str], payouts: PayoutConfig) -> NotifySettings:
    key = "notifications"
    known(key, raw, _NOTIFY_KEYS)
    var = env_var(f"{key}.urls_env", raw.get("urls_env", NotifySettings.urls_env))
    urls = tuple(env.get(var, "").split())
    for i, url in enumerate(urls):
        apprise_url(f"{var}[{i}]", url)
    hour = raw.get("digest_hour", NotifySettings.digest_hour)
    digest_hour = None if hour == "off" else whole(f"{key}.digest_hour", hour, minimum=0, maximum=23)
    floors: dict[str, dict[str, Decimal]] = {}
    for provider, currencies in table(f"{key}.balance_low", raw.get("balance_low", {})).items():
        k = f"{key}.balance_low.{provider}"
        if provider not in payouts.providers:
            raise ConfigError(k, "names no configured payout provider")
        floors[provider] = {str(cur).upper(): amount(f"{k}.{cur}", v) for cur, v in table(k, currencies).items()}
    return NotifySettings(
        urls=urls, urls_env=var, digest_hour=digest_hour, balance_low=floors,
        balance_check_interval=whole(f"{key}.balance_check_interval", raw.get("balance_check_interval", 300),
                                     minimum=30, maximum=86_400),
        beat_gone_after=whole(f"{key}.beat_gone_after", raw.get("beat_gone_after", 180), minimum=60, maximum=86_400),
    )


def amount(key: str, value: Any) -> Decimal:
    """A positive amount of money, from a string or a whole number (a float would be a rounded guess)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(key, 'must be an amount written as a string ("1000.50") or a whole number')
    try:
        out = Decimal(str(value).strip())
    except ArithmeticError:
        raise ConfigError(key, f"must be an amount, got {value!r}") from None
    if not out.is_finite() or out <= 0 or out >= Decimal(10) ** 20:
        raise ConfigError(key, f"must be a positive amount below 10^20, got {value!r}")
    return out


def apprise_module():
    """apprise, with its logger silenced: it logs the URLs it parses and sends to (``Unparseable Telegram URL
    tgram://<token>``), tokens included. exsync says itself what failed (worker/notify.py, this module)."""
    import logging

    import apprise

    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)
    return apprise


def apprise_url(key: str, url: str) -> str:
    """A URL apprise can send to. The error names the variable and the scheme, never the URL (it may hold
    a token)."""
    apprise = apprise_module()

    scheme = url.partition("://")[0] if "://" in url else ""
    if not scheme or not re.fullmatch(r"[a-z][a-z0-9+.-]{0,30}", scheme):
        raise ConfigError(key, "is not a URL (scheme://…); see https://github.com/caronc/apprise/wiki")
    if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
        raise ConfigError(key, f"is not a {scheme}:// URL apprise can send to (value hidden: it may hold a token)")
    return url
