"""Short leases renewed by a heartbeat: a dead worker's claims come back within seconds, a slow but live
worker keeps its own, a worker that lost its claim changes nothing, and no attempt row stays ``started``.

These tests drive the engine in this process and move time by passing later ``now`` values (or by
freezegun); tests/system/test_lease_processes.py runs REAL worker processes, SIGKILLs one of them and
measures the seconds until its claims are taken back.
"""
from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone

from freezegun import freeze_time
from sqlalchemy import event, text

from core.clock import now_utc
from tests.support.payouts import (
    LEASE,
    assert_invariant,
    attempts,
    default_lease_toml,
    install_payouts,
    later,
    mirror_bid,
    open_attempts,
    payouts,
)
from worker import leases, poll
from worker.payouts import engine, rails


def row(runtime, payout_id: int):
    with runtime.db.session() as s:
        return s.execute(text("SELECT * FROM payouts WHERE id = :id"), {"id": payout_id}).one()


# -- in this process -------------------------------------------------------------------------------

def test_reaper_takes_back_a_lost_batch_by_what_each_item_was_doing(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, default_lease_toml(zc_sandbox.url))
    for _ in range(3):
        mirror_bid(runtime, premium_sandbox)
    assert engine.create_due_payouts(runtime) == 3
    sending, finding, waiting = payouts(runtime)
    # One payout had an answer lost earlier (the provider has it): it is due as unknown, find first.
    rails.rail_for(runtime, "zc").send(rails.request_for(finding))
    with runtime.db.session() as s:
        s.execute(text("UPDATE payouts SET state = 'unknown', maybe_sent = true WHERE id = :id"), {"id": finding.id})

    batch = {c.id: c for c in engine.claim(runtime)}
    assert len(batch) == 3 and len({c.token for c in batch.values()}) == 1
    assert engine._start_attempt(runtime, batch[sending.id], "submit", now_utc())
    rails.rail_for(runtime, "zc").send(rails.request_for(batch[sending.id].row))  # it reached the provider
    assert engine._start_attempt(runtime, batch[finding.id], "find", now_utc())
    # ...and the worker dies: one send and one find in flight, one item not started.

    assert engine.reap(runtime, later(LEASE - 2)) == 0  # the lease still holds
    assert engine.submit_due(runtime) == {}  # and nobody else takes the items meanwhile
    assert engine.reap(runtime, later(LEASE + 1)) == 3
    after = {p.id: p for p in payouts(runtime)}
    # A send in flight may have moved money: unknown, asked first. The others go back where they were.
    assert (after[sending.id].state, after[sending.id].maybe_sent) == ("unknown", True)
    assert (after[finding.id].state, after[finding.id].maybe_sent) == ("unknown", True)
    assert (after[waiting.id].state, after[waiting.id].maybe_sent) == ("pending", False)
    assert "ask the provider first" in after[sending.id].last_error
    assert "find()" in after[finding.id].last_error and "before it called" in after[waiting.id].last_error
    assert all(p.lease_token is None and p.lease_until is None and p.claimed_from is None for p in after.values())
    assert open_attempts(runtime) == 0
    lost = {a.payout_id: a for p in after.values() for a in attempts(runtime, p.id) if a.outcome == "lost"}
    assert lost[sending.id].kind == "submit" and "unknown until the provider is asked" in lost[sending.id].message
    assert lost[finding.id].kind == "find" and lost[finding.id].finished_at is not None
    assert waiting.id not in lost

    runtime.forget_rails()  # a fresh worker
    assert engine.submit_due(runtime, later(LEASE + 2)) == {"succeeded": 3}
    kinds = {p.id: [(a.kind, a.outcome) for a in attempts(runtime, p.id)] for p in after.values()}
    assert kinds[sending.id] == [("submit", "lost"), ("find", "succeeded")]
    assert kinds[finding.id] == [("find", "lost"), ("find", "succeeded")]
    assert kinds[waiting.id] == [("submit", "succeeded")]
    assert_invariant(runtime, zc_sandbox)


