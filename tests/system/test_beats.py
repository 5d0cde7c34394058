"""Three real `exsync beat` processes, one real `exsync worker`, the Premium sandbox: every periodic job runs
once per slot, not three times, and when one beat is SIGKILLed the two others keep every slot.

Short intervals (sweeps every 2 s, poll rounds every 1 s; the payouts tick keeps its 5 s); reduced under
CI=true. Figures are printed (run with ``-s``) and recorded with tests/support/hardening.py.
"""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time

from sqlalchemy import text

from tests.support import ROOT, hardening
from tests.support.config import make_env, write_config
from tests.support.wait import wait_for
from worker.beat import PAYOUTS_TICK_SECONDS

SWEEP = 2  # seconds
POLL = 1
# Seconds with three beats, then with two: long enough for two payout ticks in each.
PHASE = 12.0 if os.environ.get("CI") == "true" else 20.0


def start(args: list[str], env: dict, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def slots(db, job: str) -> dict[int, tuple[float, str | None]]:
    """slot -> (started_at epoch, beat that sent it) of every run of ``job``."""
    with db.session() as s:
        rows = s.execute(text("SELECT slot, extract(epoch FROM started_at), beat FROM periodic_runs WHERE job = :j"),
                         {"j": job}).all()
    return {int(slot): (float(at), beat) for slot, at, beat in rows}


def window(interval: float, since: float, until: float) -> range:
    """Every whole slot of ``interval`` that begins at or after ``since`` and ends by ``until``."""
    return range(math.ceil(since / interval), math.floor(until / interval))


def test_three_beats_run_each_slot_once_and_two_keep_every_slot_after_one_is_killed(
        db, premium_sandbox, database_url, redis_url, tmp_path):
    for _ in range(5):
        premium_sandbox.engine.add_bid(status="new")
    env = {**os.environ, **make_env(write_config(tmp_path, premium_sandbox.url), database_url, redis_url),
           "EXSYNC_SWEEP_INTERVAL": str(SWEEP), "EXSYNC_POLL_INTERVAL": str(POLL),
           "EXSYNC_LOG_LEVEL": "DEBUG",  # each beat's sends and each task's result (quieter levels hide them)
           "EXSYNC_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    from core.redis_url import client as redis_client

    redis_client(redis_url).delete("exsync")  # nothing left over from another test
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("worker", "beat1", "beat2", "beat3")}
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["worker"] = start(["worker"], env, logs["worker"])
        with db.session() as s:
            wait_for(lambda: s.execute(text("SELECT count(*) FROM worker_liveness WHERE canary_consumed_at "
                                            "IS NOT NULL")).scalar(), 60, "the worker to consume", procs["worker"])
        for i in (1, 2, 3):  # started at different moments: different phases, one schedule
            procs[f"beat{i}"] = start(["beat"], env, logs[f"beat{i}"])
            time.sleep(0.37)
        for i in (1, 2, 3):  # every beat is up and sending (startup takes seconds on a busy machine)
            wait_for(lambda i=i: b"Sending due task" in (tmp_path / f"beat{i}.log").read_bytes(), 60,
                     f"beat{i} to send", procs[f"beat{i}"])
        started = time.time()
        calls_at_start, counted_from = premium_sandbox.engine.requests_served["get_exchanges"], time.time()
        time.sleep(PHASE)

        victim = procs["beat2"]
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.time()
        assert victim.wait(10) == -signal.SIGKILL
        time.sleep(PHASE)
        ended = time.time()
        calls = premium_sandbox.engine.requests_served["get_exchanges"] - calls_at_start
        counted_to = time.time()
        for name, p in procs.items():
            assert p.poll() is None or name == "beat2", f"{name} exited ({p.returncode})"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for f in logs.values():
            f.close()

    # The three beats shared one host and one EXSYNC_DATA_DIR: no schedule file to share (worker/beat.py).
    assert not list(tmp_path.rglob("celerybeat-schedule*"))
    worker_log = (tmp_path / "worker.log").read_text(errors="replace")
    beat_names = {f"{socket.gethostname()[:40]}:{procs[n].pid}": n for n in ("beat1", "beat2", "beat3")}
    figures = {}
    for job, interval in (("sweep", SWEEP), ("poll-due", POLL), ("payouts-tick", PAYOUTS_TICK_SECONDS)):
        ran = slots(db, job)
        expected = window(interval, started, ended - 1)  # the last second: the run may not have started yet
        missing = [s for s in expected if s not in ran]
        # Every window had its run, before and after the kill: no gap longer than one interval. (The
        # seconds between runs' starts are printed, not judged: a busy worker starts one late.)
        assert not missing, (job, missing, sorted(ran))
        times = sorted(ran[s][0] for s in expected)
        gap = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
        assert [s for s in expected if s * interval > killed], job  # slots after the kill were checked
        winners = {}
        for s in expected:
            name = beat_names.get(ran[s][1] or "", "?")
            winners[name] = winners.get(name, 0) + 1
        figures[job] = {"slots": len(expected), "max_gap_s": round(gap, 2), "interval_s": interval,
                        "sent_by": dict(sorted(winners.items()))}

    # The engine saw one sweep per slot, not three: one get_exchanges page per sweep run (a few bids), and
    # the runs started while the calls were counted are one per slot (above). One may straddle an edge.
    sweeps = figures["sweep"]["slots"]
    runs = sum(1 for at, _ in slots(db, "sweep").values() if counted_from <= at <= counted_to)
    assert abs(calls - runs) <= 1, (calls, runs)
    assert calls <= sweeps + 3, (calls, sweeps)  # three beats' copies would be about 3 × sweeps
    # The copies were sent and skipped: two per slot with three beats, one with two.
    skipped = worker_log.count("'skipped': 'slot taken', 'job': 'sweep'")
    assert skipped >= sweeps, (skipped, sweeps, worker_log[-3000:])
    figures["get_exchanges_calls"] = calls
    figures["sweep_runs_while_counted"] = runs
    figures["sweep_copies_skipped"] = skipped
    print(f"\nthree beats, one killed after {PHASE:g} s: {figures}")
    hardening.record("three_beats", figures)
