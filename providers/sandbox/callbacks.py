"""The one callback sender of the sandboxes: a background thread posting from a time-ordered queue, with the
faults a real provider's callbacks suffer (dropped, duplicated, reordered, failed and retried).

A sandbox says how to post one callback and what to log about it::

    sender = CallbackSender(engine.callback_log, post=lambda item: requests.post(item["url"], ...).status_code,
                            entry=lambda item, outcome, http_status: {...}, name="x-sandbox-callbacks")
    sender.enqueue({"url": ..., ...}, **draw_faults(engine.cb_rng, engine.knobs, "drop", "duplicate"))

``post(item)`` returns the answer's HTTP status (raising ``requests.RequestException`` when none came);
``entry(item, outcome, http_status)`` builds the log entry. ``item`` is the sandbox's own dict plus
``attempt`` (1 for the first try), ``duplicate`` and ``reordered``. Outcomes: ``delivered`` (2xx), ``failed``
(retried, or the last try when ``gave_up`` is left as "failed"), ``gave_up``, ``dropped`` (never sent) and
``duplicated`` (the second copy of a duplicated callback, sent once whatever it gets back).

Retries: a try without a 2xx is repeated up to ``attempts()`` tries, ``backoff(attempt)`` seconds after
the try that failed. Tries are scheduled independently (a failing older callback can arrive after a newer
one) unless ``in_order``: then every callback waits until the one before it is delivered or given up.
A reordered callback is held back until the next one is queued, or until ``IDLE_RELEASE`` seconds pass
with nothing newer. Scheduling runs on the real monotonic clock, so frozen time does not stall it.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
from typing import Any, Callable

import requests

from providers.sandbox.clock import monotonic

log = logging.getLogger("providers.sandbox.callbacks")

Post = Callable[[dict], int]
Entry = Callable[[dict, str, "int | None"], dict]


def draw_faults(rng: random.Random, knobs: Any, *faults: str) -> dict[str, bool]:
    """One seeded draw per fault, in the order given, against the ``callback_<fault>_rate`` knobs.

    Every number is drawn even when its rate is 0, so a seed gives the same faults for the same sequence
    of callbacks whatever rates are set.
    """
    draws = [rng.random() for _ in faults]
    return {f: r < knobs[f"callback_{f}_rate"] for f, r in zip(faults, draws, strict=True)}


class CallbackSender:
    IDLE_RELEASE = 0.15  # a held-back (reordered) callback goes out after this long with nothing newer

    def __init__(self, log: list, *, post: Post, entry: Entry, name: str, attempts: Callable[[], int] = lambda: 1,
                 backoff: Callable[[int], float] = lambda attempt: 0.0, gave_up: str = "failed",
                 in_order: bool = False) -> None:
        self._log = log
        self._post = post
        self._entry = entry
        self._name = name
        self._attempts = attempts
        self._backoff = backoff
        self._gave_up = gave_up
        self._in_order = in_order
        self._cv = threading.Condition()
        self._heap: list = []   # (order, seq, due, item): order is the due time, or the queueing seq in_order
        self._held: list = []   # (due, item, duplicate_after) held back to be reordered
        self._held_at = 0.0
        self._seq = itertools.count()
        self._inflight = 0
        self._stop = False
        self._thread: threading.Thread | None = None

    def enqueue(self, item: dict, *, delay: float = 0.0, drop: bool = False, duplicate: bool = False,
                duplicate_after: float = 0.0, reorder: bool = False) -> None:
        """Queue one callback, ``delay`` seconds from now, with the faults already decided for it."""
        item = dict(item, attempt=0, duplicate=False, reordered=False)
        if drop:
            self._record(item, "dropped", None)
            return
        due = monotonic() + delay
        dup = duplicate_after if duplicate else None
        with self._cv:
            self._ensure_thread()
            if reorder:
                item["reordered"] = True
                if not self._held:
                    self._held_at = monotonic()
                self._held.append((due, item, dup))
            else:
                self._push(due, item, dup)
                self._release_held(due)  # held ones go out right after this newer one
            self._cv.notify_all()

    def pending(self) -> int:
        """Callbacks queued, held back, waiting for a retry or in flight."""
        with self._cv:
            return len(self._heap) + len(self._held) + self._inflight

    def flush(self, timeout: float) -> bool:
        """Block until every queued callback was attempted to the end (or dropped). False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._heap and not self._held and not self._inflight, timeout)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)

    # ---- inside ------------------------------------------------------------------------------

    def _push(self, due: float, item: dict, duplicate_after: float | None = None) -> None:
        seq = next(self._seq)
        order = item.setdefault("order", seq) if self._in_order else due
        heapq.heappush(self._heap, (order, seq, due, item))
        if duplicate_after is not None:
            self._push(due + duplicate_after, dict(item, duplicate=True))

    def _release_held(self, after: float) -> None:
        for due, item, dup in self._held:
            self._push(max(due, after), item, dup)
        self._held.clear()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._stop:
                        return
                    now = monotonic()
                    if self._held and not self._heap and now - self._held_at >= self.IDLE_RELEASE:
                        self._release_held(now)
                    if self._heap and self._heap[0][2] <= now:
                        item = heapq.heappop(self._heap)[3]
                        self._inflight += 1
                        break
                    if self._heap:
                        timeout: float | None = self._heap[0][2] - now
                    elif self._held:
                        timeout = max(0.005, self.IDLE_RELEASE - (now - self._held_at))
                    else:
                        timeout = None
                    self._cv.wait(timeout)
            try:
                self._send(item)
            except Exception:  # never let one callback kill the sender
                log.exception("%s: the callback sender failed on one item", self._name)
            finally:
                with self._cv:
                    self._inflight -= 1
                    self._cv.notify_all()

    def _send(self, item: dict) -> None:
        item["attempt"] += 1
        http_status = None
        try:
            http_status = self._post(item)
            ok = 200 <= http_status < 300
        except requests.RequestException:
            ok = False
        if item["duplicate"]:
            outcome = "duplicated"
        elif ok:
            outcome = "delivered"
        elif item["attempt"] >= self._attempts():
            outcome = self._gave_up
        else:
            self._record(item, "failed", http_status)
            with self._cv:
                self._push(monotonic() + self._backoff(item["attempt"]), item)
                self._cv.notify_all()
            return
        self._record(item, outcome, http_status)

    def _record(self, item: dict, outcome: str, http_status: int | None) -> None:
        self._log.append(self._entry(item, outcome, http_status))
