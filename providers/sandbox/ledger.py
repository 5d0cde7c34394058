"""The ledger of a payout sandbox: every movement of money it really made, oldest first.

It is the truth a test compares a client's view with: ``executed(ref)`` counts how many times the money
of one operation left (never more than 1, or the client paid twice). A plain list of dicts for readers
(``engine.ledger``); the sandbox appends with ``record``.
"""
from __future__ import annotations

from typing import Any, Callable


class Ledger(list):
    def __init__(self, ref: str, *, executes: Callable[[dict], bool] = lambda entry: True) -> None:
        """``ref``: the field naming the operation; ``executes(entry)``: whether an entry is an execution."""
        super().__init__()
        self.ref = ref
        self._executes = executes

    def record(self, **entry: Any) -> dict:
        self.append(entry)
        return entry

    def executed(self, ref: Any) -> int:
        return sum(1 for e in self if e[self.ref] == ref and self._executes(e))

    def rows(self, **formats: Callable[[Any], Any]) -> list[dict]:
        """The entries for JSON, each with ``formats[field]`` applied to that field (amounts as strings)."""
        return [{**e, **{k: f(e[k]) for k, f in formats.items()}} for e in self]
