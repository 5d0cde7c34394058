"""Every API request a sandbox served, with when it arrived and from where: what a test or benchmark
reads to see the load a provider really met (rates per second, the busiest second, who sent it)."""
from __future__ import annotations

import collections
import threading
import time
from typing import NamedTuple


class Entry(NamedTuple):
    at: float  # wall clock (time.time()) when the request arrived
    key: str  # what was called (the method, as the engine counts it)
    source: str  # the client's address, "" when not known


class RequestLog:
    """The newest ``limit`` requests, thread-safe. Reads take an optional ``key`` and ``since``."""

    def __init__(self, limit: int = 200_000) -> None:
        self._entries: collections.deque[Entry] = collections.deque(maxlen=limit)
        self._lock = threading.Lock()

    def record(self, key: str, source: str | None = None) -> None:
        with self._lock:
            self._entries.append(Entry(time.time(), key, source or ""))

    def entries(self, key: str | None = None, since: float | None = None) -> list[Entry]:
        with self._lock:
            rows = list(self._entries)
        return [e for e in rows if (key is None or e.key == key) and (since is None or e.at >= since)]

    def per_second(self, key: str | None = None, since: float | None = None) -> dict[int, int]:
        """Requests per whole wall-clock second."""
        return dict(collections.Counter(int(e.at) for e in self.entries(key, since)))

    def max_in_window(self, window: float = 1.0, key: str | None = None, since: float | None = None) -> int:
        """The most requests any window of ``window`` seconds held (sliding, not whole seconds)."""
        times = sorted(e.at for e in self.entries(key, since))
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def summary(self, key: str | None = None, since: float | None = None, window: float = 1.0) -> dict:
        """What ``GET /_sandbox/requests`` answers."""
        rows = self.entries(key, since)
        return {
            "total": len(rows),
            "first": rows[0].at if rows else None,
            "last": rows[-1].at if rows else None,
            "max_in_window": self.max_in_window(window, key, since),
            "window": window,
            "per_second": sorted(self.per_second(key, since).items()),
            "by_key": dict(collections.Counter(e.key for e in rows)),
            "by_source": dict(collections.Counter(e.source for e in rows)),
        }
