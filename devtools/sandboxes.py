"""`exsync sandbox <provider>`: build each provider's sandbox from the shared options and say what it accepts.

The Premium sandbox (the exchanger's engine) has its own options; every payout provider's comes from its
descriptor (providers/registry.py) and takes the shared fault knobs. Every sandbox is a faithful fake
for LOCAL USE ONLY (its control API under /_sandbox/ has no auth).
"""
from __future__ import annotations

import json
from typing import Any

from providers import registry


def providers() -> tuple[str, ...]:
    """Every sandbox ``exsync sandbox`` serves: the exchanger's, then each payout provider's."""
    return ("premium",) + tuple(d.type for d in registry.descriptors())


def build(provider: str, *, latency: float, error_rate: float, fail_after_commit_rate: float, seed: int | None,
          premium: dict[str, Any] | None = None):
    """The WSGI app of one sandbox. ``premium`` holds the options only the Premium sandbox has."""
    if provider == "premium":
        from providers.premium import sandbox as sb

        opts = dict(premium or {})
        login, key = opts.pop("login", None), opts.pop("key", None)
        return sb.create_app(login or sb.DEFAULT_LOGIN, key or sb.DEFAULT_KEY, latency=latency,
                             error_rate=error_rate, seed=seed, **opts)
    return _descriptor(provider).sandbox(latency=latency, error_rate=error_rate,
                                         fail_after_commit_rate=fail_after_commit_rate, seed=seed)


def banner(provider: str, app: Any, url: str) -> list[str]:
    """The lines printed on start: where it listens and the credentials it accepts (sandbox values)."""
    if provider == "premium":
        from providers.premium import sandbox as sb

        users = getattr(app.engine, "users", None) or {}
        login = next(iter(users), sb.DEFAULT_LOGIN) if isinstance(users, dict) else sb.DEFAULT_LOGIN
        key = users.get(login) if isinstance(users, dict) else None
        key = getattr(key, "key", key) or sb.DEFAULT_KEY
        return [f"premium sandbox listening on {url}", f"  API-LOGIN: {login}", f"  API-KEY:   {key}",
                f"  control:   {url}/_sandbox/state  (no auth: never expose this port)"]
    info = _descriptor(provider).describe_sandbox(app, url)
    if isinstance(info, str):
        return info.splitlines()
    return [f"{provider} sandbox listening on {url}  (LOCAL USE ONLY: the control API has no auth)"] + [
        f"  {k}: {v if isinstance(v, str) else json.dumps(v, default=str)}" for k, v in info.items()
    ]


def close(app: Any) -> None:
    engine = getattr(app, "engine", None)
    stop = getattr(engine, "close", None)
    if callable(stop):
        stop()


def _descriptor(provider: str):
    desc = registry.get(provider)
    if desc is None:
        raise ValueError(f"unknown sandbox {provider!r}")
    return desc
