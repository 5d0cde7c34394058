"""A faithful fake of the ZaleyCash API v2, for tests, benchmarks and ``exsync sandbox zaleycash``.

It follows docs/providers/zaleycash.md (auth, envelope and error codes, the endpoints public clients use),
so any client can talk to it as to ``https://zaleycash.com``::

    app = create_app()                        # accepts DEFAULT_SECRET
    srv = serve(app, port=0)
    tok = requests.post(srv.url + "/api/v2/token",
                        headers={"Authorization": f"Bearer {DEFAULT_SECRET}"}).json()["response"]["access_token"]
    requests.get(srv.url + "/api/v2/user/balance", headers={"Authorization": f"Bearer {tok}"})
    app.engine.executed("payout-1")           # the truth: how many times that operation ran (0 or 1)
    srv.shutdown()

Nothing here is secret: the sandbox is for LOCAL USE ONLY. Its control routes under ``/_sandbox/`` need
no key at all — never expose a sandbox port to a network. :func:`describe` prints the defaults. Its
choices where the facts leave room (tokens, users, currencies, the order of a transfer's checks), its
fault knobs and control routes are in docs/providers/zaleycash.md ("The sandbox").

(Just over 500 lines: one module holds the whole fake, its token store, ledger and every endpoint; the other
sandboxes grew into packages at twice its size.)
"""
from __future__ import annotations

import collections
import random
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from flask import Response, request

from providers.sandbox import Engine, SandboxKnobs, SandboxServer, serve
from providers.sandbox.web import SandboxApp, bad_gateway, control_body, drop_connection, sandbox_app
from providers.zaleycash.wire import dumps, loads

__all__ = ["create_app", "serve", "describe", "SandboxEngine", "SandboxServer", "Knobs", "DEFAULT_SECRET",
           "DEFAULT_STATUS_PATH", "AGENT_ID", "CURRENCIES", "DEFAULT_BALANCES", "API_PATH"]

DEFAULT_SECRET = "zcSandboxSecretKey000000000000000000001"  # not a secret: local sandbox only
DEFAULT_STATUS_PATH = "/api/v2/money/transfer/status"
API_PATH = "/api/v2/"
AGENT_ID = 1000
CURRENCIES = {1: ("RUB", "Russian rouble"), 2: ("USD", "US dollar"), 3: ("EUR", "Euro"), 4: ("KZT", "Tenge")}
DEFAULT_BALANCES = {1: Decimal("100000.00"), 2: Decimal("5000.00"), 3: Decimal("0.00")}

_HTTP = {1: 401, 2: 401, 3: 401, 4: 401, 5: 403, 10: 400, 20: 400, 21: 404, 22: 404, 26: 403, 50: 400, 51: 400,
         53: 500, 54: 403, 55: 404, 58: 400, 72: 400, 80: 400, 81: 403}


