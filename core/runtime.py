"""The per-process runtime: settings, the database, provider clients and rate limiters.

Built once from the environment (``get()``), or handed in explicitly (``install()``) by `exsync run`
and by tests, so nothing needs patching.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from models.db import Database
from core.config import ConfigError, Settings, load_settings


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


@dataclass
class Runtime:
    settings: Settings
    _db: Database | None = None
    _clients: dict = field(default_factory=dict)
    _limiters: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Payouts: the parsed [payouts]/[providers]/[routes] config (read from EXSYNC_CONFIG on first use
    # unless handed in) and the PayoutRail objects built from it (worker.payouts.rails).
    payout_config: object | None = None
    _rails: dict = field(default_factory=dict)

    @property
    def db(self) -> Database:
        if self._db is None:
            if not self.settings.database_url:
                raise ConfigError("EXSYNC_DATABASE_URL", "is not set (exsync run starts an embedded one)")
            self._db = Database(self.settings.database_url, pool_size=self.settings.worker_concurrency + 2)
        return self._db

    def premium(self, exchanger: str):
        """The PremiumClient of one configured exchanger (one per process: it pools connections)."""
        from providers.premium import PremiumClient

        with self._lock:
            client = self._clients.get(exchanger)
            if client is None:
                ex = self.settings.exchanger(exchanger)
                client = PremiumClient(ex.base_url, ex.api_login, ex.api_key, lang=ex.lang, timeout=ex.timeout)
                self._clients[exchanger] = client
            return client

    def payouts(self):
        """The PayoutConfig (core.payout_config), loaded once from the environment's EXSYNC_CONFIG."""
        with self._lock:
            if self.payout_config is None:
                from core.payout_config import load_payout_config_from_env

                self.payout_config = load_payout_config_from_env()
            return self.payout_config

    def close(self) -> None:
        """Release the database pool (idempotent)."""
        if self._db is not None:
            self._db.dispose()
            self._db = None

    def limiter(self, exchanger: str) -> RateLimiter:
        with self._lock:
            lim = self._limiters.get(exchanger)
            if lim is None:
                lim = RateLimiter(self.settings.exchanger(exchanger).rate_limit)
                self._limiters[exchanger] = lim
            return lim


_current: Runtime | None = None
_current_lock = threading.Lock()


def get() -> Runtime:
    global _current
    with _current_lock:
        if _current is None:
            _current = Runtime(load_settings())
        return _current


def install(runtime: Runtime | None) -> None:
    global _current
    with _current_lock:
        _current = runtime
