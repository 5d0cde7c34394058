"""``worker.reconcile.apply_batch`` as it was before issue 9 (commit 4a8670f): rows sent as an
``execute_values`` VALUES list, existing rows always read first. Frozen here, and used by
tests/integration/test_batch_paths.py only, to prove that the JSON path writes the same rows."""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

from psycopg2.extras import execute_values
from sqlalchemy.orm import Session

from core.clock import now_utc
from core.config import Settings
from models import statuses as rules
from models.states import BidOrigin, ChangeSource, PollState
from worker.reconcile import DATA_FIELDS, BatchResult, Snapshot, _decide, _rows, apply_snapshot

_CAST = {
    "remote_id": "bigint", "observed_at": "timestamptz", "remote_changed_at": "timestamptz",
    "first_seen_at": "timestamptz", "updated_at": "timestamptz", "next_poll_at": "timestamptz",
    "course_give": "numeric", "course_get": "numeric", "amount_give": "numeric", "amount_get": "numeric",
    "exchange_success": "boolean", "id": "bigint", "changed": "boolean",
}


def _template(cols: Sequence[str]) -> str:
    return "(" + ", ".join(f"%s::{_CAST[c]}" if c in _CAST else "%s" for c in cols) + ")"


# New bids: one statement inserts the bids, their first history rows and their poll rows, so each row
# crosses the wire once and each page costs one round trip. Values shared by the page (exchanger, source,
# now) are bound once; timestamps travel as ISO strings (psycopg2 adapts aware datetimes slowly).
_NEW_COLS = ("remote_id", "status", "observed_at", "remote_changed_at") + DATA_FIELDS
_INSERT_NEW = f"""
WITH v({', '.join(_NEW_COLS)}, poll_state, next_poll_at) AS (VALUES %s),
ins AS (
    INSERT INTO bids (exchanger, created_via, first_seen_at, updated_at, {', '.join(_NEW_COLS)})
    SELECT %(exchanger)s, %(origin)s, %(now)s, %(now)s, {', '.join(_NEW_COLS)} FROM v
    ON CONFLICT (exchanger, remote_id) DO NOTHING
    RETURNING id, remote_id, status, observed_at, remote_changed_at),
h AS (
    INSERT INTO bid_status_changes (bid_id, from_status, to_status, source, observed_at, remote_changed_at)
    SELECT id, NULL, status, %(source)s, observed_at, remote_changed_at FROM ins),
p AS (
    INSERT INTO bid_polls (bid_id, exchanger, state, next_poll_at, step, ladder_status)
    SELECT ins.id, %(exchanger)s, v.poll_state, v.next_poll_at, 0, ins.status
    FROM ins JOIN v ON v.remote_id = ins.remote_id WHERE v.poll_state IS NOT NULL)
SELECT remote_id, status FROM ins"""

# Applied observations of known bids: update, and for status changes a history row and a fresh ladder.
_UPD_COLS = ("id", "status", "from_status", "changed", "note", "observed_at", "remote_changed_at",
             "poll_state", "next_poll_at") + DATA_FIELDS
