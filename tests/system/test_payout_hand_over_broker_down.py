"""A payout hand-over while Redis is down: a real process whose broker refuses connections.

A child process (configured as a worker is, its EXSYNC_REDIS_URL pointing at a port nothing listens on)
re-reads a bid that has just moved into ``realpay``. Its reconcile commits, the hand-over's publish fails
after its short retries and is logged as a warning, nothing is raised, and the process carries on. The
payouts tick, run afterwards by the test, is the safety net: it pays the bid exactly once.
"""
from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import text

from tests.support import ROOT
from tests.support.config import make_env, write_config
from tests.support.net import free_port
from tests.support.payouts import assert_invariant, install_payouts, mirror_bid, one, payout_env, payout_toml
from worker.payouts import engine

CHILD = """
import logging, os, sys, time
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s")
from core import runtime as rm
from core.config import load_settings
rt = rm.Runtime(load_settings(os.environ))
rm.install(rt)
from worker.celery_app import configure
configure(rt.settings)
from worker import poll
t0 = time.monotonic()
out = poll.refresh(rt, "main", int(sys.argv[1]))
print("refreshed", out.from_status, "->", out.status, f"in {time.monotonic() - t0:.2f} s", flush=True)
"""


def test_a_hand_over_with_redis_down_is_logged_and_the_tick_pays(runtime, premium_sandbox, zc_sandbox,
                                                                 database_url, tmp_path):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = mirror_bid(runtime, premium_sandbox, status="payed")
    premium_sandbox.engine.set_status(rid, "realpay")

    cfg = write_config(tmp_path, premium_sandbox.url, extra=payout_toml(zc_sandbox.url))
    env = {**os.environ, **make_env(cfg, database_url, f"redis://127.0.0.1:{free_port()}/0"), **payout_env(),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(rid)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)  # how long the failed publish held the reconcile (pytest -s)
    assert "refreshed payed -> realpay" in done.stdout
    assert "not enqueued, the payouts tick will do it" in done.stdout, done.stdout
    with runtime.db.session() as s:
        assert s.execute(text("SELECT status FROM bids WHERE remote_id = :r"), {"r": rid}).scalar() == "realpay"
        assert s.execute(text("SELECT count(*) FROM payouts")).scalar() == 0  # nobody handed it on

    r = engine.tick(runtime)
    assert r["created"] == 1 and r["submitted"] == {"succeeded": 1} and r["completed"] == 1
    p = one(runtime)
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1
    assert premium_sandbox.engine.bid(rid)["status"] == "success"
    assert_invariant(runtime, zc_sandbox)
