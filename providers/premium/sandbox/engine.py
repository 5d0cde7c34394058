"""The fake exchanger's state and its admin side: bids, status changes and their callbacks, the
autopilot, partner data, the fault knobs."""
from __future__ import annotations

import bisect
import itertools
import random
import threading
import time
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any, Iterable, Mapping

import requests

from providers.premium.sandbox.catalogue import (
    ALL_METHODS,
    DEFAULT_LOGIN,
    _catalogue,
    _dec,
    _is_status,
)
from providers.sandbox import CallbackSender, Engine, SandboxKnobs, draw_faults


class Knobs(SandboxKnobs):
    """Fault knobs, changeable at run time as attributes or dict items (``knobs.latency = 0.2``)."""

    FIELDS = {
        "latency": 0.0, "error_rate": 0.0, "maintenance": False,
        "callback_drop_rate": 0.0, "callback_duplicate_rate": 0.0, "callback_reorder_rate": 0.0,
        "callback_delay": 0.0, "partner_program": True,
    }

    def _coerce(self, name: str, value: Any) -> Any:
        if name == "maintenance":
            if value in (None, False, 0, "", "0", "false", "off"):
                return False
            if value in (True, 1, "1", "true", "on", "method"):
                return True
            if value == "api":
                return "api"
            raise ValueError("maintenance must be False, True/'method' or 'api'")
        if name == "partner_program":
            return bool(value)
        return super()._coerce(name, value)


class _Bid:
    __slots__ = ("id", "login", "api_id", "hash", "direction_id", "amount_give", "amount_get", "course_give",
                 "course_get", "status", "created_at", "edit_at", "history", "callback_url", "fields",
                 "user_ip", "user_hash", "partner_id", "hash_from", "hash_to")  # 100,000 bids: no __dict__ each
    id: int
    login: str | None
    api_id: str | None
    hash: str
    direction_id: int
    amount_give: Decimal
    amount_get: Decimal
    course_give: Decimal
    course_get: Decimal
    status: str
    created_at: float
    edit_at: float
    history: list[tuple[float, str]]
    callback_url: str | None
    fields: dict
    user_ip: str
    user_hash: str
    partner_id: int
    hash_from: str
    hash_to: str


@dataclass
class _User:
    login: str
    key: str
    user_id: int
    partner_id: int


# --------------------------------------------------------------------------------------------------
# Callbacks, engine
# --------------------------------------------------------------------------------------------------

def _post_callback(item: dict) -> int:
    # Exactly what the engine sends: two form fields, no signature, one attempt, answer ignored.
    return requests.post(item["url"], data={"bid_id": str(item["bid_id"]), "status": item["status"]},
                         timeout=20, verify=False, allow_redirects=False).status_code


def _callback_entry(item: dict, outcome: str, http_status: int | None) -> dict:
    return {"bid_id": item["bid_id"], "status": item["status"], "url": item["url"], "outcome": outcome,
            "http_status": http_status, "reordered": item["reordered"], "at": time.time()}


_DEFAULT_PATHS = (
    (("new", "payed", "realpay", "success"), 5),
    (("new", "cancel"), 2),
    (("new", "techpay", "payed", "coldpay", "realpay", "success"), 2),
    (("new", "payed", "realpay", "error"), 1),
    (("new", "payed", "my1", "realpay", "success"), 1),
)