_UPDATE_KNOWN = f"""
WITH v({', '.join(_UPD_COLS)}) AS (VALUES %s),
upd AS (
    UPDATE bids AS b SET status = v.status, observed_at = v.observed_at,
        remote_changed_at = COALESCE(v.remote_changed_at, b.remote_changed_at),
        archived_at = NULL, updated_at = %(now)s,
        {', '.join(f"{k} = COALESCE(v.{k}, b.{k})" for k in DATA_FIELDS)}
    FROM v WHERE b.id = v.id),
h AS (
    INSERT INTO bid_status_changes (bid_id, from_status, to_status, source, observed_at, remote_changed_at, note)
    SELECT id, from_status, status, %(source)s, observed_at, remote_changed_at, note FROM v WHERE changed)
INSERT INTO bid_polls (bid_id, exchanger, state, next_poll_at, step, ladder_status, gave_up_at)
SELECT id, %(exchanger)s, poll_state, next_poll_at, 0, status,
       CASE WHEN poll_state = %(gave_up)s THEN %(now)s::timestamptz END
FROM v WHERE changed
ON CONFLICT (bid_id) DO UPDATE SET state = EXCLUDED.state, next_poll_at = EXCLUDED.next_poll_at, step = 0,
    ladder_status = EXCLUDED.ladder_status, gave_up_at = EXCLUDED.gave_up_at"""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def apply_batch_before(
    session: Session, settings: Settings, exchanger: str, snaps: Sequence[Snapshot],
    source: str = ChangeSource.SWEEP,
) -> BatchResult:
    """Apply a page of observations in three statements, under the same rules as ``apply_snapshot``.

    1. read the existing rows, then lock those that will be written (ordered by remote_id);
    2. decide per bid in Python with the same pure rules, on the locked values;
    3. one statement for new bids and one for applied observations, each writing its history and poll
       rows server-side.
    """
    res = BatchResult()
    if not snaps:
        return res
    # The newest observation of each bid within the page wins (pages may repeat a bid).
    by_id: dict[int, Snapshot] = {}
    for s in snaps:
        prev = by_id.get(s.remote_id)
        if prev is None or rules.should_apply(prev.observation(), s.observation()):
            by_id[s.remote_id] = s
    res.seen = len(by_id)
    now = now_utc()
    ladder, give_up = settings.poll_ladder, settings.poll_give_up_after
    cur = session.connection().connection.cursor()  # the pool's proxy of the psycopg2 connection
    try:
        ids = sorted(by_id)
        # Read without locks first: in a steady-state sweep almost every row is unchanged, and locking
        # rows we will not write would cost WAL and an fsync per page. Rows we will write are then locked
        # (ordered by remote_id, so concurrent sweeps cannot deadlock) and decided again on fresh values.
        existing = _rows(cur, exchanger, ids, lock=False)
        decisions = {rid: _decide(row, by_id[rid]) for rid, row in existing.items()}
        to_write = [rid for rid in ids if decisions.get(rid) == "write"]
        if to_write:
            locked = _rows(cur, exchanger, to_write, lock=True)
            existing.update(locked)
            decisions.update({rid: _decide(row, by_id[rid]) for rid, row in locked.items()})

        new_rows, updates = [], []
        for rid in ids:
            s = by_id[rid]
            data = [getattr(s, k) for k in DATA_FIELDS]
            row = existing.get(rid)
            if row is None:
                state, next_at = rules.next_poll(s.status, 0, now, now, ladder, give_up)
                new_rows.append(tuple([rid, s.status, _iso(s.observed_at), _iso(s.remote_changed_at)]
                                      + data + [None if state == PollState.DONE else state, _iso(next_at)]))
                continue
            decision = decisions[rid]
            if decision != "write":
                setattr(res, decision, getattr(res, decision) + 1)
                continue
            bid_id, _, status, observed_at, remote_changed_at, archived_at, first_seen = row
            changed = status != s.status or archived_at is not None
            state, next_at = rules.next_poll(s.status, 0, now, first_seen or now, ladder, give_up)
            updates.append(tuple(
                [bid_id, s.status, rules.ARCHIVED if archived_at is not None else status, changed,
                 "seen again after archiving" if archived_at is not None else None,
                 _iso(s.observed_at), _iso(s.remote_changed_at), state, _iso(next_at)] + data))
            if changed:
                res.changes.append((rid, status, s.status))

        if new_rows:
            inserted = _exec_fetch(cur, _INSERT_NEW, new_rows, _template(_NEW_COLS + ("poll_state", "next_poll_at")),
                                   {"source": source, "origin": BidOrigin.of(source), "exchanger": exchanger,
                                    "now": now})
            got = set()
            for rid, status in inserted:
                got.add(rid)
                res.changes.append((rid, None, status))
            res.inserted = len(inserted)
            # A callback inserted some of these between our lock and our insert: apply them one by one.
            for rid in {rid for rid in by_id if rid not in existing} - got:
                apply_snapshot(session, settings, exchanger, by_id[rid], source)
        if updates:
            _exec_fetch(cur, _UPDATE_KNOWN, updates, _template(_UPD_COLS),
                        {"source": source, "exchanger": exchanger, "now": now, "gave_up": PollState.GAVE_UP},
                        fetch=False)
    finally:
        cur.close()
    res.changed = len(res.changes)
    return res


def _exec_fetch(cur, sql: str, rows: list[tuple], template: str, params: dict, *, fetch: bool = True):
    """execute_values with extra named parameters: they are bound first, then the VALUES list."""
    sql = cur.mogrify(sql.replace("%s", "%%s"), params).decode()
    return execute_values(cur, sql, rows, template=template, page_size=len(rows), fetch=fetch)
