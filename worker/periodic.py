"""Periodic jobs run once per interval slot, however many beats send them.

Any number of beats may run (one per host, for availability). Each sends every job at the start of each
interval window, with the window's **slot** (``floor(epoch seconds / interval)``, worker/beat.py), and
the task first inserts ``(job, slot)`` into ``periodic_runs`` with ``ON CONFLICT DO NOTHING``: the first
copy runs, every other copy of that slot returns at once ("skipped: slot taken") instead of waiting
behind it. A beat that dies leaves the others sending every slot, so no window goes without its run.

The slot keys copies of *one* window. A run that lasts longer than its interval is a different matter:
the next slot's run starts beside it, and what must not overlap keeps its own guard (the advisory locks
of worker/locks.py around a sweep of one exchanger and the payouts tick; SKIP LOCKED claims elsewhere).

A task sent without a slot (by hand, ``.delay()``) is not a periodic run: it always runs and writes no row.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import time
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import text

from models.db import Database

log = logging.getLogger("exsync.periodic")

KEEP_SECONDS = 3600.0  # rows of the last hour stay for operators (and tests); older ones are pruned
KEEP_SLOTS = 10  # ... and at least this many of each job, however long its interval


def slot_of(interval: float, at: float | None = None) -> int:
    """The slot (interval window) that the epoch time ``at`` (default: now) falls in."""
    return int((time.time() if at is None else at) // interval)


def slot_end(interval: float, slot: int) -> float:
    """Epoch seconds at which ``slot`` ends and the next one begins."""
    return (slot + 1) * interval


def identity() -> str:
    """This process, as periodic_runs names it: hostname:pid."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def claim(db: Database, job: str, slot: int, interval: float, beat: str | None = None) -> bool:
    """Take ``slot`` of ``job`` for this process; False when another run already took it.

    The same statement's transaction prunes the job's rows older than the kept window (one index range).
    """
    keep = max(KEEP_SLOTS, math.ceil(KEEP_SECONDS / interval))
    with db.session() as session:
        got = session.execute(text("""
            INSERT INTO periodic_runs (job, slot, started_at, host, beat) VALUES (:job, :slot, now(), :host, :beat)
            ON CONFLICT (job, slot) DO NOTHING RETURNING slot"""),
            {"job": job, "slot": slot, "host": identity(), "beat": beat}).first()
        if got is not None:
            session.execute(text("DELETE FROM periodic_runs WHERE job = :job AND slot < :oldest"),
                            {"job": job, "oldest": slot - keep})
    return got is not None


def finish(db: Database, job: str, slot: int, error: str | None = None) -> None:
    with db.session() as session:
        session.execute(text("UPDATE periodic_runs SET finished_at = now(), error = :error "
                             "WHERE job = :job AND slot = :slot"), {"job": job, "slot": slot, "error": error})


@contextmanager
def once(db: Database, job: str, interval: float, slot: int | None, beat: str | None = None) -> Iterator[bool]:
    """Yield True when this copy runs ``slot`` of ``job`` (or when no slot was given), False when another took it.

    The row is marked finished when the block ends, with the error if it raised; a process that dies
    leaves ``finished_at`` empty (its slot is not run again: the next slot runs, one interval later).
    """
    if slot is None:
        yield True
        return
    if not claim(db, job, slot, interval, beat):
        log.debug("%s slot %s: taken by another run", job, slot)
        yield False
        return
    error = None
    try:
        yield True
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        try:
            finish(db, job, slot, error)
        except Exception as exc:  # the run's own outcome matters more than its bookkeeping
            log.warning("%s slot %s: could not record the end: %s", job, slot, exc)


def skipped(job: str, slot: int | None) -> dict:
    """What a copy of a slot already taken returns."""
    return {"skipped": "slot taken", "job": job, "slot": slot}
