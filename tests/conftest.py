"""Shared fixtures: real Postgres, real Redis, a real Celery worker, the provider sandboxes.

Services: ``EXSYNC_TEST_DATABASE_URL`` (a server URL whose user may CREATE DATABASE) and
``EXSYNC_TEST_REDIS_URL``; without them an embedded Postgres and an embedded Redis are started under a
temporary folder, so ``make test`` passes on a fresh machine. Each run makes its own database, so runs
never collide.
"""
from __future__ import annotations

import logging
import os
import uuid

import pytest
from sqlalchemy import text

from core import runtime as runtime_mod
from core.config import load_settings
from devtools.embedded import EmbeddedPostgres, EmbeddedRedis, create_database, drop_database
from models.db import Database
from models.migrate import upgrade
from tests.support import sandboxes
from tests.support.config import edge_toml, forget_webhook_failures, make_env, write_config

TABLES = ["bid_status_changes", "bid_polls", "bids", "inbox_events", "sweep_cursors"]


# -- services: Postgres (a database per run), Redis ------------------------------------------------------


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


# -- the provider sandboxes, each served on a free loopback port (tests.support.sandboxes) ---------------


@pytest.fixture
def premium_sandbox():
    """The Premium Exchanger sandbox: the exchanger of every configuration here (tests.support.config)."""
    with sandboxes.running("premium", seed=1234) as srv:
        yield srv


@pytest.fixture
def zc_sandbox():
    """The ZaleyCash sandbox: provider ``zc`` of tests.support.payouts."""
    with sandboxes.running("zaleycash", seed=7, hang_seconds=3) as srv:
        yield srv


@pytest.fixture
def gw_sandbox():
    """The gateway sandbox: provider ``gw`` of tests.support.payouts."""
    with sandboxes.running("gateway", seed=7, hang_seconds=3) as srv:
        yield srv


@pytest.fixture
def ps_sandbox():
    """The Paysera sandbox, its wallet holding enough RUB for any payout here."""
    from providers.paysera.sandbox import DEFAULT_ACCOUNT, DEFAULT_WALLET_ID

    wallet = {"account_number": DEFAULT_ACCOUNT, "balance": {"RUB": "100000000.00", "EUR": "1000.00"}}
    with sandboxes.running("paysera", seed=7, wallets={DEFAULT_WALLET_ID: wallet}) as srv:
        yield srv


# -- exsync configured against them: settings, the runtime, Celery, the web app ---------------------------


@pytest.fixture
def settings(tmp_path, premium_sandbox, database_url, redis_url):
    env = make_env(write_config(tmp_path, premium_sandbox.url), database_url, redis_url)
    return load_settings(env)


@pytest.fixture
def runtime(settings, db):
    forget_webhook_failures(settings.redis_url)
    rt = runtime_mod.Runtime(settings, _db=db)
    runtime_mod.install(rt)
    yield rt
    runtime_mod.install(None)


@pytest.fixture
def restore_root_logging():
    """A command or setup_logging() installs exsync's root log handler: put pytest's back afterwards.
    Modules that need it say ``pytestmark = pytest.mark.usefixtures("restore_root_logging")``."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
