"""A faithful fake of Paysera's Wallet API (server time, configuration, wallet balance) and Transfer API,
for tests, benchmarks and ``exsync demo``.

It behaves as ``shared/reference/paysera.md`` describes, so any client can talk to it as to Paysera::

    app = create_app()                          # accepts DEFAULT_MAC_ID / DEFAULT_MAC_KEY
    srv = serve(app, port=0)                    # threaded werkzeug server in a daemon thread
    c = PayseraClient(srv.url, DEFAULT_MAC_ID, DEFAULT_MAC_KEY)
    app.engine.executed(transfer_id)            # the admin side: ledger, knobs, status changes
    srv.shutdown(); app.engine.close()

Credentials: ``DEFAULT_MAC_ID`` / ``DEFAULT_MAC_KEY`` below. Nothing here is secret: the sandbox is for
LOCAL USE ONLY, and its control API under ``/_sandbox/`` needs no authentication at all — never expose a
sandbox port to a network.

MAC authentication is verified exactly (:func:`providers.paysera.mac.verify`): the MAC is recomputed over
the method, the raw request URI (query included), the host and port of the ``Host`` header (80/443 by
scheme when it names none), and ``ext`` as received; ``body_hash`` in ext must match the body (and be
absent for an empty body); ``ts`` must be within ``window`` seconds of the sandbox's clock; a nonce is
refused if seen for the same id within the window. Every refusal is HTTP 401
``{"error": "unauthorized", "error_description": …}``; a refused ts says "timestamp is outside the allowed
window …". The sandbox's clock is ``time.time() + clock_skew`` (freezegun-friendly), and
``GET /rest/v1/server`` reports it, so a client's offset logic is exercised by a skew.

Choices where the reference leaves room (documented so clients know what they are tested against):

* Transfers: ``POST /transfer/rest/v1/transfers`` creates a draft (``new``) that moves no money and is
  deleted ``draft_ttl`` seconds later unless something more happens (afterwards ``GET`` answers 404
  ``not_found``). Drafts ARE listed by ``GET /transfers`` (invisible means: not in the web UI), so a
  client can find one whose create answer it lost. Amounts must be decimal strings with at most two
  decimals; currency three capital letters; ``beneficiary.type`` ``paysera`` (``paysera_account`` with
  ``account_number``, ``email`` or ``phone``) or ``bank`` (``bank_account.iban`` and ``name``). Field errors
  answer 400 ``invalid_parameters`` with ``error_properties`` {field: [messages]}.
* ``PUT …/sign`` (from ``new``, ``registered`` or ``reserved``) debits the payer at once, records one
  execution in the ledger and answers ``processing``; the transfer becomes ``done`` ``processing_delay``
  seconds later. Not enough funds at disposal: 400 ``not_enough_funds`` (nothing changes). Signing a
  transfer in any other status: 409 ``invalid_state``. ``reserve`` locks the funds (same funds check);
  ``register`` only marks it ``registered``; ``DELETE`` rejects a transfer that is not processing/done
  (releasing a reservation) and is idempotent on a rejected one.
* ``GET /transfers`` filters: ``statuses`` (comma list), ``created_date_from``/``created_date_to`` (unix
  seconds, inclusive), ``credit_account_number``, ``debit_account_number``; newest first; ``limit``
  default 20, at most 200; ``offset``. Answer ``{"items": [...], "_metadata": {"total", "offset", "limit",
  "has_next"}}``.
* Wallet balance: ``{"EUR": {"at_disposal": <cents>, "reserved": <cents>, "at_disposal_decimal": "…",
  "reserved_decimal": "…"}}``. Extra parameters (``project_id``, ``location_id``) are accepted from ext
  and recorded in ``engine.requests_log``.
* Callbacks: changes the client did not make itself (processing → done, and admin changes such as
  failed/revoked) are POSTed form-encoded to the transfer's ``callback.url`` (only for the statuses in
  ``callback.statuses`` when that list is given): ``event`` = ``{"type": <new status>, "object":
  "transfer", "data": <transfer>}`` as compact JSON, ``sign`` = base64 RSA PKCS#1 v1.5 SHA-256 over that
  string with a key generated at start (``engine.public_key_pem``, also served at ``GET /publickey``).
  A delivery without a 2xx is retried (``callback_attempts`` tries, doubling from
  ``callback_retry_delay``). Every try is in ``engine.callback_log``.

Fault knobs (``engine.knobs``, changeable at run time; ``fault_match`` is a regular expression searched
in ``"METHOD /path"``: faults hit only matching API requests, all of them when empty):

* ``latency`` seconds before any API request is handled;
* ``error_rate``: that share of matching requests answers 500 ``internal_server_error`` BEFORE anything
  is done;
* ``fail_after_commit_rate``: that share of matching POST/PUT/DELETE requests is carried out and then
  answers 500 ``internal_server_error`` (the answer is lost, the change is not);
* ``hang_seconds``: matching requests are carried out, then the answer waits that long (a client with a
  shorter timeout sees a read timeout after the change was made);
* ``clock_skew``, ``processing_delay``, ``draft_ttl``, ``callback_attempts``, ``callback_retry_delay``.

Ledger: ``engine.executed(transfer_id)`` counts money-moving executions (never more than 1),
``engine.paid_total(currency)`` sums what left and was not refunded (a failed/revoked transfer after
execution is refunded).

Control API (JSON, no auth): ``GET /_sandbox/state``, ``POST /_sandbox/knobs``, ``GET /_sandbox/describe``,
``GET /_sandbox/transfers``, ``GET /_sandbox/transfers/<id>``, ``POST /_sandbox/transfers/<id>/status``
(``{"status", "failure_code"?, "failure_message"?}``), ``POST /_sandbox/wallets/<id>/balance``
(``{"currency", "amount"}``), ``GET /_sandbox/ledger``, ``GET /_sandbox/callbacks?last=N``,
``POST /_sandbox/tick``. Unknown transfer/wallet: 404; invalid input: 400.
"""
from __future__ import annotations

