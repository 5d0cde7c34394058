"""Named operators, the append-only audit trail, payout approvals and the routes' off switches.

- ``operators``: one row per person (argon2 hash, role, optional TOTP secret); disabled, never deleted,
  so every audit row keeps naming someone who existed.
- ``audit_events``: one row per action of a person (login, approve, retry, cancel, replay, dismiss, route
  switch, operator change): who, when, what, on which object, why, and the object before → after. Rows
  are only ever inserted: a trigger refuses UPDATE and DELETE (``APPEND_ONLY``), TRUNCATE is left to tests.
- ``payout_approvals``: one row per approver and payout (unique): four-eyes counts distinct rows.
- ``route_switches``: a person's runtime off switch of an exchanger's payout route, on top of the config
  file's ``enabled`` (both must allow paying).
- ``console_keys``: the console's cookie-signing key, shared by every web process.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.states import AuditAction, OperatorRole, one_of

TS = DateTime(timezone=True)


class Operator(Base):
    __tablename__ = "operators"
    __table_args__ = (one_of("role", OperatorRole),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    role: Mapped[str] = mapped_column(Text, nullable=False)  # an OperatorRole
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)  # argon2id, PHC string
    # Base32 TOTP secret when the second factor is on. It must be readable to check a code, so it is the one
    # secret kept in a row; it is never logged, shown again or written to an audit row.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(TS)
    # Bumped by a password change or a disable: sessions made before it stop working (see webhooks/console).
    session_epoch: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    last_login_at: Mapped[datetime | None] = mapped_column(TS)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_object", "object_type", "object_id", "id"),
        Index("ix_audit_events_actor", "actor", "id"),
        Index("ix_audit_events_at", "at"),
        # Login throttling counts recent failures per name (object_id) and per address (source_ip).
        Index("ix_audit_events_failed_logins", "object_id", "at", postgresql_where=text("action = 'login_failed'")),
        Index("ix_audit_events_failed_logins_ip", "source_ip", "at",
              postgresql_where=text("action = 'login_failed'")),
        one_of("action", AuditAction),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    actor: Mapped[str] = mapped_column(Text, nullable=False)  # an operator's name (or what a failed login typed)
    via: Mapped[str] = mapped_column(Text, nullable=False)  # console | cli
    action: Mapped[str] = mapped_column(Text, nullable=False)  # an AuditAction
    object_type: Mapped[str] = mapped_column(Text, nullable=False)  # payout | inbox_event | route | operator
    object_id: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    source_ip: Mapped[str | None] = mapped_column(Text)


# The same function and trigger as migration 0008 (tests/integration/test_migrations.py compares them).
APPEND_ONLY_FUNCTION = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END $$"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"""
# DDL() %-formats its text: the plpgsql placeholder is doubled.
event.listen(AuditEvent.__table__, "after_create", DDL(APPEND_ONLY_FUNCTION.replace("%", "%%")))
event.listen(AuditEvent.__table__, "after_create", DDL(APPEND_ONLY_TRIGGER))
event.listen(AuditEvent.__table__, "before_drop", DDL("DROP FUNCTION IF EXISTS audit_events_append_only CASCADE"))


class PayoutApproval(Base):
    __tablename__ = "payout_approvals"
    __table_args__ = (UniqueConstraint("payout_id", "operator_id", name="uq_payout_approvals_payout_operator"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id", ondelete="CASCADE"), nullable=False)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="RESTRICT"), nullable=False)
    operator: Mapped[str] = mapped_column(Text, nullable=False)  # the name, as the audit row has it
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    reason: Mapped[str] = mapped_column(Text, nullable=False)


class RouteSwitch(Base):
    __tablename__ = "route_switches"

    exchanger: Mapped[str] = mapped_column(Text, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    changed_by: Mapped[str] = mapped_column(Text, nullable=False)
    changed_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    reason: Mapped[str] = mapped_column(Text, nullable=False)


class ConsoleKey(Base):
    """The console's signing key (session cookies, CSRF tokens): made once by the first web process, shared
    by every process since, so a session survives a restart and works on any worker."""

    __tablename__ = "console_keys"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    secret: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())


# The approvals that count for a payout (``{payout}``: an SQL expression of its id): distinct approvers, none of
# whom retried it. One definition, read by the approve action and by the engine's check before the first send.
COUNTED_APPROVALS = """(SELECT count(*) FROM payout_approvals a WHERE a.payout_id = {payout}
    AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.object_type = 'payout' AND e.object_id = ({payout})::text
                    AND e.action = 'retry' AND e.actor = a.operator))"""
