"""The per-process runtime: settings, the database, provider clients, payout rails and rate limiters.

Built once from the environment (``get()``), or handed in explicitly (``install()``) by `exsync run`
and by tests, so nothing needs patching.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

from core.config import ConfigError, PayoutConfig, Settings, load_settings
from core.ratelimit import RateLimiter, SharedRateLimiter, limit_key
from models.db import Database
from providers import registry
from providers.descriptor import PayoutStore
from providers.payouts import PayoutRail


@dataclass
class Runtime:
    settings: Settings
    _db: Database | None = None
    _clients: dict = field(default_factory=dict)
    _limiters: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rails: dict[str, PayoutRail] = field(default_factory=dict)  # by provider name, built on first use

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

    def payouts(self) -> PayoutConfig:
        """The payout config: ``settings.payouts``, read with every other setting."""
        return self.settings.payouts

    @property
    def payout_config(self) -> PayoutConfig:
        return self.settings.payouts

    @payout_config.setter
    def payout_config(self, config: PayoutConfig) -> None:
        """Run with another payout config (tests, benchmarks): rails built from the old one are dropped."""
        with self._lock:
            self.settings = dataclasses.replace(self.settings, payouts=config)
            self._rails.clear()

    def rail(self, name: str, store: PayoutStore) -> PayoutRail:
        """The PayoutRail of provider ``name``, built by its descriptor on first use and kept for the
        process (clients pool connections and cache tokens). ``store``: our stored payouts, for the rail."""
        with self._lock:
            rail = self._rails.get(name)
        if rail is not None:
            return rail
        cfg = self.payouts().providers.get(name)
        if cfg is None:
            raise ConfigError(f"providers.{name}", "no such payout provider is configured")
        desc = registry.get(cfg.type)
        if desc is None:
            raise ConfigError(f"providers.{name}.type", f"unsupported provider type {cfg.type!r}")
        rail = desc.rail(cfg, store)  # outside the lock: building one may be slow
        with self._lock:
            return self._rails.setdefault(name, rail)

    def forget_rails(self) -> None:
        """Drop every built rail (the next use builds it again, as a fresh process would)."""
        with self._lock:
            self._rails.clear()

    def close(self) -> None:
        """Release the database pool and the rate limiters' Redis connections (idempotent)."""
        with self._lock:
            limiters, self._limiters = list(self._limiters.values()), {}
        for lim in limiters:
            if isinstance(lim, SharedRateLimiter):
                lim.close()
        if self._db is not None:
            self._db.dispose()
            self._db = None

    def limiter(self, exchanger: str) -> RateLimiter | SharedRateLimiter:
        """The rate limit of one exchanger: shared through Redis by every process on every host
        (core/ratelimit.py), or a bucket of this process alone when no Redis is configured."""
        with self._lock:
            lim = self._limiters.get(exchanger)
            if lim is None:
                ex = self.settings.exchanger(exchanger)
                if self.settings.redis_url:
                    lim = SharedRateLimiter(self.settings.redis_url, limit_key(ex.name, ex.base_url, ex.api_login),
                                            ex.rate_limit)
                else:
                    lim = RateLimiter(ex.rate_limit)
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
