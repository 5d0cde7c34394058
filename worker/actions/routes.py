"""A route's off switch: a person stops (or resumes) an exchanger's payouts without editing the config file.

Paying needs both the file's ``enabled`` and this switch; the engine reads it right before every first send
(worker/payouts/engine.py), so a payout already created waits (pending) while its route is off.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core import clock
from core.runtime import Runtime
from models.operators import RouteSwitch
from models.states import AuditAction, OperatorRole
from worker.actions.audit import Actor, Refused, reason_of, record, require


def switch(runtime: Runtime, actor: Actor, exchanger: str, enabled: bool, reason: str | None) -> None:
    why = reason_of(reason)
    if exchanger not in runtime.payouts().routes:
        raise Refused(f"no payout route {exchanger!r} in the config file")
    with runtime.db.session() as s:
        require(s, actor, OperatorRole.ADMIN)
        was = s.execute(select(RouteSwitch.enabled).where(RouteSwitch.exchanger == exchanger)
                        .with_for_update()).scalar()
        now = clock.now_utc()
        s.execute(pg_insert(RouteSwitch).values(exchanger=exchanger, enabled=enabled, changed_by=actor.name,
                                                changed_at=now, reason=why)
                  .on_conflict_do_update(index_elements=["exchanger"],
                                         set_={"enabled": enabled, "changed_by": actor.name, "changed_at": now,
                                               "reason": why}))
        record(s, actor, AuditAction.ROUTE_SWITCH, "route", exchanger, reason=why,
               before={"enabled": True if was is None else was}, after={"enabled": enabled})


def switches(runtime: Runtime) -> dict[str, bool]:
    """exchanger → the person's switch (routes never switched are absent: on)."""
    with runtime.db.session() as s:
        return {r.exchanger: r.enabled for r in s.execute(select(RouteSwitch)).scalars()}
