"""End to end: sandbox traffic with 30% of callbacks dropped, duplicated or reordered.

Real HTTP callbacks from the sandbox to the exsync web app, real inbox rows in Postgres, a real Celery
worker on the real Redis broker re-reading bids with bid_info, then one sweep. Afterwards the mirror
equals the sandbox's truth and no bid's history ever went backwards.
"""
from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from werkzeug.serving import make_server

from core import runtime as runtime_mod
from core.config import load_settings
from models import Bid, BidStatusChange, InboxEvent
from tests.support.config import make_env, write_config
from tests.support.net import free_port
from tests.support.wait import wait_for

PATHS = [
    ["payed", "realpay", "success"],
    ["techpay", "payed", "coldpay", "realpay", "success"],
    ["cancel"],
    ["payed", "verify", "realpay", "my1", "success"],
    ["amlwait", "amlerror", "error"],
]


def is_subsequence(seq, of):
    it = iter(of)
    return all(x in it for x in seq)


@pytest.fixture
def live_stack(tmp_path, database_url, redis_url, db, premium_sandbox):
    from celery.contrib.testing.worker import start_worker

    from webhooks.app import create_app
    from worker.celery_app import app as celery_app
    from worker.celery_app import configure

    port = free_port()
    env = make_env(write_config(tmp_path, premium_sandbox.url), database_url, redis_url,
                   EXSYNC_PUBLIC_URL=f"http://127.0.0.1:{port}")
    settings = load_settings(env)
    rt = runtime_mod.Runtime(settings, _db=db)
    runtime_mod.install(rt)
    configure(settings)
    server = make_server("127.0.0.1", port, create_app(rt), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with start_worker(celery_app, pool="threads", concurrency=6, perform_ping_check=False,
                          shutdown_timeout=30, loglevel="WARNING"):
            yield rt
    finally:
        server.shutdown()
        runtime_mod.install(None)


def pending_events(db) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(InboxEvent)
                        .where(InboxEvent.state.in_(["received", "failed"])))


def test_faulty_callbacks_end_with_mirror_equal_to_truth(live_stack, db, premium_sandbox):
    from worker.bids import create_bid
    from worker.sweep import sweep_exchanger

    rt = live_stack
    engine = premium_sandbox.engine
    engine.knobs.callback_drop_rate = 0.10
    engine.knobs.callback_duplicate_rate = 0.10
    engine.knobs.callback_reorder_rate = 0.10

    rng = random.Random(7)
    ids = []
    for i in range(30):
        row, created = create_bid(rt, "main", direction_id=1, calc_amount=Decimal("0.05"),
                                  fields={"account2": f"U{i:06d}"})
        assert created
        ids.append(int(row["remote_id"]))
    plans = {rid: list(rng.choice(PATHS)) for rid in ids}
    while any(plans.values()):  # interleave the bids' status changes like real traffic
        rid = rng.choice([r for r, p in plans.items() if p])
        engine.set_status(rid, plans[rid].pop(0))

    assert engine.flush_callbacks(timeout=60)
    outcomes = {entry["outcome"] for entry in engine.callback_log}
    assert {"dropped", "duplicated"} <= outcomes, outcomes  # the faults really happened
    wait_for(lambda: pending_events(db) == 0, 60, "the inbox to drain", interval=0.2)

    sweep_exchanger(rt, "main")  # catches what the dropped callbacks never said

    truth = engine.truth()
    with db.session() as s:
        mirror = dict(s.execute(select(Bid.remote_id, Bid.status)).all())
        rows = s.execute(select(Bid.remote_id, BidStatusChange.to_status, BidStatusChange.source)
                         .join(BidStatusChange).order_by(BidStatusChange.id)).all()
        dead = s.scalar(select(func.count()).select_from(InboxEvent).where(InboxEvent.state == "dead"))
    assert mirror == {rid: truth[rid] for rid in ids}
    assert dead == 0
    for rid in ids:
        seen = [to for r, to, _ in rows if r == rid]
        real = [status for _, status in engine.bid(rid)["history"]]
        assert is_subsequence(seen, real), (rid, seen, real)  # never a regression, never an invented status
    assert {src for _, _, src in rows} >= {"create", "callback"}
    with db.session() as s:  # every bid created through exsync kept what the operator's app sent
        assert s.scalar(text("SELECT count(*) FROM bids WHERE request_fields ? 'account2'")) == len(ids)