class SandboxEngine(Engine):
    """The exchanger's state and its admin side. Thread-safe: one lock guards everything."""

    _sender: CallbackSender  # always set: this sandbox sends callbacks

    def __init__(self, users: Iterable[tuple[str, str]], *, flavour: str = "generic", seed: int | None = None,
                 knobs: Knobs | None = None, ip_allowlist: Iterable[str] | None = None,
                 methods: Iterable[str] | None = None, action_delay: float | None = None) -> None:
        if flavour not in ("generic", "alwaysmoney"):
            raise ValueError("flavour must be 'generic' or 'alwaysmoney'")
        base = seed if seed is not None else random.randrange(1 << 30)
        super().__init__(knobs or Knobs(), random.Random(base + 1))  # error_rate draws
        self.flavour = flavour
        self.ip_allowlist = set(ip_allowlist) if ip_allowlist else None
        self.methods = set(methods) if methods is not None else set(ALL_METHODS)
        self.action_delay = action_delay  # accepted for API compatibility; actions apply at once
        self.seed = seed
        self.rng = random.Random(base)              # ids, hashes, bulk data
        self.cb_rng = random.Random(base + 2)       # callback faults
        self.ap_rng = random.Random(base + 3)       # autopilot
        self.users: dict[str, _User] = {}
        for i, (login, key) in enumerate(users):
            self.users[login] = _User(login, key, user_id=i + 1, partner_id=i + 1)
        self.currencies, self.directions = _catalogue()
        self._bids: dict[int, _Bid] = {}             # insertion order == id order
        self._by_hash: dict[str, int] = {}
        self._by_login: dict[str | None, list[int]] = {}  # ids ascending, per login: the get_exchanges index
        self._api_ids: dict[tuple[str | None, str], int] = {}
        self._next_id = 1
        self._sender = CallbackSender(self.callback_log, post=_post_callback, entry=_callback_entry,
                                      name="premium-sandbox-callbacks")
        self._fault_flip = False
        self._ap_thread: threading.Thread | None = None
        self._ap_stop = threading.Event()
        self._ap_track: dict[int, tuple[tuple[str, ...], int]] = {}
        self._init_partner_data()

    # ---- bids --------------------------------------------------------------------------------

    def _hex(self, nbits: int = 128) -> str:
        return format(self.rng.getrandbits(nbits), f"0{nbits // 4}x")

    def _new_bid(self, *, direction_id: int, amount_give: Decimal, status: str, login: str | None,
                 api_id: str | None, callback_url: str | None, fields: dict | None, created_at: float,
                 user_ip: str = "127.0.0.1", partner_id: int = 0, amount_get: Decimal | None = None) -> _Bid:
        d = self.directions[direction_id]
        b = _Bid()
        b.id = self._next_id
        self._next_id += 1
        b.login = login
        b.api_id = api_id
        b.hash = self._hex()
        b.direction_id = direction_id
        b.amount_give = amount_give
        if amount_get is None:
            dec = self.currencies[d.get].decimals
            amount_get = (amount_give * d.course_get / d.course_give * (1 - d.com_get_pct / 100)).quantize(
                Decimal(1).scaleb(-dec), ROUND_DOWN)
        b.amount_get = amount_get
        b.course_give, b.course_get = d.course_give, d.course_get
        b.status = status
        b.created_at = b.edit_at = created_at
        b.history = [(created_at, status)]
        b.callback_url = callback_url
        b.fields = dict(fields or {})
        b.user_ip = user_ip
        b.user_hash = self._hex()
        b.partner_id = partner_id
        b.hash_from = b.hash_to = ""
        self._insert(b)
        return b

    def _insert(self, b: _Bid) -> None:
        self._bids[b.id] = b
        self._by_hash[b.hash] = b.id
        self._by_login.setdefault(b.login, []).append(b.id)  # ids only grow: the list stays sorted
        if b.api_id:
            self._api_ids[(b.login, b.api_id)] = b.id

    def add_bid(self, *, direction_id: int = 1, amount: Decimal | str | int = Decimal("100"), status: str = "new",
                api_login: str | None = DEFAULT_LOGIN, api_id: str | None = None, callback_url: str | None = None,
                fields: dict | None = None, created_at: float | None = None) -> int:
        """A bid made outside the API (on the site, or for test setup). ``api_login=None``: seen by no key."""
        if direction_id not in self.directions:
            raise ValueError(f"unknown direction {direction_id}")
        if not _is_status(status):
            raise ValueError(f"invalid status {status!r}")
        amt = _dec(amount)
        if amt is None:
            raise ValueError(f"invalid amount {amount!r}")
        with self.lock:
            if api_id:
                api_id = str(api_id)[:100]
                if (api_login, api_id) in self._api_ids:
                    raise ValueError("api id not unique")
            b = self._new_bid(direction_id=direction_id, amount_give=amt, status=status, login=api_login,
                              api_id=api_id or None, callback_url=callback_url, fields=fields,
                              created_at=time.time() if created_at is None else float(created_at))
            return b.id

    def bulk_add(self, n: int, *, api_login: str | None = DEFAULT_LOGIN, start_time: float | None = None,
                 spread_seconds: float = 3600, statuses: Iterable[str] | None = None) -> list[int]:
        """``n`` bids at once (100,000 in a second or two): edit times uniform over
        ``[start_time, start_time + spread_seconds]`` (default: the window ending now), statuses drawn from
        ``statuses`` with the seeded RNG."""
        statuses = list(statuses or ("new", "new", "payed", "realpay", "success", "success", "cancel", "error"))
        for s in statuses:
            if not _is_status(s):
                raise ValueError(f"invalid status {s!r}")
        if start_time is None:
            start_time = time.time() - spread_seconds
        rng = self.rng
        # A small pool of amounts per direction: Decimal work once, not per bid.
        pool = []
        for d in self.directions.values():
            lo = d.min_give or Decimal("1")
            for k in range(1, 17):
                give = (lo * k).quantize(Decimal(1).scaleb(-self.currencies[d.give].decimals))
                dec = self.currencies[d.get].decimals
                get = (give * d.course_get / d.course_give * (1 - d.com_get_pct / 100)).quantize(
                    Decimal(1).scaleb(-dec), ROUND_DOWN)
                pool.append((d.id, give, get, d.course_give, d.course_get))
        ids = []
        with self.lock:
            for _ in range(n):
                b = _Bid()
                b.id = self._next_id
                self._next_id += 1
                b.login = api_login
                b.api_id = None
                b.hash = format(rng.getrandbits(128), "032x")
                b.direction_id, b.amount_give, b.amount_get, b.course_give, b.course_get = rng.choice(pool)
                st = rng.choice(statuses)
                t = start_time + rng.random() * spread_seconds
                b.status = st
                b.edit_at = t
                if st == "new":  # never changed since creation
                    b.created_at = t
                    b.history = [(t, "new")]
                else:            # created up to 5 minutes before its last change
                    b.created_at = t0 = t - rng.random() * 300
                    b.history = [(t0, "new"), (t, st)]
                b.callback_url = None
                b.fields = {}
                b.user_ip = "127.0.0.1"
                b.user_hash = format(rng.getrandbits(128), "032x")
                b.partner_id = 0
                b.hash_from = b.hash_to = ""
                self._insert(b)
                ids.append(b.id)
        return ids

    def _change(self, b: _Bid, new: str, at: float | None = None) -> bool:
        """Every status change goes through here (lock held): edit time, history, txids, callback."""
        old = b.status
        if old == new:
            return False
        t = time.time() if at is None else float(at)
        b.status = new
        b.edit_at = t
        b.history.append((t, new))
        d = self.directions[b.direction_id]
        if new in ("coldpay", "realpay") and not b.hash_from and not self.currencies[d.give].fiat:
            b.hash_from = self._hex(256)  # merchant txid (AlwaysMoney shows it)
        if new == "success" and not b.hash_to and not self.currencies[d.get].fiat:
            b.hash_to = self._hex(256)    # payout txid
        if b.callback_url:
            self._sender.enqueue({"bid_id": b.id, "status": new, "url": b.callback_url},
                                 delay=self.knobs.callback_delay,
                                 **draw_faults(self.cb_rng, self.knobs, "drop", "duplicate", "reorder"))
        return True

    def set_status(self, bid_id: int, status: str, *, at: float | None = None) -> None:
        """The admin sets any status by hand (custom ``my<N>`` too, terminal ones may be left)."""
        if not _is_status(status):
            raise ValueError(f"invalid status {status!r}")
        with self.lock:
            b = self._bids.get(int(bid_id))
            if b is None:
                raise KeyError(bid_id)
            self._change(b, status, at)

    def advance(self, bid_id: int, path: Iterable[str]) -> None:
        """Scripted changes: each status of ``path`` in order (a callback for each real change)."""
        with self.lock:
            for s in path:
                self.set_status(bid_id, s)

    def archive(self, bid_id: int) -> None:
        """The engine archives old bids by deleting them: afterwards the API no longer knows the bid."""
        with self.lock:
            b = self._bids.pop(int(bid_id), None)
            if b is None:
                raise KeyError(bid_id)
            self._by_hash.pop(b.hash, None)
            ids = self._by_login.get(b.login, [])
            i = bisect.bisect_left(ids, b.id)
            if i < len(ids) and ids[i] == b.id:
                del ids[i]
            if b.api_id:
                self._api_ids.pop((b.login, b.api_id), None)
            self._ap_track.pop(b.id, None)

    def disable_direction(self, direction_id: int) -> None:
        with self.lock:
            self.directions[int(direction_id)].enabled = False

    def enable_direction(self, direction_id: int) -> None:
        with self.lock:
            self.directions[int(direction_id)].enabled = True

    def truth(self, api_login: str | None = None) -> dict[int, str]:
        """id -> current status of every bid the engine still holds (optionally one login's)."""
        with self.lock:
            if api_login is None:
                return {i: b.status for i, b in self._bids.items()}
            return {i: self._bids[i].status for i in self._by_login.get(api_login, [])}

    def bid(self, bid_id: int) -> dict:
        """The full record of a bid (``KeyError`` once archived)."""
        with self.lock:
            b = self._bids[int(bid_id)]
            return {
                "id": b.id, "api_login": b.login, "api_id": b.api_id, "hash": b.hash,
                "direction_id": b.direction_id, "amount_give": b.amount_give, "amount_get": b.amount_get,
                "course_give": b.course_give, "course_get": b.course_get, "status": b.status,
                "created_at": b.created_at, "edit_at": b.edit_at, "history": list(b.history),
                "callback_url": b.callback_url, "fields": dict(b.fields), "user_ip": b.user_ip,
                "user_hash": b.user_hash, "partner_id": b.partner_id, "hash_from": b.hash_from,
                "hash_to": b.hash_to,
            }

    def state(self, query: Mapping[str, str] | None = None) -> dict:
        """``GET /_sandbox/state[?api_login=]``: the truth (of one login), knobs, counters."""
        login = (query or {}).get("api_login") or None
        return {"truth": {str(i): s for i, s in self.truth(login).items()},
                "knobs": self.knobs.as_dict(), "requests_served": dict(self.requests_served),
                "callbacks": {"pending": self.callbacks_pending, "log": len(self.callback_log)},
                "flavour": self.flavour, "directions": {str(i): d.enabled for i, d in self.directions.items()}}

    # ---- autopilot ---------------------------------------------------------------------------

    def start_autopilot(self, interval: float = 1.0, paths: Iterable | None = None,
                        step_probability: float = 0.5, window: int = 2000) -> None:
        """Move live bids along realistic paths in a background thread (for the demo).

        ``paths``: sequences of statuses starting with the status they pick a bid up from, or
        ``(path, weight)`` pairs. Each tick looks at the ``window`` newest bids and moves each tracked one
        a step with ``step_probability``. A bid changed by someone else is let go.
        """
        self.stop_autopilot()
        norm = []
        for p in paths or _DEFAULT_PATHS:
            if len(p) == 2 and not isinstance(p[0], str):
                norm.append((tuple(p[0]), float(p[1])))
            else:
                norm.append((tuple(p), 1.0))
        self._ap_stop = threading.Event()
        stop = self._ap_stop

        def loop() -> None:
            while not stop.wait(interval):
                self._autopilot_tick(norm, step_probability, window)

        self._ap_thread = threading.Thread(target=loop, name="premium-sandbox-autopilot", daemon=True)
        self._ap_thread.start()

    def _autopilot_tick(self, paths: list, step_probability: float, window: int) -> None:
        rng = self.ap_rng
        with self.lock:
            for bid_id in list(itertools.islice(reversed(self._bids), window)):
                b = self._bids[bid_id]
                tracked = self._ap_track.get(bid_id)
                if tracked is None:
                    options = [(p, w) for p, w in paths if p[0] == b.status]
                    if not options:
                        continue
                    tracked = (rng.choices([p for p, _ in options], [w for _, w in options])[0], 0)
                path, idx = tracked
                if path[idx] != b.status:  # someone else moved it
                    self._ap_track.pop(bid_id, None)
                    continue
                if rng.random() < step_probability:
                    idx += 1
                    self._change(b, path[idx])
                if idx >= len(path) - 1:
                    self._ap_track.pop(bid_id, None)
                else:
                    self._ap_track[bid_id] = (path, idx)

    def stop_autopilot(self) -> None:
        self._ap_stop.set()
        if self._ap_thread is not None:
            self._ap_thread.join(timeout=5)
            self._ap_thread = None

    def close(self) -> None:
        """Stop the background threads (autopilot, callback sender)."""
        self.stop_autopilot()
        super().close()

    # ---- partner data ------------------------------------------------------------------------

    def _init_partner_data(self) -> None:
        now = time.time()
        self.partner_min_payout = Decimal("10")
        # Payout methods: (title, currency code, rate from USD, commission %)
        self.payout_methods = {
            1: ("Tether TRC20 USDT", "USDT", Decimal("1"), Decimal("1")),
            2: ("Visa/MasterCard RUB", "RUB", Decimal("92.15"), Decimal("2")),
        }
        self.partner_balance: dict[int, Decimal] = {u.partner_id: Decimal("152.35") for u in self.users.values()}
        self.payouts: list[dict] = []
        self.links: list[dict] = []
        self._payout_ids = itertools.count(1)
        for u in self.users.values():
            for status, age in ((1, 30), (2, 20), (3, 10), (1, 3)):
                amt = Decimal("25") + age
                self.payouts.append({"id": next(self._payout_ids), "partner_id": u.partner_id,
                                     "time": now - age * 86400, "method_id": 1, "account": "TXsandboxPartner1",
                                     "pay_amount": amt - amt / 100, "pay_currency_code": "USDT",
                                     "original_amount": amt, "original_currency_code": "USD", "status": status})
            for i in range(20):
                self.links.append({"partner_id": u.partner_id, "time": now - (20 - i) * 3600,
                                   "browser": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                                   "ip": f"203.0.113.{10 + i}", "referrer": f"https://blog.example/post-{i}",
                                   "user_hash": format(self.rng.getrandbits(128), "032x"),
                                   "query_string": f"rid={u.partner_id}&utm_source=post{i}"})
