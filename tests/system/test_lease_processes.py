"""Short leases, measured with REAL worker processes against the sandboxes: one is SIGKILLed mid-work and
the seconds from the kill until its claims are taken back are measured (printed; run with ``-s`` to see
them, recorded with tests/support/hardening.py); a slow but live worker keeps its own."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

from sqlalchemy import text

from core.clock import now_utc
from tests.support import ROOT, hardening
from tests.support.config import make_env, write_config
from tests.support.payouts import (
    LEASE,
    assert_invariant,
    attempts,
    default_lease_toml,
    install_payouts,
    later,
    mirror_bid,
    open_attempts,
    payout_env,
    payouts,
)
from tests.support.wait import wait_for
from worker import poll
from worker.beat import PAYOUTS_TICK_SECONDS
from worker.payouts import engine

TAKE_BACK_LIMIT = 30  # seconds (issue 6: "a dead worker's claimed payouts and polls are taken back within 30 s")


PAYOUT_WORKER = """
import os
from concurrent.futures import ThreadPoolExecutor
from core import runtime as rm
from core.config import load_settings
from worker.payouts import engine
rt = rm.Runtime(load_settings(os.environ))
rm.install(rt)
pool = ThreadPoolExecutor(int(os.environ["LEASE_TEST_THREADS"]), thread_name_prefix="payout")
print("worker result", engine.submit_due(rt, pool=pool), flush=True)
"""

POLL_WORKER = """
import os
from worker import poll
from core import runtime as rm
from core.config import load_settings
rt = rm.Runtime(load_settings(os.environ))
rm.install(rt)
r = poll.poll_due(rt, budget_seconds=1.0)
print("worker result", r.claimed, r.errors, flush=True)
"""


def start_worker(script: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        if p.stdout:
            p.stdout.close()


def holders(runtime, ids: list[int]) -> dict[int, tuple[str, str | None, datetime | None]]:
    with runtime.db.session() as s:
        return {r.id: (r.state, r.lease_token, r.lease_until) for r in s.execute(text(
            "SELECT id, state, lease_token, lease_until FROM payouts WHERE id = ANY(:ids)"), {"ids": ids})}


def test_killed_payout_worker_batch_is_taken_back_while_a_slow_one_keeps_its_own(
        runtime, premium_sandbox, zc_sandbox, database_url, tmp_path):
    install_payouts(runtime, default_lease_toml(zc_sandbox.url))  # this process: the surviving worker
    wdir = tmp_path / "worker"
    wdir.mkdir()
    cfg = write_config(wdir, premium_sandbox.url, extra=default_lease_toml(zc_sandbox.url, timeout=60))
    env = {**make_env(cfg, database_url, None), **payout_env()}
    # Every transfer is committed by the provider, which then takes 20 s to answer: longer than a lease.
    # (Small amounts: 15 payouts stay within the sandbox agent's RUB balance.)
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode="hang", hang_seconds=20)

    # Worker A: slow but alive. 3 payouts on 2 threads: two calls in flight for 20 s, one waiting for them.
    for _ in range(3):
        mirror_bid(runtime, premium_sandbox, amount="5")
    engine.create_due_payouts(runtime)
    slow = [p.id for p in payouts(runtime)]
    a = start_worker(PAYOUT_WORKER, {**env, "LEASE_TEST_THREADS": "2"})
    procs = [a]
    try:
        wait_for(lambda: {h[0] for h in holders(runtime, slow).values()} == {"submitting"}
                 and sum(zc_sandbox.engine.executed(p.idempotency_key) for p in payouts(runtime)) == 2,
                 20, "worker A to be inside two calls", a)
        first = holders(runtime, slow)
        a_token = first[slow[0]][1]
        a_expiry = max(h[2] for h in first.values())

        # Worker B: 12 payouts on 8 threads: 8 calls in flight (committed, unanswered), 4 waiting. Killed.
        for _ in range(12):
            mirror_bid(runtime, premium_sandbox, amount="5")
        assert engine.create_due_payouts(runtime) == 12
        dead = [p.id for p in payouts(runtime) if p.id not in slow]
        keys = {p.id: p.idempotency_key for p in payouts(runtime)}
        b = start_worker(PAYOUT_WORKER, {**env, "LEASE_TEST_THREADS": "8"})
        procs.append(b)
        wait_for(lambda: {h[0] for h in holders(runtime, dead).values()} == {"submitting"}
                 and sum(zc_sandbox.engine.executed(keys[i]) for i in dead) == 8,
                 20, "worker B to be inside 8 calls", b)
        b_token = holders(runtime, dead)[dead[0]][1]
        assert b_token != a_token and {h[1] for h in holders(runtime, dead).values()} == {b_token}
        os.kill(b.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert b.wait(10) == -signal.SIGKILL
        zc_sandbox.engine.knobs.update(fail_after_commit_rate=0.0)  # new calls answer at once

        # This process ticks like the payouts-tick beat (reap, submit, complete) every PAYOUTS_TICK_SECONDS.
        taken_back = None
        renewed_past_first_expiry = False
        next_tick = time.monotonic()
        while taken_back is None or a.poll() is None:
            assert time.monotonic() - killed < 90, ("neither taken back nor finished in 90 s",
                                                    taken_back, a.poll(), holders(runtime, slow + dead))
            if time.monotonic() >= next_tick:
                engine.tick(runtime)
                next_tick += PAYOUTS_TICK_SECONDS
            now_held = holders(runtime, slow + dead)
            if taken_back is None and not any(h[1] == b_token for h in now_held.values()):
                taken_back = time.monotonic() - killed
            for i in slow:  # A's payouts: held by A until A itself finishes them, never by anyone else
                state, token, until = now_held[i]
                assert state == "succeeded" if token != a_token else state == "submitting", now_held[i]
                if token == a_token and now_utc() > a_expiry + timedelta(seconds=1):
                    assert until > a_expiry
                    renewed_past_first_expiry = True
            time.sleep(0.1)
        out = a.stdout.read()
        assert a.returncode == 0 and "{'succeeded': 3}" in out, out
    finally:
        stop(*procs)

    print(f"\nlease take-back, payouts: {len(dead)} claims of a SIGKILLed worker taken back {taken_back:.1f} s "
          f"after the kill (lease {LEASE} s, tick {PAYOUTS_TICK_SECONDS} s)")
    hardening.record("lease_take_back_payouts", {"claims": len(dead), "seconds": round(taken_back, 1),
                                                 "lease": LEASE, "tick": PAYOUTS_TICK_SECONDS})
    assert taken_back <= TAKE_BACK_LIMIT
    assert renewed_past_first_expiry  # A held its calls past the lease it started with

    for i in range(20):  # settle: later checks and completions become due
        engine.tick(runtime, later(60 * (i + 1)))
    assert open_attempts(runtime) == 0
    for p in payouts(runtime):
        kinds = [(a.kind, a.outcome) for a in attempts(runtime, p.id)]
        assert p.state == "succeeded" and p.bid_completed_at is not None, (p.id, p.state, kinds)
        assert zc_sandbox.engine.executed(p.idempotency_key) == 1
        if p.id in slow:
            assert kinds == [("submit", "succeeded"), ("complete", "succeeded")]
        elif p.attempts == 1 and p.checks == 0:  # B never started it: returned, sent once
            assert kinds == [("submit", "succeeded"), ("complete", "succeeded")]
        else:  # B's send was in flight: lost, then found at the provider, never sent again
            assert kinds == [("submit", "lost"), ("find", "succeeded"), ("complete", "succeeded")]
    lost_sends = sum(1 for p in payouts(runtime) if attempts(runtime, p.id)[0].outcome == "lost")
    assert lost_sends == 8
    assert_invariant(runtime, zc_sandbox)


def poll_rows(db, bid_ids: list[int]) -> dict[int, tuple[str | None, int, datetime | None]]:
    with db.session() as s:
        return {r.bid_id: (r.lease_token, r.polls, r.next_poll_at) for r in s.execute(text(
            "SELECT bid_id, lease_token, polls, next_poll_at FROM bid_polls WHERE bid_id = ANY(:ids)"),
            {"ids": bid_ids})}


def test_killed_poller_bids_are_polled_again_while_a_slow_one_keeps_its_own(
        runtime, db, premium_sandbox, database_url, tmp_path):
    rids = [premium_sandbox.engine.add_bid(status="new") for _ in range(13)]
    for rid in rids:
        poll.refresh(runtime, "main", rid, "callback")
    with db.session() as s:
        ids = dict(s.execute(text("SELECT remote_id, id FROM bids")).all())
        s.execute(text("UPDATE bid_polls SET next_poll_at = now() + interval '1 hour'"))
    slow, dead = [ids[r] for r in rids[:3]], [ids[r] for r in rids[3:]]
    wdir = tmp_path / "worker"
    wdir.mkdir()
    cfg = write_config(wdir, premium_sandbox.url)
    cfg.write_text(cfg.read_text().replace("timeout = 5\n", "timeout = 60\n"))
    env = make_env(cfg, database_url, None)

    def due(bid_ids):
        with db.session() as s:
            s.execute(text("UPDATE bid_polls SET next_poll_at = now() WHERE bid_id = ANY(:ids)"), {"ids": bid_ids})

    premium_sandbox.engine.knobs.latency = 20  # every bid_info from now on takes 20 s: longer than a lease
    procs = []
    try:
        due(slow)
        a = start_worker(POLL_WORKER, env)
        procs.append(a)
        wait_for(lambda: all(r[0] for r in poll_rows(db, slow).values()), 20, "poller A to claim its bids", a)
        first = poll_rows(db, slow)
        a_token = first[slow[0]][0]
        a_expiry = max(r[2] for r in first.values())
        due(dead)
        b = start_worker(POLL_WORKER, env)
        procs.append(b)
        wait_for(lambda: all(r[0] for r in poll_rows(db, dead).values()), 20, "poller B to claim its bids", b)
        b_token = poll_rows(db, dead)[dead[0]][0]
        assert b_token != a_token
        time.sleep(1.0)  # its calls are on the wire
        os.kill(b.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert b.wait(10) == -signal.SIGKILL
        premium_sandbox.engine.knobs.latency = 0

        # This process polls like the poll-due task does between beats (a round, then 0.5 s idle).
        taken_back = None
        renewed_past_first_expiry = False
        while taken_back is None or a.poll() is None:
            assert time.monotonic() - killed < 90, "neither polled again nor finished in 90 s"
            poll.poll_due(runtime, budget_seconds=5)
            rows = poll_rows(db, slow + dead)
            if taken_back is None and all(rows[i][1] >= 1 for i in dead):
                taken_back = time.monotonic() - killed
            for i in slow:  # A's bids: polled by A alone, once, when its slow calls return
                token, polls, next_at = rows[i]
                assert (token == a_token and polls == 0) or (token is None and polls == 1), rows[i]
                if token == a_token and now_utc() > a_expiry + timedelta(seconds=1):
                    assert next_at > a_expiry
                    renewed_past_first_expiry = True
            time.sleep(0.5)
        out = a.stdout.read()
        assert a.returncode == 0 and "worker result 3 0" in out, out
    finally:
        premium_sandbox.engine.knobs.latency = 0
        stop(*procs)

    print(f"\nlease take-back, polls: {len(dead)} bids of a SIGKILLed poller polled again {taken_back:.1f} s "
          f"after the kill (lease {poll.LEASE.total_seconds():.0f} s)")
    hardening.record("lease_take_back_polls", {"bids": len(dead), "seconds": round(taken_back, 1),
                                               "lease": poll.LEASE.total_seconds()})
    assert taken_back <= TAKE_BACK_LIMIT
    assert renewed_past_first_expiry
    rows = poll_rows(db, slow + dead)
    assert all(rows[i][:2] == (None, 1) for i in slow + dead), rows  # each polled exactly once after all
