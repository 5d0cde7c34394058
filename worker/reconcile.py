"""Reconcile observations of bids into the Postgres mirror.

Rules (each one tested):
- the bid row is locked (``FOR UPDATE``) while an observation is applied;
- the newer observation wins (``models.statuses.should_apply``); a stale read changes nothing;
- every status change writes a history row with its source (create, callback, poll, sweep, operator);
- custom ``my<N>`` statuses are accepted; unknown garbage is refused;
- a bid that vanished remotely after being seen is marked archived, never deleted;
- the poll schedule follows the status (ladder restarts on every change, stops on terminal ones).

Two entry points: ``apply_snapshot`` (one bid, ORM, used by callbacks, polls and bid creation) and
``apply_batch`` (a page of get_exchanges in a handful of statements, used by sweeps).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core.clock import now_utc
from core.config import Settings
from models import Bid, BidPoll, BidStatusChange
from models import statuses as rules
from models.states import BidOrigin, ChangeSource, PollState

log = logging.getLogger("exsync.reconcile")

SOURCES = frozenset(ChangeSource)

# Columns copied from an observation onto the bid row (None means "not in this observation": kept).
DATA_FIELDS = (
    "hash", "api_id", "status_title", "psys_give", "psys_get", "currency_code_give", "currency_code_get",
    "course_give", "course_get", "amount_give", "amount_get", "exchange_success", "user_hash", "user_ip",
)


class InvalidObservation(ValueError):
    """The provider answered something we cannot store (e.g. an unknown status)."""


@dataclass(frozen=True)
class Snapshot:
    """One observation of one bid, whatever API call produced it."""

    remote_id: int
    status: str
    observed_at: datetime  # when the request that produced it was sent
    remote_changed_at: datetime | None = None
    hash: str | None = None
    api_id: str | None = None
    status_title: str | None = None
    psys_give: str | None = None
    psys_get: str | None = None
    currency_code_give: str | None = None
    currency_code_get: str | None = None
    course_give: Decimal | None = None
    course_get: Decimal | None = None
    amount_give: Decimal | None = None
    amount_get: Decimal | None = None
    exchange_success: bool | None = None
    user_hash: str | None = None
    user_ip: str | None = None

    def __post_init__(self) -> None:
        if not rules.is_valid(self.status):
            raise InvalidObservation(f"bid {self.remote_id}: unknown status {self.status!r}")
        if self.observed_at.tzinfo is None:
            raise InvalidObservation("observed_at must be timezone-aware")

    @classmethod
    def from_provider(cls, obj: Any, observed_at: datetime) -> "Snapshot":
        """From a ``providers.premium`` Bid (create_bid/bid_info) or ExchangeItem (get_exchanges)."""
        kw = {name: getattr(obj, name, None) for name in DATA_FIELDS}
        if kw["api_id"] == "":
            kw["api_id"] = None
        return cls(
            remote_id=int(obj.id),
            status=obj.status,
            observed_at=observed_at,
            remote_changed_at=getattr(obj, "time", None),
            **kw,
        )

    def observation(self) -> rules.Observation:
        return rules.Observation(self.status, self.observed_at, self.remote_changed_at)


@dataclass
class Outcome:
    bid_id: int
    created: bool = False
    changed: bool = False  # status changed
    applied: bool = False  # observation accepted (False: it was stale)
    from_status: str | None = None
    status: str | None = None


def _poll_values(settings: Settings, status: str, step: int, first_seen: datetime, now: datetime) -> dict:
    state, next_at = rules.next_poll(
        status, step, now, first_seen, settings.poll_ladder, settings.poll_give_up_after
    )
    return {
        "state": state,
        "next_poll_at": next_at,
        "step": step,
        "ladder_status": status,
        "gave_up_at": now if state == PollState.GAVE_UP else None,
    }


def schedule_after_change(session: Session, settings: Settings, bid: Bid, now: datetime) -> None:
    """A new status restarts the ladder from its first step."""
    values = _poll_values(settings, bid.status, 0, bid.first_seen_at or now, now)
    if bid.archived_at is not None:
        values.update(state=PollState.DONE, next_poll_at=None)
    stmt = pg_insert(BidPoll).values(bid_id=bid.id, exchanger=bid.exchanger, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=[BidPoll.bid_id], set_=values))


def apply_snapshot(
    session: Session,
    settings: Settings,
    exchanger: str,
    snap: Snapshot,
    source: str,
    *,
    inbox_event_id: int | None = None,
    request_fields: Mapping[str, Any] | None = None,
    created_via: str | None = None,
    note: str | None = None,
) -> Outcome:
    """Apply one observation to one bid under a row lock. Idempotent: applying it twice changes nothing."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    now = now_utc()
    data = {k: getattr(snap, k) for k in DATA_FIELDS}
    def locked_row() -> Bid | None:
        return session.execute(
            select(Bid).where(Bid.exchanger == exchanger, Bid.remote_id == snap.remote_id).with_for_update()
        ).scalar_one_or_none()

    # Most observations are of bids we already have: look first. Otherwise insert-or-get, which never
    # raises on a concurrent duplicate (two callbacks for one new bid).
    inserted = None
    bid = locked_row()
    if bid is None:
        inserted = session.execute(
            pg_insert(Bid)
            .values(
                exchanger=exchanger,
                remote_id=snap.remote_id,
                status=snap.status,
                observed_at=snap.observed_at,
                remote_changed_at=snap.remote_changed_at,
                request_fields=dict(request_fields) if request_fields else None,
                created_via=created_via or BidOrigin.of(source),
                first_seen_at=now,
                updated_at=now,
                **data,
            )
            .on_conflict_do_nothing(index_elements=[Bid.exchanger, Bid.remote_id])
            .returning(Bid.id)
        ).scalar_one_or_none()
        bid = locked_row()
    assert bid is not None  # inserted just now, or by the concurrent writer our insert yielded to
    if inserted is not None:
        session.add(BidStatusChange(
            bid_id=bid.id, from_status=None, to_status=snap.status, source=source,
            observed_at=snap.observed_at, remote_changed_at=snap.remote_changed_at,
            inbox_event_id=inbox_event_id, note=note,
        ))
        schedule_after_change(session, settings, bid, now)
        return Outcome(bid.id, created=True, changed=True, applied=True, status=bid.status)

    current = rules.Observation(bid.status, bid.observed_at, bid.remote_changed_at)
    if not rules.should_apply(current, snap.observation()):
        log.debug("bid %s/%s: stale %s observation ignored", exchanger, snap.remote_id, source)
        return Outcome(bid.id, status=bid.status, from_status=bid.status)

    old = bid.status
    for k, v in data.items():
        if v is not None:
            setattr(bid, k, v)
    if request_fields and not bid.request_fields:
        bid.request_fields = dict(request_fields)
    bid.status = snap.status
    bid.observed_at = snap.observed_at
    if snap.remote_changed_at is not None:
        bid.remote_changed_at = snap.remote_changed_at
    unarchived = bid.archived_at is not None
    bid.archived_at = None  # seen again: the engine knows it after all
    bid.updated_at = now
    changed = old != snap.status or unarchived
    if changed:
        session.add(BidStatusChange(
            bid_id=bid.id, from_status=rules.ARCHIVED if unarchived else old, to_status=snap.status, source=source,
            observed_at=snap.observed_at, remote_changed_at=snap.remote_changed_at,
            inbox_event_id=inbox_event_id, note=note or ("seen again after archiving" if unarchived else None),
        ))
        schedule_after_change(session, settings, bid, now)
    return Outcome(bid.id, changed=changed, applied=True, from_status=old, status=bid.status)


