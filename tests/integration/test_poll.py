"""Polling live bids on the ladder, against the Premium sandbox and a real Postgres; time by freezegun."""
from datetime import datetime, timedelta, timezone

from freezegun import freeze_time
from sqlalchemy import select

from core.clock import now_utc
from models import Bid, BidPoll, BidStatusChange
from worker import poll

START = datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc)


def mirror(runtime, rid):
    """Put a sandbox bid into the mirror the way a first callback would."""
    return poll.refresh(runtime, "main", rid, "callback")


def poll_row(db, rid):
    with db.session() as s:
        return s.execute(select(BidPoll).join(Bid, Bid.id == BidPoll.bid_id).where(Bid.remote_id == rid)).scalar_one()


def status(db, rid):
    with db.session() as s:
        return s.execute(select(Bid.status).where(Bid.remote_id == rid)).scalar_one()


def test_nothing_is_polled_before_it_is_due_and_ladder_advances(runtime, db, premium_sandbox):
    ladder = runtime.settings.poll_ladder["new"]
    with freeze_time(START) as clock:
        rid = premium_sandbox.engine.add_bid(status="new")
        mirror(runtime, rid)
        assert poll.poll_due(runtime).claimed == 0
        for step, delay in enumerate(ladder[:3]):
            clock.tick(timedelta(seconds=delay - 1))
            assert poll.poll_due(runtime).claimed == 0, f"polled early at step {step}"
            clock.tick(timedelta(seconds=1))
            assert poll.poll_due(runtime).claimed == 1
            row = poll_row(db, rid)
            assert row.step == step + 1 and row.polls == step + 1


def test_poll_picks_up_a_change_no_callback_announced(runtime, db, premium_sandbox):
    with freeze_time(START) as clock:
        rid = premium_sandbox.engine.add_bid(status="new")
        mirror(runtime, rid)
        premium_sandbox.engine.set_status(rid, "payed")  # no callback_url: nobody tells us
        clock.tick(timedelta(seconds=runtime.settings.poll_ladder["new"][0]))
        r = poll.poll_due(runtime)
    assert (r.claimed, r.changed) == (1, 1)
    assert status(db, rid) == "payed"
    with db.session() as s:
        sources = s.execute(select(BidStatusChange.source).order_by(BidStatusChange.id)).scalars().all()
    assert sources == ["callback", "poll"]
    assert poll_row(db, rid).step == 0  # a new status restarts the ladder


def test_terminal_status_ends_polling(runtime, db, premium_sandbox):
    with freeze_time(START) as clock:
        rid = premium_sandbox.engine.add_bid(status="new")
        mirror(runtime, rid)
        premium_sandbox.engine.set_status(rid, "success")
        clock.tick(timedelta(hours=1))
        poll.poll_due(runtime)
        clock.tick(timedelta(hours=1))
        assert poll.poll_due(runtime).claimed == 0
    assert poll_row(db, rid).state == "done"


def test_archived_bid_is_marked_and_no_longer_polled(runtime, db, premium_sandbox):
    with freeze_time(START) as clock:
        rid = premium_sandbox.engine.add_bid(status="payed")
        mirror(runtime, rid)
        premium_sandbox.engine.archive(rid)
        clock.tick(timedelta(hours=1))
        poll.poll_due(runtime)
    with db.session() as s:
        b = s.execute(select(Bid).where(Bid.remote_id == rid)).scalar_one()
    assert b.archived_at is not None and b.status == "payed"
    assert poll_row(db, rid).state == "done"


def test_polling_gives_up_on_a_bid_live_too_long(runtime, db, premium_sandbox):
    give_up = runtime.settings.poll_give_up_after
    with freeze_time(START) as clock:
        rid = premium_sandbox.engine.add_bid(status="my1")  # custom status: never terminal
        mirror(runtime, rid)
        clock.tick(timedelta(seconds=give_up + 1))
        poll.poll_due(runtime)
    row = poll_row(db, rid)
    assert row.state == "gave_up" and row.gave_up_at is not None and row.next_poll_at is None


def test_provider_errors_are_recorded_and_polling_goes_on(runtime, db, premium_sandbox):
    with freeze_time(START) as clock:
        rid = premium_sandbox.engine.add_bid(status="new")
        mirror(runtime, rid)
        premium_sandbox.engine.knobs.maintenance = True
        clock.tick(timedelta(hours=1))
        r = poll.poll_due(runtime)
        premium_sandbox.engine.knobs.maintenance = False
    assert r.errors == 1
    row = poll_row(db, rid)
    assert row.state == "active" and row.last_error and row.next_poll_at > START + timedelta(hours=1)


def test_a_claim_lost_with_its_worker_is_due_again_after_the_lease(runtime, db, premium_sandbox):
    with freeze_time(START) as clock:
        rid = premium_sandbox.engine.add_bid(status="new")
        mirror(runtime, rid)
        clock.tick(timedelta(hours=1))
        now = now_utc()
        assert len(poll.claim_due(runtime, now, 10)) == 1  # the worker dies here
        assert poll.claim_due(runtime, now, 10) == []  # leased: nobody else takes it meanwhile
        clock.tick(poll.LEASE)
        assert poll.poll_due(runtime).claimed == 1


def test_many_due_bids_are_claimed_in_batches(runtime, db, premium_sandbox):
    with freeze_time(START) as clock:
        ids = [premium_sandbox.engine.add_bid(status="new") for _ in range(25)]
        for rid in ids:
            mirror(runtime, rid)
        clock.tick(timedelta(hours=1))
        r = poll.poll_due(runtime)
    assert r.claimed == 25 and r.errors == 0
