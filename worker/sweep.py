"""Sweeps: walk get_exchanges over a time window and reconcile every bid in it, in batches.

The engine filters get_exchanges on each bid's *last change* time, so the window [cursor - overlap, now]
holds every bid that changed since the last sweep, whether or not a callback told us. The cursor moves
only after every page of the window is committed; the overlap re-reads the edge of the previous window
(clock skew between us and the engine, bids changing while we read).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core import clock
from core.runtime import Runtime
from models import SweepCursor
from models.states import ChangeSource
from worker import reconcile
from worker.locks import try_lock
from worker.payouts import events as payout_events

log = logging.getLogger("exsync.sweep")

EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # first sweep: everything the login ever created


@dataclass
class SweepResult:
    exchanger: str
    skipped: bool = False  # another sweep of this exchanger holds the lock
    seen: int = 0
    inserted: int = 0
    changed: int = 0
    stale: int = 0
    invalid: int = 0
    unchanged: int = 0
    pages: int = 0
    fetch_seconds: float = 0.0  # waiting for the engine (beyond what overlapped with writing)
    db_seconds: float = 0.0  # reconciling pages into Postgres
    window_start: datetime | None = None
    cursor_time: datetime | None = None


def _locked_cursor(session, exchanger: str) -> SweepCursor:
    """The exchanger's cursor row, locked (``_cursor`` inserts it before any sweep reads it)."""
    return session.execute(select(SweepCursor).where(SweepCursor.exchanger == exchanger)
                           .with_for_update()).scalar_one()


def _cursor(runtime: Runtime, exchanger: str, now: datetime) -> datetime | None:
    with runtime.db.session() as session:
        session.execute(pg_insert(SweepCursor).values(exchanger=exchanger)
                        .on_conflict_do_nothing(index_elements=[SweepCursor.exchanger]))
        row = _locked_cursor(session, exchanger)
        row.last_started_at = now
        return row.cursor_time


def sweep_exchanger(
    runtime: Runtime,
    exchanger: str,
    *,
    progress: Callable[[int], None] | None = None,
    since: datetime | None = None,
) -> SweepResult:
    """Reconcile every bid that changed since the cursor (or ``since``). One sweep per exchanger at a time."""
    settings = runtime.settings
    res = SweepResult(exchanger)
    with try_lock(runtime.db.engine, f"sweep:{exchanger}") as got:
        if not got:
            res.skipped = True
            return res
        now = clock.now_utc()
        cursor = _cursor(runtime, exchanger, now)
        start = since or ((cursor - timedelta(seconds=settings.sweep_overlap)) if cursor else EPOCH)
        res.window_start = start
        client = runtime.premium(exchanger)
        pages = client.iter_exchanges(start_time=start, end_time=now, page_size=settings.sweep_page_size)
        limiter = runtime.limiter(exchanger)

        def fetch():
            limiter.acquire()
            sent = clock.now_utc()
            return sent, next(pages, None)

        try:
            # Fetch page n+1 while page n is written: network and database overlap. Every page is written on
            # one connection, each in its own transaction: no pool checkout and pre-ping round trip per page
            # (under load each round trip also waits for the GIL, held by the thread decoding the next page).
            with ThreadPoolExecutor(1, thread_name_prefix=f"sweep-{exchanger}") as pool, \
                    runtime.db.engine.connect() as conn:
                pending = pool.submit(fetch)
                expect_new = cursor is None  # the first sweep: everything is new
                while True:
                    t0 = time.perf_counter()
                    sent, page = pending.result()
                    res.fetch_seconds += time.perf_counter() - t0
                    if page is None:
                        break
                    pending = pool.submit(fetch)
                    snaps, errors = reconcile.snapshots(page, sent)
                    for err in errors:
                        log.warning("sweep %s: refused item: %s", exchanger, err)
                    res.invalid += len(errors)
                    t0 = time.perf_counter()
                    with Session(conn, expire_on_commit=False) as session, session.begin():
                        b = reconcile.apply_batch(session, settings, exchanger, snaps, ChangeSource.SWEEP,
                                                  expect_new=expect_new)
                        payout_events.batch_moved(session, runtime, exchanger, b.changes)  # sent on commit
                    expect_new = b.inserted * 2 > b.seen  # pages come in order: the next is likely alike
                    res.db_seconds += time.perf_counter() - t0
                    res.pages += 1
                    res.unchanged += b.unchanged
                    res.seen += b.seen
                    res.inserted += b.inserted
                    res.changed += b.changed
                    res.stale += b.stale
                    if progress:
                        progress(len(page))
        except Exception as exc:
            with runtime.db.session() as session:
                row = _locked_cursor(session, exchanger)
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        with runtime.db.session() as session:
            row = _locked_cursor(session, exchanger)
            row.cursor_time = now
            row.last_finished_at = clock.now_utc()
            row.last_seen = res.seen
            row.last_changed = res.changed
            row.last_error = None
        res.cursor_time = now
    # INFO only when it found something: an idle stack's sweeps would log every sweep_interval.
    log.log(logging.INFO if res.inserted or res.changed else logging.DEBUG,
            "sweep %s: %s seen, %s new, %s changed in %s pages", exchanger, res.seen, res.inserted, res.changed,
            res.pages)
    return res
