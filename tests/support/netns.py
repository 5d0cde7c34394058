"""Hosts on one machine: Linux network namespaces joined by veth pairs to one bridge, loopback-range
addresses only, created and torn down by the test that uses them (tests/system/test_multihost.py).

Addresses: 127.77.0.0/24 on each host's ``eth0``. 127/8 is loopback-only by default, so each namespace turns
``route_localnet`` on (the kernel then routes and answers ARP for 127.x on a real interface) and keeps only
127.0.0.1 itself local on ``lo`` (by default all of 127/8 is, which would swallow 127.77.x). The bridge lives
in a namespace of its own (the hub), so nothing of the machine's own network is touched, and cutting a host
means taking its end of the link down in the hub: its processes live on, unreachable, as in a network split.

Processes run in a namespace through ``netns_exec`` (setns + exec, optionally as another user); this
process enters one only in a thread (``in_namespace``): a socket belongs to the namespace of the thread
that made it, and so do the threads that thread starts (a sandbox's server, its callback sender).
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping

from tests.support import ROOT

CLONE_NEWNET = 0x40000000
SUBNET = "127.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def enter(netns: str) -> None:
    """Move the calling THREAD into network namespace ``netns`` (a name under /run/netns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def probe() -> str | None:
    """Why namespaces cannot be used here (None: they can): one namespace with a veth pair, made and removed."""
    if sys.platform != "linux":
        return f"network namespaces are Linux only (this is {sys.platform})"
    name = f"exsprobe{os.getpid()}"
    try:
        for cmd in (("netns", "add", name), ("link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b"),
                    ("link", "set", f"{name}b", "netns", name), ("-n", name, "link", "add", "br0", "type", "bridge")):
            done = _ip(*cmd, check=False)
            if done.returncode != 0:
                return f"the kernel refused `ip {' '.join(cmd)}`: {done.stderr.strip()}"
        return None
    except FileNotFoundError:
        return "no `ip` command (iproute2) to create network namespaces"
    finally:
        _ip("link", "del", f"{name}a", check=False)
        _ip("netns", "del", name, check=False)


class Hosts:
    """``hosts``: name -> last byte of its address. ``addr(name)``, ``popen(name, argv)``, ``cut(name)``,
    ``restore(name)``, ``in_namespace(name, fn)``; ``close()`` removes every namespace (and so every veth)."""

    def __init__(self, hosts: Mapping[str, int]) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.hosts = dict(hosts)
        self.hub = f"exs{self.tag}hub"
        self.made: list[str] = []
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def ns(self, host: str) -> str:
        return f"exs{self.tag}{host}"

    def _port(self, host: str) -> str:  # interface names: at most 15 characters
        return f"x{self.tag}{list(self.hosts).index(host)}"

    def addr(self, host: str) -> str:
        return f"{SUBNET}.{self.hosts[host]}"

    def _make(self) -> None:
        _ip("netns", "add", self.hub)
        self.made.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for host in self.hosts:
            ns, port = self.ns(host), self._port(host)
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("link", "add", port, "type", "veth", "peer", "name", port + "h")
            _ip("link", "set", port, "netns", ns)
            _ip("link", "set", port + "h", "netns", self.hub)
            _ip("-n", self.hub, "link", "set", port + "h", "master", "br0")
            _ip("-n", self.hub, "link", "set", port + "h", "up")
            _ip("-n", ns, "link", "set", port, "name", "eth0")
            _ip("netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1",
                "net.ipv4.conf.eth0.route_localnet=1")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
            _ip("-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, host: str) -> None:
        """The host's link goes down at the hub: no packet in or out, no reset either."""
        _ip("-n", self.hub, "link", "set", self._port(host) + "h", "down")

    def restore(self, host: str) -> None:
        _ip("-n", self.hub, "link", "set", self._port(host) + "h", "up")

    def argv(self, host: str | None, argv: list[str], user: str | None = None) -> list[str]:
        """``argv`` run in ``host``'s namespace (None: this one), as ``user`` when given."""
        return [sys.executable, "-m", "tests.support.netns_exec", self.ns(host) if host else "-",
                *(["--user", user] if user else []), "--", *argv]

    def popen(self, host: str | None, argv: list[str], *, user: str | None = None, env: Mapping[str, str],
              **kw: Any) -> subprocess.Popen:
        env = {**env, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen(self.argv(host, argv, user), cwd=ROOT, env=env, **kw)

    def in_namespace(self, host: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in a thread inside ``host``'s namespace and return what it returned (threads it starts
        stay there)."""
        out: dict[str, Any] = {}

        def run() -> None:
            try:
                enter(self.ns(host))
                out["value"] = fn()
            except BaseException as exc:  # handed to the caller
                out["error"] = exc

        t = threading.Thread(target=run, name=f"in-{host}")
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    def executor(self, host: str, threads: int = 4) -> ThreadPoolExecutor:
        """A thread pool whose threads are all in ``host``'s namespace (HTTP from this test as that host)."""
        return ThreadPoolExecutor(threads, thread_name_prefix=f"in-{host}", initializer=enter,
                                  initargs=(self.ns(host),))

    def close(self) -> None:
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made.clear()

    def __enter__(self) -> "Hosts":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
