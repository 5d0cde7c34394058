"""The inbox's group commit (webhooks/inbox_writer.py): rows stored together by concurrent requests are
committed by one statement, each request told its own row's id only once that row is committed; a bad
row fails alone; an outage fails every row it touched; a Postgres restart loses nothing accepted."""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from core.runtime import Runtime
from devtools.embedded import EmbeddedPostgres
from models.db import Database
from models.migrate import upgrade
from tests.support import postgres_server
from tests.support.config import WEBHOOK_TOKEN
from tests.support.wait import wait_for
from webhooks.app import create_app
from webhooks.inbox import Inbox, InvalidEvent, StorageUnavailable

URL = f"/webhooks/premium/main/{WEBHOOK_TOKEN}"


def event(n: int, payload: object = None) -> dict:
    return dict(provider="premium", endpoint="main", source_ip="192.0.2.1", headers={"X-N": str(n)},
                content_type="application/x-www-form-urlencoded", body=f"bid_id={n}&status=new".encode(),
                payload={"bid_id": n, "status": "new"} if payload is None else payload)


def stored(db) -> dict[int, tuple[bytes, str]]:
    """id → (body, xmin): rows written by one transaction share their xmin."""
    with db.engine.connect() as conn:
        return {r.id: (bytes(r.body), r.xmin) for r in conn.execute(text(
            "SELECT id, body, xmin::text AS xmin FROM inbox_events"))}


class Held:
    """Holds a lock that every inbox INSERT waits for, so the stores started meanwhile queue up."""

    def __init__(self, db):
        self.conn = db.engine.connect()
        self.tx = self.conn.begin()
        self.conn.execute(text("LOCK TABLE inbox_events IN SHARE MODE"))

    def release(self):
        self.tx.commit()
        self.conn.close()


def store_together(db, inbox: Inbox, events: list[dict]) -> list[object]:
    """Store the events from as many threads while the first writes are held; ids or exceptions, in order."""
    held = Held(db)
    pool = ThreadPoolExecutor(len(events))
    try:
        futures = [pool.submit(inbox.store, **e) for e in events]
        # Two leaders wait on the lock with one row each; everything else has queued behind them.
        wait_for(lambda: len(inbox.writer._queue) == len(events) - 2, 10, "the stores to queue up")
    finally:
        held.release()
    results = []
    for f in futures:
        try:
            results.append(f.result(15))
        except Exception as exc:
            results.append(exc)
    pool.shutdown()
    return results


def test_concurrent_stores_share_one_commit_and_each_gets_its_own_id(db):
    inbox = Inbox(db.engine, None)
    ids = store_together(db, inbox, [event(n) for n in range(12)])
    rows = stored(db)
    assert sorted(ids) == sorted(rows) and len(set(ids)) == 12
    for n, event_id in enumerate(ids):
        assert rows[event_id][0] == f"bid_id={n}&status=new".encode()
    assert len({xmin for _, xmin in rows.values()}) == 3  # the two leaders' rows, then the ten queued together
    inbox.close()


def test_one_refused_row_does_not_fail_the_rows_grouped_with_it(db):
    inbox = Inbox(db.engine, None)
    events = [event(n) for n in range(8)]
    events[5] = event(5, payload={"text": "nul \u0000 inside"})  # jsonb refuses \u0000: a data exception
    results = store_together(db, inbox, events)
    assert isinstance(results[5], InvalidEvent)
    good = [r for n, r in enumerate(results) if n != 5]
    assert all(isinstance(r, int) for r in good)
    rows = stored(db)
    assert sorted(rows) == sorted(good)
    assert all(rows[r][0] == events[n]["body"] for n, r in enumerate(results) if n != 5)
    inbox.close()


def test_no_row_is_acknowledged_when_the_database_is_unreachable():
    dead = Database("postgresql+psycopg2://u@127.0.0.1:1/x")
    inbox = Inbox(dead.engine, None)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(inbox.store, **event(n)) for n in range(16)]
    for f in futures:
        with pytest.raises(StorageUnavailable):
            f.result()
    with pytest.raises(StorageUnavailable):
        inbox.ping_database()
    dead.dispose()


# -- Postgres restarted under the writer --------------------------------------------------------------


@pytest.fixture
def own_postgres(tmp_path):
    """A Postgres of this test's own (restarting the shared one would break every other test)."""
    server = EmbeddedPostgres(tmp_path / "pg", database="exsync")
    upgrade(server.url)
    yield server
    postgres_server.stop(server)


def test_postgres_restart_under_load_loses_nothing_accepted(settings, own_postgres):
    dbx = Database(own_postgres.url)
    app = create_app(Runtime(settings, _db=dbx), env={})
    accepted: list[tuple[int, bytes]] = []
    statuses: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        c = app.test_client()
        n = 0
        while not stop.is_set():
            n += 1
            body = f"bid_id={k * 1_000_000 + n}&status=payed".encode()
            resp = c.post(URL, data=body, content_type="application/x-www-form-urlencoded")
            with lock:
                statuses.append(resp.status_code)
                if resp.status_code == 202:
                    accepted.append((resp.get_json()["event"], body))

    def started() -> object:
        with dbx.engine.connect() as conn:
            return conn.execute(text("SELECT pg_postmaster_start_time()")).scalar()

    first_start = started()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    [t.start() for t in threads]
    try:
        wait_for(lambda: len(accepted) >= 200, 60, "callbacks accepted before the restart")
        postgres_server.restart(own_postgres)
        after = len(statuses)
        wait_for(lambda: sum(s == 202 for s in statuses[after:]) >= 200, 60, "callbacks accepted after the restart")
    finally:
        stop.set()
        [t.join(30) for t in threads]
    app.extensions["exsync.inbox"].publisher.flush(5)

    assert started() != first_start  # it was restarted, not merely slow
    assert set(statuses) <= {202, 503}, sorted(set(statuses))
    with dbx.engine.connect() as conn:
        rows = {r.id: bytes(r.body) for r in conn.execute(text("SELECT id, body FROM inbox_events"))}
    assert len(accepted) == len({i for i, _ in accepted})
    missing = [(i, b) for i, b in accepted if rows.get(i) != b]
    assert not missing, f"{len(missing)} accepted callbacks not committed, e.g. {missing[:3]}"
    dbx.dispose()


def test_payload_stays_json(db):
    """The grouped statement stores the same values as a single insert: JSON as jsonb, bytes as bytea."""
    inbox = Inbox(db.engine, None)
    ids = store_together(db, inbox, [event(n) for n in range(4)])
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, payload, headers, state, source_ip FROM inbox_events ORDER BY id")).all()
    assert [r.id for r in rows] == sorted(ids)
    for r in rows:
        assert r.payload["status"] == "new" and json.dumps(r.headers) and r.state == "received"
        assert r.source_ip == "192.0.2.1"
    inbox.close()
