"""Rate limits per exchanger: one limit shared by every process on every host, kept in Redis.

``SharedRateLimiter`` reserves each call a time slot with one atomic Lua script (GCRA, "generic cell rate
algorithm", as a reservation): the key holds the theoretical arrival time (TAT) of the next call on Redis'
own clock; a caller gets the slot ``max(now, TAT)``, moves TAT one interval (1/rate) past it, and sleeps
until its slot. Calls are therefore spaced 1/rate apart across all hosts, whatever their clocks say, and
no window of one second holds more than ``rate`` of them. One EVALSHA per call.

When Redis does not answer, the caller never sees an error: the limiter falls back to a local token bucket
(``RateLimiter``, no burst either) of ``rate / n`` per second, where ``n`` is how many processes shared the
limit when Redis last answered (the script keeps them in a sorted set), so the hosts together stay near the
limit. It asks Redis again at most once every ``retry_after`` seconds (one thread does; the others keep to
the local bucket meanwhile) and goes back to the shared limit as soon as Redis answers. Details:
docs/scaling-hosts.md.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid

log = logging.getLogger("exsync.ratelimit")

# KEYS[1]: the TAT (integer µs on Redis' clock); KEYS[2]: the sorted set of participants (score: last call).
# ARGV: interval µs, participant id, participant ttl µs, the furthest a backlog may reach ahead µs.
# Returns {µs to wait before calling, participants}. TIME is safe before writes: Redis >= 5 replicates a
# script's effects, not the script.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local ttl = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat - now > tonumber(ARGV[4]) then
  tat = now
end
local slot = math.max(tat, now)
local next = slot + interval
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.floor((next - now) / 1000) + 1000)
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[2], math.floor(ttl / 1000))
return {slot - now, redis.call('ZCARD', KEYS[2])}
"""

RETRY_AFTER = 1.0  # seconds between two tries of a Redis that did not answer
TIMEOUT = 0.5  # seconds: a Redis slower than this costs one fallback second, not a stalled poll
PARTICIPANT_TTL = 60.0  # seconds a process counts as sharing the limit after its last call
MAX_AHEAD = 60.0  # seconds: a TAT further ahead is reset (a Redis clock that jumped back, a stray write)


class RateLimiter:
    """Token bucket shared by the threads of one process: at most ``rate`` calls per second."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        """Take a token, sleeping for the deficit when there is none (a reservation, not a spin loop)."""
        with self.lock:
            now = time.monotonic()
            # max(0, …): a clock that jumps back (freezegun in tests) must not drain the bucket.
            self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            time.sleep(wait)


def limit_key(name: str, base_url: str, api_login: str) -> str:
    """The Redis key of one exchanger's limit: its name plus a digest of the site and login it limits, so
    two deployments (or test runs) that share a Redis share a limit only when they talk to the same site."""
    digest = hashlib.sha256(f"{base_url}\n{api_login}".encode()).hexdigest()[:16]
    return f"exsync:rate:{{{name}:{digest}}}"  # {…}: both keys in one Redis Cluster slot


class SharedRateLimiter:
    """At most ``rate`` calls per second for every process that uses ``key`` on one Redis (see module doc).

    ``mode`` is ``"shared"`` or ``"local"`` (Redis did not answer); ``participants`` how many processes
    shared the limit at the last answer; ``fallbacks`` how many times it fell back.
    """

    def __init__(self, redis_url: str, key: str, rate: float, *, retry_after: float = RETRY_AFTER,
                 timeout: float = TIMEOUT) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from core.redis_url import for_redis_py

        self.rate = rate
        self.key = key
        self.retry_after = retry_after
        self.member = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # No retries inside redis-py: a Redis that is down must cost one failed call, then the local bucket.
        self._redis = redis.Redis.from_url(for_redis_py(redis_url), socket_timeout=timeout,
                                           socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self._script = self._redis.register_script(GCRA)
        self._args: list[int | str] = [max(1, round(1_000_000 / rate)), self.member, int(PARTICIPANT_TTL * 1_000_000),
                      int(MAX_AHEAD * 1_000_000)]
        self._lock = threading.Lock()
        self.mode = "shared"
        self.participants = 1
        self.fallbacks = 0
        self._local: RateLimiter | None = None
        self._next_try = 0.0  # monotonic time of the next try of Redis while local
        self._probing = False

    def acquire(self) -> None:
        """Wait for this call's slot; never raises (a failing Redis means the local bucket)."""
        if self._should_try_redis():
            wait = self._reserve()
            if wait is not None:
                if wait > 0:
                    time.sleep(wait)
                return
        self._local_bucket().acquire()

    def _should_try_redis(self) -> bool:
        with self._lock:
            if self.mode == "shared":
                return True
            if self._probing or time.monotonic() < self._next_try:
                return False
            self._probing = True  # one thread asks; the others keep to the local bucket meanwhile
            return True

    def _reserve(self) -> float | None:
        """Seconds to wait for a slot from Redis, or None when Redis did not answer (now local)."""
        try:
            wait_us, participants = self._script(keys=[self.key + ":tat", self.key + ":who"], args=self._args)
        except Exception as exc:  # noqa: BLE001 — any failure of Redis (down, slow, read-only, OOM): local
            self._failed(exc)
            return None
        with self._lock:
            self.participants = max(1, int(participants))
            self._probing = False
            if self.mode != "shared":
                self.mode = "shared"
                log.info("rate limit %s: Redis answers again; %s processes share %g calls/s", self.key,
                         self.participants, self.rate)
        return max(0, int(wait_us)) / 1_000_000

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._probing = False
            self._next_try = time.monotonic() + self.retry_after
            if self.mode == "shared":
                self.mode = "local"
                self.fallbacks += 1
                share = self.rate / self.participants
                self._local = RateLimiter(share, burst=1)
                log.warning("rate limit %s: Redis did not answer (%s: %s); this process keeps to %g calls/s "
                            "(%g shared by %s) until it does", self.key, type(exc).__name__, exc, share,
                            self.rate, self.participants)

    def _local_bucket(self) -> RateLimiter:
        with self._lock:
            if self._local is None:
                self._local = RateLimiter(self.rate / self.participants, burst=1)
            return self._local

    def close(self) -> None:
        self._redis.close()
