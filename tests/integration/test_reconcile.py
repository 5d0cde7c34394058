"""Reconciliation rules against a real Postgres."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from threading import Barrier, Thread

import pytest
from sqlalchemy import func, select

from core.clock import now_utc
from models import Bid, BidPoll, BidStatusChange
from worker.reconcile import InvalidObservation, Snapshot, apply_batch, apply_snapshot, mark_vanished

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def snap(rid, status, seconds=0, **kw):
    return Snapshot(remote_id=rid, status=status, observed_at=T0 + timedelta(seconds=seconds), **kw)


def history(db, rid):
    with db.session() as s:
        return s.execute(
            select(BidStatusChange.from_status, BidStatusChange.to_status, BidStatusChange.source)
            .join(Bid).where(Bid.remote_id == rid).order_by(BidStatusChange.id)).all()


def bid(db, rid):
    with db.session() as s:
        return s.execute(select(Bid).where(Bid.remote_id == rid)).scalar_one()


def test_new_bid_is_stored_with_money_as_decimal_history_and_a_poll(db, settings):
    with db.session() as s:
        out = apply_snapshot(s, settings, "main", snap(7, "new", amount_give=Decimal("0.00012345"),
                                                       amount_get=Decimal("1500.5")), "callback")
    assert out.created and out.changed
    b = bid(db, 7)
    assert b.amount_give == Decimal("0.00012345") and isinstance(b.amount_get, Decimal)
    assert history(db, 7) == [(None, "new", "callback")]
    with db.session() as s:
        p = s.get(BidPoll, b.id)
    assert p.state == "active" and p.next_poll_at is not None


def test_same_observation_twice_changes_nothing(db, settings):
    for _ in range(2):
        with db.session() as s:
            apply_snapshot(s, settings, "main", snap(1, "new"), "poll")
    assert history(db, 1) == [(None, "new", "poll")]


def test_newer_observation_wins_and_stale_one_is_ignored(db, settings):
    with db.session() as s:
        apply_snapshot(s, settings, "main", snap(1, "new", 0), "callback")
        apply_snapshot(s, settings, "main", snap(1, "realpay", 20), "poll")
        out = apply_snapshot(s, settings, "main", snap(1, "payed", 10), "callback")  # sent earlier, late answer
    assert not out.applied
    assert bid(db, 1).status == "realpay"
    assert history(db, 1) == [(None, "new", "callback"), ("new", "realpay", "poll")]


def test_terminal_status_left_only_on_newer_observation(db, settings):
    with db.session() as s:
        apply_snapshot(s, settings, "main", snap(1, "success", 10), "poll")
        assert not apply_snapshot(s, settings, "main", snap(1, "payed", 10), "sweep").applied
        assert apply_snapshot(s, settings, "main", snap(1, "my2", 11), "operator").changed
    assert bid(db, 1).status == "my2"


def test_terminal_status_stops_polling(db, settings):
    with db.session() as s:
        out = apply_snapshot(s, settings, "main", snap(1, "new"), "poll")
        apply_snapshot(s, settings, "main", snap(1, "cancel", 5), "poll")
        p = s.get(BidPoll, out.bid_id)
    assert p.state == "done" and p.next_poll_at is None


def test_unknown_status_is_refused_before_it_reaches_the_database():
    with pytest.raises(InvalidObservation, match="unknown status"):
        snap(1, "bogus")


def test_vanished_bid_is_archived_not_deleted_and_comes_back_if_seen_again(db, settings):
    with db.session() as s:
        out = apply_snapshot(s, settings, "main", snap(1, "payed"), "poll")
        mark_vanished(s, settings, "main", 1, T0 + timedelta(seconds=5), "poll")
        assert s.get(BidPoll, out.bid_id).state == "done"
    b = bid(db, 1)
    assert b.archived_at is not None and b.status == "payed"
    with db.session() as s:
        # a stale "no bid exists" changes nothing once archived; a newer sighting un-archives
        assert not mark_vanished(s, settings, "main", 1, T0 + timedelta(seconds=6), "poll").changed
        apply_snapshot(s, settings, "main", snap(1, "success", 10), "sweep")
    assert bid(db, 1).archived_at is None
    assert [h[1] for h in history(db, 1)] == ["payed", "archived", "success"]


def test_vanished_unknown_bid_is_ignored(db, settings):
    with db.session() as s:
        assert mark_vanished(s, settings, "main", 99, T0, "callback") is None


def test_concurrent_first_sightings_of_one_bid_never_raise(db, settings):
    """Two callbacks for a new bid at once: insert-or-get, one row, one creation in history."""
    barrier, errors = Barrier(6), []

    def worker(i):
        try:
            barrier.wait()
            with db.session() as s:
                apply_snapshot(s, settings, "main", snap(5, "new"), "callback")
        except Exception as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    threads = [Thread(target=worker, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert history(db, 5) == [(None, "new", "callback")]


def test_batch_applies_the_same_rules_as_single_apply(db, settings):
    with db.session() as s:
        apply_snapshot(s, settings, "main", snap(1, "payed", 50), "poll")  # newer than the sweep below
        apply_snapshot(s, settings, "main", snap(2, "new", 0), "callback")
    page = [snap(1, "new", 30), snap(2, "realpay", 30, amount_get=Decimal("10.01")),
            snap(3, "my7", 30), snap(3, "my7", 30)]
    with db.session() as s:
        r = apply_batch(s, settings, "main", page)
    assert (r.seen, r.inserted, r.changed, r.stale) == (3, 1, 2, 1)
    assert bid(db, 1).status == "payed"
    assert bid(db, 2).status == "realpay" and bid(db, 2).amount_get == Decimal("10.01")
    assert history(db, 2) == [(None, "new", "callback"), ("new", "realpay", "sweep")]
    assert history(db, 3) == [(None, "my7", "sweep")]
    with db.session() as s:  # the same page again: nothing new
        r2 = apply_batch(s, settings, "main", page)
    assert (r2.inserted, r2.changed) == (0, 0)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(BidPoll)) == 3


def test_batch_keeps_fields_the_page_does_not_carry(db, settings):
    with db.session() as s:
        apply_snapshot(s, settings, "main", snap(1, "new", 0, hash="abc", api_id="exs-1"), "create",
                       request_fields={"account2": "U123"}, created_via="exsync")
        apply_batch(s, settings, "main", [snap(1, "payed", 5)])
    b = bid(db, 1)
    assert (b.hash, b.api_id, b.request_fields, b.created_via) == ("abc", "exs-1", {"account2": "U123"}, "exsync")


def test_batch_unarchives_a_bid_seen_again(db, settings):
    with db.session() as s:
        apply_snapshot(s, settings, "main", snap(1, "payed", 0), "poll")
        mark_vanished(s, settings, "main", 1, T0 + timedelta(seconds=1), "poll")
        apply_batch(s, settings, "main", [snap(1, "payed", 5)])
    assert bid(db, 1).archived_at is None
    assert history(db, 1) == [(None, "payed", "poll"), ("payed", "archived", "poll"), ("archived", "payed", "sweep")]


def test_now_utc_is_aware():
    assert now_utc().tzinfo is not None


def test_batch_skips_rows_the_engine_reports_unchanged_and_writes_when_the_change_time_moves(db, settings):
    remote = T0 - timedelta(minutes=5)
    with db.session() as s:
        apply_batch(s, settings, "main", [snap(1, "new", 0, remote_changed_at=remote)])
    with db.session() as s:
        r = apply_batch(s, settings, "main", [snap(1, "new", 60, remote_changed_at=remote)])
    assert (r.unchanged, r.changed) == (1, 0)
    assert bid(db, 1).observed_at == T0  # nothing written
    with db.session() as s:  # same status, but the engine changed something later: take the observation
        r = apply_batch(s, settings, "main", [snap(1, "new", 120, remote_changed_at=remote + timedelta(seconds=1))])
    assert (r.unchanged, r.changed) == (0, 0)
    assert bid(db, 1).observed_at == T0 + timedelta(seconds=120)
    assert history(db, 1) == [(None, "new", "sweep")]
