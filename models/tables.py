"""The tables. Money is Numeric (Decimal in Python); every time is timestamptz in UTC."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import statuses
from models.base import Base
from models.states import INBOX_TO_PROCESS, BidOrigin, ChangeSource, InboxState, PollState, one_of, sql_in

MONEY = Numeric(38, 18)
TS = DateTime(timezone=True)


class Bid(Base):
    """The mirror of one bid on one exchanger."""

    __tablename__ = "bids"
    __table_args__ = (
        UniqueConstraint("exchanger", "remote_id", name="uq_bids_exchanger_remote_id"),
        Index("uq_bids_exchanger_api_id", "exchanger", "api_id", unique=True,
              postgresql_where=text("api_id IS NOT NULL")),
        Index("ix_bids_status", "exchanger", "status"),
        # The console's searches, newest first, at a million bids (migration 0008):
        Index("ix_bids_status_id", "status", "id"),
        Index("ix_bids_exchanger_id", "exchanger", "id"),
        Index("ix_bids_exchanger_status_id", "exchanger", "status", "id"),
        Index("ix_bids_remote_id", "remote_id"),
        Index("ix_bids_first_seen_at", "first_seen_at"),
        Index("ix_bids_amount_give", "amount_give"),
        Index("ix_bids_amount_get", "amount_get"),
        Index("ix_bids_account2", text("(request_fields ->> 'account2')"), "id",
              postgresql_where=text("request_fields IS NOT NULL")),
        # The stuck report's "live bids not observed for an hour" reads only live, unarchived bids (0008).
        Index("ix_bids_live_observed_at", "observed_at",
              postgresql_where=text("archived_at IS NULL AND status NOT IN "
                                    f"({', '.join(repr(s) for s in sorted(statuses.TERMINAL))})")),
        one_of("created_via", BidOrigin),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exchanger: Mapped[str] = mapped_column(Text, nullable=False)
    remote_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    api_id: Mapped[str | None] = mapped_column(Text)  # our id when exsync created the bid
    hash: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    status_title: Mapped[str | None] = mapped_column(Text)
    psys_give: Mapped[str | None] = mapped_column(Text)
    psys_get: Mapped[str | None] = mapped_column(Text)
    currency_code_give: Mapped[str | None] = mapped_column(Text)
    currency_code_get: Mapped[str | None] = mapped_column(Text)
    course_give: Mapped[Decimal | None] = mapped_column(MONEY)
    course_get: Mapped[Decimal | None] = mapped_column(MONEY)
    amount_give: Mapped[Decimal | None] = mapped_column(MONEY)
    amount_get: Mapped[Decimal | None] = mapped_column(MONEY)
    exchange_success: Mapped[bool | None] = mapped_column(Boolean)
    user_hash: Mapped[str | None] = mapped_column(Text)
    user_ip: Mapped[str | None] = mapped_column(Text)
    # What the operator's app submitted to create_bid (account2, cf* fields): payouts read it.
    request_fields: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_via: Mapped[str] = mapped_column(Text, nullable=False)  # a BidOrigin
    # The engine's own time of the last change ("time" of get_exchanges), when known.
    remote_changed_at: Mapped[datetime | None] = mapped_column(TS)
    # When the newest applied observation was *started* (request sent): newer observation wins.
    observed_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    # Set when bid_info says "no bid exists" for a bid we had seen: archived remotely, never deleted here.
    archived_at: Mapped[datetime | None] = mapped_column(TS)
    first_seen_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    history: Mapped[list["BidStatusChange"]] = relationship(
        back_populates="bid", order_by="BidStatusChange.id", lazy="raise_on_sql"
    )


class BidStatusChange(Base):
    """One row per status change applied to the mirror, with where we learned it."""

    __tablename__ = "bid_status_changes"
    __table_args__ = (Index("ix_bid_status_changes_bid", "bid_id", "id"),
                      Index("ix_bid_status_changes_recorded_at", "recorded_at"),  # the console's last hour (0008)
                      one_of("source", ChangeSource))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id", ondelete="CASCADE"), nullable=False)
    from_status: Mapped[str | None] = mapped_column(Text)  # None: first sighting
    to_status: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)  # a ChangeSource
    observed_at: Mapped[datetime] = mapped_column(TS, nullable=False)
    remote_changed_at: Mapped[datetime | None] = mapped_column(TS)
    inbox_event_id: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())

    bid: Mapped[Bid] = relationship(back_populates="history")


class BidPoll(Base):
    """Poll schedule: one row per bid still worth re-reading with bid_info (``state``: a PollState)."""

    __tablename__ = "bid_polls"
    __table_args__ = (
        Index("ix_bid_polls_due", "next_poll_at", postgresql_where=text(sql_in("state", [PollState.ACTIVE]))),
        one_of("state", PollState),
    )

    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id", ondelete="CASCADE"), primary_key=True)
    exchanger: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=PollState.ACTIVE.value)
    next_poll_at: Mapped[datetime | None] = mapped_column(TS)
    step: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")  # ladder step within status
    ladder_status: Mapped[str | None] = mapped_column(Text)  # status the step counts for
    polls: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_polled_at: Mapped[datetime | None] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(Text)
    gave_up_at: Mapped[datetime | None] = mapped_column(TS)
    # The fencing token of the claim polling it now (``next_poll_at`` is then the claim's renewed expiry).
    lease_token: Mapped[str | None] = mapped_column(Text)


class InboxEvent(Base):
    """A webhook as received: committed before the sender gets its 2xx."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        Index("ix_inbox_events_pending", "state", "next_attempt_at",
              postgresql_where=text(sql_in("state", INBOX_TO_PROCESS))),
        Index("ix_inbox_events_state_id", "state", "id"),  # the console's inbox list (0008)
        Index("ix_inbox_events_received_at", "received_at"),  # the console's last hour (0008)
        Index("ix_inbox_events_bid", "endpoint", text("(payload ->> 'bid_id')"),  # a bid's events (0008)
              postgresql_where=text("provider = 'premium'")),
        one_of("state", InboxState),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(Text, nullable=False)  # premium | gateway | paysera
    endpoint: Mapped[str] = mapped_column(Text, nullable=False)  # exchanger or provider name
    received_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    source_ip: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")  # secrets redacted
    content_type: Mapped[str | None] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # parsed: {"bid_id": …, "status": …}
    state: Mapped[str] = mapped_column(Text, nullable=False, server_default=InboxState.RECEIVED.value)  # InboxState
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(TS)
    processed_at: Mapped[datetime | None] = mapped_column(TS)


class SweepCursor(Base):
    """Per exchanger: every bid whose last change is before ``cursor_time`` has been reconciled."""

    __tablename__ = "sweep_cursors"

    exchanger: Mapped[str] = mapped_column(Text, primary_key=True)
    cursor_time: Mapped[datetime | None] = mapped_column(TS)
    last_started_at: Mapped[datetime | None] = mapped_column(TS)
    last_finished_at: Mapped[datetime | None] = mapped_column(TS)
    last_seen: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_changed: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
