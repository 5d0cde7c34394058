"""Payout configuration: ``[payouts]``, ``[providers.<name>]`` and ``[routes.<exchanger>]`` of the TOML file.

Layout::

    [payouts]                        # all optional
    lease_seconds = 15               # a claim lives this long unless its worker's heartbeat renews it (every
                                     # third of it): a dead worker's payouts are taken back this soon
    max_attempts = 5                 # sends before a payout waits for a person (needs_review)
    retry_ladder = [30, 120, 600, 1800, 7200]   # seconds between sends after a retryable error
    check_ladder = [15, 60, 300, 900, 3600]     # seconds between find() checks of a submitted payout
    max_checks = 100                 # find() checks before a payout waits for a person
    park_seconds = 3600              # back-off after "insufficient funds"
    completion_ladder = [10, 60, 300, 900]      # seconds between success_bid tries
    jitter = 0.2                     # each delay is multiplied by a random factor in [1-jitter, 1+jitter]
    batch = 50                       # payouts claimed per round

    [providers.zc]
    type = "zaleycash"
    base_url = "https://zaleycash.com"
    secret_key_env = "EXSYNC_ZC_SECRET"          # the env var holding the secret key
    timeout = 15
    status_path = "/api/v2/money/transfer/status" # optional; without it find() re-sends under the same key
    currencies = { RUB = 1, USD = 2 }             # optional: our currency → ZaleyCash code

    [providers.gw]
    type = "gateway"
    base_url = "https://gateway.example"
    api_key_env = "EXSYNC_GW_API_KEY"
    secret_env = "EXSYNC_GW_SECRET"
    shop_code = "main"                            # optional
    timeout = 15

    [providers.ps]
    type = "paysera"
    base_url = "https://wallet.paysera.com"
    mac_id = "…"
    mac_key_env = "EXSYNC_PS_MAC_KEY"
    beneficiary_type = "paysera"                  # or "bank"
    callback_public_key_file = "/etc/exsync/paysera.pem"  # or callback_public_key_pem = "-----BEGIN…";
                                                  # verifies callbacks at POST /webhooks/paysera/ps

    [routes.main]                    # one per exchanger
    enabled = true
    trigger_statuses = ["realpay"]
    auto_pay_ceiling = "500"         # above it a person must approve; optional (no ceiling)

    [[routes.main.rules]]
    currency = "RUB"                 # the bid's currency_code_get
    psys_get = "ZaleyCash"           # optional: the bid's psys_get must match too
    provider = "zc"
    destination_field = "account2"   # key in the bid's request_fields
    min_amount = "1"
    max_amount = "100000"

Amounts are decimal strings. Every error is a :class:`core.config.ConfigError` naming its key.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import urlsplit

from models import statuses
from core.config import NAME_RE, ConfigError, _float, _http_url, _int, _secret, _str, _bool

PROVIDER_TYPES = ("zaleycash", "gateway", "paysera")


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
class ProviderConfig:
    name: str
    type: str
    base_url: str
    timeout: float = 15.0
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


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


@dataclass(frozen=True)
class PayoutConfig:
    settings: PayoutSettings = field(default_factory=PayoutSettings)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    routes: Mapping[str, RouteConfig] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        return [v for p in self.providers.values() for v in p.secrets.values() if v]

    def route(self, exchanger: str) -> RouteConfig | None:
        return self.routes.get(exchanger)


# -- helpers ---------------------------------------------------------------------------------------

def _table(key: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    return raw


def _known(key: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "is not a known setting")


def _required(key: str, raw: Mapping[str, Any], name: str) -> Any:
    if name not in raw:
        raise ConfigError(f"{key}.{name}", "is required")
    return raw[name]


def _decimal(key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(key, f"must be a decimal string such as \"100.50\", got {value!r}")
    try:
        out = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(key, f"must be a decimal string such as \"100.50\", got {value!r}") from None
    if not out.is_finite() or out <= 0:
        raise ConfigError(key, f"must be a positive amount, got {value!r}")
    return out


def _ladder(key: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(key, "must be a non-empty list of seconds")
    return tuple(_int(f"{key}[{i}]", v, minimum=1) for i, v in enumerate(value))


def _env_name(key: str, raw: Mapping[str, Any], name: str) -> str:
    var = _str(f"{key}.{name}", _required(key, raw, name))
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", var):
        raise ConfigError(f"{key}.{name}", f"must name an environment variable, got {var!r}")
    return var


# -- sections --------------------------------------------------------------------------------------

_SETTINGS_KEYS = {"lease_seconds", "max_attempts", "retry_ladder", "check_ladder", "max_checks", "park_seconds",
                  "completion_ladder", "jitter", "batch"}


def _settings(raw: Any) -> PayoutSettings:
    raw = _table("payouts", raw)
    _known("payouts", raw, _SETTINGS_KEYS)
    kw: dict[str, Any] = {}
    for name, minimum in [("lease_seconds", 10), ("max_attempts", 1), ("max_checks", 1), ("park_seconds", 1),
                          ("batch", 1)]:
        if name in raw:
            kw[name] = _int(f"payouts.{name}", raw[name], minimum=minimum)
    for name in ("retry_ladder", "check_ladder", "completion_ladder"):
        if name in raw:
            kw[name] = _ladder(f"payouts.{name}", raw[name])
    if "jitter" in raw:
        j = raw["jitter"]
        if isinstance(j, bool) or not isinstance(j, (int, float)) or not 0 <= j < 1:
            raise ConfigError("payouts.jitter", f"must be a number in [0, 1), got {j!r}")
        kw["jitter"] = float(j)
    return PayoutSettings(**kw)


_COMMON = {"type", "base_url", "timeout"}
_PROVIDER_KEYS = {
    "zaleycash": _COMMON | {"secret_key_env", "status_path", "currencies"},
    "gateway": _COMMON | {"api_key_env", "secret_env", "shop_code", "callback_url"},
    "paysera": _COMMON | {"mac_id", "mac_key_env", "payer_account", "beneficiary_type",
                          "callback_public_key_pem", "callback_public_key_file"},
}


def _provider(name: str, raw: Any, env: Mapping[str, str]) -> ProviderConfig:
    key = f"providers.{name}"
    if not NAME_RE.match(name):
        raise ConfigError(key, "name must be lower-case letters, digits, '-' or '_' (at most 63)")
    raw = _table(key, raw)
    kind = _str(f"{key}.type", _required(key, raw, "type"))
    if kind not in PROVIDER_TYPES:
        raise ConfigError(f"{key}.type", f"must be one of {', '.join(PROVIDER_TYPES)}, got {kind!r}")
    _known(key, raw, _PROVIDER_KEYS[kind])
    base_url = _http_url(f"{key}.base_url", _required(key, raw, "base_url"))
    timeout = _float(f"{key}.timeout", raw.get("timeout", 15))
    secrets: dict[str, str] = {}
    options: dict[str, Any] = {}
    if kind == "zaleycash":
        var = _env_name(key, raw, "secret_key_env")
        secrets["secret_key"] = _secret(f"{key}.secret_key_env", env, var)
        if "status_path" in raw:
            path = _str(f"{key}.status_path", raw["status_path"])
            if not path.startswith("/"):
                raise ConfigError(f"{key}.status_path", "must start with '/'")
            options["status_path"] = path
        cur = _table(f"{key}.currencies", raw.get("currencies", {"RUB": 1, "USD": 2, "EUR": 3, "KZT": 4}))
        options["currencies"] = {str(c).upper(): _int(f"{key}.currencies.{c}", v, minimum=1) for c, v in cur.items()}
    elif kind == "gateway":
        secrets["api_key"] = _secret(f"{key}.api_key_env", env, _env_name(key, raw, "api_key_env"))
        secrets["secret"] = _secret(f"{key}.secret_env", env, _env_name(key, raw, "secret_env"))
        if "shop_code" in raw:
            options["shop_code"] = _str(f"{key}.shop_code", raw["shop_code"])
        if "callback_url" in raw:
            cb = _str(f"{key}.callback_url", raw["callback_url"])
            parts = urlsplit(cb)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"{key}.callback_url", f"must be an http(s) URL, got {cb!r}")
            options["callback_url"] = cb
    else:  # paysera
        options["mac_id"] = _str(f"{key}.mac_id", _required(key, raw, "mac_id"))
        secrets["mac_key"] = _secret(f"{key}.mac_key_env", env, _env_name(key, raw, "mac_key_env"))
        if "payer_account" in raw:
            options["payer_account"] = _str(f"{key}.payer_account", raw["payer_account"])
        bt = raw.get("beneficiary_type", "paysera")
        if bt not in ("paysera", "bank"):
            raise ConfigError(f"{key}.beneficiary_type", f"must be \"paysera\" or \"bank\", got {bt!r}")
        options["beneficiary_type"] = bt
        pem = _callback_key(key, raw)
        if pem is not None:
            options["callback_public_key_pem"] = pem
    return ProviderConfig(name=name, type=kind, base_url=base_url, timeout=timeout, secrets=secrets,
                          options=options)


def _callback_key(key: str, raw: Mapping[str, Any]) -> str | None:
    """Paysera's callback public key (PEM key or certificate), inline or from a file; checked at load."""
    from providers.paysera.callbacks import load_public_key

    if "callback_public_key_pem" in raw and "callback_public_key_file" in raw:
        raise ConfigError(f"{key}.callback_public_key_file", "give callback_public_key_pem or _file, not both")
    if "callback_public_key_pem" in raw:
        name = "callback_public_key_pem"
        pem = _str(f"{key}.{name}", raw[name])
    elif "callback_public_key_file" in raw:
        name = "callback_public_key_file"
        path = _str(f"{key}.{name}", raw[name])
        try:
            with open(path, "r", encoding="ascii") as fh:
                pem = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{key}.{name}", f"cannot read {path}: {type(exc).__name__}") from None
    else:
        return None
    try:
        load_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"{key}.{name}", str(exc)) from None
    return pem