class _Refusal(Exception):
    """An API error answer: ``code``, text, optional extra body fields; ``detail`` picks the other shape."""

    def __init__(self, code: int, message: str, *, detail: bool = False, http: int | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.detail, self.extra = code, message, detail, extra
        self.http = http or _HTTP.get(code, 400)


# --------------------------------------------------------------------------------------------------
# Knobs, users, ledger
# --------------------------------------------------------------------------------------------------

class Knobs(SandboxKnobs):
    """Fault knobs, changeable at run time as attributes or dict items (``knobs.error_rate = 0.2``)."""

    FIELDS: dict[str, Any] = {
        "latency": 0.0, "error_rate": 0.0, "rate_limit_rate": 0.0, "fail_after_commit_rate": 0.0,
        "fail_after_commit_mode": "hang", "hang_seconds": 30.0, "reject_tokens": False, "agent_disabled": False,
        "transfers_protected": False, "min_amount": Decimal("0"), "funds_before_duplicate": False,
        "clock_skew": 0.0,
    }
    FLAGS = frozenset({"reject_tokens", "agent_disabled", "transfers_protected", "funds_before_duplicate"})
    MODES = ("hang", "502", "close")

    def _coerce(self, name: str, value: Any) -> Any:
        if name == "fail_after_commit_mode":
            if str(value) not in self.MODES:
                raise ValueError(f"fail_after_commit_mode must be one of {', '.join(self.MODES)}")
            return str(value)
        if name == "min_amount":
            d = Decimal(str(value))
            if not d.is_finite() or d < 0:
                raise ValueError("min_amount must be >= 0")
            return d
        return super()._coerce(name, value)


@dataclass
class SandboxUser:
    id: int
    email: str
    name: str
    is_active: bool = True
    parent_id: int | None = None  # AGENT_ID when linked as a child of the agent
    password: str = field(default="", repr=False)

    def as_json(self) -> dict:
        return {"id": self.id, "email": self.email, "name": self.name, "is_active": self.is_active}


@dataclass(frozen=True)
class LedgerEntry:
    operation_id: str
    transaction_id: str
    user_id: int
    currency: int
    amount: Decimal
    at: float

    def as_json(self) -> dict:
        return {"operation_id": self.operation_id, "transaction_id": self.transaction_id, "user_id": self.user_id,
                "currency": self.currency, "amount": self.amount, "status": "done", "created_at": int(self.at)}


class SandboxEngine(Engine):
    """The sandbox's state and rules. Every change happens under ``lock``; the HTTP layer only adds faults."""

    def __init__(self, secret_key: str = DEFAULT_SECRET, *, token_ttl: float = 3600,
                 balances: Mapping[int, Any] | None = None, knobs: Knobs | None = None, seed: int | None = None,
                 status_path: str | None = DEFAULT_STATUS_PATH) -> None:
        super().__init__(knobs or Knobs(), random.Random(seed))
        self.secret_keys = {secret_key}
        self.token_ttl = float(token_ttl)
        self.status_path = status_path
        self.tokens: dict[str, float] = {}  # access token -> expires_at (unix seconds)
        self.tokens_issued = 0
        self.issued_tokens: list[str] = []  # every token ever issued (tests check none of them leaks)
        self.users: dict[int, SandboxUser] = {}
        self.balances: dict[int, dict[int, Decimal]] = collections.defaultdict(dict)
        self.ledger: dict[str, LedgerEntry] = {}
        self._executions: collections.Counter[str] = collections.Counter()
        self._next_user = AGENT_ID
        self._next_tx = 500_000
        self._add_user_locked("agent@sandbox.zaleycash.local", "Sandbox agent", True, linked=False)
        self._add_user_locked("child1@sandbox.zaleycash.local", "Child one", True, linked=True)
        self._add_user_locked("child2@sandbox.zaleycash.local", "Child two", True, linked=True)
        self._add_user_locked("inactive@sandbox.zaleycash.local", "Inactive child", False, linked=True)
        self._add_user_locked("stranger@sandbox.zaleycash.local", "Not a child", True, linked=False)
        for cur, amount in (DEFAULT_BALANCES if balances is None else balances).items():
            self.set_balance(int(cur), amount)

    # ---- admin side ------------------------------------------------------------------------------
    def _add_user_locked(self, email: str, name: str, is_active: bool, *, linked: bool,
                         password: str = "") -> int:
        uid = self._next_user
        self._next_user += 1
        self.users[uid] = SandboxUser(uid, email, name, is_active, AGENT_ID if linked else None, password)
        return uid

    def add_user(self, email: str, name: str | None = None, *, is_active: bool = True, linked: bool = True) -> int:
        with self.lock:
            if any(u.email.lower() == email.lower() for u in self.users.values()):
                raise ValueError("email already exists")
            return self._add_user_locked(email, name or email.split("@")[0], bool(is_active), linked=bool(linked))

    def set_balance(self, currency: int, balance: Any, user_id: int = AGENT_ID) -> None:
        d = Decimal(str(balance))
        if not d.is_finite():
            raise ValueError("balance must be finite")
        with self.lock:
            if user_id not in self.users:
                raise ValueError("no such user")
            self.balances[user_id][int(currency)] = d

    def balance_of(self, currency: int, user_id: int = AGENT_ID) -> Decimal:
        with self.lock:
            return self.balances[user_id].get(currency, Decimal("0"))

    def revoke_tokens(self) -> None:
        """Forget every issued token: the next call with any of them answers code 1."""
        with self.lock:
            self.tokens.clear()

    def executed(self, operation_id: str) -> int:
        """How many times the transfer ``operation_id`` was executed (the invariant: never more than 1)."""
        with self.lock:
            return self._executions[operation_id]

    def state(self, query: Mapping[str, str] | None = None) -> dict:
        with self.lock:
            return {
                "users": [{**u.as_json(), "parent_id": u.parent_id} for u in self.users.values()],
                "balances": {str(uid): {str(c): b for c, b in bs.items()} for uid, bs in self.balances.items()},
                "ledger": [e.as_json() for e in self.ledger.values()],
                "knobs": self.knobs.as_dict(),
                "tokens_issued": self.tokens_issued,
                "tokens_live": sum(1 for exp in self.tokens.values() if exp > self.now()),
                "requests_served": dict(self.requests_served),
                "status_path": self.status_path,
            }

    def ledger_json(self) -> list:
        return [e.as_json() for e in self.ledger.values()]

    # ---- API side --------------------------------------------------------------------------------
    def issue_token(self, secret: str) -> dict:
        with self.lock:
            if secret not in self.secret_keys:
                raise _Refusal(2, "Wrong secret key")
            token = secrets.token_urlsafe(32)
            expires_at = int(self.now() + self.token_ttl)
            self.tokens[token] = expires_at
            self.tokens_issued += 1
            self.issued_tokens.append(token)
            return {"access_token": token, "expires_at": expires_at}

    def check_token(self, token: str) -> None:
        with self.lock:
            exp = self.tokens.get(token)
            if exp is None or self.now() >= exp or self.knobs.reject_tokens:
                raise _Refusal(1, "Invalid access token")

    def _user_or_21(self, uid: int) -> SandboxUser:
        u = self.users.get(uid)
        if u is None:
            raise _Refusal(21, "User does not exist")
        return u

    def find_user(self, email: str | None) -> dict:
        if not email:
            raise _Refusal(10, "Invalid request: email is required", detail=True)
        with self.lock:
            for u in self.users.values():
                if u.email.lower() == email.strip().lower():
                    return {"user": u.as_json()}
        raise _Refusal(21, "User does not exist")

    def register(self, body: Any) -> dict:
        if not isinstance(body, Mapping):
            raise _Refusal(10, "Invalid request: a JSON object is required", detail=True)
        errors: dict[str, str] = {}
        name, email, password = body.get("name"), body.get("email"), body.get("plainPassword")
        if not isinstance(name, str) or not name.strip():
            errors["name"] = "This value should not be blank."
        if not isinstance(email, str) or "@" not in email or email.strip() != email:
            errors["email"] = "This value is not a valid email address."
        if not isinstance(password, str) or len(password) < 6:
            errors["plainPassword"] = "This value is too short. It should have 6 characters or more."
        if errors:
            raise _Refusal(20, "Registration errors", errors=errors)
        assert isinstance(name, str) and isinstance(email, str) and isinstance(password, str)
        with self.lock:
            if any(u.email.lower() == email.lower() for u in self.users.values()):
                raise _Refusal(72, "Email already exist")
            uid = self._add_user_locked(email, name.strip(), True, linked=True, password=password)
            return {"user": self.users[uid].as_json()}

    def link_child(self, body: Any) -> dict:
        uid = _as_int(body.get("user")) if isinstance(body, Mapping) else None
        if uid is None:
            raise _Refusal(10, "Invalid request: user must be a user id", detail=True)
        with self.lock:
            u = self._user_or_21(uid)
            if uid == AGENT_ID:
                raise _Refusal(5, "Access is denied for user")
            if not u.is_active:
                raise _Refusal(26, "User inactive. Operations are protected")
            u.parent_id = AGENT_ID
            return {"user": u.as_json()}

    def balance(self) -> dict:
        with self.lock:
            agent = self.users[AGENT_ID]
            rows = [{"currency": c, "balance": b, "creditLimit": Decimal("0.00"), "originalBalance": b}
                    for c, b in sorted(self.balances[AGENT_ID].items())]
            return {"user": agent.as_json(), "balances": rows}

    @staticmethod
    def currencies() -> list:
        return [{"id": i, "code": code, "name": name} for i, (code, name) in CURRENCIES.items()]

    @staticmethod
    def services() -> list:
        return [{"name": "VK Ads", "alias": "vk", "need_oauth": False},
                {"name": "Yandex Direct", "alias": "yandex", "need_oauth": True},
                {"name": "myTarget", "alias": "mytarget", "need_oauth": False}]

    def transfer(self, body: Any, fail_after_commit: bool = False) -> dict:
        """Validate, check and commit one internal transfer (see the module text for the order)."""
        uid, cur, amount, op = _transfer_fields(body)
        k = self.knobs
        with self.lock:
            if op in self.ledger and not k.funds_before_duplicate:
                raise _Refusal(58, "Duplicate operation_id")
            if cur not in CURRENCIES:
                raise _Refusal(80, "Wrong currency")
            user = self._user_or_21(uid)
            if user.parent_id != AGENT_ID:
                raise _Refusal(5, "Access is denied for user")
            if not user.is_active:
                raise _Refusal(26, "User inactive. Operations are protected")
            if k.transfers_protected:
                raise _Refusal(54, "Financial operations are protected for account agent")
            if k.min_amount and amount < k.min_amount:
                raise _Refusal(50, "Not enough money or your amount is less then set limit")
            have = self.balances[AGENT_ID].get(cur, Decimal("0"))
            if have < amount:
                raise _Refusal(51, "Not enough money")
            if op in self.ledger:  # funds_before_duplicate: the duplicate check comes last
                raise _Refusal(58, "Duplicate operation_id")
            # commit
            self.balances[AGENT_ID][cur] = have - amount
            self.balances[uid][cur] = self.balances[uid].get(cur, Decimal("0")) + amount
            self._next_tx += 1
            entry = LedgerEntry(op, str(self._next_tx), uid, cur, amount, self.now())
            self.ledger[op] = entry
            self._executions[op] += 1
            return entry.as_json()

    def transfer_status(self, operation_id: str | None) -> dict:
        if not operation_id:
            raise _Refusal(10, "Invalid request: operation_id is required", detail=True)
        with self.lock:
            entry = self.ledger.get(operation_id)
            if entry is None:
                raise _Refusal(55, "Wrong operation_id")
            return entry.as_json()


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def _transfer_fields(body: Any) -> tuple[int, int, Decimal, str]:
    """The four fields of a transfer, or code 10 (55 for a malformed operation_id)."""
    if not isinstance(body, Mapping):
        raise _Refusal(10, "Invalid request: a JSON object is required", detail=True)
    missing = [f for f in ("user_id", "currency", "amount", "operation_id") if body.get(f) in (None, "")]
    if missing:
        raise _Refusal(10, f"Invalid request: {', '.join(missing)} required", detail=True)
    uid, cur = _as_int(body["user_id"]), _as_int(body["currency"])
    if uid is None or cur is None:
        raise _Refusal(10, "Invalid request: user_id and currency must be integers", detail=True)
    raw = body["amount"]
    try:
        if isinstance(raw, bool) or not isinstance(raw, (int, Decimal, str)):
            raise InvalidOperation
        amount = Decimal(str(raw).strip())
    except InvalidOperation:
        raise _Refusal(10, "Invalid request: amount must be a number", detail=True) from None
    if not amount.is_finite() or amount <= 0:
        raise _Refusal(10, "Invalid request: amount must be positive", detail=True)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:  # finite here, so the exponent is a number
        raise _Refusal(10, "Invalid request: amount has more than 2 decimals", detail=True)
    op = body["operation_id"]
    if not isinstance(op, str) or not 1 <= len(op) <= 64:
        raise _Refusal(55, "Wrong operation_id", http=400)
    return uid, cur, amount, op


# --------------------------------------------------------------------------------------------------
# The WSGI app
# --------------------------------------------------------------------------------------------------

def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(obj), status=status, mimetype="application/json", headers=dict(headers or {}))


