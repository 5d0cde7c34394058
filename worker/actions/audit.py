"""Who acts, what they may do, and the audit row every action writes."""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from core import clock
from models.operators import AuditEvent, Operator
from models.states import OperatorRole
from providers.values import first_unclean
from worker.payouts.queries import Refused  # one refusal for every action: nothing was changed

__all__ = ["RANK", "Actor", "Forbidden", "Refused", "reason_of", "record", "require"]

# Each role may do what the ones before it may, and more (docs/console.md).
RANK = {OperatorRole.VIEWER: 0, OperatorRole.OPERATOR: 1, OperatorRole.APPROVER: 2, OperatorRole.ADMIN: 3}
MAX_REASON = 1000



class Forbidden(Refused):
    """The actor may not do this (unknown, disabled, or a role too low): nothing was changed."""


@dataclass(frozen=True)
class Actor:
    """Who acts, and through what. ``trusted``: the CLI's operator commands without ``--by`` (whoever can
    reach the database can create the first admin); recorded as ``cli:<login>``."""

    name: str
    via: str  # console | cli
    ip: str | None = None
    trusted: bool = False

    @classmethod
    def shell(cls) -> "Actor":
        try:
            login = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (a container): still say it was the shell
            login = "unknown"
        return cls(f"cli:{login}", "cli", trusted=True)


def require(session: Session, actor: Actor, role: OperatorRole) -> Operator | None:
    """The acting operator when it may act with ``role``; None for a trusted actor. Raises Forbidden."""
    if actor.trusted:
        return None
    op = session.execute(select(Operator).where(Operator.name == actor.name)).scalar_one_or_none()
    if op is None:
        raise Forbidden(f"no operator {actor.name!r} (exsync operators add NAME --role ROLE)")
    if op.disabled_at is not None:
        raise Forbidden(f"operator {actor.name!r} is disabled")
    if RANK[OperatorRole(op.role)] < RANK[role]:
        raise Forbidden(f"operator {actor.name!r} is a {op.role}: this needs the {role} role or higher")
    return op


def reason_of(reason: str | None) -> str:
    """Every action of a person says why: a non-empty line of at most MAX_REASON characters."""
    text = " ".join((reason or "").split())
    if not text:
        raise Refused("a reason is required")
    unclean = first_unclean(text)
    if unclean:
        raise Refused(f"the reason holds {unclean}")
    if len(text) > MAX_REASON:
        raise Refused(f"the reason is longer than {MAX_REASON} characters")
    return text


def record(session: Session, actor: Actor, action: str, object_type: str, object_id: Any, *,
           reason: str | None = None, before: Mapping[str, Any] | None = None,
           after: Mapping[str, Any] | None = None) -> None:
    session.execute(insert(AuditEvent).values(
        at=clock.now_utc(), actor=actor.name, via=actor.via, action=action, object_type=object_type,
        object_id=str(object_id), reason=reason, before=_jsonable(before), after=_jsonable(after), source_ip=actor.ip))


def _jsonable(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Decimal and datetime values as strings (JSONB), everything else as it is."""
    if values is None:
        return None
    return {k: v if v is None or isinstance(v, (bool, int, str)) else str(v) for k, v in values.items()}
