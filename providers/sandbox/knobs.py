"""Fault knobs: typed values, changeable at run time as attributes or dict items (``knobs.error_rate = 0.2``,
``knobs["latency"] = 0.05``, ``POST /_sandbox/knobs``), unknown names refused.

A sandbox subclasses :class:`SandboxKnobs` with its ``FIELDS`` (name → default), names its on/off knobs in
``FLAGS`` and its attempt counts in ``COUNTS``, and extends ``_coerce`` for anything else. Every other
knob is a float >= 0; a name ending in ``_rate`` is a share between 0 and 1; ``clock_skew`` may be negative.
"""
from __future__ import annotations

from typing import Any


class SandboxKnobs:
    FIELDS: dict[str, Any] = {}
    FLAGS: frozenset[str] = frozenset()   # "1", "true", "yes", "on" (any case) or a truthy value
    COUNTS: frozenset[str] = frozenset()  # whole numbers >= 1

    def __init__(self, **values: Any) -> None:
        for k, v in self.FIELDS.items():
            object.__setattr__(self, k, v)
        self.update(**values)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.FIELDS:
            raise AttributeError(f"unknown knob {name!r}")
        object.__setattr__(self, name, self._coerce(name, value))

    def _coerce(self, name: str, value: Any) -> Any:
        if name in self.FLAGS:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if name in self.COUNTS:
            value = int(value)
            if value < 1:
                raise ValueError(f"{name} must be >= 1")
            return value
        value = float(value)
        if name == "clock_skew":
            return value
        if value < 0:
            raise ValueError(f"{name} must be >= 0")
        if name.endswith("_rate") and value > 1:
            raise ValueError(f"{name} must be between 0 and 1")
        return value

    def update(self, **values: Any) -> "SandboxKnobs":
        for k, v in values.items():
            setattr(self, k, v)
        return self

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __getitem__(self, k: str) -> Any:
        return getattr(self, k)

    def __setitem__(self, k: str, v: Any) -> None:
        setattr(self, k, v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()!r})"
