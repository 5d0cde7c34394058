"""Processing stored webhook events: re-read, retry with back-off, dead letters, re-enqueue of lost ones."""
from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import select

from core.clock import now_utc
from models import Bid, BidStatusChange, InboxEvent
from worker import inbox


def store(db, bid_id, status="payed", endpoint="main", provider="premium", payload=None):
    with db.session() as s:
        ev = InboxEvent(provider=provider, endpoint=endpoint, headers={}, received_at=now_utc(),
                        body=f"bid_id={bid_id}&status={status}".encode(),
                        content_type="application/x-www-form-urlencoded",
                        payload={"bid_id": bid_id, "status": status} if payload is None else payload)
        s.add(ev)
        s.flush()
        return ev.id


def event(db, event_id):
    with db.session() as s:
        return s.get(InboxEvent, event_id)


def test_event_rereads_the_bid_and_ignores_the_posted_status(runtime, db, premium_sandbox):
    rid = premium_sandbox.engine.add_bid(status="realpay")
    eid = store(db, rid, status="success")  # the posted status lies (or is stale)
    assert inbox.process_event(runtime, eid).startswith("new bid")
    with db.session() as s:
        assert s.execute(select(Bid.status).where(Bid.remote_id == rid)).scalar_one() == "realpay"
        h = s.execute(select(BidStatusChange)).scalar_one()
    assert (h.source, h.inbox_event_id) == ("callback", eid)
    ev = event(db, eid)
    assert ev.state == "processed" and ev.attempts == 1 and ev.processed_at is not None


def test_processing_twice_is_harmless(runtime, db, premium_sandbox):
    rid = premium_sandbox.engine.add_bid(status="new")
    eid = store(db, rid)
    inbox.process_event(runtime, eid)
    assert inbox.process_event(runtime, eid) == "skipped (processed)"
    assert event(db, eid).attempts == 1


def test_provider_failure_leaves_event_failed_with_backoff_then_dead(runtime, db, premium_sandbox):
    rid = premium_sandbox.engine.add_bid(status="new")
    eid = store(db, rid)
    premium_sandbox.engine.knobs.maintenance = True
    try:
        for attempt in range(1, runtime.settings.inbox_max_attempts + 1):
            out = inbox.process_event(runtime, eid)
            ev = event(db, eid)
            assert ev.attempts == attempt and ev.last_error
            if attempt < runtime.settings.inbox_max_attempts:
                assert out.startswith("failed") and ev.state == "failed" and ev.next_attempt_at is not None
        assert ev.state == "dead" and ev.next_attempt_at is None
    finally:
        premium_sandbox.engine.knobs.maintenance = False
    # the operator replays it and it goes through
    from tests.support.operators import add_operator
    from worker.actions import inbox as actions

    assert actions.replay(runtime, add_operator(runtime, "olga", "operator"), [eid], "exchanger back") == [eid]
    inbox.process_event(runtime, eid)
    assert event(db, eid).state == "processed"


def test_unknown_bid_is_processed_without_creating_anything(runtime, db, premium_sandbox):
    eid = store(db, 987654)
    assert "no bid exists" in inbox.process_event(runtime, eid)
    with db.session() as s:
        assert s.execute(select(Bid)).first() is None
    assert event(db, eid).state == "processed"


def test_archived_bid_is_marked_when_its_callback_arrives(runtime, db, premium_sandbox):
    rid = premium_sandbox.engine.add_bid(status="payed")
    inbox.process_event(runtime, store(db, rid))
    premium_sandbox.engine.archive(rid)
    assert inbox.process_event(runtime, store(db, rid)) == "archived"


def test_event_for_an_unconfigured_exchanger_goes_dead_with_a_reason(runtime, db):
    eid = store(db, 1, endpoint="gone")
    assert inbox.process_event(runtime, eid).startswith("dead")
    assert "no longer configured" in event(db, eid).last_error


def test_event_without_bid_id_goes_dead(runtime, db):
    eid = store(db, 1, payload={"status": "new"})
    inbox.process_event(runtime, eid)
    assert event(db, eid).state == "dead"


def test_missing_event_is_reported(runtime, db):
    assert inbox.process_event(runtime, 424242) == "missing"


def test_events_whose_message_was_lost_are_found_again_after_the_grace_time(runtime, db, premium_sandbox):
    grace = timedelta(seconds=runtime.settings.inbox_retry_after)
    with freeze_time("2026-07-01 10:00:00") as clock:
        eid = store(db, premium_sandbox.engine.add_bid())
        assert inbox.due_events(runtime, now_utc()) == []  # still fresh: its message may be queued
        clock.tick(grace + timedelta(seconds=1))
        assert inbox.due_events(runtime, now_utc()) == [eid]
        assert inbox.due_events(runtime, now_utc()) == []  # leased: not enqueued twice
        clock.tick(grace + timedelta(seconds=1))
        assert inbox.due_events(runtime, now_utc()) == [eid]  # still not processed: again


def test_failed_events_come_back_when_their_backoff_has_passed(runtime, db, premium_sandbox):
    with freeze_time("2026-07-01 10:00:00") as clock:
        eid = store(db, premium_sandbox.engine.add_bid())
        premium_sandbox.engine.knobs.maintenance = True
        inbox.process_event(runtime, eid)
        premium_sandbox.engine.knobs.maintenance = False
        assert inbox.due_events(runtime, now_utc()) == []
        clock.tick(inbox.backoff(1) + timedelta(seconds=1))
        assert inbox.due_events(runtime, now_utc()) == [eid]