def mark_vanished(
    session: Session, settings: Settings, exchanger: str, remote_id: int, observed_at: datetime, source: str,
    *, inbox_event_id: int | None = None,
) -> Outcome | None:
    """bid_info said "no bid exists" for a bid we mirror: the engine archived (deleted) it.

    The row stays with its last status; ``archived_at`` is set, a history row records it and polling stops.
    Only a newer observation archives: a stale "no bid exists" never hides a newer sighting.
    """
    bid = session.execute(
        select(Bid).where(Bid.exchanger == exchanger, Bid.remote_id == remote_id).with_for_update()
    ).scalar_one_or_none()
    if bid is None:
        return None
    if bid.archived_at is not None or observed_at < bid.observed_at:
        return Outcome(bid.id, status=bid.status, from_status=bid.status)
    now = now_utc()
    bid.archived_at = observed_at
    bid.observed_at = observed_at
    bid.updated_at = now
    session.add(BidStatusChange(
        bid_id=bid.id, from_status=bid.status, to_status=rules.ARCHIVED, source=source,
        observed_at=observed_at, inbox_event_id=inbox_event_id,
        note="bid_info: no bid exists (archived or its direction switched off)",
    ))
    session.execute(
        pg_insert(BidPoll)
        .values(bid_id=bid.id, exchanger=exchanger, state=PollState.DONE, next_poll_at=None)
        .on_conflict_do_update(index_elements=[BidPoll.bid_id], set_={"state": PollState.DONE, "next_poll_at": None})
    )
    return Outcome(bid.id, changed=True, applied=True, from_status=bid.status, status=rules.ARCHIVED)