import collections
import itertools
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, request

from providers.paysera.callbacks import sign_event
from providers.paysera.mac import MacError, NonceCache, split_host_port, verify
from providers.sandbox import CallbackSender, Engine, Ledger, SandboxKnobs, SandboxServer, serve
from providers.sandbox.web import control_body, json_response, sandbox_app

__all__ = ["create_app", "serve", "describe", "SandboxEngine", "SandboxServer", "Knobs", "DEFAULT_MAC_ID",
           "DEFAULT_MAC_KEY", "DEFAULT_WALLET_ID", "DEFAULT_ACCOUNT"]

DEFAULT_MAC_ID = "exsyncSbx1"  # 10 characters, like Paysera's MAC ids
DEFAULT_MAC_KEY = "exsyncSandboxMacKey0000000000001"  # 32 characters, like Paysera's MAC keys
DEFAULT_WALLET_ID = 14471
DEFAULT_ACCOUNT = "EVP0010000014471"
TRANSFERS = "/transfer/rest/v1/transfers"

_STATUSES = ("new", "registered", "signed", "reserved", "processing", "waiting_funds", "waiting_registration",
             "waiting_password", "done", "rejected", "revoked", "failed")
_REJECTABLE = frozenset({"new", "registered", "reserved", "waiting_funds", "waiting_registration",
                         "waiting_password"})
_AMOUNT_RE = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,2})?$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_IBAN_RE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_CENT = Decimal("0.01")


# --------------------------------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------------------------------

class Knobs(SandboxKnobs):
    """Fault knobs, changeable at run time as attributes or items (``knobs.error_rate = 0.5``)."""

    FIELDS: dict[str, Any] = {
        "latency": 0.0, "error_rate": 0.0, "fail_after_commit_rate": 0.0, "hang_seconds": 0.0,
        "fault_match": "", "clock_skew": 0.0, "processing_delay": 0.0, "draft_ttl": 3600.0,
        "callback_attempts": 4, "callback_retry_delay": 0.1,
    }
    COUNTS = frozenset({"callback_attempts"})

    def _coerce(self, name: str, value: Any) -> Any:
        if name == "fault_match":
            value = "" if value is None else str(value)
            re.compile(value)  # raises re.error for a bad pattern
            return value
        return super()._coerce(name, value)


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------

@dataclass
class _Wallet:
    id: int
    account_number: str
    at_disposal: dict[str, Decimal] = field(default_factory=dict)
    reserved: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class _Transfer:
    id: str
    status: str
    amount: Decimal
    currency: str
    beneficiary: dict
    wallet_id: int
    purpose: dict | None
    callback: dict | None
    extra: dict
    created_at: int
    client_id: str
    performed_at: int | None = None
    due_at: float | None = None  # processing -> done
    failure: dict | None = None
    reserved: bool = False
    history: list = field(default_factory=list)

    def credit_account(self) -> str | None:
        acc = self.beneficiary.get("paysera_account") or {}
        bank = self.beneficiary.get("bank_account") or {}
        return acc.get("account_number") or bank.get("iban") or acc.get("email") or acc.get("phone")


class _ApiError(Exception):
    def __init__(self, status: int, code: str, description: str, properties: dict | None = None) -> None:
        super().__init__(description)
        self.status, self.code, self.description, self.properties = status, code, description, properties


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": format(amount.quantize(_CENT), "f"), "currency": currency}


