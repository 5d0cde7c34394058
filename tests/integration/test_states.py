"""States are the enums of models/states.py: Postgres refuses any other value in every state column, and the
CLI choices and metric label sets are the enums."""
from __future__ import annotations

import enum
import json

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from models import Base
from models import states as st

# Every row a state column needs, written with valid values (the test then rewrites one column).
SEED = [
    "INSERT INTO bids (id, exchanger, remote_id, status, created_via, observed_at) "
    "VALUES (1, 'main', 1, 'new', 'sweep', now())",
    "INSERT INTO bid_status_changes (bid_id, to_status, source, observed_at) VALUES (1, 'new', 'sweep', now())",
    "INSERT INTO bid_polls (bid_id, exchanger) VALUES (1, 'main')",
    "INSERT INTO inbox_events (provider, endpoint, body) VALUES ('premium', 'main', '')",
    "INSERT INTO payouts (id, exchanger, bid_id, remote_id, idempotency_key, state) "
    "VALUES (1, 'main', 1, 1, 'exs-main-1', 'pending')",
    "INSERT INTO payout_attempts (payout_id, n, kind, started_at) VALUES (1, 1, 'submit', now())",
    "INSERT INTO partner_payouts (exchanger, remote_id, requested_via) VALUES ('main', 1, 'sync')",
    "INSERT INTO worker_restarts (reason) VALUES ('exited')",
    "INSERT INTO operators (name, role, password_hash) VALUES ('ann', 'viewer', 'x')",
]

COLUMNS = {  # (table, column): the enum (or group) the CHECK allows
    ("inbox_events", "state"): st.InboxState,
    ("bid_polls", "state"): st.PollState,
    ("bids", "created_via"): st.BidOrigin,
    ("bid_status_changes", "source"): st.ChangeSource,
    ("payouts", "state"): st.PayoutState,
    ("payouts", "claimed_from"): st.PAYOUT_DUE,
    ("payout_attempts", "kind"): st.AttemptKind,
    ("payout_attempts", "outcome"): st.AttemptOutcome,
    ("partner_payouts", "requested_via"): st.PartnerPayoutOrigin,
    ("worker_restarts", "reason"): st.RestartReason,
    ("operators", "role"): st.OperatorRole,
}
# Append-only tables: their values are checked on INSERT (an UPDATE is refused whatever it writes).
INSERTED = {("audit_events", "action"): st.AuditAction}


@pytest.fixture
def seeded(db):
    with db.session() as s:
        for sql in SEED:
            s.execute(text(sql))
    return db


@pytest.mark.parametrize("table,column", sorted(COLUMNS), ids=lambda v: v)
def test_postgres_takes_every_value_of_the_enum_and_refuses_any_other(seeded, table, column):
    for value in COLUMNS[(table, column)]:
        with seeded.session() as s:  # a bind parameter, as the code writes it
            s.execute(text(f"UPDATE {table} SET {column} = :v"), {"v": value})
    for bad in ("bogus", "rejected", "", "Received"):
        with pytest.raises(IntegrityError) as err:
            with seeded.session() as s:
                s.execute(text(f"UPDATE {table} SET {column} = :v"), {"v": bad})
        assert err.value.orig.diag.constraint_name == f"ck_{table}_{column}"


def test_an_audit_row_takes_every_action_and_refuses_any_other(db):
    insert = text("INSERT INTO audit_events (actor, via, action, object_type, object_id) "
                  "VALUES ('ann', 'cli', :v, 'operator', 'ann')")
    for value in st.AuditAction:
        with db.session() as s:
            s.execute(insert, {"v": value})
    for bad in ("bogus", "", "Login"):
        with pytest.raises(IntegrityError) as err:
            with db.session() as s:
                s.execute(insert, {"v": bad})
        assert err.value.orig.diag.constraint_name == "ck_audit_events_action"


def test_an_orm_write_of_an_unknown_state_is_refused(db):
    from models import InboxEvent

    with pytest.raises(IntegrityError):
        with db.session() as s:
            s.add(InboxEvent(provider="premium", endpoint="main", body=b"", state="rejected"))


def test_each_checked_column_of_the_models_is_listed_here():
    declared = {(c.table.name, str(c.sqltext).split(" IN ")[0])
                for t in Base.metadata.tables.values() for c in t.constraints if c.name and c.name.startswith("ck_")}
    assert declared == set(COLUMNS) | set(INSERTED)


def test_states_are_strings_that_serialize_as_before():
    assert st.InboxState.DEAD == "dead" and json.dumps({"s": st.PayoutState.NEEDS_REVIEW}) == '{"s": "needs_review"}'
    assert f"{st.PollState.GAVE_UP}" == "gave_up"
    for enum_cls in (st.InboxState, st.PollState, st.PayoutState, st.AttemptKind, st.AttemptOutcome, st.ChangeSource,
                     st.BidOrigin, st.PartnerPayoutOrigin, st.RestartReason):
        assert issubclass(enum_cls, enum.StrEnum)
        assert all(m.value == m.name.lower() for m in enum_cls)
    assert "rejected" not in st.values(st.InboxState)


def test_a_bid_created_through_exsync_is_of_exsync_origin():
    assert st.BidOrigin.of("create") is st.BidOrigin.EXSYNC
    assert st.BidOrigin.of(st.ChangeSource.SWEEP) is st.BidOrigin.SWEEP
    with pytest.raises(ValueError):
        st.BidOrigin.of("bogus")


def test_sql_in_refuses_what_is_not_a_plain_state_name():
    assert st.sql_in("state", [st.PollState.ACTIVE, "done"]) == "state IN ('active', 'done')"
    for bad in ([], ["x'; DROP TABLE bids; --"], ["Upper"]):
        with pytest.raises(ValueError):
            st.sql_in("state", bad)


def _choices(command, name):
    return next(p for p in command.params if p.name == name).type.choices


def test_cli_choice_lists_are_the_enums():
    from cli.inbox import inbox_list
    from cli.payouts import payouts_list

    assert list(_choices(inbox_list, "event_state")) == st.values(st.InboxState)
    assert list(_choices(payouts_list, "state_filter")) == st.values(st.PayoutState)


def test_inbox_list_refuses_a_state_nothing_writes():
    from cli import cli

    out = CliRunner().invoke(cli, ["inbox", "list", "--state", "rejected"])
    assert out.exit_code == 2 and "'rejected' is not one of" in out.output


def test_metric_label_sets_are_the_enums(client, db):
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}

    def labels(name, label):
        return sorted(s.labels[label] for s in families[name].samples)

    assert labels("exsync_inbox_events", "state") == sorted(st.InboxState)
    assert labels("exsync_bid_polls", "state") == sorted(st.PollState)
    assert labels("exsync_worker_restarts", "reason") == sorted(st.RestartReason)
