"""Bounded waits for what runs beside the test (threads, worker processes); never a timing assertion."""
from __future__ import annotations

import subprocess
import time
from typing import Any, Callable


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, *procs: subprocess.Popen,
             interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something true, and return that. AssertionError after ``timeout``
    seconds, or as soon as one of ``procs`` has exited (with the end of its output when that was piped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                out = p.stdout.read() if p.stdout else ""
                raise AssertionError(f"process exited ({p.returncode}) before {what}: {out[-3000:]}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
