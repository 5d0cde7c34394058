"""Notifications (worker/notify.py) to a local fake endpoint through apprise's json:// plugin: the message and
its console link, one message per thing, a failing target retried later without repeating the others,
resolved things, the daily digest, balances read from the provider sandboxes."""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from core.clock import now_utc
from core.config import NotifySettings
from models import ProviderBalance, liveness, queries
from tests.support.endpoint import Endpoint
from tests.support.payouts import install_payouts, payout_toml
from tests.support.wait import wait_for
from worker import notify
from worker.reconcile import Snapshot, apply_snapshot


@pytest.fixture
def endpoints():
    made: list[Endpoint] = []

    def make() -> Endpoint:
        made.append(Endpoint())
        return made[-1]

    yield make
    for e in made:
        e.close()


def tell(runtime, *targets: Endpoint, digest_hour=None, **more) -> None:
    """Notify ``targets``; and, so that only what a test makes needs a person, a worker that consumes and
    a sweep finished a day ahead (the tests move their clock forward by hours)."""
    runtime.settings = dataclasses.replace(runtime.settings, notify=NotifySettings(
        urls=tuple(t.url for t in targets), digest_hour=digest_hour, **more))
    all_well(runtime)


def all_well(runtime) -> None:
    with runtime.db.session() as s:
        liveness.record_started(s, "exsync-1@test")
        liveness.record_canary(s, "exsync-1@test", now_utc() + timedelta(days=1))
        s.execute(text("""INSERT INTO sweep_cursors (exchanger, last_finished_at) VALUES ('main', :t)
                          ON CONFLICT (exchanger) DO UPDATE SET last_finished_at = :t"""),
                  {"t": now_utc() + timedelta(days=1)})


def needs_review(runtime, remote_id: int, reason: str = "above the auto-pay ceiling") -> int:
    now = now_utc()
    with runtime.db.session() as s:
        bid = apply_snapshot(s, runtime.settings, "main", Snapshot(remote_id=remote_id, status="realpay",
                                                                   observed_at=now), "sweep")
        return s.execute(text("""
            INSERT INTO payouts (exchanger, bid_id, remote_id, idempotency_key, provider, amount, currency,
                                 destination, state, last_error)
            VALUES ('main', :bid, :rid, :key, 'zc', 150.5, 'RUB', '42', 'needs_review', :reason) RETURNING id"""),
            {"bid": bid.bid_id, "rid": remote_id, "key": f"k{remote_id}", "reason": reason}).scalar()


def set_state(runtime, payout_id: int, state: str) -> None:
    with runtime.db.session() as s:
        s.execute(text("UPDATE payouts SET state = :s WHERE id = :id"), {"s": state, "id": payout_id})


def row(runtime, key: str):
    with runtime.db.session() as s:
        return s.execute(text("SELECT * FROM notifications WHERE key = :k"), {"k": key}).one()


def test_one_message_per_thing_with_its_console_link(runtime, endpoints):
    hook = endpoints()
    tell(runtime, hook)
    pid = needs_review(runtime, 1350, "limit: above max_amount 100000")
    now = now_utc()
    out = notify.run(runtime, now)
    assert out["sent"] == 1
    [msg] = hook.received
    assert msg["title"] == f"exsync: payout {pid} needs review"
    assert msg["message"].startswith(f"Payout {pid} (bid main/1350, zc, 150.5 RUB) needs review: "
                                     "limit: above max_amount 100000")
    assert msg["message"].endswith(f"\n\nhttp://127.0.0.1:8000/console/payouts/{pid}")
    # The next rounds find the same payout still waiting: nothing new goes out.
    notify.run(runtime, now + timedelta(seconds=30))
    notify.run(runtime, now + timedelta(hours=5))
    assert len(hook.received) == 1
    assert row(runtime, f"payout:{pid}:needs_review").sent_at is not None


