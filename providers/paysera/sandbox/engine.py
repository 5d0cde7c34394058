"""The fake Paysera's state and its admin side: wallets, transfers and their life cycle, the ledger of
executions, callbacks signed with the sandbox's RSA key (facts: docs/providers/paysera.md)."""
from __future__ import annotations

import collections
import itertools
import json
import random
import re
import threading
import time
from decimal import Decimal
from typing import Any, Iterable, Mapping

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.paysera.callbacks import sign_event
from providers.paysera.mac import NonceCache
from providers.paysera.sandbox.state import (
    _AMOUNT_RE,
    _CENT,
    _CURRENCY_RE,
    _IBAN_RE,
    _REJECTABLE,
    _STATUSES,
    Knobs,
    _ApiError,
    _money,
    _Transfer,
    _Wallet,
    _wallets_from,
)
from providers.sandbox import CallbackSender, Engine, Ledger


class SandboxEngine(Engine):
    """The provider's state and its admin side. Thread-safe: one lock guards everything."""

    _sender: CallbackSender  # always set: this sandbox sends callbacks

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
        # Every check above passed: the amount, the currency and the beneficiary are there.
        assert amount is not None and isinstance(currency, str) and isinstance(beneficiary, Mapping)
        extra = {k: v for k, v in body.items()
                 if k not in ("amount", "beneficiary", "payer", "purpose", "callback", "id", "status")}
        t = _Transfer(id=str(next(self._ids)), status="new", amount=amount, currency=currency,
                      beneficiary=dict(beneficiary), wallet_id=wallet.id,
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
