"""Shared fixtures: real Postgres, real Redis, a real Celery worker, the provider sandboxes.

Services: ``EXSYNC_TEST_DATABASE_URL`` (a server URL whose user may CREATE DATABASE) and
``EXSYNC_TEST_REDIS_URL``; without them an embedded Postgres and an embedded Redis are started under a
temporary folder, so ``make test`` passes on a fresh machine. Each run makes its own database, so runs
never collide.
"""
from __future__ import annotations

import os
import secrets
import textwrap
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from models.db import Database
from core import runtime as runtime_mod
from core.config import load_settings
from devtools.embedded import EmbeddedPostgres, EmbeddedRedis, create_database, drop_database
from models.migrate import upgrade

TABLES = ["bid_status_changes", "bid_polls", "bids", "inbox_events", "sweep_cursors"]
WEBHOOK_TOKEN = "whtok_" + "a1b2c3d4e5f6g7h8"
API_TOKEN = "apitoken-0123456789abcdef"


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory):
    url = os.environ.get("EXSYNC_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), database="exsync_admin")
    yield server.admin_url
    server.stop()


@pytest.fixture(scope="session")
def database_url(pg_admin_url):
    name = f"exsync_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    create_database(pg_admin_url, name)
    base, _, query = pg_admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")
    upgrade(url)
    yield url
    drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def _database(database_url):
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def db(_database):
    """The test database, emptied after each test."""
    yield _database
    with _database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        for extra in _extra_tables(conn):
            conn.execute(text(f"TRUNCATE {extra} RESTART IDENTITY CASCADE"))


def _extra_tables(conn):
    """Tables added by later migrations are emptied too."""
    rows = conn.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
    )).scalars().all()
    return [t for t in rows if t not in TABLES]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("EXSYNC_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def premium_sandbox():
    """A Premium Exchanger sandbox served over HTTP on a free loopback port."""
    from providers.premium.sandbox import create_app, serve

    app = create_app(seed=1234)
    srv = serve(app, host="127.0.0.1", port=0)
    srv.app = app
    srv.engine = app.engine
    yield srv
    srv.shutdown()


def write_config(tmp_path: Path, sandbox_url: str, *, extra: str = "") -> Path:
    from providers.premium.sandbox import DEFAULT_LOGIN

    path = tmp_path / "exsync.toml"
    path.write_text(textwrap.dedent(f"""
        [settings]
        sweep_interval = 60
        sweep_overlap = 300

        [exchangers.main]
        base_url = "{sandbox_url}"
        api_login = "{DEFAULT_LOGIN}"
        timeout = 5
        rate_limit = 200
    """) + extra)
    return path


def make_env(config_path: Path, database_url: str | None, redis_url: str | None, **more: str) -> dict:
    from providers.premium.sandbox import DEFAULT_KEY

    env = {
        "EXSYNC_CONFIG": str(config_path),
        "EXSYNC_EXCHANGER_MAIN_API_KEY": DEFAULT_KEY,
        "EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "EXSYNC_API_TOKEN": API_TOKEN,
    }
    if database_url:
        env["EXSYNC_DATABASE_URL"] = database_url
    if redis_url:
        env["EXSYNC_REDIS_URL"] = redis_url
    env.update(more)
    return env


@pytest.fixture
def settings(tmp_path, premium_sandbox, database_url, redis_url):
    env = make_env(write_config(tmp_path, premium_sandbox.url), database_url, redis_url)
    return load_settings(env)


def forget_webhook_failures(redis_url: str) -> None:
    """Each test starts with no webhook failures counted against any source (webhooks/throttle.py):
    every test client and live server here sends from the same few addresses."""
    from core.redis_url import client as redis_client

    r = redis_client(redis_url)
    for key in r.scan_iter("exsync:webhook-failures:*"):
        r.delete(key)


@pytest.fixture
def runtime(settings, db):
    forget_webhook_failures(settings.redis_url)
    rt = runtime_mod.Runtime(settings, _db=db)
    runtime_mod.install(rt)
    yield rt
    runtime_mod.install(None)


@pytest.fixture
def celery_app(runtime):
    from worker.celery_app import app, configure

    configure(runtime.settings)
    app.conf.update(task_always_eager=False)
    return app


@pytest.fixture
def celery_worker(celery_app):
    """A real Celery worker (threads pool) consuming from the real Redis broker."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(celery_app, pool="threads", concurrency=4, perform_ping_check=False,
                      shutdown_timeout=30, loglevel="WARNING") as worker:
        yield worker


@pytest.fixture
def web_app(runtime):
    from webhooks.app import create_app

    app = create_app(runtime)
    app.testing = True
    return app


@pytest.fixture
def client(web_app):
    return web_app.test_client()


def random_token() -> str:
    return secrets.token_urlsafe(24)


# -- every HTTP surface configured at once: the fuzz tests, the OpenAPI run and the live web server ----


@pytest.fixture(scope="session")
def paysera_signing_key():
    """A Paysera-like key pair: the test signs callbacks with the private half, exsync holds the public."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return key, pem


def edge_toml(paysera_pem: str) -> str:
    """[providers] gw (gateway) and ps (paysera) and a route: every receiver has a configured provider."""
    from providers.paysera.sandbox import DEFAULT_MAC_ID

    return f"""
[payouts]
lease_seconds = 30

[providers.gw]
type = "gateway"
base_url = "http://127.0.0.1:9"
api_key_env = "EXSYNC_EDGE_GW_KEY"
secret_env = "EXSYNC_EDGE_GW_SECRET"

[providers.ps]
type = "paysera"
base_url = "http://127.0.0.1:9"
mac_id = "{DEFAULT_MAC_ID}"
mac_key_env = "EXSYNC_EDGE_PS_MAC_KEY"
callback_public_key_pem = '''{paysera_pem}'''

[routes.main]
trigger_statuses = ["realpay"]

[[routes.main.rules]]
currency = "RUB"
provider = "gw"
destination_field = "account2"
"""


@pytest.fixture
def edge_env(tmp_path, premium_sandbox, database_url, redis_url, paysera_signing_key) -> dict:
    """Environment of an exsync whose Premium, gateway and Paysera receivers are all configured."""
    from providers.gateway.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET
    from providers.paysera.sandbox import DEFAULT_MAC_KEY

    config = write_config(tmp_path, premium_sandbox.url, extra=edge_toml(paysera_signing_key[1]))
    return make_env(config, database_url, redis_url, EXSYNC_EDGE_GW_KEY=DEFAULT_API_KEY,
                    EXSYNC_EDGE_GW_SECRET=DEFAULT_SECRET, EXSYNC_EDGE_PS_MAC_KEY=DEFAULT_MAC_KEY)


@pytest.fixture
def edge_runtime(edge_env, db, redis_url):
    forget_webhook_failures(redis_url)
    rt = runtime_mod.Runtime(load_settings(edge_env), _db=db)  # the payout sections come with the settings
    runtime_mod.install(rt)
    yield rt
    runtime_mod.install(None)


@pytest.fixture
def edge_client(edge_runtime):
    from webhooks.app import create_app

    app = create_app(edge_runtime, env={})
    app.testing = True
    return app.test_client()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_web(edge_env, db, tmp_path):
    """The real web process (`exsync web`: gunicorn, gthread) on a free port, its output in a file.

    Yields an object with ``url``, ``log`` (path of everything it wrote) and ``env``.
    """
    import subprocess
    import sys
    import time
    import types
    import urllib.request

    forget_webhook_failures(edge_env["EXSYNC_REDIS_URL"])
    port = free_port()
    log = tmp_path / "web.log"
    env = {**os.environ, **edge_env, "EXSYNC_WEB_BIND": f"127.0.0.1:{port}",
           "EXSYNC_LOG_LEVEL": edge_env.get("EXSYNC_LOG_LEVEL", "WARNING")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "web", "--workers", "1", "--threads", "4"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"exsync web did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
    try:
        yield types.SimpleNamespace(url=url, log=log, env=env, port=port, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
