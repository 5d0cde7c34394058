"""An idle stack (exsync run, embedded services, nothing to do) logs nothing at INFO more often than once a
minute: between the worker's "ready" and the shutdown, no INFO line repeats."""
from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

import pytest

from tests.support.net import free_port

pytestmark = pytest.mark.timeout(180)


def test_an_idle_stack_is_quiet_at_info(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(EXSYNC_DATA_DIR=str(tmp_path / "data"), EXSYNC_WEB_BIND=f"127.0.0.1:{free_port()}",
               EXSYNC_LOG_LEVEL="INFO")
    out = subprocess.run([sys.executable, "-m", "cli", "run", "--for", "40"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "celery.apps.worker" in line and "ready." in line)
    # The stop: the processes write to one pipe, so whichever says it first marks it.
    stopping = ("Handling signal: term", "Worker exiting", "Warm shutdown", "Shutting down")
    end = next(i for i, line in enumerate(lines) if any(m in line for m in stopping))
    idle = [line for line in lines[start + 1:end] if " INFO " in line]
    # The message without its time, pid and numbers: the same thing said again.
    said = collections.Counter(re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+(\.\d+)?", "N", line.split("]", 1)[-1])
                               for line in idle)
    assert [m for m, n in said.items() if n > 1] == [], "\n".join(idle[:40])
