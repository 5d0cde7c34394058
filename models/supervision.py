"""The statements the ``exsync run`` supervisor runs about its workers, written for a plain DB-API (psycopg2)
connection: that long-lived process must not load SQLAlchemy (bench/footprint). models/liveness.py runs
the very same statements through a Session (``exec_driver_sql``), so there is one copy of each."""
from __future__ import annotations

CONSUMED_AGE = """
    SELECT extract(epoch FROM now() - greatest(started_at, canary_consumed_at))
    FROM worker_liveness WHERE hostname = %(h)s"""

RECORD_STOPPED = "UPDATE worker_liveness SET stopped_at = now(), updated_at = now() WHERE hostname = %(h)s"

RECORD_RESTART = "INSERT INTO worker_restarts (hostname, reason, exit_code) VALUES (%(h)s, %(reason)s, %(code)s)"


def dbapi_dsn(url: str) -> str:
    """A SQLAlchemy URL as libpq takes it: ``postgresql+psycopg2://`` → ``postgresql://``."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest
