"""A faithful fake of the Premium Exchanger user API v1 ("premiumbox" engine), for tests, benchmarks
and ``exsync demo``.

It behaves like the real engine as described in ``shared/reference/premium-exchanger.md`` (the engine's
code wins over its manual), so any client can talk to it as to a real exchanger site::

    app = create_app()                       # accepts DEFAULT_LOGIN / DEFAULT_KEY
    srv = serve(app, port=0)                 # threaded werkzeug server in a daemon thread
    requests.post(srv.url + "/api/userapi/v1/test",
                  headers={"API-LOGIN": DEFAULT_LOGIN, "API-KEY": DEFAULT_KEY})
    app.engine.set_status(bid_id, "payed")   # the admin side: drive bids, inject faults
    srv.shutdown(); app.engine.close()

Credentials: ``DEFAULT_LOGIN`` / ``DEFAULT_KEY`` below (32 letters/digits each, like the engine's).
Nothing here is secret: the sandbox is for LOCAL USE ONLY. Its control API under ``/_sandbox/`` needs no
key at all — never expose a sandbox port to a network.

Choices where the reference leaves room (documented so clients know what they are tested against):

* Transport: only ``POST`` form bodies are read (urlencoded or multipart); a JSON body and the query
  string are ignored. A ``GET`` passes the login/IP checks and then answers
  ``{"error": 3, "error_text": "Method not supported"}`` (HTTP 200).
* Pre-method errors (``Api disabled`` / ``IP blocked`` / ``Method not supported``) carry only
  ``error`` and ``error_text`` (int codes), no ``data`` — exactly the shape in the reference.
  Check order: API off -> login/key -> IP allow-list (socket peer, no X-Forwarded-For) -> method.
* ``maintenance`` knob: ``False`` = normal; ``True`` or ``"method"`` = the site is in maintenance and
  every method answers its own maintenance failure from the reference table (``1``/"maintenance" for
  test, get_direction_currencies, get_directions; ``"1"``/"maintenance" for get_direction and get_calc;
  ``"2"``/"maintenance" for create_bid, bid_info, cancel_bid, pay_bid, success_bid); get_exchanges and
  the partner methods have no maintenance answer and keep working. ``"api"`` = the API module is off:
  every request gets the pre-method ``{"error": 1, "error_text": "Api disabled"}``.
* ``error_rate``: that share of API requests (after the pre-method checks) fails transiently,
  alternating between HTTP 502 with an nginx HTML page and the method's maintenance envelope (methods
  without one always get the 502).
* Empty lists come back as the engine's empty result ``{"error": "0", "error_text": "", "data": []}``
  (get_exchanges and the partner lists when nothing matches, get_directions when filtered to nothing).
* create_bid with an ``api_id`` the login already used: ``"3"`` / "api id not unique", ``error_fields``
  ``[]``. Field errors: ``"3"`` with ``error_fields`` such as ``{"account2": "field is required",
  "sum1": "amount is less than minimum"}`` (``sum1`` = give side, ``sum2`` = get side / reserve).
* Creating a bid does not fire its callback (the callback_url is stored with the bid in status
  ``new``); every later change with old != new does.
* get_exchanges lists the caller's bids ORDER BY id DESC; ``start_time``/``end_time`` are inclusive and
  compare with the bid's last-change time in whole unix seconds; ``limit`` defaults to 100, is capped
  at 500 (<= 0 means the default); ``offset`` skips matching rows.
* Dates are ``dd.mm.YYYY HH:MM`` in UTC. ``API-LANG`` ``ru_RU`` gives Russian status titles, anything
  else English (the default locale is ``en_US``); error texts are always the engine's English ones.
* Direction 4 (BTC -> ZC RUB) is paid through a merchant: its ``api_actions`` are
  ``type "address"`` with ``pay "disabled"``, so pay_bid answers ``"2"`` / "action disabled" there.
* ``action_delay`` is accepted and ignored (actions take effect at once).
* Times come from ``time.time()`` (freezegun-friendly); callback scheduling uses the real monotonic
  clock captured at import, so frozen time does not stall the sender.

Callbacks go out from one background thread (API answers are never delayed by them), in change order
unless the reorder knob holds one back until the next callback (or 0.15 s of quiet). Every attempt is
recorded in ``engine.callback_log`` as ``{bid_id, status, url, outcome, http_status, reordered, at}``
with ``outcome`` one of ``delivered`` (2xx), ``failed`` (other status or no connection), ``dropped``
(never sent) or ``duplicated`` (the second copy of a duplicated callback).

Control API (JSON, no auth): ``GET /_sandbox/state[?api_login=]`` (truth, knobs, counters),
``POST /_sandbox/knobs``, ``POST /_sandbox/bids`` (add_bid arguments -> ``{"id"}``),
``POST /_sandbox/bids/bulk`` (``{"n", ...}``), ``GET /_sandbox/bids/<id>``,
``POST /_sandbox/bids/<id>/status`` (``{"status", "at"?}``), ``POST /_sandbox/bids/<id>/advance``
(``{"path": [...]}``), ``POST /_sandbox/bids/<id>/archive``, ``POST /_sandbox/directions/<id>/disable``
(or ``enable``), ``POST /_sandbox/autopilot`` (``{"on", "interval"}``), ``GET /_sandbox/callbacks?last=N``.
Unknown bid: 404; invalid status or knob: 400.

Speed: bulk_add(100_000) takes well under a second; a get_exchanges page of 500 out of 100,000 bids
about 10 ms. The API path bypasses Flask routing; one sandbox process serves roughly 1,000-1,500
requests/s (the werkzeug server is the limit); run several sandboxes for more.
"""
from __future__ import annotations

