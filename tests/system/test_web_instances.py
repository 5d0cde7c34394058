"""Several `exsync web` instances on one host share no state by accident.

gunicorn (>= 25.1) opens a control socket that ``gunicornc`` talks to, by default at one path per user
(``$XDG_RUNTIME_DIR/gunicorn.ctl`` or ``~/.gunicorn/gunicorn.ctl``): a second instance takes it over and the
first one's shutdown unlinks it, leaving the second unmanageable. Each exsync instance has its own
(cli/processes.py ``control_socket``). What matters is tested: with two instances on one host, one data
dir and one HOME, stopping one leaves the other's socket there and answering for the other; an instance
that cannot start (its address taken) leaves the running one's socket alone; nothing lands at gunicorn's
shared default path.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from gunicorn.ctl.client import ControlClient

from cli.processes import UNIX_PATH_MAX, control_socket
from tests.support.net import free_port
from tests.support.wait import wait_for


def start(env: dict, port: int, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli", "web", "--workers", "1", "--threads", "2",
                                 "--bind", f"127.0.0.1:{port}"], env=env, stdout=out, stderr=subprocess.STDOUT)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def ask(path: str) -> dict:
    """``show config`` and ``show stats`` through one control socket: whose it is (its bind and pid)."""
    with ControlClient(path, timeout=5) as client:
        return {**client.send_command("show config"), **client.send_command("show stats")}


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(10)


@pytest.fixture
def instance_env(edge_env, db, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in {**os.environ, **edge_env}.items() if k != "XDG_RUNTIME_DIR"}
    env.update(HOME=str(home), EXSYNC_DATA_DIR=str(tmp_path / "data"), EXSYNC_LOG_LEVEL="INFO")
    return env


def test_stopping_one_web_instance_leaves_the_others_control_socket(instance_env, tmp_path):
    ports = [free_port(), free_port()]
    procs = [start(instance_env, port, tmp_path / f"web{i}.log") for i, port in enumerate(ports)]
    try:
        for p, port in zip(procs, ports, strict=True):
            wait_for(lambda port=port: healthy(port), 60, f"exsync web on {port}", p)
        paths = [control_socket(Path(instance_env["EXSYNC_DATA_DIR"]), f"127.0.0.1:{port}") for port in ports]
        first, second = wait_for(lambda: all(os.path.exists(p) for p in paths) and [ask(p) for p in paths], 30,
                                 "both control sockets answering")
        assert first["bind"] == [f"127.0.0.1:{ports[0]}"] and first["pid"] == procs[0].pid
        assert second["bind"] == [f"127.0.0.1:{ports[1]}"] and second["pid"] == procs[1].pid

        assert stop(procs[0]) == 0
        assert not os.path.exists(paths[0])  # the stopped one cleaned up its own
        assert ask(paths[1])["pid"] == procs[1].pid  # and the other's is there, answering for the other

        # A third instance on the second one's address cannot bind: it exits, and touches no socket.
        third = start(instance_env, ports[1], tmp_path / "web2.log")
        assert third.wait(60) != 0
        assert "Address already in use" in (tmp_path / "web2.log").read_text()
        assert ask(paths[1])["pid"] == procs[1].pid and healthy(ports[1])
    finally:
        for p in procs:
            stop(p)
    home = Path(instance_env["HOME"])
    assert not (home / ".gunicorn").exists()  # gunicorn's shared default was never used
    logs = [(tmp_path / f"web{i}.log").read_text() for i in range(2)]
    assert all(f"Control socket listening at {p}" in log for p, log in zip(paths, logs, strict=True)), logs


def test_control_socket_path_is_per_bind_and_fits_a_unix_socket(tmp_path):
    a = control_socket(tmp_path, "127.0.0.1:8000")
    assert a == str(tmp_path / "run" / "web-127.0.0.1_8000.ctl")
    assert control_socket(tmp_path, "127.0.0.1:8001") != a
    assert control_socket(tmp_path, "unix:/run/exsync/web.sock") == str(tmp_path / "run" /
                                                                       "web-unix__run_exsync_web.sock.ctl")
    assert control_socket(tmp_path / ("d" * UNIX_PATH_MAX), "127.0.0.1:8000") is None


def test_a_data_dir_too_deep_for_a_socket_serves_without_one(instance_env, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    port = free_port()
    proc = start({**instance_env, "EXSYNC_DATA_DIR": str(deep)}, port, tmp_path / "deep.log")
    try:
        wait_for(lambda: healthy(port), 60, "exsync web", proc)
    finally:
        assert stop(proc) == 0
    log = (tmp_path / "deep.log").read_text()
    assert "no gunicorn control socket for this instance" in log and "Control socket listening" not in log, log
    assert not (Path(instance_env["HOME"]) / ".gunicorn").exists()