def test_a_worker_that_lost_its_claim_changes_nothing(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, default_lease_toml(zc_sandbox.url))
    mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    (old,) = engine.claim(runtime)
    aid, _ = engine._start_attempt(runtime, old, "submit", now_utc())
    # The old worker stalls past its lease (no heartbeat); the payout is taken back and claimed anew.
    assert engine.reap(runtime, later(LEASE + 1)) == 1
    (new,) = engine.claim(runtime, later(LEASE + 2))
    assert new.token != old.token
    before = row(runtime, new.id)

    # Everything the old worker might still try is refused by the token, whatever lease_until says.
    assert engine._start_attempt(runtime, old, "submit", now_utc()) is None
    # Its call comes back at last (here: refused before anything was paid); the payout is not touched.
    assert engine._finish(runtime, old, aid, outcome="retryable", state="pending", delay=30, error="HTTP 503") is False
    assert engine.process(runtime, old) == "lease_lost"
    beat = leases.Heartbeat(runtime.db)
    with beat.hold(engine.lease_kind(runtime), old.token, [old.id]):
        assert beat.beat() == 0
    after = row(runtime, new.id)
    assert (after.state, after.lease_token, after.lease_until) == ("submitting", new.token, before.lease_until)
    assert zc_sandbox.engine.executed(old.key) == 0  # the old worker never reached the provider

    assert engine.process(runtime, new) == "succeeded"  # find (maybe sent) → not found → one send
    log = attempts(runtime, new.id)
    assert [(a.kind, a.outcome) for a in log] == [("submit", "retryable"), ("find", "not_found"),
                                                  ("submit", "succeeded")]
    assert log[0].message.startswith("[claim lost: not applied to the payout]")
    assert zc_sandbox.engine.executed(new.key) == 1
    assert_invariant(runtime, zc_sandbox)


def test_a_success_bid_cut_off_is_taken_back_and_its_attempt_closed(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, default_lease_toml(zc_sandbox.url))
    rid = mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    assert engine.submit_due(runtime) == {"succeeded": 1}
    (r,) = engine._claim_completions(runtime, now_utc(), 10)
    assert engine._start_completion(runtime, r, now_utc())
    # ...the worker is killed inside success_bid: the attempt row says 'started'.
    assert open_attempts(runtime) == 1
    assert engine.complete_due(runtime, later(60)) == 0  # held: nobody else completes it meanwhile
    assert engine.reap(runtime, later(LEASE - 2)) == 0
    assert engine.reap(runtime, later(LEASE + 1)) == 1
    (p,) = payouts(runtime)
    assert p.lease_token is None and p.next_completion_at is not None and "success_bid" in p.completion_error
    assert open_attempts(runtime) == 0
    assert engine.complete_due(runtime, later(LEASE + 2)) == 1
    (p,) = payouts(runtime)
    assert p.bid_completed_at is not None and p.completion_error is None
    assert [(a.kind, a.outcome) for a in attempts(runtime, p.id)] == [
        ("submit", "succeeded"), ("complete", "lost"), ("complete", "succeeded")]
    assert "success_bid was in flight" in attempts(runtime, p.id)[1].message
    assert premium_sandbox.engine.bid(rid)["status"] == "success"


def test_heartbeat_renews_a_whole_batch_in_one_statement(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, default_lease_toml(zc_sandbox.url))
    for _ in range(5):
        mirror_bid(runtime, premium_sandbox)
    engine.create_due_payouts(runtime)
    start = (now_utc() + timedelta(seconds=1)).replace(microsecond=0)
    statements: list[str] = []
    me = threading.get_ident()

    def count(conn, cursor, statement, *args):
        if threading.get_ident() == me and statement.lstrip().upper().startswith("UPDATE"):
            statements.append(statement)

    beat = leases.Heartbeat(runtime.db)
    with freeze_time(start) as clock:
        batch = engine.claim(runtime)
        assert len(batch) == 5
        with beat.hold(engine.lease_kind(runtime), batch[0].token, [c.id for c in batch]) as lease:
            clock.tick(timedelta(seconds=LEASE - 1))
            event.listen(runtime.db.engine, "before_cursor_execute", count)
            try:
                assert beat.beat() == 5
            finally:
                event.remove(runtime.db.engine, "before_cursor_execute", count)
            assert len(statements) == 1  # one UPDATE for the batch, not one per row
            clock.tick(timedelta(seconds=2))  # past the first expiry: renewed, so not reaped
            assert engine.reap(runtime) == 0
            assert {row(runtime, c.id).lease_until for c in batch} == {start + timedelta(seconds=2 * LEASE - 1)}
            lease.done(batch[0].id)  # finished items drop out of the renewal
            assert beat.held() == {"payouts": 4}
        assert beat.held() == {}
    deadline = time.monotonic() + 5
    while beat._thread is not None and time.monotonic() < deadline:  # nothing held: the thread ends
        time.sleep(0.01)
    assert beat._thread is None


