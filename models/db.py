"""Engine and sessions. One ``Database`` per process, built from the database URL."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.urls import normalize_url

# A host cut off by a network split must not keep what its sessions hold (advisory locks, row locks, an
# open transaction) until TCP gives up after minutes or hours: each session asks the SERVER to probe its
# client after 5 s of silence and drop it after 3 unanswered probes 2 s apart, or after 15 s of unanswered
# data (tcp_user_timeout, Postgres 12+); libpq does the same on our side, so a cut worker's calls fail within
# seconds instead of hanging until the link returns. tests/system/test_multihost.py cuts a host mid-tick.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
             "tcp_user_timeout": 15000}
SERVER_KEEPALIVE = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"


def _server_keepalive(dbapi_connection, _record) -> None:
    """Per session, not in ``options``: a URL's own ``options`` stay untouched. Skipped on a Unix socket."""
    if dbapi_connection.info.host.startswith("/"):
        return
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True  # SET outside a transaction: it stays for the session
    with dbapi_connection.cursor() as cur:
        cur.execute(SERVER_KEEPALIVE)
        if dbapi_connection.server_version >= 120000:
            cur.execute("SET tcp_user_timeout = 15000")
    dbapi_connection.autocommit = autocommit


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False) -> None:
        self.url = url = normalize_url(url)
        self.engine: Engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            echo=echo,
            connect_args={"connect_timeout": 5, "application_name": "exsync", **KEEPALIVE},
        )
        event.listen(self.engine, "connect", _server_keepalive)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as s:
            with s.begin():
                yield s

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True

    def dispose(self) -> None:
        self.engine.dispose()
