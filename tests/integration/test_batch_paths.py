"""apply_batch's write path (one JSON parameter per statement, the existing rows read with the insert when
the page is expected to be new) writes exactly what the execute_values path before it wrote: the same
bids, history and poll rows and the same result, for a page that mixes every case."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from tests.support.batch_before import apply_batch_before
from worker.reconcile import Snapshot, apply_batch, apply_snapshot, mark_vanished

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
R0 = T0 - timedelta(hours=1)  # the engine's change times


def snap(rid: int, status: str, seconds: int = 0, **kw) -> Snapshot:
    return Snapshot(remote_id=rid, status=status, observed_at=T0 + timedelta(seconds=seconds), **kw)


def seed(s, settings, exchanger: str) -> None:
    """The mirror before the page, written the same way for every path."""
    apply_snapshot(s, settings, exchanger, snap(1, "new", 0, remote_changed_at=R0), "callback")
    apply_snapshot(s, settings, exchanger, snap(2, "new", 0, remote_changed_at=R0), "poll")
    apply_snapshot(s, settings, exchanger, snap(3, "realpay", 60), "poll")
    apply_snapshot(s, settings, exchanger, snap(4, "success", 30), "poll")
    apply_snapshot(s, settings, exchanger, snap(5, "payed", 0, remote_changed_at=R0 + timedelta(seconds=20)), "poll")
    apply_snapshot(s, settings, exchanger, snap(6, "payed", 0), "poll")
    mark_vanished(s, settings, exchanger, 6, T0 + timedelta(seconds=1), "poll")
    apply_snapshot(s, settings, exchanger, snap(7, "new", 0, hash="h7", api_id="exs-7"), "create",
                   request_fields={"account2": "U7"}, created_via="exsync")


PAGE = [
    snap(1, "payed", 30, remote_changed_at=R0 + timedelta(seconds=10), amount_get=Decimal("10.01")),  # changed
    snap(2, "new", 30, remote_changed_at=R0),  # unchanged: the engine reports no change since ours
    snap(3, "payed", 30),  # regression refused: an older read
    snap(4, "cancel", 30),  # a terminal status left only on a strictly newer observation: refused
    snap(5, "new", 30, remote_changed_at=R0 + timedelta(seconds=10)),  # the engine's change time went back
    snap(6, "payed", 30),  # seen again after archiving
    snap(7, "new", 30, remote_changed_at=R0, amount_give=Decimal("0.00012345"), exchange_success=False),
    snap(10, "new", 30, amount_give=Decimal("1E-8"), psys_give="Bitcoin BTC", user_ip="203.0.113.9"),  # new
    snap(10, "new", 20),  # the same bid twice in the page: the newer read wins
    snap(11, "success", 30, exchange_success=True, status_title="Готово"),  # new and terminal: no poll row
    snap(12, "my7", 30, course_give=Decimal("65000.12345678")),  # a custom status
]


def rows(db, exchanger: str) -> dict[str, list]:
    """Every row the mirror holds for ``exchanger``, without ids (the three paths draw their own)."""
    out = {}
    with db.engine.connect() as conn:
        for table, key in (("bids", "b"), ("bid_status_changes", "c"), ("bid_polls", "p")):
            drop = {"id", "bid_id", "exchanger", "recorded_at"}  # recorded_at: Postgres' clock, not the path's
            cols = [c for c in conn.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys() if c not in drop]
            select = ", ".join(f"{key}.{c}" for c in cols)
            join = "" if table == "bids" else f"JOIN bids b ON b.id = {key}.bid_id"
            order = "b.remote_id" + (f", {key}.id" if table == "bid_status_changes" else "")
            out[table] = [tuple(r) for r in conn.execute(text(
                f"SELECT b.remote_id, {select} FROM {table} {key} {join} WHERE b.exchanger = :x ORDER BY {order}"),
                {"x": exchanger})]
    return out


@pytest.mark.parametrize("expect_new", [False, True])
def test_the_json_path_writes_what_the_execute_values_path_wrote(db, settings, expect_new):
    with freeze_time(T0 + timedelta(minutes=5)):
        results = {}
        for exchanger, apply in (("before", apply_batch_before),
                                 ("after", lambda *a: apply_batch(*a, expect_new=expect_new))):
            with db.session() as s:
                seed(s, settings, exchanger)
            with db.session() as s:
                results[exchanger] = apply(s, settings, exchanger, PAGE)

    before, after = results["before"], results["after"]
    assert dataclasses.asdict(after) == dataclasses.asdict(before)
    # Every case happened (the comparison is not of two empty mirrors).
    assert (before.seen, before.inserted, before.stale, before.unchanged) == (10, 3, 3, 1)
    assert sorted(before.changes) == [(1, "new", "payed"), (6, "payed", "payed"), (10, None, "new"),
                                      (11, None, "success"), (12, None, "my7")]

    old, new = rows(db, "before"), rows(db, "after")
    assert new == old
    assert [r[0] for r in old["bid_polls"]] == [1, 2, 3, 4, 5, 6, 7, 10, 12]  # 11: new and terminal
    by_rid = {r[0]: r for r in old["bids"]}
    assert len(by_rid) == 10


def test_a_first_sweep_page_needs_no_read_before_its_insert(db, settings):
    """With the hint, a page of new bids is read and written by one statement; the result is the same."""
    page = [snap(rid, "new", 0) for rid in range(100, 140)]
    with db.session() as s:
        r = apply_batch(s, settings, "main", page, expect_new=True)
    assert (r.seen, r.inserted, r.changed) == (40, 40, 40)
    with db.session() as s:  # the same page again, still hinted: everything is found, nothing written
        r = apply_batch(s, settings, "main", page, expect_new=True)
    assert (r.seen, r.inserted, r.changed, r.unchanged, r.stale) == (40, 0, 0, 0, 0)
    assert len(rows(db, "main")["bid_status_changes"]) == 40

