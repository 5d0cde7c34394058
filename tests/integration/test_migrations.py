"""The models and the migrations describe the same schema, all of it.

Two fresh databases: one upgraded to head by the migrations, one created from ``models.base`` metadata.
Alembic's ``compare_metadata`` must find no difference at all (no filter), and because it does not look
at CHECK constraints or index predicates, the two databases' catalogs are compared too, as Postgres
itself prints them. Then the new revision's downgrade and its refusal of rows it cannot check.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from devtools.embedded import create_database, drop_database
from models import Base
from models.migrate import alembic_config, current_head, upgrade
from models.urls import normalize_url


@contextmanager
def fresh_database(admin_url: str, tag: str):
    name = f"exsync_{tag}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    create_database(admin_url, name)
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")
    engine = create_engine(normalize_url(url))
    try:
        yield url, engine
    finally:
        engine.dispose()
        drop_database(admin_url, name)


@pytest.fixture(scope="module")
def migrated(pg_admin_url):
    with fresh_database(pg_admin_url, "migrated") as (url, engine):
        upgrade(url)
        yield engine


@pytest.fixture(scope="module")
def from_models(pg_admin_url):
    with fresh_database(pg_admin_url, "models") as (url, engine):
        Base.metadata.create_all(engine)
        yield engine


def test_head_is_the_last_migration():
    assert current_head() == "0009"


def test_migrations_at_head_match_the_models_without_a_filter(migrated):
    with migrated.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default, numeric_precision, numeric_scale
        FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'alembic_version'""",
    "constraints": """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public' AND c.conrelid::regclass::text <> 'alembic_version'""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'alembic_version'""",
    "triggers": """
        SELECT event_object_table, trigger_name, event_manipulation, action_timing, action_statement
        FROM information_schema.triggers WHERE trigger_schema = 'public'""",
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public'""",
}


def catalog(engine, what: str) -> set[tuple]:
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(text(CATALOG[what])).all()}


@pytest.mark.parametrize("what", sorted(CATALOG))
def test_catalogs_are_equal(migrated, from_models, what):
    """CHECK definitions, index predicates, defaults: what compare_metadata does not see."""
    got, want = catalog(migrated, what), catalog(from_models, what)
    assert sorted(got - want) == [] and sorted(want - got) == []
    assert want  # the query reads something


def test_every_state_column_is_checked(migrated):
    checks = {r[1] for r in catalog(migrated, "constraints") if r[2].startswith("CHECK")}
    assert checks == {
        "ck_inbox_events_state", "ck_bid_polls_state", "ck_bids_created_via", "ck_bid_status_changes_source",
        "ck_payouts_state", "ck_payouts_claimed_from", "ck_payout_attempts_kind", "ck_payout_attempts_outcome",
        "ck_partner_payouts_requested_via", "ck_worker_restarts_reason", "ck_operators_role",
        "ck_audit_events_action",
    }


def _seed_0005(conn, created_via: str) -> None:
    conn.execute(text("INSERT INTO bids (id, exchanger, remote_id, status, created_via, observed_at) "
                      "VALUES (1, 'main', 1, 'new', :via, now())"), {"via": created_via})


def test_0006_downgrades_and_upgrades_again_keeping_rows(pg_admin_url):
    with fresh_database(pg_admin_url, "m0006") as (url, engine):
        upgrade(url, "0005")
        with engine.begin() as conn:
            _seed_0005(conn, "create")  # create_bid without created_via, before 0006
        upgrade(url, "0006")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT created_via FROM bids")).scalar() == "exsync"
        checks = {r[1] for r in catalog(engine, "constraints") if r[2].startswith("CHECK")}
        assert len(checks) == 10
        command.downgrade(alembic_config(url), "0005")
        assert not any(r[2].startswith("CHECK") for r in catalog(engine, "constraints"))
        with engine.begin() as conn:  # without the checks, anything goes again
            conn.execute(text("UPDATE bids SET created_via = 'whatever'"))
            conn.execute(text("UPDATE bids SET created_via = 'exsync'"))
        upgrade(url, "0006")
        assert {r[1] for r in catalog(engine, "constraints") if r[2].startswith("CHECK")} == checks
        command.downgrade(alembic_config(url), "base")
        upgrade(url, "0006")
        assert {r[1] for r in catalog(engine, "constraints") if r[2].startswith("CHECK")} == checks


def test_0006_refuses_a_value_it_cannot_check_and_names_it(pg_admin_url):
    with fresh_database(pg_admin_url, "m0006bad") as (url, engine):
        upgrade(url, "0005")
        with engine.begin() as conn:
            _seed_0005(conn, "exsync")
            conn.execute(text("INSERT INTO inbox_events (provider, endpoint, body, state) "
                              "VALUES ('premium', 'main', '', 'rejected')"))
        with pytest.raises(RuntimeError) as err:
            upgrade(url, "0006")
        assert "inbox_events.state holds ['rejected']" in str(err.value)
        with engine.connect() as conn:  # nothing of 0006 stayed
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"


def test_0008_keeps_audit_rows_append_only_and_downgrades(pg_admin_url):
    with fresh_database(pg_admin_url, "m0008") as (url, engine):
        upgrade(url, "0008")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO audit_events (actor, via, action, object_type, object_id) "
                              "VALUES ('ann', 'cli', 'login', 'operator', '1')"))
        for statement in ("UPDATE audit_events SET actor = 'bob'", "DELETE FROM audit_events"):
            with pytest.raises(Exception) as err, engine.begin() as conn:
                conn.execute(text(statement))
            assert "audit_events is append-only" in str(err.value)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO bids (id, exchanger, remote_id, status, created_via, observed_at) "
                              "VALUES (1, 'main', 1, 'new', 'exsync', now())"))
            conn.execute(text("INSERT INTO inbox_events (provider, endpoint, body, state) "
                              "VALUES ('premium', 'main', '', 'dismissed')"))
        with pytest.raises(RuntimeError) as refused:
            command.downgrade(alembic_config(url), "0007")
        assert "1 inbox events are dismissed" in str(refused.value)
        with engine.begin() as conn:
            conn.execute(text("UPDATE inbox_events SET state = 'dead'"))
        command.downgrade(alembic_config(url), "0007")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass('audit_events')")).scalar() is None
            assert conn.execute(text("SELECT count(*) FROM bids")).scalar() == 1
        upgrade(url, "0008")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0008"