_CURRENCY_RE = re.compile(r"^[A-Z0-9]{2,10}$")
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_ROUTE_KEYS = {"enabled", "trigger_statuses", "auto_pay_ceiling", "rules"}
_RULE_KEYS = {"currency", "provider", "destination_field", "min_amount", "max_amount", "psys_get"}


def _rule(key: str, raw: Any, providers: Mapping[str, ProviderConfig]) -> RouteRule:
    raw = _table(key, raw)
    _known(key, raw, _RULE_KEYS)
    currency = _str(f"{key}.currency", _required(key, raw, "currency")).upper()
    if not _CURRENCY_RE.match(currency):
        raise ConfigError(f"{key}.currency", f"must be a currency code such as \"RUB\", got {currency!r}")
    provider = _str(f"{key}.provider", _required(key, raw, "provider"))
    if provider not in providers:
        raise ConfigError(f"{key}.provider", f"names no configured provider: {provider!r} (add [providers.{provider}])")
    known = providers[provider].options.get("currencies")
    if providers[provider].type == "zaleycash" and known is not None and currency not in known:
        raise ConfigError(f"{key}.currency", f"provider {provider!r} has no ZaleyCash currency code for {currency!r} "
                                             f"(add it to providers.{provider}.currencies)")
    dest = _str(f"{key}.destination_field", raw.get("destination_field", "account2"))
    if not _FIELD_RE.match(dest):
        raise ConfigError(f"{key}.destination_field", f"must name a bid field such as \"account2\" or \"cf6\", got {dest!r}")
    lo = _decimal(f"{key}.min_amount", raw["min_amount"]) if "min_amount" in raw else None
    hi = _decimal(f"{key}.max_amount", raw["max_amount"]) if "max_amount" in raw else None
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"{key}.max_amount", f"is below min_amount ({hi} < {lo})")
    psys = _str(f"{key}.psys_get", raw["psys_get"]) if "psys_get" in raw else None
    return RouteRule(currency=currency, provider=provider, destination_field=dest, min_amount=lo, max_amount=hi,
                     psys_get=psys)


