"""Postgres advisory locks for periodic jobs: a second beat (or a slow previous run) does no harm."""
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
