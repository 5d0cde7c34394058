"""Worker liveness: proof, kept in Postgres, that each Celery worker still consumes from the broker.

* ``worker_liveness`` — one row per worker process (its Celery hostname, which includes its pid): when it
  started, when its last canary task was published and when it ran (worker/liveness.py), and when it
  stopped on request. ``/readyz``, ``/metrics`` and the ``exsync run`` supervisor read it; web processes
  and the supervisor are other processes, so the proof has to live here rather than in memory.
* ``worker_restarts`` — one row per worker process the ``exsync run`` supervisor replaced, with why
  (``exited``: it ended on its own, whatever its exit code; ``stalled``: it stopped consuming).

Times are timestamptz; ages are computed against the database clock, the one every process shares.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, Text, func, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from models import supervision
from models.base import Base
from models.states import RestartReason, one_of

TS = DateTime(timezone=True)


class WorkerLiveness(Base):
    __tablename__ = "worker_liveness"

    hostname: Mapped[str] = mapped_column(Text, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    canary_sent_at: Mapped[datetime | None] = mapped_column(TS)  # publication time of the last canary run
    canary_consumed_at: Mapped[datetime | None] = mapped_column(TS)  # when that canary ran
    stopped_at: Mapped[datetime | None] = mapped_column(TS)  # a requested shutdown: no longer expected to consume
    updated_at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())


class WorkerRestart(Base):
    __tablename__ = "worker_restarts"
    __table_args__ = (one_of("reason", RestartReason),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TS, nullable=False, server_default=func.now())
    hostname: Mapped[str | None] = mapped_column(Text)  # the worker that was replaced
    reason: Mapped[str] = mapped_column(Text, nullable=False)  # a RestartReason
    exit_code: Mapped[int | None] = mapped_column(Integer)


def record_started(session: Session, hostname: str) -> None:
    session.execute(text("""
        INSERT INTO worker_liveness (hostname, started_at, updated_at) VALUES (:h, now(), now())
        ON CONFLICT (hostname) DO UPDATE SET started_at = now(), stopped_at = NULL, updated_at = now()"""),
        {"h": hostname})


def record_canary(session: Session, hostname: str, sent_at: datetime) -> None:
    """The canary published at ``sent_at`` ran now."""
    session.execute(text("""
        INSERT INTO worker_liveness (hostname, started_at, canary_sent_at, canary_consumed_at, updated_at)
        VALUES (:h, now(), :sent, now(), now())
        ON CONFLICT (hostname) DO UPDATE SET canary_sent_at = :sent, canary_consumed_at = now(), updated_at = now()"""),
        {"h": hostname, "sent": sent_at})


def record_stopped(session: Session, hostname: str) -> None:
    session.connection().exec_driver_sql(supervision.RECORD_STOPPED, {"h": hostname})


def prune(session: Session, keep_seconds: float) -> int:
    """Forget workers not heard of for ``keep_seconds`` (each restart is a new hostname)."""
    return len(session.execute(text("""
        DELETE FROM worker_liveness
        WHERE updated_at < now() - make_interval(secs => :keep) RETURNING hostname"""), {"keep": keep_seconds}).all())


def consumed_age(session: Session, hostname: str) -> float | None:
    """Seconds since this worker last proved it consumes (its start counts as proof); None: no row yet."""
    return session.connection().exec_driver_sql(supervision.CONSUMED_AGE, {"h": hostname}).scalar()


def live_workers(session: Session, within_seconds: float) -> list[dict]:
    """Workers not stopped on request and heard of within ``within_seconds``: hostname and canary age
    (None when no canary has run yet)."""
    rows = session.execute(text("""
        SELECT hostname, extract(epoch FROM now() - canary_consumed_at) AS canary_age,
               extract(epoch FROM now() - started_at) AS up
        FROM worker_liveness
        WHERE stopped_at IS NULL AND updated_at >= now() - make_interval(secs => :within)
        ORDER BY hostname"""), {"within": within_seconds}).mappings().all()
    return [{"hostname": r["hostname"], "canary_age": None if r["canary_age"] is None else float(r["canary_age"]),
             "up": float(r["up"])} for r in rows]


def record_restart(session: Session, hostname: str | None, reason: str, exit_code: int | None) -> None:
    session.connection().exec_driver_sql(supervision.RECORD_RESTART, {
        "h": hostname, "reason": RestartReason(reason).value, "code": exit_code})


def restart_counts(session: Session) -> dict[str, int]:
    rows = session.execute(text("SELECT reason, count(*) FROM worker_restarts GROUP BY reason")).all()
    counts = {reason.value: 0 for reason in RestartReason}
    counts.update({reason: int(n) for reason, n in rows})
    return counts
