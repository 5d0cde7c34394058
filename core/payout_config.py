"""The payout sections of the config file: ``[payouts]``, ``[providers.<name>]`` and ``[routes.<exchanger>]``.

Read by ``core.config.load_settings`` (the file is read once, there) into ``Settings.payouts``, a typed
``PayoutConfig``. Layout::

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

    [providers.zc]                   # one per payout provider account
    type = "zaleycash"               # a type in providers/registry.py
    base_url = "https://zaleycash.com"
    timeout = 15
    secret_key_env = "EXSYNC_ZC_SECRET"   # …and the keys of that type's schema: its descriptor.py
                                          # (providers/<type>/descriptor.py) lists them, with examples

    [routes.main]                    # one per exchanger
    enabled = true
    trigger_statuses = ["realpay"]
    auto_pay_ceiling = "500"         # above it a person must approve; optional (no ceiling)
    approval_above = "5000"          # four-eyes: above it `approvers` distinct approvers must approve; optional
    approvers = 2                    # how many (1-10; default 2; only with approval_above)

    [[routes.main.rules]]
    currency = "RUB"                 # the bid's currency_code_get
    psys_get = "ZaleyCash"           # optional: the bid's psys_get must match too
    provider = "zc"
    destination_field = "account2"   # key in the bid's request_fields
    min_amount = "1"
    max_amount = "100000"

Amounts are decimal strings. Every error is a :class:`core.config.ConfigError` naming its key; a provider's
table is checked here by its descriptor's schema (the provider raises nothing itself).
"""
from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from core.config import (
    NAME_RE,
    ConfigError,
    PayoutConfig,
    PayoutSettings,
    RouteConfig,
    RouteRule,
    boolean,
    env_var,
    http_url,
    known,
    number,
    read_document,
    required,
    secret,
    site_url,
    table,
    text,
    whole,
)
from models import statuses
from providers import registry
from providers.descriptor import Option, ProviderConfig

__all__ = ["PayoutConfig", "PayoutSettings", "ProviderConfig", "RouteConfig", "RouteRule", "load_payout_config",
           "load_payout_config_from_env"]


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
    if not isinstance(value, list) or not 0 < len(value) <= 100:
        raise ConfigError(key, "must be a list of 1 to 100 delays in seconds")
    return tuple(whole(f"{key}[{i}]", v, minimum=1, maximum=7 * 86_400) for i, v in enumerate(value))


# -- sections --------------------------------------------------------------------------------------

_SETTINGS_KEYS = {"lease_seconds", "max_attempts", "retry_ladder", "check_ladder", "max_checks", "park_seconds",
                  "completion_ladder", "jitter", "batch"}


def _settings(raw: Any) -> PayoutSettings:
    raw = table("payouts", raw)
    known("payouts", raw, _SETTINGS_KEYS)
    kw: dict[str, Any] = {}
    # Upper bounds: past them a value is a typo, never a setting.
    for name, minimum, maximum in [("lease_seconds", 10, 3_600), ("max_attempts", 1, 1_000), ("max_checks", 1, 100_000),
                                   ("park_seconds", 1, 7 * 86_400), ("batch", 1, 10_000)]:
        if name in raw:
            kw[name] = whole(f"payouts.{name}", raw[name], minimum=minimum, maximum=maximum)
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


