"""What worker/notify.py keeps in Postgres: sent notifications, provider balances, and beat's heartbeat.

* ``notifications`` — one row per thing that needs a person, keyed by what it is about
  (``payout:17:needs_review``, ``inbox:42:dead``, ``sweep:main:lagging``, ``balance:zc:RUB:low``,
  ``workers:gone``, ``beat:gone``, ``digest:2026-12-05``). The key is the deduplication: a row is sent
  once (``sent_at``); ``sent_to`` lists the targets (a hash of each apprise URL, never the URL) that
  already have it, so a retry after one target failed never repeats it to the others. When the thing no
  longer needs a person the row is ``resolved_at``; if it comes back, the row is opened again and one new
  notification goes out.
* ``provider_balances`` — the last balance a payout rail reported, per provider and currency, written by
  the notify job (a provider call never runs at scrape time) and read by ``/metrics`` and the stuck report.
* ``heartbeats`` — when a periodic job last ran (``beat``: the notify job beat schedules), so a beat that
  is gone shows on ``/stuck`` and ``/metrics``.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, Integer, Numeric, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

TS = DateTime(timezone=True)


class Notification(Base):
    __tablename__ = "notifications"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)  # payout_needs_review, inbox_dead, digest, …
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    link: Mapped[str | None] = mapped_column(Text)  # the console page about it
    opened_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(TS)  # every target has it
    sent_to: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(TS)
    last_error: Mapped[str | None] = mapped_column(Text)  # which target failed, never its URL
    resolved_at: Mapped[datetime | None] = mapped_column(TS)


class ProviderBalance(Base):
    __tablename__ = "provider_balances"

    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    currency: Mapped[str] = mapped_column(Text, primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(38, 18), nullable=False)
    checked_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())


class Heartbeat(Base):
    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
