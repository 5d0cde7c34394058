"""The values of every state-like column, defined once.

Each is an ``enum.StrEnum``: a member *is* its string, so comparisons with plain strings, JSON, log lines
and Prometheus labels are what they were. Code uses the members, passes them to SQL as bind parameters,
lists them in click choices and metric label sets; the models declare a CHECK constraint per column with
``one_of`` (migration 0006 adds the same constraints; tests/integration/test_migrations.py keeps the two equal).

Adding or removing a value here changes a model's CHECK constraint: write the migration that does the
same to existing databases (the comparison test fails until it exists).

Not here, because exsync does not own them: the engine's bid statuses (models/statuses.py; an admin may
add ``my<N>`` ones), the engine's partner payout statuses, provider names (a new provider adds one) and
provider codes.
"""
from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from sqlalchemy import CheckConstraint



class InboxState(enum.StrEnum):
    """``inbox_events.state``: received → processed, or failed (retried with back-off) → dead (attempts ran
    out, or the callback can never be processed: an operator replays it)."""

    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"
    DEAD = "dead"
    DISMISSED = "dismissed"  # a person looked at a failed or dead event and decided it needs nothing more


INBOX_TO_PROCESS = (InboxState.RECEIVED, InboxState.FAILED)  # still to be processed without a person
INBOX_REPLAYABLE = (InboxState.FAILED, InboxState.DEAD)  # `exsync inbox replay --all-failed`


class PollState(enum.StrEnum):
    """``bid_polls.state``: active (due at next_poll_at), done (terminal or archived), gave_up (live for
    longer than poll_give_up_after: shown to a person, no more polls)."""

    ACTIVE = "active"
    DONE = "done"
    GAVE_UP = "gave_up"


class PayoutState(enum.StrEnum):
    """``payouts.state`` (the state machine is drawn in models/payouts.py and docs/payouts.md)."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    NEEDS_REVIEW = "needs_review"
    CANCELLED = "cancelled"
    PARKED = "parked"


# States the engine claims a due payout from (also the only values of ``payouts.claimed_from``).
PAYOUT_DUE = (PayoutState.PENDING, PayoutState.UNKNOWN, PayoutState.PARKED, PayoutState.SUBMITTED)


class AttemptKind(enum.StrEnum):
    """``payout_attempts.kind``: a provider send, a provider find, or success_bid on the exchanger."""

    SUBMIT = "submit"
    FIND = "find"
    COMPLETE = "complete"


class AttemptOutcome(enum.StrEnum):
    """``payout_attempts.outcome``: started while the call is in flight; lost when its worker died."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"
    NOT_FOUND = "not_found"
    RETRYABLE = "retryable"
    UNKNOWN = "unknown"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PERMANENT = "permanent"
    AUTH = "auth"
    ERROR = "error"
    LOST = "lost"


class ChangeSource(enum.StrEnum):
    """``bid_status_changes.source``: where exsync learned of a bid's status."""

    CREATE = "create"  # exsync created the bid (create_bid)
    CALLBACK = "callback"
    POLL = "poll"
    SWEEP = "sweep"
    OPERATOR = "operator"


class BidOrigin(enum.StrEnum):
    """``bids.created_via``: how the bid first reached the mirror (exsync: created through exsync)."""

    EXSYNC = "exsync"
    CALLBACK = "callback"
    POLL = "poll"
    SWEEP = "sweep"
    OPERATOR = "operator"

    @classmethod
    def of(cls, source: str) -> "BidOrigin":
        """The origin of a bid first seen through ``source``."""
        return cls.EXSYNC if source == ChangeSource.CREATE else cls(source)


class PartnerPayoutOrigin(enum.StrEnum):
    """``partner_payouts.requested_via``: requested through exsync, or only seen by a sync."""

    EXSYNC = "exsync"
    SYNC = "sync"


class RestartReason(enum.StrEnum):
    """``worker_restarts.reason``: exited (ended on its own, whatever its exit code) or stalled (stopped
    consuming)."""

    EXITED = "exited"
    STALLED = "stalled"


class OperatorRole(enum.StrEnum):
    """``operators.role``, each allowed what the one before it may do and more (docs/console.md)."""

    VIEWER = "viewer"  # looks only
    OPERATOR = "operator"  # retries and cancels payouts, replays and dismisses inbox events
    APPROVER = "approver"  # also approves payouts
    ADMIN = "admin"  # also switches routes and manages operators


class AuditAction(enum.StrEnum):
    """``audit_events.action``: every action of a person, and every login."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    APPROVE = "approve"
    RETRY = "retry"
    CANCEL = "cancel"
    REPLAY = "replay"
    DISMISS = "dismiss"
    ROUTE_SWITCH = "route_switch"
    OPERATOR_ADD = "operator_add"
    OPERATOR_DISABLE = "operator_disable"
    OPERATOR_ENABLE = "operator_enable"
    OPERATOR_PASSWORD = "operator_password"
    OPERATOR_ROLE = "operator_role"
    OPERATOR_TOTP = "operator_totp"


def values(states: Iterable[str]) -> list[str]:
    """The plain strings, in declaration order (click choices show these)."""
    return [str(s) for s in states]


_SAFE = re.compile(r"^[a-z_]+$")


def sql_in(column: str, states: Iterable[str]) -> str:
    """``column IN ('a', 'b')`` for DDL (a CHECK, an index predicate), where bind parameters cannot go."""
    vals = values(states)
    if not vals or not all(_SAFE.match(v) for v in vals):
        raise ValueError(f"not a list of plain state names: {vals!r}")
    return f"{column} IN ({', '.join(repr(v) for v in vals)})"


def one_of(column: str, states: Iterable[str]) -> CheckConstraint:
    """The CHECK constraint of a state column, named ``ck_<table>_<column>`` by models/base.py's convention."""
    from sqlalchemy import CheckConstraint  # here: importing the states must not load SQLAlchemy

    return CheckConstraint(sql_in(column, states), name=column)
