"""Rate limits per exchanger: one limit shared by every process on every host, kept in Redis.

``SharedRateLimiter`` reserves each call a time slot with one atomic Lua script (GCRA, "generic cell rate
algorithm", as a reservation): the key holds the theoretical arrival time (TAT) of the next call on Redis'
own clock; a caller gets the slot ``max(now, TAT)``, moves TAT one interval (1/rate) past it, and sleeps
until its slot. Calls are therefore spaced 1/rate apart across all hosts, whatever their clocks say, and
no window of one second holds more than ``rate`` of them. One EVALSHA per call.

When Redis does not answer, the caller never sees an error: the limiter falls back to a local token bucket
(``RateLimiter``, no burst either) of ``rate / n`` per second, where ``n`` is how many processes shared the
limit when Redis last answered (the script keeps them in a sorted set), so the hosts together stay near the
limit. The hand-overs keep to the limit too: the local bucket starts where the slots already handed out by
Redis end (the TAT at the last answer), and a process that finds Redis again keeps to its local share as
well for a while (until every other process has had the time to come back) and pushes the TAT past the
slots its local bucket has already given. It asks Redis again at most once every ``retry_after`` seconds
(one thread does; the others keep to the local bucket meanwhile). Details: docs/scaling-hosts.md.
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
# ARGV: interval µs, participant id, participant ttl µs, the furthest a backlog may reach ahead µs, and the
# µs ahead that the caller's own local bucket has already given out (0 unless it is coming back).
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
tat = math.max(tat, now + tonumber(ARGV[5]))
local slot = math.max(tat, now)
local after = slot + interval
redis.call('SET', KEYS[1], string.format('%d', after), 'PX', math.floor((after - now) / 1000) + 1000)
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
    """Token bucket shared by the threads of one process: at most ``rate`` calls per second.

    ``after``: the first call may go only that many seconds from now (slots another limiter gave out)."""

    def __init__(self, rate: float, burst: float | None = None, after: float = 0.0) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity - after * rate
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; returns the seconds to wait for it (a reservation: the caller sleeps, no spinning)."""
        with self.lock:
            now = time.monotonic()
            # max(0, …): a clock that jumps back (freezegun in tests) must not drain the bucket.
            self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def acquire(self) -> None:
        """Take a token, sleeping for the deficit when there is none."""
        wait = self.reserve()
        if wait:
            time.sleep(wait)

    def ahead(self) -> float:
        """Seconds until the slots already given out end (0: the bucket is not behind)."""
        with self.lock:
            tokens = min(self.capacity, self.tokens + max(0.0, time.monotonic() - self.stamp) * self.rate)
            return max(0.0, -tokens / self.rate)


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
        self._interval_us = max(1, round(1_000_000 / rate))
        self._static_args: list[int | str] = [self._interval_us, self.member, int(PARTICIPANT_TTL * 1_000_000),
                                              int(MAX_AHEAD * 1_000_000)]
        self._lock = threading.Lock()
        self.mode = "shared"
        self.participants = 1
        self.fallbacks = 0
        self._local: RateLimiter | None = None
        self._next_try = 0.0  # monotonic time of the next try of Redis while local
        self._probing = False
        self._epoch = 0  # counts the switches between shared and local
        self._horizon = 0.0  # monotonic time the slots Redis gave out ended, at its last answer
        self._both_until = 0.0  # back on Redis: until then, keep to the local share as well

    def acquire(self) -> None:
        """Wait for this call's slot; never raises (a failing Redis means the local bucket)."""
        ticket = self._ticket()
        if ticket is not None:
            wait = self._reserve(*ticket)
            if wait is not None:
                with self._lock:
                    local = self._local if time.monotonic() < self._both_until else None
                if local is not None:  # the others may still be on their local shares
                    wait = max(wait, local.reserve())
                if wait > 0:
                    time.sleep(wait)
                return
        self._local_bucket().acquire()

    def _ticket(self) -> tuple[int, bool] | None:
        """Whether this call asks Redis: (the mode's epoch, whether it is the probe of a local process), or
        None (keep to the local bucket). Only the probe may bring the process back to Redis, and only a call
        of the current shared epoch may take it away: a late answer of a call sent before the switch
        changes nothing."""
        with self._lock:
            if self.mode == "shared":
                return self._epoch, False
            if self._probing or time.monotonic() < self._next_try:
                return None
            self._probing = True  # one thread asks; the others keep to the local bucket meanwhile
            return self._epoch, True

    def _reserve(self, epoch: int, probe: bool) -> float | None:
        """Seconds to wait for a slot from Redis, or None when Redis did not answer."""
        with self._lock:
            local = self._local if self.mode == "local" or time.monotonic() < self._both_until else None
        ahead_us = int(local.ahead() * 1_000_000) if local is not None else 0
        try:
            wait_us, participants = self._script(keys=[self.key + ":tat", self.key + ":who"],
                                                 args=[*self._static_args, ahead_us])
        except Exception as exc:  # noqa: BLE001 — any failure of Redis (down, slow, read-only, OOM): local
            self._failed(exc, epoch, probe)
            return None
        wait = max(0, int(wait_us)) / 1_000_000
        with self._lock:
            now = time.monotonic()
            self.participants = max(1, int(participants))
            self._horizon = max(self._horizon, now + wait + self._interval_us / 1_000_000)
            if probe:
                self._probing = False
                if self.mode != "shared" and epoch == self._epoch:
                    self.mode, self._epoch = "shared", self._epoch + 1
                    # Every other process tries Redis within retry_after of finding it gone; until they are
                    # back, their local shares run beside this one's.
                    self._both_until = now + 2 * self.retry_after
                    log.info("rate limit %s: Redis answers again; %s processes share %g calls/s", self.key,
                             self.participants, self.rate)
        return wait

    def _failed(self, exc: Exception, epoch: int, probe: bool) -> None:
        with self._lock:
            now = time.monotonic()
            if probe:
                self._probing = False
                self._next_try = now + self.retry_after
            if self.mode == "shared" and epoch == self._epoch:
                self.mode, self._epoch = "local", self._epoch + 1
                self._next_try = now + self.retry_after
                self.fallbacks += 1
                share = self.rate / self.participants
                # Slots Redis already gave out (to anyone, up to its last answer) still go out: start after them.
                self._local = RateLimiter(share, burst=1, after=max(0.0, self._horizon - now))
                log.warning("rate limit %s: Redis did not answer (%s: %s); this process keeps to %g calls/s "
                            "(%g shared by %s) until it does", self.key, type(exc).__name__, exc, share,
                            self.rate, self.participants)

    def reserved_ahead(self) -> float:
        """Seconds until the slots Redis gave out end, as of its last answer (0: none pending)."""
        with self._lock:
            return max(0.0, self._horizon - time.monotonic())

    def _local_bucket(self) -> RateLimiter:
        with self._lock:
            if self._local is None:
                self._local = RateLimiter(self.rate / self.participants, burst=1)
            return self._local

    def close(self) -> None:
        self._redis.close()