def test_reaper_reads_an_index_not_the_table(runtime):
    # 20,000 settled payouts (bid completed, no lease) and a handful held: reaping must not read them all.
    with runtime.db.session() as s:
        s.execute(text("""
            INSERT INTO bids (exchanger, remote_id, status, created_via, observed_at)
            SELECT 'main', g, 'success', 'sweep', now() FROM generate_series(1, 20000) g"""))
        s.execute(text("""
            INSERT INTO payouts (exchanger, bid_id, remote_id, idempotency_key, state, bid_completed_at,
                                 lease_token, lease_until)
            SELECT 'main', b.id, b.remote_id, 'k' || b.id, CASE WHEN b.remote_id % 2000 = 0 THEN 'submitting'
                   ELSE 'succeeded' END, CASE WHEN b.remote_id % 2000 <> 0 THEN now() END,
                   CASE WHEN b.remote_id % 1000 = 0 THEN 't' END,
                   CASE WHEN b.remote_id % 1000 = 0 THEN now() + interval '15 seconds' END
            FROM bids b"""))
    with runtime.db.engine.begin() as conn:
        conn.execute(text("ANALYZE payouts"))
        conn.execute(text("ANALYZE payout_attempts"))
    with runtime.db.session() as s:
        plans = [" / ".join(r[0].strip() for r in s.execute(text("EXPLAIN " + sql), params).all())
                 for sql, params in (
                     (engine._REAP_SUBMITTING, {**engine.REAP_STATES, "now": later(30), "lost_send": "",
                                                "lost_find": "", "lost_idle": ""}),
                     (engine._REAP_COMPLETIONS, {**engine.REAP_STATES, "now": later(30), "lost_completion": ""}))]
    for plan in plans:
        assert "Seq Scan on payouts" not in plan, plan
    assert "ix_payouts_lease" in plans[1], plans[1]  # completions: only the lease index can find them
    assert engine.reap(runtime, later(30)) == 20


def test_a_slow_poller_keeps_its_claims_and_a_lost_one_is_due_again(runtime, db, premium_sandbox):
    start = datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc)
    with freeze_time(start) as clock:
        rids = [premium_sandbox.engine.add_bid(status="new") for _ in range(3)]
        for rid in rids:
            poll.refresh(runtime, "main", rid, "callback")
        clock.tick(timedelta(hours=1))
        slow = poll.claim_due(runtime, now_utc(), 2)
        lost = poll.claim_due(runtime, now_utc(), 10)
        assert len(slow) == 2 and len(lost) == 1 and slow[0].token != lost[0].token
        beat = leases.Heartbeat(db)
        with beat.hold(poll.LEASES, slow[0].token, [c.bid_id for c in slow]):
            clock.tick(poll.LEASE - timedelta(seconds=1))
            assert beat.beat() == 2
            clock.tick(timedelta(seconds=2))
            # Past the first expiry: the lost worker's bid is due again, the slow worker's are not.
            again = poll.claim_due(runtime, now_utc(), 10)
            assert [c.bid_id for c in again] == [lost[0].bid_id]
            # The slow worker's answers still land; the lost worker's late answer is ignored.
            assert poll.poll_claims(runtime, slow).errors == 0
            poll.poll_claims(runtime, lost)
        with db.session() as s:
            rows = dict(s.execute(text("SELECT bid_id, polls FROM bid_polls")).all())
            held = s.execute(text("SELECT lease_token FROM bid_polls WHERE bid_id = :b"),
                             {"b": lost[0].bid_id}).scalar()
        assert [rows[c.bid_id] for c in slow] == [1, 1] and rows[lost[0].bid_id] == 0
        assert held == again[0].token  # still the new holder's


def test_migration_0005_closes_attempts_left_started(pg_admin_url):
    # That the models match the migrations is test_migrations.py's.
    from alembic import command

    from devtools.embedded import create_database, drop_database
    from models.db import Database
    from models.migrate import alembic_config, upgrade

    name = f"exsync_lease_mig_{os.getpid()}"
    create_database(pg_admin_url, name)
    base, _, query = pg_admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")
    other = Database(url)
    try:
        upgrade(url, "0004")  # before lease tokens: a success_bid cut off by a kill stayed 'started'
        with other.session() as s:
            s.execute(text("INSERT INTO bids (id, exchanger, remote_id, status, created_via, observed_at) "
                           "VALUES (1, 'main', 1, 'realpay', 'sweep', now()), "
                           "(2, 'main', 2, 'realpay', 'sweep', now())"))
            s.execute(text("""INSERT INTO payouts (id, exchanger, bid_id, remote_id, idempotency_key, state,
                                                   lease_until)
                              VALUES (1, 'main', 1, 1, 'k1', 'succeeded', NULL),
                                     (2, 'main', 2, 2, 'k2', 'submitting', now() + interval '5 minutes')"""))
            s.execute(text("""INSERT INTO payout_attempts (payout_id, n, kind, started_at, outcome)
                              VALUES (1, 1, 'submit', now(), 'succeeded'), (1, 2, 'complete', now(), 'started'),
                                     (2, 1, 'submit', now(), 'started')"""))
        upgrade(url, "0005")
        with other.session() as s:
            rows = s.execute(text("SELECT payout_id, kind, outcome, message FROM payout_attempts ORDER BY id")).all()
        assert [(r.payout_id, r.kind, r.outcome) for r in rows] == [
            (1, "submit", "succeeded"), (1, "complete", "lost"), (2, "submit", "started")]  # 2: the reaper's
        assert "0005" in rows[1].message
        command.downgrade(alembic_config(url), "0004")
        upgrade(url, "0005")
    finally:
        other.dispose()
        drop_database(pg_admin_url, name)
