"""Short leases, renewed by one heartbeat per process while the work runs.

A claimed row (a payout being sent or completed, a bid being polled) carries two things:

* a **token**, unique to the claim: the fencing token. Every write of the claimed work checks it, and it
  only changes hands when the claim is taken back, so a worker that lost its claim changes nothing.
* an **expiry** a few seconds ahead (``payouts.lease_until``, ``bid_polls.next_poll_at``), pushed
  forward by the heartbeat while the claim is held. It is never the fencing token: it moves.

One daemon thread per process and database renews the expiry of everything the process holds, one
UPDATE per kind of claim per beat (never one per row), every third of the lease, and stops when nothing is
held. A process that dies stops renewing: its claims run out within one lease and are taken back (the
payout reaper; a poll claim is simply due again).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable

from sqlalchemy import text

from core import clock

log = logging.getLogger("exsync.leases")


def new_token() -> str:
    """A fresh claim token; it names its holder so an operator can see who holds a row."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Kind:
    """One kind of claim. ``renew`` takes ``:ids``, ``:tokens`` and ``:until`` and returns the renewed ids;
    it must never shorten an expiry (``greatest(…)``) and must match the token, so that a claim that was
    taken back is left alone."""

    name: str
    renew: str
    ttl: float  # seconds a claim lives without renewal


class Lease:
    """The claims of one batch (one token) held by this process; see :meth:`Heartbeat.hold`."""

    def __init__(self, beat: "Heartbeat", kind: Kind, token: str) -> None:
        self._beat, self.kind, self.token = beat, kind, token

    def done(self, row_id: int) -> None:
        """This row's work is finished (its token already cleared): stop renewing it."""
        self._beat._release(self.kind, self.token, [row_id])

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._beat._release(self.kind, self.token, None)


class Heartbeat:
    """Renews every claim this process holds in one database (see the module doc)."""

    def __init__(self, db) -> None:
        self._db = db
        self._cond = threading.Condition()
        self._held: dict[Kind, dict[str, set[int]]] = {}
        self._thread: threading.Thread | None = None
        self.beats = 0  # renewal rounds run (tests, logs)

    def hold(self, kind: Kind, token: str, ids: Iterable[int]) -> Lease:
        """Keep renewing ``ids`` (claimed under ``token``) until released; use as a context manager."""
        ids = set(ids)
        with self._cond:
            if ids:
                self._held.setdefault(kind, {}).setdefault(token, set()).update(ids)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
                    self._thread.start()
        return Lease(self, kind, token)

    def held(self) -> dict[str, int]:
        with self._cond:
            return {k.name: sum(len(v) for v in by_token.values()) for k, by_token in self._held.items()}

    def _release(self, kind: Kind, token: str, ids: Iterable[int] | None) -> None:
        with self._cond:
            by_token = self._held.get(kind, {})
            if ids is None:
                by_token.pop(token, None)
            elif token in by_token:
                by_token[token].difference_update(ids)
                if not by_token[token]:
                    del by_token[token]
            if not by_token:
                self._held.pop(kind, None)
            if not self._held:
                self._cond.notify_all()  # the thread ends now rather than at its next beat

    def beat(self) -> int:
        """Renew everything held now (one UPDATE per kind); returns the rows renewed."""
        with self._cond:
            snapshot = {k: {t: set(ids) for t, ids in by_token.items()} for k, by_token in self._held.items()}
        renewed = 0
        now = clock.now_utc()
        for kind, by_token in snapshot.items():
            ids = sorted(set().union(*by_token.values()))
            try:
                with self._db.session() as s:
                    got = set(s.execute(text(kind.renew), {
                        "ids": ids, "tokens": sorted(by_token),
                        "until": now + timedelta(seconds=kind.ttl)}).scalars().all())
            except Exception as exc:  # the next beat tries again; the lease has slack for two
                log.warning("lease heartbeat (%s, %s rows) failed: %s", kind.name, len(ids), exc)
                continue
            renewed += len(got)
            lost = set(ids) - got
            if lost:  # finished a moment ago, or taken back: either way, not ours to renew any more
                with self._cond:
                    for token in by_token:
                        if token in self._held.get(kind, {}):
                            self._held[kind][token].difference_update(lost)
                log.debug("lease heartbeat (%s): %s rows no longer held: %s", kind.name, len(lost), sorted(lost))
        self.beats += 1
        return renewed

    def _run(self) -> None:
        next_at = None
        while True:
            with self._cond:
                if next_at is None and self._held:
                    next_at = time.monotonic() + min(k.ttl for k in self._held) / 3
                while self._held and next_at is not None and time.monotonic() < next_at:
                    self._cond.wait(next_at - time.monotonic())
                if not self._held:
                    self._thread = None
                    return
            self.beat()
            next_at = None


_beats: "weakref.WeakKeyDictionary[Any, tuple[int, Heartbeat]]" = weakref.WeakKeyDictionary()
_beats_lock = threading.Lock()


def heartbeat(db) -> Heartbeat:
    """This process's heartbeat for ``db`` (a forked child gets its own: threads do not survive a fork)."""
    with _beats_lock:
        got = _beats.get(db)
        if got is None or got[0] != os.getpid():
            got = (os.getpid(), Heartbeat(db))
            _beats[db] = got
        return got[1]


def hold(db, kind: Kind, token: str, ids: Iterable[int]) -> Lease:
    return heartbeat(db).hold(kind, token, ids)