def _route(name: str, raw: Any, providers: Mapping[str, ProviderConfig], exchangers: Mapping[str, Any]) -> RouteConfig:
    key = f"routes.{name}"
    raw = _table(key, raw)
    if name not in exchangers:
        raise ConfigError(key, f"names no configured exchanger: {name!r} (add [exchangers.{name}])")
    _known(key, raw, _ROUTE_KEYS)
    trig = raw.get("trigger_statuses", ["realpay"])
    if not isinstance(trig, list) or not trig:
        raise ConfigError(f"{key}.trigger_statuses", "must be a non-empty list of bid statuses")
    for i, s in enumerate(trig):
        if not isinstance(s, str) or not statuses.is_valid(s):
            raise ConfigError(f"{key}.trigger_statuses[{i}]", f"is not a bid status: {s!r}")
        if statuses.is_terminal(s):
            raise ConfigError(f"{key}.trigger_statuses[{i}]", f"{s!r} is terminal: a bid there must not be paid")
    ceiling = _decimal(f"{key}.auto_pay_ceiling", raw["auto_pay_ceiling"]) if "auto_pay_ceiling" in raw else None
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(f"{key}.rules", "must be an array of tables ([[routes.<exchanger>.rules]])")
    rules = tuple(_rule(f"{key}.rules[{i}]", r, providers) for i, r in enumerate(rules_raw))
    return RouteConfig(exchanger=name, enabled=_bool(f"{key}.enabled", raw.get("enabled", True)),
                       trigger_statuses=tuple(trig), auto_pay_ceiling=ceiling, rules=rules)


def load_payout_config(settings_doc: Mapping[str, Any], env: Mapping[str, str]) -> PayoutConfig:
    """Parse the payout sections of the whole TOML document (as ``tomllib`` returns it)."""
    doc = settings_doc or {}
    settings = _settings(doc.get("payouts", {}))
    providers_raw = _table("providers", doc.get("providers", {}))
    providers = {name: _provider(name, raw, env) for name, raw in providers_raw.items()}
    exchangers = doc.get("exchangers", {})
    if not isinstance(exchangers, Mapping):
        exchangers = {}
    routes_raw = _table("routes", doc.get("routes", {}))
    routes = {name: _route(name, raw, providers, exchangers) for name, raw in routes_raw.items()}
    return PayoutConfig(settings=settings, providers=providers, routes=routes)


def load_payout_config_from_env(env: Mapping[str, str] | None = None) -> PayoutConfig:
    """The payout config of the file ``EXSYNC_CONFIG`` names (an empty config without one)."""
    env = dict(os.environ if env is None else env)
    path = env.get("EXSYNC_CONFIG")
    if not path:
        return PayoutConfig()
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("EXSYNC_CONFIG", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("EXSYNC_CONFIG", f"{path} is not valid TOML: {exc}") from None
    return load_payout_config(doc, env)
