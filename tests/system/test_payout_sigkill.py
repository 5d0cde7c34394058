"""A REAL worker process killed with SIGKILL in the middle of a payout submission.

A child Python process runs the engine's submit step (``engine.submit_due``, what ``payouts_tick`` runs)
against the ZaleyCash sandbox and is stuck inside the provider call; once the payout row is ``submitting``
the test kills it with ``kill -9``. The test process then runs the reaper after the lease and the submit
step: the payout ends ``succeeded`` and the sandbox ledger shows it executed exactly once.

* ``committed``: the sandbox commits the transfer and then hangs before answering (fail_after_commit
  "hang"); the process is killed while waiting for the answer → reaper → unknown → find() → succeeded.
* ``not-reached``: the process talks to a black hole (a socket that listens but never accepts), so the
  request never reaches the sandbox → reaper → unknown → find() says not found → one send → succeeded.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from tests.support import ROOT
from tests.support.config import make_env, write_config
from tests.support.payouts import (
    assert_invariant,
    attempts,
    install_payouts,
    later,
    mirror_bid,
    payout_env,
    payout_toml,
    payouts,
)
from tests.support.wait import wait_for
from worker.payouts import engine

WORKER = """
import os
from core import runtime as rm
from core.config import load_settings
from worker.payouts import engine
rt = rm.Runtime(load_settings(os.environ))
rm.install(rt)
print("worker ready", flush=True)
print("worker result", engine.submit_due(rt), flush=True)
"""


def _state(runtime, key: str) -> tuple[str | None, int]:
    with runtime.db.session() as s:
        row = s.execute(text("""SELECT p.state, (SELECT count(*) FROM payout_attempts a
                                 WHERE a.payout_id = p.id AND a.kind = 'submit' AND a.outcome = 'started') AS open
                                FROM payouts p WHERE p.idempotency_key = :k"""), {"k": key}).first()
    return (row.state, row.open) if row else (None, 0)


@pytest.mark.parametrize("variant", ["committed", "not-reached"])
def test_worker_sigkilled_mid_submission(runtime, premium_sandbox, zc_sandbox, database_url, tmp_path, variant):
    install_payouts(runtime, payout_toml(zc_sandbox.url))  # the test process: lease 30 s, timeout 1.5 s
    mirror_bid(runtime, premium_sandbox)
    assert engine.create_due_payouts(runtime) == 1
    (p,) = payouts(runtime)
    key = p.idempotency_key

    hole = None
    if variant == "committed":
        target = zc_sandbox.url
        zc_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode="hang", hang_seconds=15)
    else:
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)  # connections complete in the kernel; nobody ever reads the request
        target = f"http://127.0.0.1:{hole.getsockname()[1]}"

    # The worker's own config: same routes, a client timeout far beyond the kill.
    wdir = tmp_path / "worker"
    wdir.mkdir()
    toml = payout_toml(target).replace("timeout = 1.5", "timeout = 60")
    cfg = write_config(wdir, premium_sandbox.url, extra=toml)
    env = {**os.environ, **make_env(cfg, database_url, None), **payout_env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        if variant == "committed":
            wait_for(lambda: zc_sandbox.engine.executed(key) == 1 and _state(runtime, key) == ("submitting", 1),
                     20, "the provider to commit while the worker waits", proc)
        else:
            wait_for(lambda: _state(runtime, key) == ("submitting", 1), 20, "the worker to be inside the call", proc)
            time.sleep(0.3)  # it is blocked on the black hole, not about to finish
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        if hole is not None:
            hole.close()
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=0.0)

    # The dead worker left the row leased; nobody touches it until the lease ends.
    assert _state(runtime, key) == ("submitting", 1)
    assert zc_sandbox.engine.executed(key) == (1 if variant == "committed" else 0)
    assert engine.submit_due(runtime) == {}
    assert engine.reap(runtime, later(5)) == 0
    assert engine.reap(runtime, later(31)) == 1
    (p,) = payouts(runtime)
    assert p.state == "unknown" and p.maybe_sent

    assert engine.submit_due(runtime, later(32)) == {"succeeded": 1}
    assert engine.complete_due(runtime, later(33)) == 1
    (p,) = payouts(runtime)
    kinds = [(a.kind, a.outcome) for a in attempts(runtime, p.id)]
    if variant == "committed":
        assert kinds == [("submit", "lost"), ("find", "succeeded"), ("complete", "succeeded")]
    else:
        assert kinds == [("submit", "lost"), ("find", "not_found"), ("submit", "succeeded"),
                         ("complete", "succeeded")]
    assert zc_sandbox.engine.executed(key) == 1
    assert p.bid_completed_at is not None
    assert premium_sandbox.engine.bid(p.remote_id)["status"] == "success"
    assert_invariant(runtime, zc_sandbox)
