"""Redis URLs: Celery/kombu speaks ``redis+socket://PATH``; redis-py speaks ``unix://PATH``."""
from __future__ import annotations

import redis


def for_redis_py(url: str) -> str:
    if url.startswith("redis+socket://"):
        return "unix://" + url[len("redis+socket://"):]
    return url


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(for_redis_py(url), socket_timeout=5, socket_connect_timeout=5)