def test_a_failing_target_is_retried_later_and_the_others_get_it_once(runtime, endpoints):
    good, bad = endpoints(), endpoints()
    bad.failing = True
    tell(runtime, good, bad)
    pid = needs_review(runtime, 7)
    now = now_utc()
    assert notify.run(runtime, now)["failed"] == 1
    assert len(good.received) == 1 and bad.received == []
    r = row(runtime, f"payout:{pid}:needs_review")
    assert r.sent_at is None and r.attempts == 1 and len(r.sent_to) == 1
    assert r.last_error == "not delivered to target 2 (json://)"  # the number and scheme, never the URL
    assert bad.url not in r.last_error

    bad.failing = False
    notify.run(runtime, now + timedelta(seconds=10))  # before its back-off: not tried again yet
    assert bad.received == []
    notify.run(runtime, now + timedelta(seconds=61))
    assert len(bad.received) == 1 and len(good.received) == 1
    assert bad.received[0]["title"] == good.received[0]["title"]
    assert row(runtime, f"payout:{pid}:needs_review").sent_at is not None
    notify.run(runtime, now + timedelta(minutes=10))
    assert len(bad.received) == 1 and len(good.received) == 1


def test_resolved_things_are_not_sent_and_come_back_once(runtime, endpoints):
    hook = endpoints()
    hook.failing = True
    tell(runtime, hook)
    pid = needs_review(runtime, 8)
    now = now_utc()
    notify.run(runtime, now)  # not delivered: the endpoint fails
    set_state(runtime, pid, "pending")  # a person approved it meanwhile
    hook.failing = False
    notify.run(runtime, now + timedelta(minutes=2))
    assert hook.received == []  # no stale message about a payout nobody needs to look at
    assert row(runtime, f"payout:{pid}:needs_review").resolved_at is not None

    set_state(runtime, pid, "needs_review")  # it is back, long after: one new message
    notify.run(runtime, now + timedelta(minutes=30))
    assert len(hook.received) == 1
    set_state(runtime, pid, "pending")
    notify.run(runtime, now + timedelta(minutes=31))
    set_state(runtime, pid, "needs_review")  # back within REOPEN_AFTER: a flap, not a new message
    notify.run(runtime, now + timedelta(minutes=32))
    assert len(hook.received) == 1


def test_dead_event_and_lagging_sweep_link_to_the_console(runtime, endpoints):
    hook = endpoints()
    tell(runtime, hook)
    with runtime.db.session() as s:
        s.execute(text("UPDATE sweep_cursors SET last_finished_at = NULL"))
    with runtime.db.session() as s:
        event_id = s.execute(text("""INSERT INTO inbox_events (provider, endpoint, body, state, attempts, last_error)
                                     VALUES ('premium', 'main', '', 'dead', 10, 'malformed') RETURNING id""")).scalar()
    notify.run(runtime, now_utc())
    by_title = {m["title"]: m["message"] for m in hook.received}
    assert by_title[f"exsync: inbox event {event_id} is dead"].endswith(f"/console/inbox/{event_id}")
    assert "Inbox event" in by_title[f"exsync: inbox event {event_id} is dead"]
    assert by_title["exsync: sweeps of main are lagging"].endswith("http://127.0.0.1:8000/console/")


def test_daily_digest_once_a_day(runtime, endpoints):
    hook = endpoints()
    tell(runtime, hook, digest_hour=0)
    needs_review(runtime, 9)
    now = now_utc()
    notify.run(runtime, now)
    notify.run(runtime, now + timedelta(minutes=1))
    digests = [m for m in hook.received if m["title"].startswith("exsync daily digest")]
    assert len(digests) == 1
    assert "1 payouts need review" in digests[0]["message"]
    assert "Waiting now:\n- payout " in digests[0]["message"] and "/console/payouts/" in digests[0]["message"]
    assert digests[0]["title"] == f"exsync daily digest {now.date()}: 1 things need a person"


def test_nothing_is_queued_without_targets(runtime):
    needs_review(runtime, 10)
    notify.run(runtime, now_utc())
    with runtime.db.session() as s:
        assert s.execute(text("SELECT count(*) FROM notifications")).scalar() == 0
        assert s.execute(text("SELECT count(*) FROM heartbeats WHERE name = 'beat'")).scalar() == 1


