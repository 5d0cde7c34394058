"""Shared set-up for benchmarks: services, a fresh database, a runtime, the sandbox, reporting.

Every benchmark compares exsync with a baseline measured in the same run on the same machine, and prints
ratios; absolute numbers are shown for context only. Results also go to bench/results/<name>.json.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core import runtime as runtime_mod
from core.config import load_settings
from devtools.embedded import EmbeddedPostgres, EmbeddedRedis, create_database, drop_database
from models.db import Database
from models.migrate import upgrade

RESULTS = Path(__file__).resolve().parent / "results"
MAX_RATE_LIMIT = 10_000  # calls/s: the most an exchanger may be given; no benchmark comes near it


def results_dir() -> Path:
    """bench/results, or EXSYNC_BENCH_RESULTS (the smoke tests keep the full-size figures untouched)."""
    return Path(os.environ.get("EXSYNC_BENCH_RESULTS") or RESULTS)


@contextmanager
def database() -> Iterator[str]:
    """A fresh migrated database on EXSYNC_BENCH_DATABASE_URL's server, or on an embedded Postgres."""
    tmp = Path(tempfile.mkdtemp(prefix="exsync-bench-"))
    server = None
    admin = os.environ.get("EXSYNC_BENCH_DATABASE_URL")
    if not admin:
        server = EmbeddedPostgres(tmp / "pg", database="bench_admin")
        admin = server.admin_url
    name = f"exsync_bench_{uuid.uuid4().hex[:8]}"
    create_database(admin, name)
    base, _, query = admin.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")
    upgrade(url)
    try:
        yield url
    finally:
        drop_database(admin, name)
        if server:
            server.stop()


@contextmanager
def redis() -> Iterator[str]:
    url = os.environ.get("EXSYNC_BENCH_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="exsync-bench-redis-")))
    try:
        yield server.url
    finally:
        server.stop()


def settings_for(sandbox_url: str, database_url: str, redis_url: str | None = None, *, extra_settings: str = "",
                 rate_limit: int = MAX_RATE_LIMIT, public_url: str | None = None):
    return load_settings(env_for(sandbox_url, database_url, redis_url, extra_settings=extra_settings,
                                 rate_limit=rate_limit, public_url=public_url))


def env_for(sandbox_url: str, database_url: str, redis_url: str | None = None, *, extra_settings: str = "",
            rate_limit: int = MAX_RATE_LIMIT, public_url: str | None = None) -> dict[str, str]:
    """The environment (and the TOML file it names) of an exsync pointed at the sandbox: for this process
    (``settings_for``) or for exsync processes that a benchmark starts."""
    from providers.premium.sandbox import DEFAULT_KEY, DEFAULT_LOGIN

    path = Path(tempfile.mkdtemp(prefix="exsync-bench-cfg-")) / "exsync.toml"
    path.write_text(textwrap.dedent(f"""
        [settings]
        {extra_settings}

        [exchangers.main]
        base_url = "{sandbox_url}"
        api_login = "{DEFAULT_LOGIN}"
        timeout = 30
        rate_limit = {rate_limit}
    """))
    env = {
        "EXSYNC_CONFIG": str(path),
        "EXSYNC_EXCHANGER_MAIN_API_KEY": DEFAULT_KEY,
        "EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN": "benchtoken-0123456789abcdef",
        "EXSYNC_DATABASE_URL": database_url,
    }
    if redis_url:
        env["EXSYNC_REDIS_URL"] = redis_url
    if public_url:
        env["EXSYNC_PUBLIC_URL"] = public_url
    return env


def runtime_for(settings) -> runtime_mod.Runtime:
    rt = runtime_mod.Runtime(settings, _db=Database(settings.database_url, pool_size=20))
    runtime_mod.install(rt)
    return rt


def report(name: str, rows: list[tuple[str, object]], checks: list[tuple[str, bool]]) -> int:
    """Print a table and the pass/fail of each target; save JSON; exit code 1 when a target is missed."""
    width = max(len(k) for k, _ in rows + checks)
    print(f"\n== bench {name} ==")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for k, ok in checks:
        print(f"  {k:<{width}}  {'PASS' if ok else 'FAIL'}")
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(
        {"rows": {k: str(v) for k, v in rows}, "checks": {k: ok for k, ok in checks},
         "python": sys.version.split()[0]}, indent=2))
    return 0 if all(ok for _, ok in checks) else 1