# --------------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------------

def _wallets_from(spec: Mapping[Any, Any] | None) -> dict[int, _Wallet]:
    if spec is None:
        spec = {DEFAULT_WALLET_ID: {"account_number": DEFAULT_ACCOUNT,
                                    "balance": {"EUR": "100000.00", "USD": "50000.00"}}}
    out: dict[int, _Wallet] = {}
    for wid, w in spec.items():
        wid = int(wid)
        w = dict(w or {})
        balance = w.get("balance")
        if balance is None:  # shorthand: {"EUR": "10.00", "account_number": …}
            balance = {k: v for k, v in w.items() if _CURRENCY_RE.match(str(k))}
        out[wid] = _Wallet(wid, str(w.get("account_number") or f"EVP{wid:013d}"),
                           {str(c).upper(): Decimal(str(a)) for c, a in balance.items()})
    if not out:
        raise ValueError("at least one wallet is needed")
    return out


class SandboxEngine(Engine):
    """The provider's state and its admin side. Thread-safe: one lock guards everything."""

    def __init__(self, credentials: Iterable[tuple[str, str]], *, window: float = 300.0, knobs: Knobs | None = None,
                 wallets: Mapping[Any, Any] | None = None, seed: int | None = None,
                 private_key_pem: bytes | str | None = None) -> None:
        super().__init__(knobs or Knobs(), random.Random(seed))
        self.credentials = dict(credentials)
        self.window = float(window)
        self.nonces = NonceCache(self.window)
        self.wallets = _wallets_from(wallets)
        self._by_account = {w.account_number: w for w in self.wallets.values()}
        self.seed = seed
        self.transfers: dict[str, _Transfer] = {}
        self.deleted: dict[str, _Transfer] = {}  # drafts removed after draft_ttl
        self._ids = itertools.count(int(random.Random(seed).randrange(10_000, 90_000)) * 100)
        self.ledger = Ledger("transfer_id")  # one entry per signed transfer; ``refunded`` set when it comes back
        self.requests_log: collections.deque = collections.deque(maxlen=2000)
        if private_key_pem is not None:
            data = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
            key = serialization.load_pem_private_key(data, password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("private_key_pem must be an RSA key")
            self._private_key = key
        else:
            self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key_pem = self._private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
        self._sender = CallbackSender(
            self.callback_log, post=self._post_callback, entry=self._callback_entry, name="paysera-sandbox-callbacks",
            attempts=lambda: self.knobs.callback_attempts, in_order=True,
            backoff=lambda attempt: self.knobs.callback_retry_delay * (2 ** (attempt - 1)))
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()

    # ---- credentials, state ------------------------------------------------------------------

    def key_for(self, mac_id: str) -> str | None:
        return self.credentials.get(mac_id)

    def describe(self) -> dict:
        """What a client needs (printed by ``exsync sandbox paysera``). Sandbox credentials: not secret."""
        mac_id, mac_key = next(iter(self.credentials.items()))
        return {"provider": "paysera", "mac_id": mac_id, "mac_key": mac_key, "window": self.window,
                "public_key_pem": self.public_key_pem,
                "wallets": {str(w.id): w.account_number for w in self.wallets.values()},
                "note": "LOCAL USE ONLY: /_sandbox/ needs no authentication"}

    def state(self, query: Mapping[str, str] | None = None) -> dict:
        with self.lock:
            counts = collections.Counter(t.status for t in self.transfers.values())
            currencies = {e["currency"] for e in self.ledger}
            return {"knobs": self.knobs.as_dict(), "server_time": int(self.now()),
                    "window": self.window, "transfers": dict(counts), "deleted_drafts": len(self.deleted),
                    "wallets": {str(w.id): self.balance_json(w.id) for w in self.wallets.values()},
                    "ledger": {"executions": len(self.ledger),
                               "paid_total": {c: format(self.paid_total(c), "f") for c in sorted(currencies)}},
                    "callbacks": {"pending": self.callbacks_pending, "log": len(self.callback_log)},
                    "requests_served": dict(self.requests_served)}

    # ---- ledger ------------------------------------------------------------------------------

    def executed(self, transfer_id: str) -> int:
        """How many times the transfer moved money (0 or 1; more would be a double payout)."""
        with self.lock:
            return self.ledger.executed(str(transfer_id))

    def paid_total(self, currency: str | None = None) -> Decimal:
        """What left the wallets and was not refunded (one currency, or all of them added up)."""
        with self.lock:
            return sum((e["amount"] for e in self.ledger
                        if not e["refunded"] and (currency is None or e["currency"] == currency.upper())),
                       Decimal(0))

    def ledger_json(self) -> list[dict]:
        return self.ledger.rows(amount=lambda amount: format(amount, "f"))

    # ---- wallets -----------------------------------------------------------------------------

    def _wallet(self, wallet_id: Any) -> _Wallet:
        try:
            return self.wallets[int(wallet_id)]
        except (KeyError, TypeError, ValueError):
            raise KeyError(wallet_id) from None

    def set_balance(self, wallet_id: Any, currency: str, amount: Decimal | str) -> None:
        with self.lock:
            self._wallet(wallet_id).at_disposal[currency.upper()] = Decimal(str(amount))

    def balance(self, wallet_id: Any, currency: str) -> Decimal:
        with self.lock:
            return self._wallet(wallet_id).at_disposal.get(currency.upper(), Decimal(0))

    def balance_json(self, wallet_id: Any) -> dict:
        with self.lock:
            w = self._wallet(wallet_id)
            out = {}
            for cur in sorted(set(w.at_disposal) | set(w.reserved)):
                a, r = w.at_disposal.get(cur, Decimal(0)), w.reserved.get(cur, Decimal(0))
                out[cur] = {"at_disposal": int((a * 100).to_integral_value()),
                            "reserved": int((r * 100).to_integral_value()),
                            "at_disposal_decimal": format(a.quantize(_CENT), "f"),
                            "reserved_decimal": format(r.quantize(_CENT), "f")}
            return out

    # ---- transfers: JSON ---------------------------------------------------------------------

    def transfer_json(self, t: _Transfer) -> dict:
        w = self.wallets[t.wallet_id]
        out: dict[str, Any] = dict(t.extra)
        out.update({"id": t.id, "status": t.status, "amount": _money(t.amount, t.currency),
                    "beneficiary": t.beneficiary, "payer": {"account_number": w.account_number},
                    "created_at": t.created_at, "out_commission": _money(Decimal(0), t.currency),
                    "initiator": {"client_id": t.client_id}})
        if t.purpose is not None:
            out["purpose"] = t.purpose
        if t.callback is not None:
            out["callback"] = t.callback
        if t.performed_at is not None:
            out["performed_at"] = t.performed_at
        if t.failure is not None:
            out["failure_status"] = t.failure
        return out

    def transfer(self, transfer_id: str) -> dict:
        """A transfer's JSON plus sandbox truth (``deleted``, ``executed``, ``history``); KeyError if unknown."""
        with self.lock:
            tid = str(transfer_id)
            t = self.transfers.get(tid) or self.deleted.get(tid)
            if t is None:
                raise KeyError(tid)
            return {**self.transfer_json(t), "deleted": tid in self.deleted, "executed": self.executed(tid),
                    "history": [list(h) for h in t.history]}

    def _get(self, transfer_id: str) -> _Transfer:
        t = self.transfers.get(str(transfer_id))
        if t is None:
            raise _ApiError(404, "not_found", "transfer not found")
        return t

    def _set_status(self, t: _Transfer, status: str, source: str) -> None:
        old, t.status = t.status, status
        now = self.now()
        t.history.append((int(now), status, source))
        if source != "client" and old != status:
            self._callback(t)

    # ---- transfers: API actions (called with the lock held) ----------------------------------

    def create(self, body: Any, client_id: str) -> _Transfer:
        if not isinstance(body, Mapping):
            raise _ApiError(400, "invalid_request", "request body must be a JSON object")
        props: dict[str, list[str]] = {}
        amount_obj = body.get("amount")
        amount = currency = None
        if not isinstance(amount_obj, Mapping):
            props["amount"] = ["amount object {amount, currency} is required"]
        else:
            raw_amount, currency = amount_obj.get("amount"), amount_obj.get("currency")
            if not isinstance(raw_amount, str) or not _AMOUNT_RE.match(raw_amount):
                props["amount.amount"] = ["must be a decimal string with at most 2 decimals"]
            else:
                amount = Decimal(raw_amount)
                if amount <= 0:
                    props["amount.amount"] = ["must be positive"]
            if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
                props["amount.currency"] = ["must be an ISO 4217 code"]
        beneficiary = body.get("beneficiary")
        if not isinstance(beneficiary, Mapping):
            props["beneficiary"] = ["beneficiary object is required"]
        else:
            btype = beneficiary.get("type")
            if btype == "paysera":
                acc = beneficiary.get("paysera_account")
                if not isinstance(acc, Mapping) or not any(acc.get(k) for k in ("account_number", "email", "phone")):
                    props["beneficiary.paysera_account"] = ["account_number, email or phone is required"]
            elif btype == "bank":
                bank = beneficiary.get("bank_account")
                iban = bank.get("iban") if isinstance(bank, Mapping) else None
                if not isinstance(iban, str) or not _IBAN_RE.match(iban):
                    props["beneficiary.bank_account.iban"] = ["a valid IBAN is required"]
                if not beneficiary.get("name"):
                    props["beneficiary.name"] = ["is required for a bank transfer"]
            else:
                props["beneficiary.type"] = ["must be paysera or bank"]
        wallet = next(iter(self.wallets.values()))
        payer = body.get("payer")
        if payer is not None:
            acc_no = payer.get("account_number") if isinstance(payer, Mapping) else None
            if acc_no not in self._by_account:
                props["payer.account_number"] = ["unknown account of this client"]
            else:
                wallet = self._by_account[acc_no]
        purpose = body.get("purpose")
        if purpose is not None and (not isinstance(purpose, Mapping)
                                    or len(str(purpose.get("details") or "")) > 1000):
            props["purpose"] = ["purpose must be an object; details at most 1000 characters"]
        callback = body.get("callback")
        if callback is not None:
            url = callback.get("url") if isinstance(callback, Mapping) else None
            if not isinstance(url, str) or not re.match(r"^https?://", url):
                props["callback.url"] = ["an http(s) URL is required"]
        if props:
            raise _ApiError(400, "invalid_parameters", "some parameters are missing or invalid", props)
        assert amount is not None and isinstance(currency, str)
        extra = {k: v for k, v in body.items()
                 if k not in ("amount", "beneficiary", "payer", "purpose", "callback", "id", "status")}
        t = _Transfer(id=str(next(self._ids)), status="new", amount=amount, currency=currency,
                      beneficiary=dict(beneficiary), wallet_id=wallet.id,  # type: ignore[arg-type]
                      purpose=dict(purpose) if purpose is not None else None,
                      callback=dict(callback) if callback is not None else None, extra=extra,
                      created_at=int(self.now()), client_id=client_id)
        t.history.append((t.created_at, "new", "client"))
        self.transfers[t.id] = t
        return t

    def _take_funds(self, t: _Transfer) -> None:
        w = self.wallets[t.wallet_id]
        have = w.at_disposal.get(t.currency, Decimal(0))
        if have < t.amount:
            raise _ApiError(400, "not_enough_funds",
                            f"not enough funds in {w.account_number}: {format(t.amount.quantize(_CENT), 'f')} "
                            f"{t.currency} needed")
        w.at_disposal[t.currency] = have - t.amount

    def register(self, transfer_id: str) -> _Transfer:
        t = self._get(transfer_id)
        if t.status not in ("new", "registered"):
            raise _ApiError(409, "invalid_state", f"transfer is {t.status}: it cannot be registered")
        if t.status == "new":
            self._set_status(t, "registered", "client")
        return t

    def reserve(self, transfer_id: str) -> _Transfer:
        t = self._get(transfer_id)
        if t.status not in ("new", "registered"):
            raise _ApiError(409, "invalid_state", f"transfer is {t.status}: it cannot be reserved")
        self._take_funds(t)
        w = self.wallets[t.wallet_id]
        w.reserved[t.currency] = w.reserved.get(t.currency, Decimal(0)) + t.amount
        t.reserved = True
        self._set_status(t, "reserved", "client")
        return t

    def sign(self, transfer_id: str) -> _Transfer:
        t = self._get(transfer_id)
        if t.status not in ("new", "registered", "reserved"):
            raise _ApiError(409, "invalid_state", f"transfer is {t.status}: it cannot be signed")
        if t.reserved:
            w = self.wallets[t.wallet_id]
            w.reserved[t.currency] -= t.amount
            t.reserved = False
        else:
            self._take_funds(t)
        if self.executed(t.id):  # cannot happen: the state machine forbids it; the ledger would show it
            raise AssertionError(f"transfer {t.id} would be executed twice")
        self.ledger.record(transfer_id=t.id, amount=t.amount, currency=t.currency,
                           account=self.wallets[t.wallet_id].account_number, at=int(self.now()), refunded=False)
        t.due_at = self.now() + float(self.knobs.processing_delay)
        self._set_status(t, "processing", "client")
        self._ensure_ticker()
        return t

    def reject(self, transfer_id: str) -> _Transfer:
        t = self._get(transfer_id)
        if t.status == "rejected":
            return t
        if t.status not in _REJECTABLE:
            raise _ApiError(409, "invalid_state", f"transfer is {t.status}: it cannot be rejected")
        self._release(t)
        self._set_status(t, "rejected", "client")
        return t

    def _release(self, t: _Transfer) -> None:
        if t.reserved:
            w = self.wallets[t.wallet_id]
            w.reserved[t.currency] -= t.amount
            w.at_disposal[t.currency] = w.at_disposal.get(t.currency, Decimal(0)) + t.amount
            t.reserved = False

    def list(self, args: Mapping[str, str]) -> dict:
        def num(name: str, default: int | None = None) -> int | None:
            v = (args.get(name) or "").strip()
            if not v:
                return default
            try:
                return int(v)
            except ValueError:
                raise _ApiError(400, "invalid_parameters", f"{name} must be an integer",
                                {name: ["must be an integer"]}) from None

        statuses = {s.strip() for s in (args.get("statuses") or "").split(",") if s.strip()}
        start, end = num("created_date_from"), num("created_date_to")
        credit, debit = args.get("credit_account_number") or None, args.get("debit_account_number") or None
        limit = num("limit", 20) or 20
        limit = max(1, min(200, limit))
        offset = max(0, num("offset", 0) or 0)
        rows = []
        for t in sorted(self.transfers.values(), key=lambda t: (t.created_at, int(t.id)), reverse=True):
            if statuses and t.status not in statuses:
                continue
            if (start is not None and t.created_at < start) or (end is not None and t.created_at > end):
                continue
            if debit and self.wallets[t.wallet_id].account_number != debit:
                continue
            if credit and t.credit_account() != credit:
                continue
            rows.append(t)
        page = rows[offset:offset + limit]
        return {"items": [self.transfer_json(t) for t in page],
                "_metadata": {"total": len(rows), "offset": offset, "limit": limit,
                              "has_next": offset + len(page) < len(rows)}}

    # ---- time passing ------------------------------------------------------------------------

    def advance(self) -> None:
        """Apply what time has made due: processing → done, unsigned drafts older than draft_ttl deleted."""
        with self.lock:
            now = self.now()
            ttl = float(self.knobs.draft_ttl)
            for t in list(self.transfers.values()):
                if t.status == "processing" and t.due_at is not None and now >= t.due_at:
                    t.performed_at = int(now)
                    t.due_at = None
                    self._set_status(t, "done", "provider")
                elif t.status == "new" and now >= t.created_at + ttl:
                    del self.transfers[t.id]
                    t.history.append((int(now), "deleted", "provider"))
                    self.deleted[t.id] = t

    def _ensure_ticker(self) -> None:
        if self._ticker is None or not self._ticker.is_alive():
            self._ticker_stop.clear()
            self._ticker = threading.Thread(target=self._tick_loop, name="paysera-sandbox-ticker", daemon=True)
            self._ticker.start()

    def _tick_loop(self) -> None:
        while not self._ticker_stop.wait(0.02):
            self.advance()
            with self.lock:
                if not any(t.status == "processing" for t in self.transfers.values()):
                    self._ticker = None
                    return

    # ---- admin -------------------------------------------------------------------------------

    def set_status(self, transfer_id: str, status: str, *, failure_code: str | None = None,
                   failure_message: str | None = None) -> dict:
        """Drive a transfer as Paysera's back office would (fires its callback). ``failed``/``revoked``
        after execution refund the payer. KeyError for an unknown transfer, ValueError for a bad status."""
        if status not in _STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.lock:
            t = self.transfers.get(str(transfer_id))
            if t is None:
                raise KeyError(transfer_id)
            if status in ("failed", "revoked", "rejected"):
                self._release(t)
                for e in self.ledger:
                    if e["transfer_id"] == t.id and not e["refunded"]:
                        e["refunded"] = True
                        w = self.wallets[t.wallet_id]
                        w.at_disposal[t.currency] = w.at_disposal.get(t.currency, Decimal(0)) + e["amount"]
                if status == "failed":
                    t.failure = {"code": failure_code or "beneficiary_bank_rejected",
                                 "message": failure_message or "the beneficiary's bank returned the transfer"}
                t.due_at = None
            if status == "done" and t.performed_at is None:
                t.performed_at = int(self.now())
            self._set_status(t, status, "admin")
            return self.transfer(t.id)

    def _callback(self, t: _Transfer) -> None:
        cb = t.callback
        if not cb or not cb.get("url"):
            return
        wanted = cb.get("statuses")
        if isinstance(wanted, list) and wanted and t.status not in wanted:
            return
        event = json.dumps({"type": t.status, "object": "transfer", "data": self.transfer_json(t)},
                           separators=(",", ":"), ensure_ascii=False)
        self._sender.enqueue({"transfer_id": t.id, "type": t.status, "url": cb["url"], "event": event,
                              "sign": sign_event(self._private_key, event)})

    @staticmethod
    def _post_callback(item: dict) -> int:
        return requests.post(item["url"], data={"event": item["event"], "sign": item["sign"]}, timeout=10,
                             allow_redirects=False).status_code

    @staticmethod
    def _callback_entry(item: dict, outcome: str, http_status: int | None) -> dict:
        return {"transfer_id": item["transfer_id"], "type": item["type"], "url": item["url"],
                "attempt": item["attempt"], "outcome": outcome, "http_status": http_status, "at": time.time()}

    def sign_event(self, event: str) -> str:
        """Sign any event string with the sandbox's key (to build test callbacks)."""
        return sign_event(self._private_key, event)

    def close(self) -> None:
        self._ticker_stop.set()
        super().close()


# --------------------------------------------------------------------------------------------------
# WSGI app
# --------------------------------------------------------------------------------------------------

def _error(status: int, code: str, description: str, properties: dict | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "error_description": description}
    if properties:
        body["error_properties"] = properties
    return json_response(body, status)


def _raw_uri(environ: Mapping[str, Any]) -> str:
    """The request URI as the client sent it (werkzeug and gunicorn keep it; else rebuilt)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if "://" in raw:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        return raw
    from urllib.parse import quote

    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/;=,~!$&'()*+:@-._")
    qs = environ.get("QUERY_STRING", "")
    return f"{path}?{qs}" if qs else path


def create_app(*, mac_id: str = DEFAULT_MAC_ID, mac_key: str = DEFAULT_MAC_KEY, window: float = 300,
               clock_skew: float = 0, wallets: Mapping[Any, Any] | None = None, latency: float = 0.0,
               error_rate: float = 0.0, fail_after_commit_rate: float = 0.0, seed: int | None = None,
               hang_seconds: float = 0.0, fault_match: str = "", processing_delay: float = 0.0,
               draft_ttl: float = 3600.0, callback_attempts: int = 4, callback_retry_delay: float = 0.1,
               extra_keys: Iterable[tuple[str, str]] | None = None,
               private_key_pem: bytes | str | None = None) -> Flask:
    """The sandbox as a Flask (WSGI) app; ``app.engine`` is its :class:`SandboxEngine`."""
    knobs = Knobs(latency=latency, error_rate=error_rate, fail_after_commit_rate=fail_after_commit_rate,
                  hang_seconds=hang_seconds, fault_match=fault_match, clock_skew=clock_skew,
                  processing_delay=processing_delay, draft_ttl=draft_ttl, callback_attempts=callback_attempts,
                  callback_retry_delay=callback_retry_delay)
    engine = SandboxEngine([(mac_id, mac_key), *(extra_keys or [])], window=window, knobs=knobs, wallets=wallets,
                           seed=seed, private_key_pem=private_key_pem)
    app = sandbox_app("paysera_sandbox", engine)

    def authenticate() -> tuple[str | None, Response | None]:
        """(mac id, None) when the MAC checks out, else (None, a 401 answer)."""
        try:
            host, port = split_host_port(request.host, request.scheme)
        except ValueError:
            return None, _error(400, "invalid_request", "the Host header is not host[:port]")
        try:
            h = verify(request.headers.get("Authorization"), method=request.method, uri=_raw_uri(request.environ),
                       host=host, port=port, body=request.get_data(cache=True), key_for=engine.key_for,
                       now=engine.now(), window=engine.window, nonces=engine.nonces)
        except MacError as exc:
            with engine.lock:
                engine.requests_log.append({"method": request.method, "path": request.path, "ext": {},
                                            "refused": exc.reason})
            return None, _error(401, "unauthorized", exc.message)
        with engine.lock:
            engine.requests_log.append({"method": request.method, "path": request.path,
                                        "ext": {k: v for k, v in h.ext_params.items() if k != "body_hash"},
                                        "mac_id": h.id, "refused": None})
        return h.id, None

    def faults_apply() -> bool:
        pattern = engine.knobs.fault_match
        return not pattern or re.search(pattern, f"{request.method} {request.path}") is not None

    def api(action, *, auth: bool = True, mutating: bool = False) -> Response:
        """Run one API action with authentication and the fault knobs around it."""
        k = engine.knobs
        rule = request.url_rule.rule if request.url_rule else request.path
        engine.begin_request(f"{request.method} {rule}")
        client_id = None
        if auth:
            client_id, refusal = authenticate()
            if refusal is not None:
                return refusal
        engine.advance()
        faulty = faults_apply()
        if faulty and engine.roll(k.error_rate):
            return _error(500, "internal_server_error", "unexpected internal system error")
        try:
            with engine.lock:
                status, body = action(client_id)
        except _ApiError as exc:
            resp = _error(exc.status, exc.code, exc.description, exc.properties)
        else:
            resp = json_response(body, status)
            if faulty and mutating and engine.roll(k.fail_after_commit_rate):
                resp = _error(500, "internal_server_error", "unexpected internal system error")
        if faulty and k.hang_seconds:
            time.sleep(k.hang_seconds)
        return resp

    def body_json() -> Any:
        raw = request.get_data(cache=True)
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise _ApiError(400, "invalid_request", "request body is not valid JSON") from None

    # ---- Wallet API ----------------------------------------------------------------------------

    @app.get("/rest/v1/server")
    def server() -> Response:
        return api(lambda _c: (200, {"time": int(engine.now())}), auth=False)

    @app.get("/rest/v1/configuration")
    def configuration() -> Response:
        return api(lambda _c: (200, {"minimum_password_length": 8}), auth=False)

    @app.get("/rest/v1/wallet/<wallet_id>/balance")
    def wallet_balance(wallet_id: str) -> Response:
        def action(_c):
            try:
                return 200, engine.balance_json(wallet_id)
            except KeyError:
                raise _ApiError(404, "not_found", "wallet not found") from None
        return api(action)

    @app.get("/publickey")
    def publickey() -> Response:
        return Response(engine.public_key_pem, mimetype="text/plain")

    # ---- Transfer API --------------------------------------------------------------------------

    @app.post(TRANSFERS)
    def create_transfer() -> Response:
        def action(client_id):
            return 200, engine.transfer_json(engine.create(body_json(), client_id or ""))
        return api(action, mutating=True)

    @app.get(TRANSFERS)
    def list_transfers() -> Response:
        return api(lambda _c: (200, engine.list(request.args)))

    @app.get(TRANSFERS + "/<transfer_id>")
    def get_transfer(transfer_id: str) -> Response:
        return api(lambda _c: (200, engine.transfer_json(engine._get(transfer_id))))

    @app.delete(TRANSFERS + "/<transfer_id>")
    def reject_transfer(transfer_id: str) -> Response:
        return api(lambda _c: (200, engine.transfer_json(engine.reject(transfer_id))), mutating=True)

    @app.put(TRANSFERS + "/<transfer_id>/<any(register, sign, reserve):what>")
    def transfer_action(transfer_id: str, what: str) -> Response:
        def action(_c):
            body_json()  # optional parameters (convert_currency, user_ip, …): accepted, must be JSON
            return 200, engine.transfer_json(getattr(engine, what)(transfer_id))
        return api(action, mutating=True)

    @app.errorhandler(404)
    def not_found(_e) -> Response:
        return _error(404, "not_found", "resource not found")

    @app.errorhandler(405)
    def not_allowed(_e) -> Response:
        return _error(405, "invalid_request", "method not allowed for this resource")

    # ---- control API beyond state, knobs, describe, ledger, callbacks (no auth: local use only) ----

    @app.get("/_sandbox/transfers")
    def ctl_transfers() -> Response:
        with engine.lock:
            ids = list(engine.transfers) + list(engine.deleted)
            return json_response([engine.transfer(i) for i in ids])

    @app.get("/_sandbox/transfers/<transfer_id>")
    def ctl_transfer(transfer_id: str) -> Response:
        try:
            return json_response(engine.transfer(transfer_id))
        except KeyError:
            return json_response({"error": "no such transfer"}, 404)

    @app.post("/_sandbox/transfers/<transfer_id>/status")
    def ctl_status(transfer_id: str) -> Response:
        b = control_body()
        try:
            return json_response(engine.set_status(transfer_id, str(b.get("status", "")),
                                                   failure_code=b.get("failure_code"),
                                                   failure_message=b.get("failure_message")))
        except KeyError:
            return json_response({"error": "no such transfer"}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)

    @app.post("/_sandbox/wallets/<wallet_id>/balance")
    def ctl_balance(wallet_id: str) -> Response:
        b = control_body()
        try:
            engine.set_balance(wallet_id, str(b["currency"]), Decimal(str(b["amount"])))
            return json_response(engine.balance_json(wallet_id))
        except KeyError:
            return json_response({"error": "no such wallet (or currency/amount missing)"}, 404)
        except (InvalidOperation, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)

    @app.post("/_sandbox/tick")
    def ctl_tick() -> Response:
        engine.advance()
        return json_response({"server_time": int(engine.now())})

    return app


def describe(app: Any) -> dict:
    """``app.engine.describe()``: mac_id, mac_key, public key PEM, wallets (for ``exsync sandbox paysera``)."""
    return app.engine.describe()