def _ok(payload: Any) -> Response:
    return _json({"code": 200, "message": "OK", "response": payload})


def _refused(r: _Refusal) -> Response:
    body: dict[str, Any] = {"code": r.code, ("detail" if r.detail else "message"): r.message, **r.extra}
    return _json(body, r.http)


def _bearer() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when the header is unusable."""
    h = request.headers.get("Authorization", "")
    scheme, _, value = h.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def create_app(*, secret_key: str = DEFAULT_SECRET, token_ttl: float = 3600, balances: Mapping[int, Any] | None = None,
               latency: float = 0.0, error_rate: float = 0.0, fail_after_commit_rate: float = 0.0,
               fail_after_commit_mode: str = "hang", hang_seconds: float = 30.0, rate_limit_rate: float = 0.0,
               seed: int | None = None, status_path: str | None = DEFAULT_STATUS_PATH) -> SandboxApp:
    """The sandbox as a Flask (WSGI) app; ``app.engine`` is its :class:`SandboxEngine`."""
    knobs = Knobs(latency=latency, error_rate=error_rate, fail_after_commit_rate=fail_after_commit_rate,
                  fail_after_commit_mode=fail_after_commit_mode, hang_seconds=hang_seconds,
                  rate_limit_rate=rate_limit_rate)
    engine = SandboxEngine(secret_key, token_ttl=token_ttl, balances=balances, knobs=knobs, seed=seed,
                           status_path=status_path)
    app = sandbox_app("zaleycash_sandbox", engine, respond=_json)

    def body() -> Any:
        try:
            return loads(request.get_data())
        except ValueError:
            raise _Refusal(10, "Invalid request: the body is not JSON", detail=True) from None

    # (method, path after /api/v2/) -> handler returning the response payload
    def routes() -> dict[tuple[str, str], Any]:
        r = {
            ("GET", "services"): lambda: engine.services(),
            ("GET", "user"): lambda: engine.find_user(request.args.get("email")),
            ("POST", "user"): lambda: engine.register(body()),
            ("POST", "user/children"): lambda: engine.link_child(body()),
            ("GET", "user/balance"): lambda: engine.balance(),
            ("GET", "money/currencies"): lambda: engine.currencies(),
        }
        sp = engine.status_path
        if sp and sp.startswith(API_PATH):
            r[("GET", sp[len(API_PATH):])] = lambda: engine.transfer_status(request.args.get("operation_id"))
        return r

    @app.route(API_PATH + "<path:sub>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def api(sub: str) -> Response:
        k = engine.knobs
        engine.begin_request(sub)
        if engine.roll(k.rate_limit_rate):
            return _json({"code": 429, "message": "Too Many Requests"}, 429, {"Retry-After": "1"})
        money = sub.startswith("money/")
        if engine.roll(k.error_rate):  # before anything runs
            if money:
                return _refused(_Refusal(53, "Transaction processing error"))
            return _json({"detail": "Internal Server Error"}, 500)
        try:
            if k.agent_disabled:
                raise _Refusal(81, "Agent account is disabled")
            bearer = _bearer()
            if bearer is None:
                raise _Refusal(4, "Wrong Authorization header")
            if sub == "token":
                if request.method != "POST":
                    return _json({"detail": "Method Not Allowed"}, 405)
                return _ok(engine.issue_token(bearer))
            engine.check_token(bearer)
            if sub == "money/transfer/internal":
                if request.method != "POST":
                    return _json({"detail": "Method Not Allowed"}, 405)
                return transfer()
            table = routes()
            handler = table.get((request.method, sub))
            if handler is None:
                if any(p == sub for _, p in table):
                    return _json({"detail": "Method Not Allowed"}, 405)
                return _json({"detail": "Not Found"}, 404)
            return _ok(handler())
        except _Refusal as r:
            return _refused(r)

    def transfer() -> Response:
        k = engine.knobs
        fail = engine.roll(k.fail_after_commit_rate)
        result = engine.transfer(body())  # raises _Refusal; commits otherwise
        if fail:  # committed: now lose the answer
            if k.fail_after_commit_mode == "502":
                return bad_gateway()
            if k.fail_after_commit_mode == "close":
                return drop_connection(request.environ)
            time.sleep(k.hang_seconds)  # "hang": the client gives up first
        return _ok(result)

    # ---- control API beyond state, knobs and ledger (no auth: local use only) ------------------

    @app.post("/_sandbox/users")
    def ctl_users() -> Response:
        b = control_body()
        try:
            uid = engine.add_user(str(b["email"]), b.get("name"), is_active=b.get("is_active", True),
                                  linked=b.get("linked", True))
        except (KeyError, ValueError) as exc:
            return _json({"error": str(exc) or "email is required"}, 400)
        return _json({"id": uid})

    @app.post("/_sandbox/balance")
    def ctl_balance() -> Response:
        b = control_body()
        try:
            engine.set_balance(int(b["currency"]), b["balance"], int(b.get("user_id", AGENT_ID)))
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            return _json({"error": str(exc) or "currency and balance are required"}, 400)
        return _json({"ok": True})

    @app.post("/_sandbox/tokens/revoke")
    def ctl_revoke() -> Response:
        engine.revoke_tokens()
        return _json({"ok": True})

    return app


def describe(url: str | None = None, *, secret_key: str = DEFAULT_SECRET,
             status_path: str | None = DEFAULT_STATUS_PATH) -> str:
    """What ``exsync sandbox zaleycash`` prints on start: where it listens, what it accepts, what it holds."""
    root = url or "http://127.0.0.1:<port>"
    cur = ", ".join(f"{i} {code}" for i, (code, _) in CURRENCIES.items())
    bal = ", ".join(f"{b} {CURRENCIES[c][0]}" for c, b in DEFAULT_BALANCES.items())
    return "\n".join([
        f"zaleycash sandbox at {root}  (LOCAL USE ONLY: the control API has no auth)",
        f"  base_url:    {root}   (API under /api/v2/)",
        f"  secret key:  {secret_key}",
        f"  token:       POST {root}/api/v2/token with 'Authorization: Bearer <secret key>' (valid 1 hour)",
        f"  agent:       user {AGENT_ID}; children 1001, 1002 (active), 1003 (inactive); 1004 not a child",
        f"  currencies:  {cur}; agent balances: {bal}",
        f"  status path: {status_path or 'off'}",
        f"  control:     {root}/_sandbox/state, POST /_sandbox/knobs, /_sandbox/users, /_sandbox/balance",
    ])

