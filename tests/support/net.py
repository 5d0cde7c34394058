"""Loopback ports for servers a test starts, and one that refuses connections."""
from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_url() -> str:
    """The URL of a port nothing listens on (bound once, then released): connecting is refused."""
    return f"http://127.0.0.1:{free_port()}"
