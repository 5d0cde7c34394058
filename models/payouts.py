"""Payout tables: one ``payouts`` row per bid (exactly once), one ``payout_attempts`` row per provider call.

States of a payout (see docs/payouts.md)::

    pending ─► submitting ─► submitted ─► succeeded
       ▲            │            └──────► failed
       │            ├──► succeeded | failed | pending (retry ladder) | parked (no money)
       │            └──► unknown ──(find first)──► …
    needs_review (a person decides: approve / retry / cancel) · cancelled

``submitting`` means "a call to the provider may be in flight": it is only left by the worker holding
the claim (``lease_token`` is its fencing token, ``lease_until`` the expiry its heartbeat renews) or by
the reaper once the lease ran out (→ unknown if a send was in flight, else back to ``claimed_from``).
A succeeded payout whose bid is being completed (success_bid) holds a lease the same way.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, Numeric, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.states import PAYOUT_DUE, AttemptKind, AttemptOutcome, PayoutState, one_of, sql_in

MONEY = Numeric(38, 18)
TS = DateTime(timezone=True)


class Payout(Base):
    __tablename__ = "payouts"
    __table_args__ = (
        Index("ix_payouts_due", "next_attempt_at", postgresql_where=text(sql_in("state", PAYOUT_DUE))),
        Index("ix_payouts_lease", "lease_until", postgresql_where=text("lease_until IS NOT NULL")),  # the reaper
        Index("ix_payouts_completion", "next_completion_at",
              postgresql_where=text(f"{sql_in('state', [PayoutState.SUCCEEDED])} AND bid_completed_at IS NULL")),
        Index("ix_payouts_state", "state", "exchanger"),
        # The console's filters, newest first (migration 0008):
        Index("ix_payouts_provider_id", "provider", "id"),
        Index("ix_payouts_exchanger_id", "exchanger", "id"),
        Index("ix_payouts_state_id", "state", "id"),
        Index("ix_payouts_updated_at", "updated_at"),  # the console's last hour
        one_of("state", PayoutState),
        one_of("claimed_from", PAYOUT_DUE),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exchanger: Mapped[str] = mapped_column(Text, nullable=False)
    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id", ondelete="RESTRICT"), nullable=False, unique=True)
    remote_id: Mapped[int] = mapped_column(BigInteger, nullable=False)  # the bid's id on the exchanger
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)  # ≤ 64 chars
    provider: Mapped[str | None] = mapped_column(Text)  # None: no route rule matched (needs_review)
    amount: Mapped[Decimal | None] = mapped_column(MONEY)
    currency: Mapped[str | None] = mapped_column(Text)
    destination: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, nullable=False)  # a PayoutState
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")  # send calls
    checks: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")  # find calls
    # True once a send may have reached the provider: later sends are preceded by find().
    maybe_sent: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    next_attempt_at: Mapped[datetime | None] = mapped_column(TS)
    # A claim: its fencing token (host:pid:random, unique per claim), its renewable expiry, and the state it
    # was claimed from (where the reaper puts it back when no send was in flight).
    lease_token: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(TS)
    claimed_from: Mapped[str | None] = mapped_column(Text)
    provider_ref: Mapped[str | None] = mapped_column(Text)
    provider_status: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)  # also the reason of needs_review
    approved_by: Mapped[str | None] = mapped_column(Text)
    approved_at: Mapped[datetime | None] = mapped_column(TS)
    created_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(TS)  # reached succeeded/failed/cancelled
    # Completion on the exchanger (success_bid), after the payout succeeded.
    bid_completed_at: Mapped[datetime | None] = mapped_column(TS)
    next_completion_at: Mapped[datetime | None] = mapped_column(TS)
    completion_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completion_error: Mapped[str | None] = mapped_column(Text)


class PayoutAttempt(Base):
    """One call to a provider (send/find) or to the exchanger (complete), with what came back."""

    __tablename__ = "payout_attempts"
    __table_args__ = (
        Index("ix_payout_attempts_payout", "payout_id", "id"),
        Index("ix_payout_attempts_started_at", "started_at"),  # recent ones: the console, /metrics (0008)
        one_of("kind", AttemptKind),
        one_of("outcome", AttemptOutcome),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id", ondelete="CASCADE"), nullable=False)
    n: Mapped[int] = mapped_column(Integer, nullable=False)  # 1, 2, … per payout
    kind: Mapped[str] = mapped_column(Text, nullable=False)  # an AttemptKind
    started_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(TS)
    # An AttemptOutcome: started while the call is in flight, lost when its worker died.
    outcome: Mapped[str] = mapped_column(Text, nullable=False, server_default=AttemptOutcome.STARTED.value)
    http_status: Mapped[int | None] = mapped_column(Integer)
    provider_code: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
