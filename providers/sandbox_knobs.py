"""Fault knobs shared by every sandbox: typed values, changeable at run time as attributes or dict items
(``knobs.error_rate = 0.2``, ``knobs["latency"] = 0.05``), unknown names refused.

A sandbox subclasses it with its ``FIELDS`` (name → default) and extends ``_coerce`` for its special
knobs. Numbers are floats >= 0; a name ending in ``_rate`` is a share between 0 and 1; ``clock_skew`` may
be negative.
"""
from __future__ import annotations

from typing import Any


class SandboxKnobs:
    FIELDS: dict[str, Any] = {}

    def __init__(self, **values: Any) -> None:
        for k, v in self.FIELDS.items():
            object.__setattr__(self, k, v)
        self.update(**values)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.FIELDS:
            raise AttributeError(f"unknown knob {name!r}")
        object.__setattr__(self, name, self._coerce(name, value))

    def _coerce(self, name: str, value: Any) -> Any:
        value = float(value)
        if name == "clock_skew":
            return value
        if value < 0:
            raise ValueError(f"{name} must be >= 0")
        if name.endswith("_rate") and value > 1:
            raise ValueError(f"{name} must be between 0 and 1")
        return value

    @staticmethod
    def _flag(value: Any) -> bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)

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
