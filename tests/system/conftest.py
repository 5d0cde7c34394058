"""System level: exsync as whole processes (`exsync web`, workers, the supervisor) started as commands."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import types
import urllib.request

import pytest

from tests.support.config import forget_webhook_failures
from tests.support.net import free_port


@pytest.fixture
def live_web(edge_env, db, tmp_path):
    """The real web process (`exsync web`: gunicorn, gthread) on a free port, its output in a file.

    Yields an object with ``url``, ``log`` (path of everything it wrote) and ``env``.
    """
    forget_webhook_failures(edge_env["EXSYNC_REDIS_URL"])
    port = free_port()
    log = tmp_path / "web.log"
    env = {**os.environ, **edge_env, "EXSYNC_WEB_BIND": f"127.0.0.1:{port}",
           "EXSYNC_LOG_LEVEL": edge_env.get("EXSYNC_LOG_LEVEL", "WARNING")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "web", "--workers", "1", "--threads", "4"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                break
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"exsync web did not start: {log.read_text(errors='replace')[-2000:]}") from exc
            time.sleep(0.2)
    try:
        yield types.SimpleNamespace(url=url, log=log, env=env, port=port, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
