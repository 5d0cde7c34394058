"""What every sandbox engine (the fake provider's state and its admin side) has in common."""
from __future__ import annotations

import collections
import random
import time
from threading import RLock
from typing import Any, Mapping

from providers.sandbox.callbacks import CallbackSender
from providers.sandbox.knobs import SandboxKnobs
from providers.sandbox.requestlog import RequestLog


class Engine:
    """Thread-safe: ``lock`` (re-entrant) guards all state; the HTTP layer only adds faults around it.

    ``knobs`` are the fault knobs and ``roll(rate)`` one seeded fault decision; ``begin_request(key,
    source)`` counts an API request in ``requests_served``, logs when it came and from where in
    ``request_log`` (``GET /_sandbox/requests``) and applies the ``latency`` knob; ``now()`` is the
    server's clock (``time.time()``, so freezegun works, plus the ``clock_skew`` knob where there is one).
    A sandbox that sends callbacks sets ``_sender``; every attempt lands in ``callback_log``.

    A subclass gives ``state(query)`` (``GET /_sandbox/state``) and, where it has them, ``ledger_json()``
    (``GET /_sandbox/ledger``) and ``describe()`` (``GET /_sandbox/describe``).
    """

    def __init__(self, knobs: SandboxKnobs, fault_rng: random.Random) -> None:
        self.lock = RLock()
        self.knobs: Any = knobs
        self.fault_rng = fault_rng
        self.requests_served: collections.Counter[str] = collections.Counter()
        self.request_log = RequestLog()
        self.callback_log: list[dict] = []
        self._sender: CallbackSender | None = None

    def state(self, query: Mapping[str, str]) -> dict:
        raise NotImplementedError

    def now(self) -> float:
        skew = self.knobs.clock_skew if "clock_skew" in self.knobs.FIELDS else 0.0
        return time.time() + skew

    def begin_request(self, key: str, source: str | None = None) -> None:
        self.request_log.record(key, source)
        with self.lock:
            self.requests_served[key] += 1
        if self.knobs.latency:
            time.sleep(self.knobs.latency)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (drawn from the seeded ``fault_rng``)."""
        if rate <= 0:
            return False
        with self.lock:
            return self.fault_rng.random() < rate

    # ---- callbacks ---------------------------------------------------------------------------

    def flush_callbacks(self, timeout: float = 10) -> bool:
        """Block (real time) until every queued callback was attempted to the end. False on timeout."""
        return self._sender.flush(timeout) if self._sender is not None else True

    @property
    def callbacks_pending(self) -> int:
        return self._sender.pending() if self._sender is not None else 0

    def close(self) -> None:
        """Stop the background threads (a subclass stops its own, then calls this)."""
        if self._sender is not None:
            self._sender.close()