def test_balances_are_read_from_the_rails_and_a_low_one_notified(runtime, endpoints, zc_sandbox, gw_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url, gw_sandbox.url))
    hook = endpoints()
    tell(runtime, hook, balance_low={"gw": {"RUB": Decimal("10000000000")}})
    now = now_utc()
    out = notify.run(runtime, now)
    assert out["balances"] == {"gw": "ok", "zc": "ok"}
    with runtime.db.session() as s:
        balances = {(b.provider, b.currency): b.amount for b in s.query(ProviderBalance)}
    assert balances[("gw", "RUB")] > 0 and any(p == "zc" for p, _ in balances)
    assert any(m["title"].startswith("exsync: gw balance is low") for m in hook.received)
    # Read again only after the interval.
    assert notify.run(runtime, now + timedelta(seconds=10))["balances"] == {}
    assert notify.run(runtime, now + timedelta(seconds=301))["balances"] == {"gw": "ok", "zc": "ok"}


def test_report_is_what_stuck_shows(runtime):
    """/stuck, the console and the notifications read one report: notify.report asks every check."""
    needs_review(runtime, 11)
    rep = notify.report(runtime, now_utc())
    assert rep["payouts_needs_review"]["count"] == 1
    assert rep["workers_gone"]["rows"][0]["hostname"] is None  # no worker in this test: nothing consumes
    assert set(notify.NOTIFIED) <= set(rep) and rep["total"] >= 2
    assert queries.TOP_ROWS >= 20


def test_beat_gone_is_told_by_a_worker(runtime, endpoints):
    """beat runs the job, so a worker's canary asks beat_late() and runs it itself when beat is late."""
    hook = endpoints()
    tell(runtime, hook)
    now = now_utc()
    assert not notify.beat_late(runtime, now)  # beat never ran yet: a stack still starting
    notify.run(runtime, now)  # beat's round: its heartbeat
    assert not notify.beat_late(runtime, now + timedelta(seconds=60))
    late = now + timedelta(seconds=181)
    assert notify.beat_late(runtime, late)
    assert not notify.beat_late(runtime, late + timedelta(seconds=5))  # one worker asks, not every canary
    notify.run(runtime, late, from_beat=False)
    assert [m["title"] for m in hook.received] == ["exsync: beat is gone"]
    assert notify.beat_late(runtime, late + timedelta(seconds=31))
    notify.run(runtime, late + timedelta(seconds=31), from_beat=False)
    assert len(hook.received) == 1
    notify.run(runtime, late + timedelta(seconds=40))  # beat is back: resolved
    assert row(runtime, "beat:gone").resolved_at is not None


def test_beat_schedules_the_job_and_a_real_worker_runs_it(runtime, endpoints, celery_worker):
    from worker.beat import NOTIFY_SECONDS, schedule
    from worker.tasks import notify as notify_task

    entry = schedule(runtime.settings)["notify"]
    assert entry["task"] == "worker.tasks.notify" and entry["schedule"].run_every.total_seconds() == NOTIFY_SECONDS
    hook = endpoints()
    tell(runtime, hook)
    pid = needs_review(runtime, 12)
    notify_task.delay()
    wait_for(lambda: hook.received, 30, "the notification")
    assert hook.received[0]["title"] == f"exsync: payout {pid} needs review"


def test_a_provider_whose_balance_cannot_be_read_does_not_stop_the_round(runtime, endpoints, gw_sandbox):
    from tests.support.net import refused_url

    install_payouts(runtime, payout_toml(refused_url(), gw_sandbox.url))
    hook = endpoints()
    tell(runtime, hook)
    pid = needs_review(runtime, 13)
    out = notify.run(runtime, now_utc())
    assert out["balances"] == {"gw": "ok", "zc": "error"}
    assert [m["title"] for m in hook.received] == [f"exsync: payout {pid} needs review"]


def test_no_secret_reaches_a_message_or_a_row(runtime, endpoints):
    from tests.support.config import API_TOKEN

    hook = endpoints()
    tell(runtime, hook)
    pid = needs_review(runtime, 14, f"provider said: bad token {API_TOKEN}")
    notify.run(runtime, now_utc())
    [msg] = hook.received
    assert API_TOKEN not in msg["message"] and "bad token ***" in msg["message"]
    assert API_TOKEN not in row(runtime, f"payout:{pid}:needs_review").body