# -- batched apply for sweeps ---------------------------------------------------------------------------

_CAST = {
    "remote_id": "bigint", "observed_at": "timestamptz", "remote_changed_at": "timestamptz",
    "next_poll_at": "timestamptz", "course_give": "numeric", "course_get": "numeric", "amount_give": "numeric",
    "amount_get": "numeric", "exchange_success": "boolean", "id": "bigint", "changed": "boolean",
}


def _rows_of(cols: Sequence[str]) -> str:
    """The page's rows, sent as one JSON array of arrays (``%(rows)s``), as a relation named ``v``.

    One parameter instead of a VALUES list: encoding a page with ``json.dumps`` costs ~2 µs a row in
    Python where psycopg2's mogrify of each VALUES row cost ~14 µs, and Postgres parses it in C. Numbers
    travel as strings (Decimal exactly), timestamps as ISO strings.
    """
    fields = ", ".join(f"(e->>{n})::{_CAST.get(c, 'text')} AS {c}" for n, c in enumerate(cols))
    return f"v AS (SELECT {fields} FROM jsonb_array_elements(%(rows)s::jsonb) AS e)"


# New bids: one statement inserts the bids, their first history rows and their poll rows, so each row
# crosses the wire once and each page costs one round trip. Values shared by the page (exchanger, source,
# now) are bound once. It also returns the rows that already exist instead of inserting them (read
# without a lock, like ``_rows``): a page of a first sweep is read and written in one round trip.
_NEW_COLS = ("remote_id", "status", "observed_at", "remote_changed_at") + DATA_FIELDS
_READ_COLS = ("id", "remote_id", "status", "observed_at", "remote_changed_at", "archived_at", "first_seen_at")
_INSERT_NEW = f"""
WITH {_rows_of(_NEW_COLS + ("poll_state", "next_poll_at"))},
ex AS (  -- LATERAL: one unique-index lookup per row, whatever the (stale, mid-sweep) statistics say
    SELECT b.* FROM v CROSS JOIN LATERAL (
        SELECT {', '.join(_READ_COLS)} FROM bids WHERE exchanger = %(exchanger)s AND remote_id = v.remote_id
        LIMIT 1) AS b),  -- (unique anyway; LIMIT keeps the planner from flattening it into a join)
ins AS (
    INSERT INTO bids (exchanger, created_via, first_seen_at, updated_at, {', '.join(_NEW_COLS)})
    SELECT %(exchanger)s, %(origin)s, %(now)s, %(now)s, {', '.join(_NEW_COLS)} FROM v
    WHERE NOT EXISTS (SELECT 1 FROM ex WHERE ex.remote_id = v.remote_id)
    ON CONFLICT (exchanger, remote_id) DO NOTHING
    RETURNING id, remote_id, status, observed_at, remote_changed_at),
h AS (
    INSERT INTO bid_status_changes (bid_id, from_status, to_status, source, observed_at, remote_changed_at)
    SELECT id, NULL, status, %(source)s, observed_at, remote_changed_at FROM ins),
p AS (
    INSERT INTO bid_polls (bid_id, exchanger, state, next_poll_at, step, ladder_status)
    SELECT ins.id, %(exchanger)s, v.poll_state, v.next_poll_at, 0, ins.status
    FROM ins JOIN v ON v.remote_id = ins.remote_id WHERE v.poll_state IS NOT NULL)
SELECT true, id, remote_id, status, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz
FROM ins
UNION ALL
SELECT false, {', '.join(_READ_COLS)} FROM ex"""

