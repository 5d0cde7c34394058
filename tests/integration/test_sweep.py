"""Sweeps over get_exchanges: cursor, overlap, batches, advisory lock."""
from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import func, select

from models import Bid, BidStatusChange, SweepCursor
from worker import sweep
from worker.locks import try_lock


def count(db, model):
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_first_sweep_mirrors_every_bid_of_the_login(runtime, db, premium_sandbox):
    ids = premium_sandbox.engine.bulk_add(1200, spread_seconds=3600)
    r = sweep.sweep_exchanger(runtime, "main")
    assert (r.seen, r.inserted) == (1200, 1200)
    assert count(db, Bid) == 1200
    truth = premium_sandbox.engine.truth()
    with db.session() as s:
        mirror = dict(s.execute(select(Bid.remote_id, Bid.status)).all())
    assert mirror == {i: truth[i] for i in ids}
    with db.session() as s:
        assert s.get(SweepCursor, "main").cursor_time == r.cursor_time


def test_second_sweep_reads_only_the_window_since_the_cursor(runtime, db, premium_sandbox):
    premium_sandbox.engine.bulk_add(300, spread_seconds=7200)
    sweep.sweep_exchanger(runtime, "main")
    changed = list(premium_sandbox.engine.truth())[:5]
    for rid in changed:
        premium_sandbox.engine.set_status(rid, "my4")
    r = sweep.sweep_exchanger(runtime, "main")
    assert r.seen < 300  # only the overlap window plus what changed
    assert r.changed == 5
    with db.session() as s:
        rows = s.execute(select(Bid.remote_id).join(BidStatusChange)
                         .where(BidStatusChange.source == "sweep", BidStatusChange.to_status == "my4")).scalars().all()
    assert sorted(rows) == sorted(changed)


def test_sweep_finds_bids_created_elsewhere_by_the_same_login_only(runtime, db, premium_sandbox):
    from providers.premium.sandbox import DEFAULT_LOGIN

    mine = premium_sandbox.engine.add_bid(status="new", api_login=DEFAULT_LOGIN)
    other_login = "Z" * 32
    premium_sandbox.engine.add_bid(status="new", api_login=other_login)
    sweep.sweep_exchanger(runtime, "main")
    with db.session() as s:
        assert s.execute(select(Bid.remote_id)).scalars().all() == [mine]


def test_cursor_does_not_advance_when_the_sweep_fails(runtime, db, premium_sandbox):
    premium_sandbox.engine.bulk_add(50)
    premium_sandbox.engine.knobs.maintenance = "api"  # get_exchanges has no maintenance answer of its own
    try:
        sweep.sweep_exchanger(runtime, "main")
    except Exception as exc:
        err = exc
    else:  # pragma: no cover
        raise AssertionError("sweep under maintenance should fail")
    finally:
        premium_sandbox.engine.knobs.maintenance = False
    with db.session() as s:
        cur = s.get(SweepCursor, "main")
    assert cur.cursor_time is None and cur.last_error and type(err).__name__ in cur.last_error


def test_second_sweep_of_the_same_exchanger_is_skipped_while_one_runs(runtime, db, premium_sandbox):
    with try_lock(db.engine, "sweep:main") as got:
        assert got
        assert sweep.sweep_exchanger(runtime, "main").skipped


def test_window_overlaps_the_previous_cursor(runtime, db, premium_sandbox):
    with freeze_time("2026-06-01 12:00:00", tick=True):
        first = sweep.sweep_exchanger(runtime, "main")
    with freeze_time("2026-06-01 12:10:00", tick=True):
        second = sweep.sweep_exchanger(runtime, "main")
    assert second.window_start == first.cursor_time - timedelta(seconds=runtime.settings.sweep_overlap)
