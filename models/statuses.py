"""Bid status rules: pure functions, no I/O.

The engine has no "final" flag. In practice success, cancel and delete are terminal and error is
terminal unless an operator steps in; an admin may still set any status by hand, so a terminal status
is left only on a *newer* observation (see ``should_apply``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

KNOWN = frozenset({
    "coldnew", "new", "cancel", "delete", "techpay", "payed", "coldpay", "partpay", "realpay", "verify",
    "amlwait", "amlerror", "merchwait", "mercherror", "error", "payouterror", "scrpayerror",
    "coldsuccess", "partpayout", "success",
})
TERMINAL = frozenset({"success", "cancel", "delete", "error"})
ACTIVE = frozenset({  # the engine's own "active" group
    "coldnew", "new", "techpay", "payed", "coldpay", "partpay", "amlwait", "amlerror", "merchwait", "mercherror",
})
ARCHIVED = "archived"  # our marker: the engine no longer knows the bid (deleted by archiving)
CUSTOM_RE = re.compile(r"^my[0-9]{1,6}$")


def is_valid(status: str) -> bool:
    """A status the engine can report: a known one or an admin-defined ``my<N>``."""
    return status in KNOWN or bool(CUSTOM_RE.match(status or ""))


def is_terminal(status: str) -> bool:
    return status in TERMINAL or status == ARCHIVED


def needs_polling(status: str) -> bool:
    """Everything that is not terminal may still change, custom statuses included."""
    return not is_terminal(status)


@dataclass(frozen=True)
class Observation:
    """What one read of a bid said, and when that read was started."""

    status: str
    observed_at: datetime
    remote_changed_at: datetime | None = None


def should_apply(current: Observation | None, incoming: Observation) -> bool:
    """Newer observation wins; a stale read never overwrites a newer one.

    ``observed_at`` is when the request was *sent*: a read sent earlier that returns later is older.
    When both sides carry the engine's own change time, it decides first (it cannot go backwards).
    Equal times with another status: accepted, except that a terminal status is left only on a strictly
    newer observation.
    """
    if current is None:
        return True
    if current.remote_changed_at and incoming.remote_changed_at:
        if incoming.remote_changed_at < current.remote_changed_at:
            return False
    if incoming.observed_at < current.observed_at:
        return False
    if incoming.observed_at == current.observed_at and is_terminal(current.status):
        return incoming.status == current.status
    return True


def ladder_for(status: str, ladder: Mapping[str, Sequence[int]]) -> Sequence[int]:
    return ladder.get(status) or ladder["default"]


def next_poll(
    status: str,
    step: int,
    now: datetime,
    first_seen: datetime,
    ladder: Mapping[str, Sequence[int]],
    give_up_after: int,
) -> tuple[str, datetime | None]:
    """Where a bid's poll schedule goes after a poll: ``(state, next_poll_at)``.

    ``step`` counts polls made while the bid stayed in ``status``; the last delay of the ladder repeats.
    """
    if is_terminal(status):
        return "done", None
    if now - first_seen >= timedelta(seconds=give_up_after):
        return "gave_up", None
    steps = ladder_for(status, ladder)
    delay = steps[min(step, len(steps) - 1)]
    return "active", now + timedelta(seconds=delay)
