"""Periodic jobs run once per slot however many beats send them (worker/periodic.py), and polling is
spread over every worker process (worker/tasks.py poll_due → poll_batch); real Postgres, real Redis."""
from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from worker import periodic, poll, tasks
from worker.beat import intervals


def runs(db, job: str) -> list[tuple]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT slot, host, beat, finished_at IS NOT NULL, error FROM periodic_runs WHERE job = :j ORDER BY slot"),
            {"j": job})]


def queued(broker) -> list[tuple[str, list, dict]]:
    """(task, args, kwargs) of every message waiting in the exsync queue, oldest first."""
    out = []
    for raw in reversed(broker.lrange("exsync", 0, -1)):
        msg = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(msg["body"]))
        out.append((msg["headers"]["task"], args, kwargs))
    return out


def test_a_slot_is_claimed_once_however_many_copies_race_for_it(runtime, db):
    slot = periodic.slot_of(5)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: periodic.claim(db, "payouts-tick", slot, 5, beat=f"beat-{i}"), range(8)))
    assert got.count(True) == 1
    assert periodic.claim(db, "payouts-tick", slot + 1, 5)  # the next window is free
    assert periodic.claim(db, "sweep", slot, 5)  # so is another job's
    assert [r[0] for r in runs(db, "payouts-tick")] == [slot, slot + 1]


def test_a_second_beats_copy_is_skipped_not_queued_behind_the_first(runtime, db, broker):
    slot = periodic.slot_of(runtime.settings.sweep_interval)
    first = tasks.sweep_all(slot=slot, beat="host-a:1")
    second = tasks.sweep_all(slot=slot, beat="host-b:2")
    assert first == {"slot": slot, "sweeps": ["main"]}
    assert second == {"skipped": "slot taken", "job": "sweep", "slot": slot}
    assert [m[0] for m in queued(broker)] == ["worker.tasks.sweep"]  # one get_exchanges sweep, not two
    (row,) = runs(db, "sweep")
    assert row[0] == slot and row[1] == periodic.identity() and row[2] == "host-a:1" and row[3] is True


def test_every_periodic_task_is_keyed_by_its_slot(runtime, db, broker):
    calls = {"requeue-inbox": tasks.requeue_inbox, "payouts-tick": tasks.payouts_tick,
             "partner-sync": tasks.partner_sync, "poll-due": tasks.poll_due, "sweep": tasks.sweep_all,
             "notify": tasks.notify}
    assert set(calls) == set(intervals(runtime.settings))  # every job of the beat is covered here
    for job, task in calls.items():
        slot = periodic.slot_of(intervals(runtime.settings)[job])
        first = task(slot=slot, beat="a")
        assert first.get("skipped") in (None, "no payout routes"), (job, first)  # partner-sync: by exchanger
        assert task(slot=slot, beat="b") == periodic.skipped(job, slot), job
        assert len(runs(db, job)) == 1


def test_a_task_sent_by_hand_always_runs_and_writes_no_row(runtime, db, broker):
    assert tasks.requeue_inbox() == {"slot": None, "requeued": 0}
    assert tasks.requeue_inbox() == {"slot": None, "requeued": 0}
    assert runs(db, "requeue-inbox") == []


def test_a_failed_run_records_its_error_and_the_next_slot_runs(runtime, db, premium_sandbox):
    premium_sandbox.engine.knobs.partner_program = False
    slot = periodic.slot_of(60)
    with periodic.once(db, "partner-sync", 60, slot) as mine:
        assert mine
    try:
        with periodic.once(db, "partner-sync", 60, slot + 1) as mine:
            raise RuntimeError("engine said no")
    except RuntimeError:
        pass
    assert [(r[0], r[3], r[4]) for r in runs(db, "partner-sync")] == [
        (slot, True, None), (slot + 1, True, "RuntimeError: engine said no")]


def test_old_rows_are_pruned_as_new_slots_are_claimed(runtime, db):
    keep = max(periodic.KEEP_SLOTS, int(periodic.KEEP_SECONDS / 600))
    for slot in (1, 2, 3):
        assert periodic.claim(db, "sweep", slot, 600)
    assert periodic.claim(db, "sweep", 3 + keep, 600)  # slots older than 3 + keep - keep = 3 go
    assert [r[0] for r in runs(db, "sweep")] == [3, 3 + keep]


def test_a_poll_round_fans_out_one_task_pair_per_live_worker(runtime, db, broker):
    with db.session() as s:
        for host in ("exsync-1@a", "exsync-2@b", "exsync-3@c"):
            s.execute(text("INSERT INTO worker_liveness (hostname) VALUES (:h)"), {"h": host})
    slot = periodic.slot_of(runtime.settings.poll_interval)
    assert tasks.poll_due(slot=slot, beat="a") == {"slot": slot, "poll_tasks": 3 * tasks.POLL_TASKS_PER_WORKER}
    assert tasks.poll_due(slot=slot, beat="b")["skipped"] == "slot taken"
    sent = queued(broker)
    assert [m[0] for m in sent] == ["worker.tasks.poll_batch"] * 6
    assert {m[1][0] for m in sent} == {periodic.slot_end(runtime.settings.poll_interval, slot)}


def _due_bids(runtime, db, premium_sandbox, n: int) -> list[int]:
    ids = [premium_sandbox.engine.add_bid(status="new") for _ in range(n)]
    for rid in ids:
        poll.refresh(runtime, "main", rid, "callback")
    with db.session() as s:
        s.execute(text("UPDATE bid_polls SET next_poll_at = now() - interval '1 second'"))
    return ids


def test_poll_batches_in_parallel_share_the_due_bids_without_polling_one_twice(runtime, db, premium_sandbox):
    ids = _due_bids(runtime, db, premium_sandbox, 120)
    before = premium_sandbox.engine.requests_served["bid_info"]
    until = time.time() + 2.0
    results: list[dict] = []
    lock = threading.Lock()

    def loop():
        r = tasks.poll_batch(until)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=loop) for _ in range(3)]  # three polling loops, as three workers run
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(r["claimed"] for r in results) == len(ids)
    assert premium_sandbox.engine.requests_served["bid_info"] - before == len(ids)  # none polled twice
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM bid_polls WHERE polls = 1 AND lease_token IS NULL")).scalar() \
            == len(ids)


def test_a_poll_batch_sent_for_a_slot_already_over_does_nothing(runtime, db, premium_sandbox):
    _due_bids(runtime, db, premium_sandbox, 3)
    assert tasks.poll_batch(time.time() - 0.1) == {"skipped": "slot over"}
    with db.session() as s:
        assert s.execute(text("SELECT sum(polls) FROM bid_polls")).scalar() == 0


def test_a_tick_that_outlasts_its_slot_keeps_the_next_slots_tick_out(runtime, db, premium_sandbox, zc_sandbox):
    """The slot keys copies of one window; a run still going in the next window is kept apart by its lock."""
    from tests.support.payouts import default_lease_toml, install_payouts
    from worker.locks import try_lock

    install_payouts(runtime, default_lease_toml(zc_sandbox.url))
    slot = periodic.slot_of(5)
    with try_lock(db.engine, "payouts_tick") as got:  # slot n's tick is still running
        assert got
        assert tasks.payouts_tick(slot=slot + 1, beat="a") == {"skipped": "previous tick still running"}
    assert "skipped" not in tasks.payouts_tick(slot=slot + 2, beat="a")  # it ended: the next slot runs
    assert [r[0] for r in runs(db, "payouts-tick")] == [slot + 1, slot + 2]