import bisect
import itertools
import random
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

import requests
from flask import Flask, Response
from werkzeug.wrappers import Request

from providers.sandbox import CallbackSender, Engine, SandboxKnobs, SandboxServer, draw_faults, serve
from providers.sandbox.web import bad_gateway, control_body, json_response, sandbox_app, serve_api_first

__all__ = ["create_app", "serve", "SandboxEngine", "SandboxServer", "Knobs", "DEFAULT_LOGIN", "DEFAULT_KEY",
           "API_PATH", "ALL_METHODS", "STATUSES"]

DEFAULT_LOGIN = "exsyncSandboxLogin00000000000001"  # 32 letters/digits, like the engine issues
DEFAULT_KEY = "exsyncSandboxKey0000000000000001"
API_PATH = "/api/userapi/v1/"

ALL_METHODS = (
    "test", "get_direction_currencies", "get_directions", "get_direction", "get_calc", "get_exchanges",
    "create_bid", "cancel_bid", "pay_bid", "success_bid", "bid_info", "get_partner_info",
    "get_partner_links", "get_partner_exchanges", "get_partner_payouts", "add_partner_payout",
)
# Methods whose "error" is an int; every other method answers with strings ("0", "1", ...).
_INT_ERROR_METHODS = frozenset({"test", "get_direction_currencies", "get_directions"})
# Methods whose envelope always carries error_fields.
_FIELDS_METHODS = frozenset({"create_bid", "bid_info"})
# The maintenance answer of each method (code, text); methods not listed have none.
_MAINTENANCE = {
    "test": (1, "maintenance"), "get_direction_currencies": (1, "maintenance"),
    "get_directions": (1, "maintenance"), "get_direction": ("1", "maintenance"),
    "get_calc": ("1", "maintenance"), "create_bid": ("2", "maintenance"), "bid_info": ("2", "maintenance"),
    "cancel_bid": ("2", "maintenance"), "pay_bid": ("2", "maintenance"), "success_bid": ("2", "maintenance"),
}

# (status, English title, Russian title), in the engine's order.
_STATUS_TABLE = (
    ("coldnew", "Pending verification", "Ожидает проверки"),
    ("new", "New bid", "Новая заявка"),
    ("cancel", "Cancelled by user", "Отменена пользователем"),
    ("delete", "Deleted", "Удалена"),
    ("techpay", "Going to payment", "Переход к оплате"),
    ("payed", "Marked as paid by user", "Отмечена как оплаченная"),
    ("coldpay", "Waiting for merchant confirmation", "Ожидает подтверждения мерчанта"),
    ("partpay", "Partly paid", "Частично оплачена"),
    ("realpay", "Paid", "Оплачена"),
    ("verify", "Being verified", "На проверке"),
    ("amlwait", "AML check", "Проверка AML"),
    ("amlerror", "AML check failed", "Ошибка AML"),
    ("merchwait", "Waiting for merchant", "Ожидание мерчанта"),
    ("mercherror", "Merchant error", "Ошибка мерчанта"),
    ("error", "Error", "Ошибка"),
    ("payouterror", "Automatic payout error", "Ошибка автовыплаты"),
    ("scrpayerror", "Payout error at the payment system", "Ошибка выплаты в платёжной системе"),
    ("coldsuccess", "Waiting for payout confirmation", "Ожидает подтверждения выплаты"),
    ("partpayout", "Partly paid out", "Частично выплачена"),
    ("success", "Completed", "Выполнена"),
)
STATUSES = tuple(s for s, _, _ in _STATUS_TABLE)
_TITLES = {s: (en, ru) for s, en, ru in _STATUS_TABLE}
_CUSTOM_RE = re.compile(r"^my[0-9]{1,6}$")
_CANCEL_FROM = frozenset({"new", "techpay", "coldnew", "amlwait", "merchwait"})
_PAY_FROM = frozenset({"new", "techpay"})
_OPEN_ACTIONS = frozenset({"new", "techpay"})  # api_actions.type stays as set while in these
_LIVE = frozenset({"coldnew", "new", "techpay", "payed", "coldpay", "partpay", "realpay", "verify",
                   "amlwait", "amlerror", "merchwait", "mercherror", "coldsuccess", "partpayout"})

def _is_status(s: str) -> bool:
    return s in _TITLES or bool(_CUSTOM_RE.match(s or ""))


def _title(status: str, lang: str) -> str:
    ru = lang.startswith("ru")
    if status in _TITLES:
        return _TITLES[status][1 if ru else 0]
    n = status[2:]
    return f"Пользовательский статус {n}" if ru else f"Custom status {n}"


def _s(d: Decimal | int | None) -> str:
    """Decimal -> the engine's wire form: plain digits, no exponent, no trailing zeros."""
    if d is None:
        return "no"
    if isinstance(d, int):
        return str(d)
    return format(d.normalize(), "f")


def _date(t: float) -> str:
    return time.strftime("%d.%m.%Y %H:%M", time.gmtime(t))


def _dec(v: Any) -> Decimal | None:
    if v is None:
        return None
    try:
        d = Decimal(str(v).strip().replace(",", "."))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def _int(v: Any, default: int | None = None) -> int | None:
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------------------------------
# Catalogue: currencies and directions
# --------------------------------------------------------------------------------------------------

@dataclass
class _Currency:
    id: int
    title: str
    code: str
    psys: str
    xml_value: str
    fiat: int
    is_need_memo: int
    decimals: int
    reserve: Decimal
    logo: str


@dataclass
class _Direction:
    id: int
    give: int
    get: int
    course_give: Decimal
    course_get: Decimal
    com_give_pct: Decimal = Decimal(0)   # added to what the customer pays
    com_get_pct: Decimal = Decimal(0)    # taken from what the customer receives
    min_give: Decimal | None = None
    max_give: Decimal | None = None
    min_get: Decimal | None = None
    max_get: Decimal | None = None
    give_fields: Any = field(default_factory=list)
    get_fields: Any = field(default_factory=list)   # may be a dict: a trap the engine really has
    dir_fields: Any = field(default_factory=list)
    action_type: str = "default"
    cancel: str = "api"
    pay: str = "api"
    address: str | None = None
    enabled: bool = True


def _fld(name: str, label: str, req: int = 0, type_: str = "input", tooltip: str = "", cd: int = 0) -> dict:
    return {"name": name, "type": type_, "label": label, "req": str(req), "tooltip": tooltip,
            "options": [], "cd": str(cd)}


def _catalogue() -> tuple[dict[int, _Currency], dict[int, _Direction]]:
    D = Decimal
    cur = {
        1: _Currency(1, "Bitcoin BTC", "BTC", "Bitcoin", "BTC", 0, 0, 8, D("12.5"), "btc.png"),
        2: _Currency(2, "Tether TRC20 USDT", "USDT", "Tether TRC20", "USDTTRC20", 0, 0, 2, D("250000"), "usdt.png"),
        3: _Currency(3, "Visa/MasterCard RUB", "RUB", "Visa/MasterCard", "CARDRUB", 1, 0, 2, D("5000000"),
                     "card.png"),
        4: _Currency(4, "ZC RUB", "RUB", "ZaleyCash", "ZCRUB", 1, 0, 2, D("3000000"), "zc.png"),
    }
    acc2 = {
        1: _fld("account2", "USDT TRC20 address", 1, tooltip="Starts with T"),
        3: _fld("account2", "Card number", 1, tooltip="16-19 digits"),
        4: _fld("account2", "ZaleyCash account", 1),
    }
    dirs = {
        1: _Direction(1, 1, 2, D("1"), D("64250.5"), D("0"), D("0.5"), D("0.001"), D("5"), None, None,
                      give_fields=[_fld("account1", "Your BTC address")], get_fields=[acc2[1]],
                      dir_fields=[_fld("cf6", "E-mail"), _fld("cf11", "Telegram")]),
        2: _Direction(2, 2, 3, D("1"), D("92.15"), D("0"), D("1"), D("10"), D("10000"), None, None,
                      give_fields=[_fld("account1", "Your TRC20 address"),
                                   _fld("cfgive8", "Cardholder name")],
                      get_fields=[acc2[3]],
                      dir_fields=[_fld("cf1", "First name"), _fld("cf3", "Last name"), _fld("cf6", "E-mail")]),
        3: _Direction(3, 2, 4, D("1"), D("91.8"), D("0.5"), D("0"), D("5"), None, None, D("1000000"),
                      give_fields={"account1": _fld("account1", "Your TRC20 address")},
                      get_fields={"account2": acc2[4]},
                      dir_fields={"cf6": _fld("cf6", "E-mail")}),
        4: _Direction(4, 1, 4, D("1"), D("5900000"), D("0"), D("1.5"), D("0.0005"), D("2"), D("1000"), None,
                      get_fields=[acc2[4]], dir_fields=[_fld("cf6", "E-mail")],
                      action_type="address", pay="disabled",
                      address="bc1qsandbox0exsync0merchant0address0000xyz"),
    }
    return cur, dirs


# --------------------------------------------------------------------------------------------------
# Knobs, bids
# --------------------------------------------------------------------------------------------------

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
                 "user_ip", "user_hash", "partner_id", "hash_from", "hash_to")


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


# --------------------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------------------

class _Ctx:
    __slots__ = ("method", "form", "lang", "user", "ip", "root")