def _option(key: str, opt: Option, value: Any, env: Mapping[str, str]) -> Any:
    """One option's value, read by its schema type, then by its own check (ValueError → ConfigError)."""
    if opt.type == "text":
        out: Any = text(key, value)
    elif opt.type == "whole":
        out = whole(key, value, minimum=int(opt.minimum or 0),
                    maximum=None if opt.maximum is None else int(opt.maximum))
    elif opt.type == "number":
        out = number(key, value, minimum=opt.minimum or 0.0, maximum=opt.maximum)
    elif opt.type == "url":
        out = http_url(key, value)
    elif opt.type == "choice":
        if value not in opt.choices:
            listed = " or ".join(f'"{c}"' for c in opt.choices)
            raise ConfigError(key, f"must be {listed}, got {value!r}")
        out = value
    elif opt.type == "table":
        out = {str(k): whole(f"{key}.{k}", v, minimum=int(opt.minimum or 1)) for k, v in table(key, value).items()}
    elif opt.type == "secret":
        out = secret(key, env, env_var(key, value))
    else:  # file
        path = text(key, value)
        try:
            with open(path, "r", encoding="ascii") as fh:
                out = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(key, f"cannot read {path}: {type(exc).__name__}") from None
    if opt.check is not None:
        try:
            out = opt.check(out)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    return out


def _provider(name: str, raw: Any, env: Mapping[str, str]) -> ProviderConfig:
    key = f"providers.{name}"
    if not NAME_RE.match(name):
        raise ConfigError(key, "name must be lower-case letters, digits, '-' or '_' (at most 63)")
    raw = table(key, raw)
    kind = text(f"{key}.type", required(key, raw, "type"))
    desc = registry.get(kind)
    if desc is None:
        raise ConfigError(f"{key}.type", f"must be one of {', '.join(registry.types())}, got {kind!r}")
    known(key, raw, _COMMON | {o.name for o in desc.options})
    base_url = site_url(f"{key}.base_url", required(key, raw, "base_url"))
    timeout = number(f"{key}.timeout", raw.get("timeout", 15), maximum=600)
    secrets: dict[str, str] = {}
    options: dict[str, Any] = {}
    given: dict[str, str] = {}  # target → the option giving it (options filling one target are alternatives)
    for opt in desc.options:
        if opt.name in raw:
            if opt.target in given:
                raise ConfigError(f"{key}.{opt.name}", f"give {given[opt.target]} or {opt.name}, not both")
            given[opt.target] = opt.name
    for opt in desc.options:
        k = f"{key}.{opt.name}"
        if opt.name in raw:
            value = raw[opt.name]
        elif opt.target in given:  # its alternative is given
            continue
        elif opt.required:
            raise ConfigError(k, "is required")
        elif opt.default is not None:
            value = opt.default
        else:
            continue
        (secrets if opt.type == "secret" else options)[opt.target] = _option(k, opt, value, env)
    return ProviderConfig(name=name, type=kind, base_url=base_url, timeout=timeout, secrets=secrets,
                          options=options)


_CURRENCY_RE = re.compile(r"^[A-Z0-9]{2,10}$")
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_ROUTE_KEYS = {"enabled", "trigger_statuses", "auto_pay_ceiling", "approval_above", "approvers", "rules"}
MAX_APPROVERS = 10
_RULE_KEYS = {"currency", "provider", "destination_field", "min_amount", "max_amount", "psys_get"}


def _rule(key: str, raw: Any, providers: Mapping[str, ProviderConfig]) -> RouteRule:
    raw = table(key, raw)
    known(key, raw, _RULE_KEYS)
    currency = text(f"{key}.currency", required(key, raw, "currency")).upper()
    if not _CURRENCY_RE.match(currency):
        raise ConfigError(f"{key}.currency", f"must be a currency code such as \"RUB\", got {currency!r}")
    provider = text(f"{key}.provider", required(key, raw, "provider"))
    if provider not in providers:
        raise ConfigError(f"{key}.provider", f"names no configured provider: {provider!r} (add [providers.{provider}])")
    cfg = providers[provider]
    desc = registry.get(cfg.type)
    payable = desc.currencies(cfg.options) if desc is not None and desc.currencies is not None else None
    if payable is not None and currency not in payable:
        raise ConfigError(f"{key}.currency", f"provider {provider!r} cannot pay {currency!r} (it pays "
                                             f"{', '.join(sorted(payable)) or 'nothing'}; see [providers.{provider}])")
    dest = text(f"{key}.destination_field", raw.get("destination_field", "account2"))
    if not _FIELD_RE.match(dest):
        raise ConfigError(f"{key}.destination_field",
                          f"must name a bid field such as \"account2\" or \"cf6\", got {dest!r}")
    lo = _decimal(f"{key}.min_amount", raw["min_amount"]) if "min_amount" in raw else None
    hi = _decimal(f"{key}.max_amount", raw["max_amount"]) if "max_amount" in raw else None
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"{key}.max_amount", f"is below min_amount ({hi} < {lo})")
    psys = text(f"{key}.psys_get", raw["psys_get"]) if "psys_get" in raw else None
    return RouteRule(currency=currency, provider=provider, destination_field=dest, min_amount=lo, max_amount=hi,
                     psys_get=psys)


