"""Per-source limit on failed webhook authentication (lessons.md: rate-limit unverified senders).

Anyone can POST to a receiver. A source that keeps failing the token, signature or IP checks (or probes
names that do not exist) gets 429 instead of its 401/403 once it has failed ``limit`` times within the
window: it learns nothing more and is told to back off. The throttle never refuses a request that
authenticates: every request is checked as usual, and only a failed one can be turned into a 429.
That matters because the Premium engine never retries a callback, and behind a proxy configured with
``EXSYNC_TRUSTED_PROXIES=0`` every sender shares one address — blocking by address before checking
would let anyone silence the engine.

Failures are counted in Redis, so every web process sees the same count; a request that authenticates
costs nothing extra. If Redis is unreachable the throttle stands aside (fails open) and says so once.
"""
from __future__ import annotations

import logging

import redis

from core.redis_url import client as redis_client

log = logging.getLogger("exsync.webhooks.throttle")

FAILURE_STATUSES = frozenset({401, 403, 404})


class FailureThrottle:
    def __init__(self, redis_url: str | None, *, limit: int, window: int) -> None:
        self.redis_url = redis_url
        self.limit = limit
        self.window = window
        self._redis: redis.Redis | None = None
        self._warned = False

    def record_failure(self, source: str | None) -> int | None:
        """Count one failure of ``source``; seconds it must wait when it is over the limit, else None."""
        if not source or not self.redis_url:
            return None
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
            return None
        self._warned = False
        if count <= self.limit:
            return None
        if count == self.limit + 1:
            log.warning("webhook source %s failed %s times in %ss: its failures are answered 429 until the "
                        "window ends (valid requests still pass)", source, self.limit, self.window)
        return max(1, ttl if ttl and ttl > 0 else self.window)
