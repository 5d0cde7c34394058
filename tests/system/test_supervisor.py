"""`exsync run` as a real process on the embedded path: healthy over HTTP, restarts a dead child,
stops cleanly on SIGTERM and leaves no process behind."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import types
import urllib.request

import psutil
import pytest

from tests.support.net import free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(120)


def healthz(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def child_named(sup: psutil.Process, *command: str) -> psutil.Process | None:
    for proc in sup.children():
        try:
            argv = proc.cmdline()
            if "cli" in argv and argv[argv.index("cli") + 1:][:len(command)] == list(command):
                return proc
        except psutil.NoSuchProcess:
            pass
    return None


def processes_using(path: str) -> list[psutil.Process]:
    """Processes whose command line or working directory is under ``path`` (embedded Postgres, Redis)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if path in cmd or (proc.info["cwd"] or "").startswith(path):
            found.append(proc)
    return found


def beat_heartbeat_age(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("exsync_beat_heartbeat_age_seconds "):
                return float(line.split()[1])
    return math.inf


def test_run_embedded_stack_restarts_children_and_stops_cleanly(tmp_path):
    data_dir = str(tmp_path / "data")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(EXSYNC_DATA_DIR=data_dir, EXSYNC_WEB_BIND=f"127.0.0.1:{port}", EXSYNC_LOG_LEVEL="WARNING")
    out = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "run", "--for", "300", "--stop-timeout", "10"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    sup = psutil.Process(proc.pid)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthz(url) or proc.poll() is not None, 90, "/healthz")
        assert proc.poll() is None, (tmp_path / "run.log").read_text()
        assert os.path.isdir(os.path.join(data_dir, "postgres")) and os.path.isdir(os.path.join(data_dir, "redis"))

        # One host, small: the web app (one gunicorn worker) and a worker that runs beat in a thread.
        web = wait_for(lambda: child_named(sup, "web", "--workers", "1"), 10, "web")
        worker = wait_for(lambda: child_named(sup, "worker", "--beat"), 10, "worker --beat")
        assert {p.pid for p in sup.children()} == {web.pid, worker.pid}
        family = {p.pid for p in sup.children(recursive=True)}
        assert len(family) == 3  # gunicorn's one worker is there too
        # Beat runs: its notify job has stamped its heartbeat (/metrics says +Inf until it has).
        wait_for(lambda: beat_heartbeat_age(url) < 120, 60, "beat's heartbeat")

        # A child that dies is started again, and beat with it.
        worker.kill()
        new_worker = wait_for(lambda: (w := child_named(sup, "worker", "--beat")) and w.pid != worker.pid and w, 15,
                              "worker restart")
        family.add(new_worker.pid)
        assert healthz(url)

        wait_for(lambda: "exsync is running" in (tmp_path / "run.log").read_text(), 5, "the banner")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0, (tmp_path / "run.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "run.log").read_text()
    assert f"web       {url}" in log
    assert "Traceback" not in log, log

    leftovers = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert leftovers == [], f"orphans: {leftovers}"
    assert processes_using(data_dir) == [], "embedded Postgres or Redis still running"
    assert not healthz(url)


def _figure(out: str, label: str) -> int:
    return int(out.split(label, 1)[1].split()[0])


def test_demo_creates_bids_through_exsync_the_mirror_catches_up_and_bids_are_paid_once(tmp_path):
    """`exsync demo` end to end, in its plain (CI) mode: faulty callbacks and faulty payout sandboxes, yet
    every bid ends in sync, bids reaching realpay are paid and marked success, and the sandboxes' ledgers
    show no payout executed twice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(CI="true", EXSYNC_DATA_DIR=str(tmp_path / "data"), EXSYNC_WEB_BIND=f"127.0.0.1:{free_port()}")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "demo", "--duration", "14", "--bids", "6",
                             "--interval", "0.5"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the console is open while the demo runs: log in as the header says
        lines.append(line)
        if line.startswith("console: "):
            _log_in_to_the_demo_console(line)
    stderr = proc.stderr.read() if proc.stderr else ""
    result = types.SimpleNamespace(returncode=proc.wait(timeout=110), stderr=stderr)
    out = "".join(lines)
    assert result.returncode == 0, out + result.stderr
    assert any(line.startswith("console: ") for line in lines), out
    assert "bids created through exsync: 6\n" in out
    assert "mirrored in Postgres:        6\n" in out
    assert "in sync with the sandbox:    6\n" in out
    assert _figure(out, "history rows:") >= 6
    # Payouts: some succeeded and completed their bids on the exchanger, which the mirror shows.
    assert "payouts: " in out  # the plain mode's periodic payout line
    assert _figure(out, "  succeeded:") >= 1, out
    assert _figure(out, "  bids marked success:") >= 1, out
    assert _figure(out, "bids in success (mirror):") >= 1, out
    assert _figure(out, "  still moving:") == 0, out
    assert "executed twice: none\n" in out
    assert "ledger check: OK, no payout executed twice" in out
    demo_dir = tmp_path / "data" / "demo"
    config = (demo_dir / "exsync.toml").read_text()
    assert "[routes.demo]" in config and "[providers.zc]" in config and "[providers.gw]" in config
    assert (demo_dir / "secrets.env").stat().st_mode & 0o077 == 0
    secrets = [line.split("=", 1)[1] for line in (demo_dir / "secrets.env").read_text().splitlines()]
    assert any(line.startswith("EXSYNC_DEMO_ZC_SECRET=")
               for line in (demo_dir / "secrets.env").read_text().splitlines())
    log = (demo_dir / "exsync.log").read_text()
    for secret in secrets:
        assert secret not in out and secret not in log and secret not in config
    assert "Traceback" not in out + result.stderr
    assert processes_using(str(tmp_path / "data")) == []


def _log_in_to_the_demo_console(line: str) -> None:
    """``console: <url> · operator demo, password <pw>``: the overview opens with that login."""
    import re

    import requests

    m = re.match(r"console: (\S+) · operator (\S+), password (\S+)", line.strip())
    assert m, line
    url, name, password = m.groups()
    with requests.Session() as web:
        page = web.get(url + "login", timeout=10).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        r = web.post(url + "login", data={"csrf_token": token, "name": name, "password": password}, timeout=10)
        assert r.status_code == 200 and "Needs a person now" in r.text, r.text[:500]


def test_a_child_that_exits_0_unasked_is_restarted_with_back_off(tmp_path, database_url):
    """The supervisor never asks a child to stop before its own stop, so any exit is a failure to recover
    from, status 0 included. `exsync migrate` is a real child that exits 0 on its own."""
    from core.config import load_settings
    from devtools.supervisor import GaveUp, Stack

    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(EXSYNC_DATABASE_URL=database_url, EXSYNC_LOG_LEVEL="WARNING")
    log = open(tmp_path / "children.log", "w+")
    stack = Stack(load_settings(env), env, children=("migrate",), max_restarts=2, output=log)
    stack.start_children()
    pids, codes = [stack.children[0].pid], []
    try:
        with pytest.raises(GaveUp, match="migrate exited 3 times"):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                child = stack.children[0]
                if child.proc.poll() is not None and child.restart_at is None:
                    codes.append(child.proc.returncode)
                stack.check()
                if child.pid != pids[-1]:
                    pids.append(child.pid)
                time.sleep(0.05)
    finally:
        stack.stop()
    assert codes == [0, 0, 0]
    assert len(pids) == 3  # started, restarted twice (after 0.5 s, then 1 s), then given up on