# Applied observations of known bids: update, and for status changes a history row and a fresh ladder.
_UPD_COLS = ("id", "status", "from_status", "changed", "note", "observed_at", "remote_changed_at",
             "poll_state", "next_poll_at") + DATA_FIELDS
_UPDATE_KNOWN = f"""
WITH {_rows_of(_UPD_COLS)},
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


@dataclass
class BatchResult:
    seen: int = 0
    inserted: int = 0
    changed: int = 0  # status changes (inserted included)
    stale: int = 0
    unchanged: int = 0
    changes: list[tuple[int, str | None, str]] = field(default_factory=list)  # (remote_id, old, new)


def apply_batch(
    session: Session, settings: Settings, exchanger: str, snaps: Sequence[Snapshot],
    source: str = ChangeSource.SWEEP, *, expect_new: bool = False,
) -> BatchResult:
    """Apply a page of observations in a few statements, under the same rules as ``apply_snapshot``.

    1. read the existing rows, then lock those that will be written (ordered by remote_id);
    2. decide per bid in Python with the same pure rules, on the locked values;
    3. one statement for new bids and one for applied observations, each writing its history and poll
       rows server-side.

    ``expect_new`` (a hint: most of the page is likely new, e.g. the page before was) reads the existing
    rows with the statement that inserts the new ones, one round trip instead of two; the rules and the
    result are the same either way.
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
    params = {"source": source, "origin": BidOrigin.of(source), "exchanger": exchanger, "now": now,
              "gave_up": PollState.GAVE_UP}

    def insert_new(rids: list[int]) -> tuple[list[tuple[int, str]], dict[int, tuple]]:
        """Insert the bids of ``rids`` that do not exist: (inserted (remote_id, status), existing rows)."""
        new_rows = []
        for rid in rids:
            s = by_id[rid]
            state, next_at = rules.next_poll(s.status, 0, now, now, ladder, give_up)
            new_rows.append([rid, s.status, _iso(s.observed_at), _iso(s.remote_changed_at)]
                            + [getattr(s, k) for k in DATA_FIELDS]
                            + [None if state == PollState.DONE else state, _iso(next_at)])
        cur.execute(_INSERT_NEW, {**params, "rows": _json(new_rows)})
        got, found = [], {}
        for new, *row in cur.fetchall():
            if new:
                got.append((row[1], row[2]))
            else:
                found[row[1]] = tuple(row)
        return got, found

    cur = session.connection().connection.cursor()  # the pool's proxy of the psycopg2 connection
    try:
        ids = sorted(by_id)
        # Read without locks first: in a steady-state sweep almost every row is unchanged, and locking
        # rows we will not write would cost WAL and an fsync per page. Rows we will write are then locked
        # (ordered by remote_id, so concurrent sweeps cannot deadlock) and decided again on fresh values.
        inserted: list[tuple[int, str]] | None = None
        if expect_new:
            inserted, existing = insert_new(ids)
        else:
            existing = _rows(cur, exchanger, ids, lock=False)
        decisions = {rid: _decide(row, by_id[rid]) for rid, row in existing.items()}
        to_write = [rid for rid in ids if decisions.get(rid) == "write"]
        if to_write:
            locked = _rows(cur, exchanger, to_write, lock=True)
            existing.update(locked)
            decisions.update({rid: _decide(row, by_id[rid]) for rid, row in locked.items()})

        updates, fresh = [], []
        for rid in ids:
            s = by_id[rid]
            row = existing.get(rid)
            if row is None:
                fresh.append(rid)
                continue
            decision = decisions[rid]
            if decision != "write":
                setattr(res, decision, getattr(res, decision) + 1)
                continue
            bid_id, _, status, observed_at, remote_changed_at, archived_at, first_seen = row
            changed = status != s.status or archived_at is not None
            state, next_at = rules.next_poll(s.status, 0, now, first_seen or now, ladder, give_up)
            updates.append(
                [bid_id, s.status, rules.ARCHIVED if archived_at is not None else status, changed,
                 "seen again after archiving" if archived_at is not None else None,
                 _iso(s.observed_at), _iso(s.remote_changed_at), state, _iso(next_at)]
                + [getattr(s, k) for k in DATA_FIELDS])
            if changed:
                res.changes.append((rid, status, s.status))

        if inserted is None and fresh:
            inserted, _ = insert_new(fresh)
        if inserted is not None:
            for rid, status in inserted:
                res.changes.append((rid, None, status))
            res.inserted = len(inserted)
            # A callback inserted some of these between our read and our insert: apply them one by one.
            for rid in set(fresh) - {rid for rid, _ in inserted}:
                apply_snapshot(session, settings, exchanger, by_id[rid], source)
        if updates:
            cur.execute(_UPDATE_KNOWN, {**params, "rows": _json(updates)})
    finally:
        cur.close()
    res.changed = len(res.changes)
    return res


