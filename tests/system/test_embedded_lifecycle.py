"""The embedded Postgres and Redis of `exsync run` over their whole life: the CLI finds (or starts) the
database by itself, a second stack on the same data folder is refused, SIGHUP (a closed terminal) leaves
nothing behind, servers a killed stack left running are found and stopped with a message, and a taken
port fails `run` at once."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from devtools.embedded import leftovers
from tests.support.net import free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(300)


def healthz(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def env_for(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(EXSYNC_DATA_DIR=str(data_dir), EXSYNC_WEB_BIND=f"127.0.0.1:{port}", EXSYNC_LOG_LEVEL="WARNING")
    return env


def start_run(tmp_path: Path, data_dir: Path, name: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "run", "--for", "600", "--stop-timeout", "10"],
                                env=env_for(data_dir, port), stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthz(url), 120, f"{name} /healthz", proc)
    return proc, url, log


def exsync(tmp_path: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env_for(data_dir, free_port()), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_embedded_services_from_start_to_crash(tmp_path):
    data = tmp_path / "data"
    first, url, log = start_run(tmp_path, data, "first")
    try:
        servers = leftovers(data)
        assert set(servers) == {"postgres", "redis"}
        assert (data / "owner.pid").read_text().strip() == str(first.pid)

        # The CLI finds the running stack's database by itself, and says where.
        out = exsync(tmp_path, data, "bids", "list")
        assert out.returncode == 0, out.stderr
        assert f"using `exsync run`'s running embedded Postgres in {data / 'postgres' / 'pgdata'}" in out.stderr
        assert "no bids" in out.stdout

        # A second stack on the same folder is refused, and leaves the first alone.
        second = exsync(tmp_path, data, "run", "--for", "0")
        assert second.returncode == 1
        assert f"belong to exsync pid {first.pid}, which is still running" in second.stderr + second.stdout
        assert healthz(url)

        # The terminal is closed: SIGHUP stops everything in order.
        first.send_signal(signal.SIGHUP)
        assert first.wait(60) == 0, log.read_text()  # handled: the default action would end it by the signal
    finally:
        if first.poll() is None:
            first.kill()
    assert not any(alive(pid) for pid in servers.values()), "embedded Postgres or Redis left running"
    assert leftovers(data) == {} and not (data / "owner.pid").exists()

    # Stopped: a command starts the database for itself, and stops it again.
    out = exsync(tmp_path, data, "payouts", "list")
    assert out.returncode == 0, out.stderr
    assert "started for this command, stopped after it" in out.stderr and "no payouts" in out.stdout
    assert leftovers(data) == {}

    # A stack killed without its clean-up leaves its servers running; the next one stops them, and says so.
    crashed, _, crash_log = start_run(tmp_path, data, "crashed")
    left = leftovers(data)
    crashed.kill()
    crashed.wait(10)
    wait_for(lambda: not any(p.info["cmdline"] and p.info["cmdline"][-2:] in (["cli", "web"], ["cli", "worker"])
                             and str(crashed.pid) in str(p.ppid()) for p in psutil.process_iter(["cmdline"])),
             30, "the killed stack's children to go")
    assert set(leftovers(data)) == {"postgres", "redis"} and leftovers(data) == left
    out = exsync(tmp_path, data, "run", "--for", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    said = out.stdout + out.stderr
    assert (f"found an embedded postgres (pid {left['postgres']}) and an embedded redis (pid {left['redis']}) in "
            f"{data} left running by exsync pid {crashed.pid}, which is gone: stopping it") in said
    assert not any(alive(pid) for pid in left.values())
    assert leftovers(data) == {}


def test_run_fails_at_once_when_its_port_is_taken_and_names_a_mistyped_variable(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        env = dict(env_for(tmp_path / "d", port), EXSYNC_DATABSE_URL="postgresql://db.example/exsync")
        out = subprocess.run([sys.executable, "-m", "cli", "run", "--for", "5"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "warning: EXSYNC_DATABSE_URL is not a variable exsync reads" in out.stderr  # the typo is named
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr
    assert "exsync is running" not in out.stdout
    assert not (tmp_path / "d" / "postgres").exists()  # nothing was started
    assert time.monotonic() - started < 30
