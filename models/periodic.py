"""Periodic runs: one row per (job, slot), so a periodic job runs once per interval however many beats send it.

A slot is the interval window a run belongs to: ``floor(epoch seconds / interval)``. Every beat computes
the same slot for the same window (clocks kept by NTP), and the first run of a slot inserts its row;
a copy sent by another beat finds the row and is skipped (worker/periodic.py). ``host`` is the process
that ran it and ``beat`` the beat that sent it; old rows are pruned as new slots are claimed.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

TS = DateTime(timezone=True)


class PeriodicRun(Base):
    __tablename__ = "periodic_runs"

    job: Mapped[str] = mapped_column(Text, primary_key=True)  # a beat entry's name, e.g. "sweep"
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # floor(epoch / interval)
    started_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(TS)  # None: running, or its process died
    host: Mapped[str] = mapped_column(Text, nullable=False)  # hostname:pid of the process that ran it
    beat: Mapped[str | None] = mapped_column(Text)  # hostname:pid of the beat that sent it
    error: Mapped[str | None] = mapped_column(Text)  # why the run failed (the next slot runs anyway)