def _route(name: str, raw: Any, providers: Mapping[str, ProviderConfig], exchangers: Mapping[str, Any]) -> RouteConfig:
    key = f"routes.{name}"
    raw = table(key, raw)
    if name not in exchangers:
        raise ConfigError(key, f"names no configured exchanger: {name!r} (add [exchangers.{name}])")
    known(key, raw, _ROUTE_KEYS)
    trig = raw.get("trigger_statuses", ["realpay"])
    if not isinstance(trig, list) or not trig:
        raise ConfigError(f"{key}.trigger_statuses", "must be a non-empty list of bid statuses")
    for i, s in enumerate(trig):
        if not isinstance(s, str) or not statuses.is_valid(s):
            raise ConfigError(f"{key}.trigger_statuses[{i}]", f"is not a bid status: {s!r}")
        if statuses.is_terminal(s):
            raise ConfigError(f"{key}.trigger_statuses[{i}]", f"{s!r} is terminal: a bid there must not be paid")
    ceiling = _decimal(f"{key}.auto_pay_ceiling", raw["auto_pay_ceiling"]) if "auto_pay_ceiling" in raw else None
    approval_above = _decimal(f"{key}.approval_above", raw["approval_above"]) if "approval_above" in raw else None
    if "approvers" in raw and approval_above is None:
        raise ConfigError(f"{key}.approvers", "needs approval_above: the amount above which payouts need approvers")
    approvers = whole(f"{key}.approvers", raw.get("approvers", 2), minimum=1, maximum=MAX_APPROVERS)
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(f"{key}.rules", "must be an array of tables ([[routes.<exchanger>.rules]])")
    rules = tuple(_rule(f"{key}.rules[{i}]", r, providers) for i, r in enumerate(rules_raw))
    return RouteConfig(exchanger=name, enabled=boolean(f"{key}.enabled", raw.get("enabled", True)),
                       trigger_statuses=tuple(trig), auto_pay_ceiling=ceiling, rules=rules,
                       approval_above=approval_above, approvers=approvers)


def load_payout_config(doc: Mapping[str, Any], env: Mapping[str, str]) -> PayoutConfig:
    """The payout sections of the whole TOML document (as ``tomllib`` returns it); routes may name only
    the document's ``[exchangers]``."""
    doc = doc or {}
    settings = _settings(doc.get("payouts", {}))
    providers_raw = table("providers", doc.get("providers", {}))
    providers = {name: _provider(name, raw, env) for name, raw in providers_raw.items()}
    exchangers = doc.get("exchangers", {})
    if not isinstance(exchangers, Mapping):
        exchangers = {}
    routes_raw = table("routes", doc.get("routes", {}))
    routes = {name: _route(name, raw, providers, exchangers) for name, raw in routes_raw.items()}
    return PayoutConfig(settings=settings, providers=providers, routes=routes)


def load_payout_config_from_env(env: Mapping[str, str] | None = None) -> PayoutConfig:
    """Only the payout sections of the file ``EXSYNC_CONFIG`` names (tests and benchmarks that build a
    payout config alone; exsync itself takes ``load_settings().payouts``)."""
    env = dict(os.environ if env is None else env)
    return load_payout_config(read_document(env), env)
