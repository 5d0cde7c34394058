"""models.queries against real Postgres: lists, one bid with history, the stuck report, metrics."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from models import BidPoll, InboxEvent, SweepCursor, queries
from worker.reconcile import Snapshot, apply_snapshot

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def seed_bid(session, settings, remote_id, status="new", *, exchanger="main", at=T0, source="sweep"):
    return apply_snapshot(session, settings, exchanger, Snapshot(remote_id=remote_id, status=status, observed_at=at),
                          source)


def seed_event(session, state="received", *, at=T0, error=None):
    ev = InboxEvent(provider="premium", endpoint="main", body=b"bid_id=1&status=new",
                    payload={"bid_id": 1, "status": "new"}, state=state, last_error=error, received_at=at)
    session.add(ev)
    session.flush()
    return ev.id


def test_list_bids_filters_and_pages(db, settings):
    with db.session() as s:
        for i in range(1, 6):
            seed_bid(s, settings, i, "new" if i % 2 else "payed")
        seed_bid(s, settings, 1, exchanger="other")
    with db.session() as s:
        assert [b["remote_id"] for b in queries.list_bids(s, exchanger="main")] == [5, 4, 3, 2, 1]
        assert [b["remote_id"] for b in queries.list_bids(s, exchanger="main", status="payed")] == [4, 2]
        assert [b["remote_id"] for b in queries.list_bids(s, limit=2, offset=1)] == [5, 4]
        assert len(queries.list_bids(s)) == 6


def test_get_bid_has_history_and_poll(db, settings):
    with db.session() as s:
        seed_bid(s, settings, 7, "new", at=T0)
        seed_bid(s, settings, 7, "payed", at=T0 + timedelta(minutes=1), source="callback")
    with db.session() as s:
        bid = queries.get_bid(s, "main", 7)
        assert queries.get_bid(s, "main", 8) is None
    assert bid["status"] == "payed"
    assert [(h["from_status"], h["to_status"], h["source"]) for h in bid["history"]] == [
        (None, "new", "sweep"), ("new", "payed", "callback")]
    assert bid["poll"]["state"] == "active" and bid["poll"]["ladder_status"] == "payed"


def test_list_inbox(db):
    with db.session() as s:
        a = seed_event(s)
        b = seed_event(s, "failed", error="boom")
    with db.session() as s:
        assert [e["id"] for e in queries.list_inbox(s)] == [b, a]
        [failed] = queries.list_inbox(s, state="failed")
    assert failed["last_error"] == "boom" and "body" not in failed


def test_stuck_report(db, settings):
    now = datetime.now(timezone.utc)
    with db.session() as s:
        fresh = seed_event(s, at=now)
        old = seed_event(s, at=now - timedelta(minutes=10))
        failed = seed_event(s, "failed", at=now, error="ProviderError: boom")
        dead = seed_event(s, "dead", at=now, error="malformed")
        seed_event(s, "processed", at=now - timedelta(days=1))
        live_old = seed_bid(s, settings, 1, "new", at=now - timedelta(hours=2))
        seed_bid(s, settings, 2, "success", at=now - timedelta(hours=2))  # terminal: never stale
        live_new = seed_bid(s, settings, 3, "payed", at=now)
        gave_up = seed_bid(s, settings, 4, "my7", at=now)
        s.execute(update(BidPoll).where(BidPoll.bid_id == gave_up.bid_id)
                  .values(state="gave_up", next_poll_at=None, gave_up_at=now))
        s.execute(update(BidPoll).where(BidPoll.bid_id == live_new.bid_id)
                  .values(next_poll_at=now - timedelta(minutes=30)))
        s.add(SweepCursor(exchanger="main", last_finished_at=now - timedelta(minutes=30)))
        s.add(SweepCursor(exchanger="b", last_finished_at=now, last_error="HTTP 502"))
        s.add(SweepCursor(exchanger="c", last_finished_at=now))
    with db.session() as s:
        r = queries.stuck_report(s, now, sweep_interval=60, exchangers=["main", "never"])
    ids = lambda sec: [row.get("id", row.get("bid_id")) for row in r[sec]["rows"]]  # noqa: E731
    assert r["inbox_failed"]["count"] == 1 and ids("inbox_failed") == [failed]
    assert r["inbox_dead"]["count"] == 1 and ids("inbox_dead") == [dead]
    assert r["inbox_unprocessed"]["count"] == 1 and ids("inbox_unprocessed") == [old]
    assert fresh not in ids("inbox_unprocessed")
    assert [row["remote_id"] for row in r["polls_gave_up"]["rows"]] == [4]
    assert [row["remote_id"] for row in r["polls_overdue"]["rows"]] == [3]
    assert [row["remote_id"] for row in r["bids_stale"]["rows"]] == [1]
    assert r["bids_stale"]["rows"][0]["id"] == live_old.bid_id
    assert {row["exchanger"] for row in r["sweeps_lagging"]["rows"]} == {"main", "b", "never"}
    assert r["total"] == 2 + 1 + 1 + 1 + 1 + 3


def test_metrics_snapshot(db, settings):
    now = datetime.now(timezone.utc)
    with db.session() as s:
        seed_bid(s, settings, 1, "new", at=now)
        seed_bid(s, settings, 2, "new", at=now)
        seed_bid(s, settings, 3, "success", at=now)
        seed_event(s, at=now - timedelta(seconds=90))
        seed_event(s, "processed", at=now - timedelta(hours=5))
        s.add(SweepCursor(exchanger="main", last_finished_at=now - timedelta(seconds=42)))
    with db.session() as s:
        m = queries.metrics_snapshot(s)
    assert {(b["exchanger"], b["status"]): b["count"] for b in m["bids"]} == {("main", "new"): 2,
                                                                            ("main", "success"): 1}
    assert m["inbox"] == {"received": 1, "processed": 1}
    assert m["polls"] == {"active": 2, "done": 1}
    assert m["polls_overdue"] == 0
    assert 85 <= m["oldest_unprocessed_inbox_seconds"] < 200
    assert 40 <= m["sweep_lag_seconds"]["main"] < 150
