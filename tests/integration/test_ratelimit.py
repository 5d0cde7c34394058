"""The rate limit shared through Redis (core/ratelimit.py): several limiters on one key (as several
processes would hold) keep to one rate together; a Redis that is killed, frozen or restarted never raises
into the caller: the limiter falls back to its local share and returns to Redis when it answers.

Three real worker processes against the sandbox: tests/system/test_rate_limit_processes.py."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from core import redis_url as redis_url_mod
from core.ratelimit import RateLimiter, SharedRateLimiter, limit_key
from core.runtime import Runtime
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_for


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most calls any half-open window of ``window`` seconds holds."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def hammer(limiters: list, threads_each: int, seconds: float) -> list[float]:
    """Call ``acquire`` from ``threads_each`` threads per limiter for ``seconds``; the times calls went."""
    times: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(lim) -> None:
        while time.monotonic() < stop:
            lim.acquire()
            with lock:
                times.append(time.monotonic())

    workers = [threading.Thread(target=run, args=(lim,)) for lim in limiters for _ in range(threads_each)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 10)
    return times


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def key() -> str:
    return limit_key("main", f"http://test/{uuid.uuid4().hex}", "login")


def test_four_limiters_on_one_key_keep_to_one_rate(redis_url):
    rate = 40.0
    k = key()
    limiters = [SharedRateLimiter(redis_url, k, rate) for _ in range(4)]
    times = hammer(limiters, threads_each=4, seconds=2.0)
    # 16 threads of 4 "processes": alone, each limiter would allow 40/s (160/s together).
    assert max_in_window(times) <= rate * 1.15, max_in_window(times)  # wake-ups bunch a little on 2 busy cores
    assert len(times) >= 1.5 * rate  # and the limit is used, not starved: ~2 s × 40/s
    assert {lim.mode for lim in limiters} == {"shared"}
    assert {lim.participants for lim in limiters} == {4}
    for lim in limiters:
        lim.close()


def test_per_process_buckets_would_not(redis_url):
    """The control: four local buckets (what each process had before) let four times the rate through."""
    rate = 40.0
    times = hammer([RateLimiter(rate, burst=1) for _ in range(4)], threads_each=4, seconds=2.0)
    assert max_in_window(times) > 3 * rate


def test_killed_redis_falls_back_to_the_local_share_and_recovers(own_redis):
    rate = 30.0
    k = key()
    limiters = [SharedRateLimiter(own_redis.url, k, rate, retry_after=0.2) for _ in range(3)]
    for lim in limiters * 2:  # in steady use each has heard of the others
        lim.acquire()
    assert {lim.participants for lim in limiters} == {3}

    own_redis.kill()
    times = hammer(limiters, threads_each=3, seconds=2.0)  # no exception reaches a caller
    assert {lim.mode for lim in limiters} == {"local"}
    assert all(lim.fallbacks == 1 for lim in limiters)
    # Each keeps to a third of the limit: together the limit (plus each bucket's first token), never three
    # times it.
    assert max_in_window(times) <= rate * 1.15 + 3, max_in_window(times)
    assert len(times) >= rate  # and calls went on while Redis was down

    own_redis.start()
    wait_for(lambda: hammer(limiters, 1, 0.3) and {lim.mode for lim in limiters} == {"shared"}, 10,
             "every limiter back on Redis")
    client = redis.Redis.from_url(own_redis.url)
    assert client.zcard(k + ":who") == 3 and client.exists(k + ":tat")
    times = hammer(limiters, threads_each=3, seconds=1.5)
    assert max_in_window(times) <= rate * 1.15


def test_frozen_redis_costs_a_timeout_not_a_stalled_caller(own_redis):
    lim = SharedRateLimiter(own_redis.url, key(), 50.0, retry_after=0.5, timeout=0.3)
    lim.acquire()
    own_redis.freeze()
    try:
        started = time.monotonic()
        for _ in range(20):
            lim.acquire()
        took = time.monotonic() - started
        assert lim.mode == "local"
        # One call waited for the timeout; the rest kept to the local bucket (tries at most every 0.5 s).
        assert took < 0.3 + 20 / 50 + 1.0, took
    finally:
        own_redis.thaw()
    wait_for(lambda: lim.acquire() or lim.mode == "shared", 5, "the limiter back on Redis")
    lim.close()


def test_redis_flushed_under_it_reloads_the_script(redis_url):
    """A restarted Redis has lost the script: the limiter loads it again (no NOSCRIPT reaches a caller)."""
    lim = SharedRateLimiter(redis_url, key(), 100.0)
    lim.acquire()
    client = redis_url_mod.client(redis_url)
    client.script_flush()
    lim.acquire()
    assert lim.mode == "shared" and lim.fallbacks == 0
    lim.close()


def test_runtime_shares_through_redis_when_it_has_one(settings):
    import dataclasses

    rt = Runtime(settings)
    lim = rt.limiter("main")
    assert isinstance(lim, SharedRateLimiter) and lim.rate == settings.exchanger("main").rate_limit
    assert rt.limiter("main") is lim
    rt.close()
    alone = Runtime(dataclasses.replace(settings, redis_url=None))
    assert isinstance(alone.limiter("main"), RateLimiter)


def test_going_local_waits_for_the_slots_redis_already_gave_out(own_redis):
    """Ten threads hold slots up to two seconds ahead when Redis dies: the local share starts after them."""
    lim = SharedRateLimiter(own_redis.url, key(), 5.0, retry_after=5.0)
    threads = [threading.Thread(target=lim.acquire) for _ in range(10)]
    for t in threads:
        t.start()
    wait_for(lambda: lim.reserved_ahead() > 1.5, 10, "slots reserved 1.5 s ahead")
    own_redis.kill()
    ahead, started = lim.reserved_ahead(), time.monotonic()
    lim.acquire()  # Redis refuses: local from here, after the reserved slots
    waited = time.monotonic() - started
    for t in threads:
        t.join(5)
    assert lim.mode == "local"
    assert waited >= ahead - 0.05, (waited, ahead)  # alone, the local bucket would not have waited at all


def test_back_on_redis_a_process_keeps_to_its_share_until_the_others_can_be_back(own_redis):
    rate = 30.0
    k = key()
    limiters = [SharedRateLimiter(own_redis.url, k, rate, retry_after=0.5) for _ in range(3)]
    for lim in limiters * 2:
        lim.acquire()
    own_redis.kill()
    limiters[0].acquire()
    own_redis.start()
    wait_for(lambda: limiters[0].acquire() or limiters[0].mode == "shared", 5, "the first one back")
    # The other two have not asked Redis yet (they would still be on their local shares): the first keeps to
    # its own third of the limit for two retry intervals, though Redis alone would give it all of it.
    times = hammer([limiters[0]], threads_each=4, seconds=0.9)
    assert len(times) <= 0.9 * rate / 3 + 3, len(times)
    for lim in limiters:
        lim.close()