def _rows(cur, exchanger: str, ids: list[int], *, lock: bool) -> dict[int, tuple]:
    cur.execute(
        "SELECT id, remote_id, status, observed_at, remote_changed_at, archived_at, first_seen_at "
        "FROM bids WHERE exchanger = %s AND remote_id = ANY(%s::bigint[]) ORDER BY remote_id"
        + (" FOR UPDATE" if lock else ""),
        (exchanger, ids),
    )
    return {row[1]: row for row in cur.fetchall()}


def _decide(row: tuple, s: Snapshot) -> str:
    """"stale" (an older read), "unchanged" (the engine reports no change since ours) or "write"."""
    _, _, status, observed_at, remote_changed_at, archived_at, _ = row
    if not rules.should_apply(rules.Observation(status, observed_at, remote_changed_at), s.observation()):
        return "stale"
    if (archived_at is None and status == s.status and remote_changed_at is not None
            and remote_changed_at == s.remote_changed_at):
        # Nothing changed since the change we stored; a read that started earlier cannot know of a
        # newer change, so skipping the write cannot let an older observation win later.
        return "unchanged"
    return "write"


def _json(rows: list[list]) -> str:
    return json.dumps(rows, default=str, ensure_ascii=False)  # default: Decimal → its exact string


def snapshots(items: Iterable[Any], observed_at: datetime) -> tuple[list[Snapshot], list[str]]:
    """Provider objects → snapshots; refused items come back as error strings (logged, never fatal)."""
    out, errors = [], []
    for item in items:
        try:
            out.append(Snapshot.from_provider(item, observed_at))
        except (InvalidObservation, TypeError, ValueError) as exc:
            errors.append(str(exc))
    return out, errors
