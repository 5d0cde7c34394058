"""Operators for the tests of the actions, the CLI and the console."""
from __future__ import annotations

from worker.actions import Actor
from worker.actions import operators as ops

PASSWORD = "correct horse battery"


def add_operator(runtime, name: str, role: str, password: str = PASSWORD) -> Actor:
    """An enabled operator (made as the shell would make it); returns it as a CLI actor."""
    ops.add(runtime, Actor.shell(), name, role, password)
    return Actor(name, "cli")
