"""Postgres advisory locks: one run at a time of work that must not overlap itself.

Copies of one periodic slot sent by several beats are told apart by worker/periodic.py, not here; these
locks cover what the slot cannot: a run that outlasts its interval beside the next slot's run (a sweep of
one exchanger, the payouts tick, a partner sync). A lock is taken with try, never waited for.
"""
from __future__ import annotations

import zlib
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Engine

NAMESPACE = 0x45585359  # "EXSY": keeps our keys apart from other users of advisory locks


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@contextmanager
def try_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Hold a session-level advisory lock for the block; yields False (and holds nothing) if taken.

    It lives on its own connection so the job may commit as often as it likes while holding it; if the
    process dies, Postgres drops the connection and with it the lock.
    """
    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:ns, :key)"),
                           {"ns": NAMESPACE, "key": lock_key(name)}).scalar()
        conn.commit()
        try:
            yield bool(got)
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"), {"ns": NAMESPACE, "key": lock_key(name)})
                conn.commit()
