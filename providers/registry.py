"""Every payout provider exsync knows, by type: the one list the config loader, the worker, the web app
and the CLI loop over.

Adding a provider: write its package with a ``descriptor.py`` holding ``DESCRIPTOR``
(providers/descriptor.py says what it holds) and add its module to ``BUILT_IN`` — one line.
The Premium engine is the exchanger, not a payout provider: it is not listed here.
"""
from __future__ import annotations

import importlib
import re
import threading

from providers.descriptor import Descriptor

BUILT_IN = (
    "providers.zaleycash.descriptor",
    "providers.gateway.descriptor",
    "providers.paysera.descriptor",
)

TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # a URL segment and a TOML value
RESERVED = frozenset({"premium"})  # /webhooks/premium/… is the exchanger's receiver

_lock = threading.Lock()
_by_type: dict[str, Descriptor] | None = None


def _loaded() -> dict[str, Descriptor]:
    # Imported on first use: a provider package (paysera needs `cryptography`) loads only when asked for.
    global _by_type
    with _lock:
        if _by_type is None:
            found: dict[str, Descriptor] = {}
            for module in BUILT_IN:
                d = importlib.import_module(module).DESCRIPTOR
                _check(d, found)
                found[d.type] = d
            _by_type = found
        return _by_type


def _check(d: Descriptor, known: dict[str, Descriptor]) -> None:
    if not isinstance(d, Descriptor):
        raise TypeError(f"not a provider Descriptor: {d!r}")
    if not TYPE_RE.match(d.type) or d.type in RESERVED:
        raise ValueError(f"provider type {d.type!r} must be a lower-case word (not {', '.join(sorted(RESERVED))})")
    if d.type in known and known[d.type] is not d:
        raise ValueError(f"provider type {d.type!r} is already registered")


def get(type_: str) -> Descriptor | None:
    """The descriptor of provider type ``type_``, or None."""
    return _loaded().get(type_)


def types() -> tuple[str, ...]:
    """Every provider type, built-in ones first in their listed order."""
    return tuple(_loaded())


def descriptors() -> tuple[Descriptor, ...]:
    return tuple(_loaded().values())


def register(d: Descriptor) -> Descriptor:
    """Add a provider that lives outside this package (a plug-in, a test's throwaway provider)."""
    known = _loaded()
    with _lock:
        _check(d, known)
        known[d.type] = d
    return d


def unregister(type_: str) -> None:
    """Remove a registered provider (tests clean up with it)."""
    known = _loaded()
    with _lock:
        known.pop(type_, None)