class _Api:
    """The user API v1 methods. Each returns ``(error_code, error_text, data, error_fields)``."""

    def __init__(self, engine: SandboxEngine) -> None:
        self.e = engine

    # ---- helpers -----------------------------------------------------------------------------

    def _calc(self, d: _Direction, amount: Decimal, action: int) -> dict:
        """The calculator: the four calc_action modes, rounded like an exchanger (pay up, receive down)."""
        cg, ct = d.course_give, d.course_get
        pg, pt = d.com_give_pct / 100, d.com_get_pct / 100
        qg = Decimal(1).scaleb(-self.e.currencies[d.give].decimals)
        qt = Decimal(1).scaleb(-self.e.currencies[d.get].decimals)
        if action == 2:
            get = amount
            give = get * cg / ct
        elif action == 3:
            give = amount / (1 + pg)
            get = give * ct / cg
        elif action == 4:
            get = amount / (1 - pt) if pt < 1 else amount
            give = get * cg / ct
        else:
            give = amount
            get = give * ct / cg
        return {"sum_give": give.quantize(qg, ROUND_UP), "sum_give_com": (give * (1 + pg)).quantize(qg, ROUND_UP),
                "sum_get": get.quantize(qt, ROUND_DOWN), "sum_get_com": (get * (1 - pt)).quantize(qt, ROUND_DOWN)}

    def _clamped_calc(self, d: _Direction, amount: Decimal, action: int) -> tuple[dict, bool]:
        r = self._calc(d, amount, action)
        changed = False
        if d.min_give is not None and r["sum_give"] < d.min_give:
            r, changed = self._calc(d, d.min_give, 1), True
        elif d.max_give is not None and r["sum_give"] > d.max_give:
            r, changed = self._calc(d, d.max_give, 1), True
        cap = min(x for x in (d.max_get, self.e.currencies[d.get].reserve) if x is not None)
        if d.min_get is not None and r["sum_get"] < d.min_get:
            r, changed = self._calc(d, d.min_get, 2), True
        elif r["sum_get"] > cap:
            r, changed = self._calc(d, cap, 2), True
        return r, changed

    def _dir(self, form) -> _Direction | None:
        d = self.e.directions.get(_int(form.get("direction_id"), -1))
        return d if d is not None and d.enabled else None

    @staticmethod
    def _com_text(pct: Decimal) -> str:
        return f"{_s(pct)}%" if pct else ""

    def _currency_item(self, c: _Currency, ctx: _Ctx) -> dict:
        item = {"id": str(c.id), "title": c.title, "logo": f"{ctx.root}/wp-content/uploads/{c.logo}"}
        if self.e.flavour == "alwaysmoney":
            item.update(xml_value=c.xml_value, fiat=str(c.fiat), is_need_memo=str(c.is_need_memo))
        return item

    def _limits(self, d: _Direction) -> dict:
        return {"min_give": _s(d.min_give), "max_give": _s(d.max_give), "min_get": _s(d.min_get),
                "max_get": _s(d.max_get)}

    def _find_bid(self, ctx: _Ctx) -> _Bid | None:
        """By id or hash; only the caller's own bids, and not when the direction is switched off."""
        e = self.e
        bid_id, h = ctx.form.get("id", "").strip(), ctx.form.get("hash", "").strip()
        b = None
        if bid_id:
            b = e._bids.get(_int(bid_id, -1))
            if b is not None and h and b.hash != h:
                b = None
        elif h:
            i = e._by_hash.get(h)
            b = e._bids.get(i) if i is not None else None
        if b is None or b.login != ctx.user.login or not e.directions[b.direction_id].enabled:
            return None
        return b

    def _bid_public(self, b: _Bid, ctx: _Ctx) -> dict:
        e = self.e
        d = e.directions[b.direction_id]
        cg, ct = e.currencies[d.give], e.currencies[d.get]
        actions: dict[str, Any] = {"type": d.action_type, "cancel": d.cancel, "pay": d.pay,
                                   "pay_amount": _s(b.amount_give)}
        if d.address:
            actions["address"] = d.address
            actions["dest_tag"] = ""
            actions["instruction"] = f"Send {_s(b.amount_give)} {cg.code} to {d.address}"
        else:
            actions["instruction"] = (f"Send {_s(b.amount_give)} {cg.code} and press the "
                                      f"\u00abI paid\u00bb button")
        if b.status not in _OPEN_ACTIONS:
            actions["type"] = "finished"
        out = {
            "url": f"{ctx.root}/hst_{b.hash}/", "id": str(b.id), "hash": b.hash, "status": b.status,
            "status_title": _title(b.status, ctx.lang), "psys_give": cg.psys, "psys_get": ct.psys,
            "currency_code_give": cg.code, "currency_code_get": ct.code,
            "amount_give": _s(b.amount_give), "amount_get": _s(b.amount_get), "api_actions": actions,
        }
        if e.flavour == "alwaysmoney":
            out["hash_from"] = b.hash_from
            out["hash_to"] = b.hash_to
            out["statuses"] = {s: _title(s, ctx.lang) for s in STATUSES}
        return out

    def _exchange_item(self, b: _Bid, history: bool, partner: bool = False) -> dict:
        e = self.e
        d = e.directions[b.direction_id]
        cg, ct = e.currencies[d.give], e.currencies[d.get]
        item = {"id": str(b.id)}
        if not partner:
            item["api_id"] = b.api_id or ""
        item.update({
            "time": str(int(b.edit_at)), "date": _date(b.edit_at), "psys_give": cg.psys, "psys_get": ct.psys,
            "currency_code_give": cg.code, "currency_code_get": ct.code, "course_give": _s(b.course_give),
            "course_get": _s(b.course_get), "amount_give": _s(b.amount_give), "amount_get": _s(b.amount_get),
            # The code: 1 only when the bid is done (the manual says the reverse).
            "exchange_success": "1" if b.status == "success" else "0",
        })
        if partner:
            item["accrued"] = "1" if b.status == "success" else "0"
            item["partner_reward"] = _s((b.amount_get * Decimal("0.003")).quantize(Decimal("0.01"), ROUND_DOWN))
        item.update({"user_hash": b.user_hash, "user_ip": b.user_ip, "status": b.status, "hash": b.hash})
        if partner:
            item.pop("hash")
        if history:
            item["statuses"] = [{"time": str(int(t)), "date": _date(t), "status": s} for t, s in b.history]
        return item

    @staticmethod
    def _limit(form, default: int = 100, cap: int = 500) -> int:
        n = _int(form.get("limit"), default)
        return default if n is None or n <= 0 else min(n, cap)

    @staticmethod
    def _time_range(form) -> tuple[int | None, int | None]:
        return _int(form.get("start_time") or None), _int(form.get("end_time") or None)

    # ---- methods -----------------------------------------------------------------------------

    def test(self, ctx: _Ctx):
        u = ctx.user
        return 0, "", {"ip": ctx.ip, "user_id": str(u.user_id), "locale": ctx.lang,
                       "partner_id": str(u.partner_id)}, None

    def get_direction_currencies(self, ctx: _Ctx):
        f = ctx.form
        fg, ft = _int(f.get("currency_id_give") or None), _int(f.get("currency_id_get") or None)
        give, get = {}, {}
        for d in self.e.directions.values():
            if not d.enabled:
                continue
            if ft is None or d.get == ft:
                give.setdefault(d.give, self.e.currencies[d.give])
            if fg is None or d.give == fg:
                get.setdefault(d.get, self.e.currencies[d.get])
        if not give and not get:
            return 0, "", [], None
        return 0, "", {"give": [self._currency_item(c, ctx) for _, c in sorted(give.items())],
                       "get": [self._currency_item(c, ctx) for _, c in sorted(get.items())]}, None

    def get_directions(self, ctx: _Ctx):
        f = ctx.form
        fg, ft = _int(f.get("currency_id_give") or None), _int(f.get("currency_id_get") or None)
        items = []
        for d in self.e.directions.values():
            if not d.enabled or (fg is not None and d.give != fg) or (ft is not None and d.get != ft):
                continue
            cg, ct = self.e.currencies[d.give], self.e.currencies[d.get]
            items.append({"direction_id": str(d.id), "currency_give_id": str(cg.id),
                          "currency_give_title": cg.title,
                          "currency_give_logo": f"{ctx.root}/wp-content/uploads/{cg.logo}",
                          "currency_get_id": str(ct.id), "currency_get_title": ct.title,
                          "currency_get_logo": f"{ctx.root}/wp-content/uploads/{ct.logo}"})
        return 0, "", items, None

    def get_direction(self, ctx: _Ctx):
        d = self._dir(ctx.form)
        if d is None:
            return "1", "direction not found", [], None
        cg, ct = self.e.currencies[d.give], self.e.currencies[d.get]
        calc, _ = self._clamped_calc(d, d.min_give or Decimal(1), 1)
        data = {"id": str(d.id), "url": f"{ctx.root}/exchange_{cg.xml_value.lower()}_to_{ct.xml_value.lower()}/",
                "currency_code_give": cg.code, "currency_code_get": ct.code, "reserve": _s(ct.reserve),
                "course_give": _s(d.course_give), "course_get": _s(d.course_get),
                **{k: _s(v) for k, v in calc.items()},
                "com_give": self._com_text(d.com_give_pct), "com_get": self._com_text(d.com_get_pct),
                **self._limits(d),
                "info": {"timeline_text": f"Exchange {cg.title} to {ct.title}: usually 5-30 minutes.",
                         "frozen_text": "The bid is on hold: contact support.",
                         "before_button_text": "By pressing the button you accept the rules."},
                "give_fields": d.give_fields, "get_fields": d.get_fields, "dir_fields": d.dir_fields}
        return "0", "", data, None

    def get_calc(self, ctx: _Ctx):
        f = ctx.form
        d = self._dir(f)
        if d is None:
            return "1", "direction not found", [], None
        amount = _dec(f.get("calc_amount")) or Decimal(0)
        action = _int(f.get("calc_action"), 1)
        calc, changed = self._clamped_calc(d, amount, action if action in (1, 2, 3, 4) else 1)
        cg, ct = self.e.currencies[d.give], self.e.currencies[d.get]
        data = {"currency_code_give": cg.code, "currency_code_get": ct.code, "reserve": _s(ct.reserve),
                "course_give": _s(d.course_give), "course_get": _s(d.course_get),
                **{k: _s(v) for k, v in calc.items()},
                "com_give": self._com_text(d.com_give_pct), "com_get": self._com_text(d.com_get_pct),
                **self._limits(d), "changed": "1" if changed else "0"}
        return "0", "", data, None

    def create_bid(self, ctx: _Ctx):
        e, f = self.e, ctx.form
        d = self._dir(f)
        if d is None:
            return "1", "direction not found", [], None
        api_id = (f.get("api_id") or "").strip()[:100] or None  # the engine cuts it to 100 chars
        if api_id and (ctx.user.login, api_id) in e._api_ids:
            return "3", "api id not unique", [], None
        errors: dict[str, str] = {}
        amount = _dec(f.get("calc_amount"))
        action = _int(f.get("calc_action"), 1)
        calc = None
        if amount is None or amount <= 0:
            errors["sum1"] = "amount is less than minimum"
        else:
            calc = self._calc(d, amount, action if action in (1, 2, 3, 4) else 1)
            if d.min_give is not None and calc["sum_give"] < d.min_give:
                errors["sum1"] = "amount is less than minimum"
            elif d.max_give is not None and calc["sum_give"] > d.max_give:
                errors["sum1"] = "amount is more than maximum"
            if d.min_get is not None and calc["sum_get"] < d.min_get:
                errors["sum2"] = "amount is less than minimum"
            elif d.max_get is not None and calc["sum_get"] > d.max_get:
                errors["sum2"] = "amount is more than maximum"
            elif calc["sum_get"] > e.currencies[d.get].reserve:
                errors["sum2"] = "not enough reserve"
        # Required form fields (account2 is required in every direction).
        for group in (d.give_fields, d.get_fields, d.dir_fields):
            for fd in (group.values() if isinstance(group, dict) else group):
                if fd["req"] == "1" and not (f.get(fd["name"]) or "").strip():
                    errors[fd["name"]] = "field is required"
        if not (f.get("account2") or "").strip():
            errors["account2"] = "field is required"
        if errors:
            return "3", "fields error", [], errors
        keep = {k: v for k, v in f.items()
                if k in ("account1", "account2", "cfgive8") or re.fullmatch(r"cf[1-9][0-9]?", k)}
        if e.flavour == "alwaysmoney" and f.get("cfgive3"):
            keep["cfgive3"] = f["cfgive3"]  # refund address: only that site has the field
        callback_url = (f.get("callback_url") or "").strip() or None
        b = e._new_bid(direction_id=d.id, amount_give=calc["sum_give_com"], amount_get=calc["sum_get_com"],
                       status="new", login=ctx.user.login, api_id=api_id, callback_url=callback_url,
                       fields=keep, created_at=time.time(), user_ip=ctx.ip,
                       partner_id=_int(f.get("partner_id"), 0) or 0)
        return "0", "", self._bid_public(b, ctx), None

    def bid_info(self, ctx: _Ctx):
        b = self._find_bid(ctx)
        if b is None:
            return "1", "no bid exists", [], None
        return "0", "", self._bid_public(b, ctx), None

    def cancel_bid(self, ctx: _Ctx):
        b = self._find_bid(ctx)
        if b is None:
            return "1", "no bid exists", [], None
        if self.e.directions[b.direction_id].cancel == "disabled":
            return "2", "action disabled", [], None
        if b.status == "cancel":
            return "0", "", "cancel", None
        if b.status not in _CANCEL_FROM:  # the engine answers "no bid exists" here too
            return "1", "no bid exists", [], None
        self.e._change(b, "cancel")
        return "0", "", "cancel", None

    def pay_bid(self, ctx: _Ctx):
        b = self._find_bid(ctx)
        if b is None:
            return "1", "no bid exists", [], None
        if self.e.directions[b.direction_id].pay == "disabled":
            return "2", "action disabled", [], None
        if b.status not in _PAY_FROM:
            return "1", "no bid exists", [], None
        self.e._change(b, "payed")
        return "0", "", "payed", None

    def success_bid(self, ctx: _Ctx):
        b = self._find_bid(ctx)
        if b is None or b.status == "success":
            return "1", "no bid exists", [], None
        self.e._change(b, "success")
        return "0", "", "success", None

    def get_exchanges(self, ctx: _Ctx):
        e, f = self.e, ctx.form
        start, end = self._time_range(f)
        ip = (f.get("ip") or "").strip() or None
        api_id = (f.get("api_id") or "").strip()[:100] or None
        history = (f.get("status_history") or "").strip() == "1"
        limit, offset = self._limit(f), max(0, _int(f.get("offset"), 0) or 0)
        login = ctx.user.login
        raw_ids = (f.get("id") or "").strip()
        if raw_ids:
            wanted = {_int(x) for x in raw_ids.split(",")} - {None}
            cands: Iterable[int] = sorted((i for i in wanted if i in e._bids and e._bids[i].login == login),
                                          reverse=True)
        elif api_id:
            i = e._api_ids.get((login, api_id))
            cands = [i] if i is not None else []
        else:
            ids = e._by_login.get(login, [])
            if start is None and end is None and ip is None:
                # No row filter: the page is a slice of the id index, no scan at all.
                hi = len(ids) - offset
                cands = reversed(ids[max(0, hi - limit):hi]) if hi > 0 else []
                offset = 0
            else:
                cands = reversed(ids)
        page, skipped = [], 0
        bids = e._bids
        for i in cands:
            b = bids[i]
            if api_id is not None and b.api_id != api_id:
                continue
            if start is not None or end is not None:
                t = int(b.edit_at)
                if (start is not None and t < start) or (end is not None and t > end):
                    continue
            if ip is not None and b.user_ip != ip:
                continue
            if skipped < offset:
                skipped += 1
                continue
            page.append(b)
            if len(page) >= limit:
                break
        if not page:
            return "0", "", [], None
        return "0", "", {"items": [self._exchange_item(b, history) for b in page]}, None

    # ---- partner methods ---------------------------------------------------------------------

    def _partner(self, ctx: _Ctx) -> tuple[Any, ...] | None:
        if not self.e.knobs.partner_program:
            return "1", "no active partner program", [], None
        if not ctx.user.partner_id:
            return "1", "no partner id", [], None
        return None

    def get_partner_info(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        pid = ctx.user.partner_id
        bal = self.e.partner_balance.get(pid, Decimal(0))
        items = [{"id": str(mid), "title": title, "commission": f"{_s(com)}%",
                  "amount": _s((bal * rate).quantize(Decimal("0.01"), ROUND_DOWN))}
                 for mid, (title, _code, rate, com) in self.e.payout_methods.items()]
        return "0", "", {"partner_id": str(pid), "balance": _s(bal), "min_payout": _s(self.e.partner_min_payout),
                         "items": items}, None

    def get_partner_links(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        f = ctx.form
        start, end = self._time_range(f)
        ip = (f.get("ip") or "").strip() or None
        items = []
        for ln in reversed(self.e.links):
            if ln["partner_id"] != ctx.user.partner_id or (ip and ln["ip"] != ip):
                continue
            if (start is not None and ln["time"] < start) or (end is not None and ln["time"] > end):
                continue
            items.append({"time": str(int(ln["time"])), "date": _date(ln["time"]), "browser": ln["browser"],
                          "ip": ln["ip"], "referrer": ln["referrer"], "user_hash": ln["user_hash"],
                          "query_string": ln["query_string"]})
            if len(items) >= self._limit(f):
                break
        return ("0", "", {"items": items}, None) if items else ("0", "", [], None)

    def get_partner_exchanges(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        f = ctx.form
        start, end = self._time_range(f)
        ip = (f.get("ip") or "").strip() or None
        raw_ids = (f.get("id") or "").strip()
        wanted = ({_int(x) for x in raw_ids.split(",")} - {None}) if raw_ids else None
        history = (f.get("status_history") or "").strip() == "1"
        limit, offset = self._limit(f), max(0, _int(f.get("offset"), 0) or 0)
        page, skipped = [], 0
        for b in reversed(self.e._bids.values()):
            if b.partner_id != ctx.user.partner_id or (wanted is not None and b.id not in wanted):
                continue
            if (ip and b.user_ip != ip) or (start is not None and int(b.edit_at) < start) or (
                    end is not None and int(b.edit_at) > end):
                continue
            if skipped < offset:
                skipped += 1
                continue
            page.append(self._exchange_item(b, history, partner=True))
            if len(page) >= limit:
                break
        return ("0", "", {"items": page}, None) if page else ("0", "", [], None)

    def get_partner_payouts(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        f = ctx.form
        start, end = self._time_range(f)
        want = _int(f.get("id") or None)
        items = []
        for p in reversed(self.e.payouts):
            if p["partner_id"] != ctx.user.partner_id or (want is not None and p["id"] != want):
                continue
            if (start is not None and p["time"] < start) or (end is not None and p["time"] > end):
                continue
            items.append({"id": str(p["id"]), "time": str(int(p["time"])), "date": _date(p["time"]),
                          "method_id": str(p["method_id"]), "account": p["account"],
                          "pay_amount": _s(p["pay_amount"]), "pay_currency_code": p["pay_currency_code"],
                          "original_amount": _s(p["original_amount"]),
                          "original_currency_code": p["original_currency_code"], "status": str(p["status"])})
            if len(items) >= self._limit(f):
                break
        return ("0", "", {"items": items}, None) if items else ("0", "", [], None)

    def add_partner_payout(self, ctx: _Ctx):
        if (err := self._partner(ctx)) is not None:
            return err
        e, f = self.e, ctx.form
        method = e.payout_methods.get(_int(f.get("method_id"), -1))
        if method is None:
            return "1", "payout method not found", [], None
        account = (f.get("account") or "").strip()
        if not account:
            return "1", "account is empty", [], None
        pid = ctx.user.partner_id
        bal = e.partner_balance.get(pid, Decimal(0))
        if bal < e.partner_min_payout:
            return "1", "balance is less than minimum payout", [], None
        _title_, code, rate, com = method
        pay = (bal * rate * (1 - com / 100)).quantize(Decimal("0.01"), ROUND_DOWN)
        payout = {"id": next(e._payout_ids), "partner_id": pid, "time": time.time(), "method_id": int(f["method_id"]),
                  "account": account[:250], "pay_amount": pay, "pay_currency_code": code, "original_amount": bal,
                  "original_currency_code": "USD", "status": 0}
        e.payouts.append(payout)
        e.partner_balance[pid] = Decimal(0)
        return "0", "", {"payout_id": str(payout["id"])}, None


# --------------------------------------------------------------------------------------------------
# WSGI app
# --------------------------------------------------------------------------------------------------

def _envelope(method: str, code: Any, text: str, data: Any, fields: dict | None) -> dict:
    if method in _INT_ERROR_METHODS:
        code = int(code)
    else:
        code = str(code)
    out = {"error": code, "error_text": text, "data": data}
    if method in _FIELDS_METHODS:
        out["error_fields"] = fields or []
    return out


def _lang(header: str | None) -> str:
    h = (header or "").strip().lower()
    return "ru_RU" if h.startswith("ru") else "en_US"


def create_app(api_login: str = DEFAULT_LOGIN, api_key: str = DEFAULT_KEY, *, flavour: str = "generic",
               latency: float = 0.0, error_rate: float = 0.0, maintenance: bool | str = False,
               callback_drop_rate: float = 0.0, callback_duplicate_rate: float = 0.0,
               callback_reorder_rate: float = 0.0, callback_delay: float = 0.0, seed: int | None = None,
               ip_allowlist: Iterable[str] | None = None, methods: Iterable[str] | None = None,
               extra_keys: Iterable[tuple[str, str]] | None = None,
               action_delay: float | None = None) -> Flask:
    """The sandbox as a Flask (WSGI) app; ``app.engine`` is its :class:`SandboxEngine`."""
    knobs = Knobs(latency=latency, error_rate=error_rate, maintenance=maintenance,
                  callback_drop_rate=callback_drop_rate, callback_duplicate_rate=callback_duplicate_rate,
                  callback_reorder_rate=callback_reorder_rate, callback_delay=callback_delay)
    engine = SandboxEngine([(api_login, api_key), *(extra_keys or [])], flavour=flavour, seed=seed, knobs=knobs,
                           ip_allowlist=ip_allowlist, methods=methods, action_delay=action_delay)
    api = _Api(engine)
    app = sandbox_app("premium_sandbox", engine)

    def pre_error(code: int, text: str) -> Response:
        return json_response({"error": code, "error_text": text})

    def api_view(request: Request, method: str) -> Response:
        k = engine.knobs
        engine.begin_request(method)
        if k.maintenance == "api":
            return pre_error(1, "Api disabled")
        login, key = request.headers.get("API-LOGIN", ""), request.headers.get("API-KEY", "")
        user = engine.users.get(login)
        if user is None or not key or user.key != key:
            return pre_error(1, "Api disabled")
        if engine.ip_allowlist is not None and request.remote_addr not in engine.ip_allowlist:
            return pre_error(2, "IP blocked")
        if method not in ALL_METHODS or method not in engine.methods or request.method != "POST":
            return pre_error(3, "Method not supported")
        if engine.roll(k.error_rate):
            with engine.lock:  # alternate between the proxy's 502 and the method's maintenance answer
                engine._fault_flip = not engine._fault_flip
                as_html = engine._fault_flip or method not in _MAINTENANCE
            if as_html:
                return bad_gateway()
            return json_response(_envelope(method, *_MAINTENANCE[method], [], None))
        if k.maintenance and method in _MAINTENANCE:
            return json_response(_envelope(method, *_MAINTENANCE[method], [], None))
        ctx = _Ctx()
        ctx.method, ctx.form, ctx.user = method, request.form, user
        ctx.lang, ctx.ip = _lang(request.headers.get("API-LANG")), request.remote_addr or ""
        ctx.root = request.host_url.rstrip("/")
        with engine.lock:
            code, text, data, fields = getattr(api, method)(ctx)
        return json_response(_envelope(method, code, text, data, fields))

    serve_api_first(app, lambda path: path.startswith(API_PATH),
                    lambda req: api_view(req, req.environ.get("PATH_INFO", "")[len(API_PATH):]))

    # ---- control API beyond state, knobs and callbacks (no auth: local use only) ----------------

    def bid_or_404(fn):
        try:
            return fn()
        except KeyError:
            return json_response({"error": "no such bid"}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)

    @app.post("/_sandbox/bids")
    def ctl_add_bid() -> Response:
        args = {k: v for k, v in control_body().items()
                if k in ("direction_id", "amount", "status", "api_login", "api_id", "callback_url", "fields",
                         "created_at")}
        return bid_or_404(lambda: json_response({"id": engine.add_bid(**args)}))

    @app.post("/_sandbox/bids/bulk")
    def ctl_bulk() -> Response:
        b = control_body()
        args = {k: v for k, v in b.items() if k in ("api_login", "start_time", "spread_seconds", "statuses")}
        return bid_or_404(lambda: json_response({"ids": engine.bulk_add(int(b.get("n", 0)), **args)}))

    @app.get("/_sandbox/bids/<int:bid_id>")
    def ctl_bid(bid_id: int) -> Response:
        def get():
            r = engine.bid(bid_id)
            for k in ("amount_give", "amount_get", "course_give", "course_get"):
                r[k] = _s(r[k])
            return json_response(r)
        return bid_or_404(get)

    @app.post("/_sandbox/bids/<int:bid_id>/status")
    def ctl_status(bid_id: int) -> Response:
        b = control_body()

        def do():
            engine.set_status(bid_id, str(b.get("status", "")), at=b.get("at"))
            return json_response({"id": bid_id, "status": engine.bid(bid_id)["status"]})
        return bid_or_404(do)

    @app.post("/_sandbox/bids/<int:bid_id>/advance")
    def ctl_advance(bid_id: int) -> Response:
        path = list(control_body().get("path") or [])
        return bid_or_404(lambda: (engine.advance(bid_id, path),
                                   json_response({"id": bid_id, "status": engine.bid(bid_id)["status"]}))[1])

    @app.post("/_sandbox/bids/<int:bid_id>/archive")
    def ctl_archive(bid_id: int) -> Response:
        return bid_or_404(lambda: (engine.archive(bid_id), json_response({"id": bid_id, "archived": True}))[1])

    @app.post("/_sandbox/directions/<int:direction_id>/<any(enable, disable):what>")
    def ctl_direction(direction_id: int, what: str) -> Response:
        if direction_id not in engine.directions:
            return json_response({"error": "no such direction"}, 404)
        (engine.enable_direction if what == "enable" else engine.disable_direction)(direction_id)
        return json_response({"id": direction_id, "enabled": what == "enable"})

    @app.post("/_sandbox/autopilot")
    def ctl_autopilot() -> Response:
        b = control_body()
        if b.get("on", True):
            engine.start_autopilot(interval=float(b.get("interval", 1.0)))
        else:
            engine.stop_autopilot()
        return json_response({"autopilot": bool(b.get("on", True))})

    return app

