"""Per-source limit on failed webhook authentication (lessons.md: rate-limit unverified senders).

Anyone can POST to a receiver; a source that keeps failing the token, signature or IP checks (or probes
names that do not exist) is told 429 for a while. Failures are counted in Redis, so every web process
sees the same count; the check on each request reads only an in-process blocklist, so a legitimate
sender's hot path costs no extra round trip. Each process learns of a block at that source's next
failure it sees. If Redis is unreachable the throttle stands aside (fails open) and says so once.
"""
from __future__ import annotations

import logging
import threading
import time

import redis

from worker.redis_url import client as redis_client

log = logging.getLogger("exsync.webhooks.throttle")

FAILURE_STATUSES = frozenset({401, 403, 404})


class FailureThrottle:
    def __init__(self, redis_url: str | None, *, limit: int, window: int) -> None:
        self.redis_url = redis_url
        self.limit = limit
        self.window = window
        self._blocked: dict[str, float] = {}  # source -> monotonic time the block ends
        self._lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._warned = False

    def retry_after(self, source: str | None) -> int | None:
        """Seconds until ``source`` may try again, or None when it is not blocked."""
        if not source or not self._blocked:
            return None
        with self._lock:
            until = self._blocked.get(source)
            if until is None:
                return None
            left = until - time.monotonic()
            if left <= 0:
                del self._blocked[source]
                return None
            return max(1, int(left + 0.999))

    def record_failure(self, source: str | None) -> None:
        if not source or not self.redis_url:
            return
        key = f"exsync:webhook-failures:{source}"
        try:
            if self._redis is None:
                self._redis = redis_client(self.redis_url)
            pipe = self._redis.pipeline()  # MULTI/EXEC: the three run together
            pipe.set(key, 0, ex=self.window, nx=True)  # a fixed window that starts at the first failure
            pipe.incr(key)  # INCR keeps the key's expiry
            pipe.ttl(key)
            _, count, ttl = pipe.execute()
        except redis.RedisError as exc:
            if not self._warned:
                log.warning("failure throttle off: Redis error (%s)", type(exc).__name__)
                self._warned = True
            return
        self._warned = False
        if count >= self.limit:
            with self._lock:
                self._blocked[source] = time.monotonic() + max(1, ttl if ttl and ttl > 0 else self.window)
            if count == self.limit:
                log.warning("webhook source %s failed %s times in %ss: refused with 429 until the window ends",
                            source, count, self.window)
