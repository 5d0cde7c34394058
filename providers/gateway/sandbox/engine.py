"""The fake gateway's state and its admin side: payouts and pay-ins, their life cycle and callbacks,
the balance and its ledger, the fault knobs (facts: docs/providers/gateway.md)."""
from __future__ import annotations

import itertools
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests
from flask import Response
from requests.utils import requote_uri

from providers.gateway.client import DEFAULT_PATHS, GatewayPaths
from providers.gateway.signing import DEFAULT_HEADERS, DEFAULT_WINDOW, HeaderNames, ReplayCache, sign
from providers.gateway.types import FINAL_STATUSES, PAYOUT_STATUSES, format_amount, mask_account
from providers.http import safe_url
from providers.sandbox import CallbackSender, Engine, Ledger, SandboxKnobs, draw_faults
from providers.sandbox.clock import monotonic
from providers.sandbox.web import json_response

log = logging.getLogger("providers.gateway.sandbox")

DEFAULT_API_KEY = "gw_sandbox_key_0000000000000001"
DEFAULT_SECRET = "gw_sandbox_secret_000000000000000000000001"
DEFAULT_SHOP_CODE = "main"

FAILURE_REASONS = ("Card declined by issuer", "Recipient account closed", "Limit exceeded at the recipient bank")

def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_body(message: str, code: str, errors: list[dict] | None = None) -> dict:
    out: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        out["errors"] = errors
    out["error"] = {"code": code, "message": message}
    return out


class _ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors = status, message, code, errors

    def response(self) -> Response:
        return json_response(_error_body(self.message, self.code, self.errors), self.status)


# --------------------------------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------------------------------

class Knobs(SandboxKnobs):
    """Fault knobs, changeable at run time as attributes or dict items (``knobs.error_rate = 0.2``)."""

    FIELDS: dict[str, Any] = {
        "latency": 0.0, "error_rate": 0.0, "fail_after_commit_rate": 0.0, "hang_seconds": 0.0,
        "clock_skew": 0.0, "replay_protection": True, "process_delay": 0.0, "final_failure_rate": 0.0,
        "callback_drop_rate": 0.0, "callback_duplicate_rate": 0.0, "callback_max_attempts": 5,
        "callback_backoff": 0.2, "callback_timeout": 5.0,
    }
    COUNTS = frozenset({"callback_max_attempts"})

    def _coerce(self, name: str, value: Any) -> Any:
        if name == "replay_protection":  # on unless clearly off
            if isinstance(value, str):
                return value.strip().lower() not in ("", "0", "false", "off", "no")
            return bool(value)
        return super()._coerce(name, value)


# --------------------------------------------------------------------------------------------------
# Operations (payouts and pay-ins)
# --------------------------------------------------------------------------------------------------

@dataclass
class _Op:
    kind: str  # "payout" | "payin"
    id: str
    external_id: str
    amount: Decimal
    currency: str
    card_number: str | None
    callback_url: str | None
    extra: dict
    status: str
    created_at: float
    updated_at: float
    failure_reason: str | None = None
    payment_url: str | None = None
    due: float | None = None  # monotonic time of the next automatic step
    refunded: bool = False

    def public(self, shop_code: str) -> dict:
        out: dict[str, Any] = {"id": self.id, "external_id": self.external_id, "status": self.status,
                               "amount": format_amount(self.amount), "currency": self.currency}
        if self.kind == "payout":
            out["card_number"] = mask_account(self.card_number)
        else:
            out["payment_url"] = self.payment_url
        out.update({"failure_reason": self.failure_reason, "callback_url": self.callback_url,
                    "shop_code": shop_code, "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at)})
        return out

    def same_request(self, amount: Decimal, currency: str, card_number: str | None,
                     callback_url: str | None) -> list[str]:
        """The parameters of a repeated create that differ from the stored ones."""
        diff = []
        if amount != self.amount:
            diff.append("amount")
        if currency != self.currency:
            diff.append("currency")
        if self.kind == "payout" and card_number != self.card_number:
            diff.append("card_number")
        if callback_url != self.callback_url:
            diff.append("callback_url")
        return diff


# --------------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------------

_URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)


def _valid_url(value: Any) -> bool:
    if not isinstance(value, str) or not _URL_RE.match(value):
        return False
    try:
        p = urlsplit(value)
        return bool(p.hostname) and (p.port is None or 0 < p.port < 65536)
    except ValueError:
        return False


class SandboxEngine(Engine):
    """The gateway's state and its admin side. Thread-safe: one lock guards everything."""

    _sender: CallbackSender  # always set: this sandbox sends callbacks

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, secret: str = DEFAULT_SECRET,
                 shop_code: str = DEFAULT_SHOP_CODE, shop_currency: str = "RUB",
                 balance: Decimal | str | int = Decimal("1000000"),
                 window: float = DEFAULT_WINDOW, callback_secret: str | None = None, seed: int | None = None,
                 knobs: Knobs | None = None, paths: GatewayPaths = DEFAULT_PATHS,
                 header_names: HeaderNames = DEFAULT_HEADERS) -> None:
        base = seed if seed is not None else random.randrange(1 << 30)
        super().__init__(knobs or Knobs(), random.Random(base + 1))  # error_rate / fail_after_commit_rate draws
        self.api_key = api_key
        self.secret = secret
        self.callback_secret = callback_secret or secret
        self.shop_code = shop_code
        self.shop_currency = shop_currency.upper()
        self.balance = Decimal(str(balance))
        self.window = window
        self.paths = paths
        self.header_names = header_names
        self.seed = seed
        self.rng = random.Random(base)            # outcomes (final_failure_rate, failure reasons)
        self.cb_rng = random.Random(base + 2)     # callback drops and duplicates
        self.ops: dict[str, dict[str, _Op]] = {"payout": {}, "payin": {}}
        # debit when a payout is committed, refund when it then fails, payin when a pay-in succeeds
        self.ledger = Ledger("external_id", executes=lambda entry: entry["type"] == "debit")
        self.replay = ReplayCache()
        self._ids = itertools.count(1)
        self._session = requests.Session()
        self._sender = CallbackSender(
            self.callback_log, post=self._post_callback, entry=self._callback_entry, name="gateway-sandbox-callbacks",
            attempts=lambda: self.knobs.callback_max_attempts, gave_up="gave_up",
            backoff=lambda attempt: self.knobs.callback_backoff * (2 ** (attempt - 1)))
        self._proc_cv = threading.Condition(self.lock)
        self._proc_thread: threading.Thread | None = None
        self._proc_stop = False

    # ---- reading -----------------------------------------------------------------------------
    def get(self, external_id: str, kind: str = "payout") -> dict | None:
        """The public object (as the API returns it), or None."""
        with self.lock:
            op = self.ops[kind].get(external_id)
            return op.public(self.shop_code) if op else None

    def executed(self, external_id: str) -> int:
        """How many times the money of this payout really left (debits in the ledger): never > 1."""
        with self.lock:
            return self.ledger.executed(external_id)

    def describe(self) -> dict:
        """What the sandbox accepts (``exsync sandbox gateway`` prints it). Sandbox credentials, not secrets."""
        h = self.header_names
        return {
            "provider": "gateway",
            "api_key": self.api_key,
            "secret": self.secret,
            "callback_secret": self.callback_secret,
            "shop_code": self.shop_code,
            "shop_currency": self.shop_currency,
            "balance": format_amount(self.balance),
            "window": self.window,
            "headers": {"api_key": h.api_key, "timestamp": h.timestamp, "signature": h.signature},
            "signature": "lowercase hex HMAC-SHA256(secret, timestamp + METHOD + path_with_query + raw body)",
            "paths": {"payouts": self.paths.payouts, "payout": self.paths.payout, "payins": self.paths.payins,
                      "payin": self.paths.payin, "balance": self.paths.balance},
            "control": "/_sandbox/state (no auth: local use only, never expose this port)",
            "knobs": self.knobs.as_dict(),
        }

    # ---- creating ----------------------------------------------------------------------------
    def create(self, kind: str, data: Any, root: str = "") -> tuple[int, dict]:
        """Validate and create (or find) a payout/pay-in from a decoded body; ``(http status, object)``.

        Raises ``_ApiError`` with the gateway's status, text and code.
        """
        if not isinstance(data, dict):
            raise _ApiError(422, "Request body must be a JSON object", "validation_error",
                            [{"field": "body", "message": "Request body must be a JSON object"}])
        errors: list[dict] = []

        ext = data.get("external_id")
        if isinstance(ext, int) and not isinstance(ext, bool):
            ext = str(ext)
        if not isinstance(ext, str) or not ext.strip():
            errors.append({"field": "external_id", "message": "external_id is required"})
        amount_raw = data.get("amount")
        amount: Decimal | None = None
        if isinstance(amount_raw, str):
            try:
                amount = Decimal(amount_raw.strip())
            except InvalidOperation:
                amount = None
            if amount is not None and (not amount.is_finite() or amount <= 0):
                amount = None
        if amount is None:
            errors.append({"field": "amount", "message": "amount must be a positive decimal string"})
        currency = data.get("currency")
        if not isinstance(currency, str) or not currency.strip():
            errors.append({"field": "currency", "message": "currency is required"})
        card = data.get("card_number")
        if kind == "payout":
            if isinstance(card, int) and not isinstance(card, bool):
                card = str(card)
            if not isinstance(card, str) or not card.strip():
                errors.append({"field": "card_number", "message": "card_number is required"})
        else:
            card = None
        cb = data.get("callback_url")
        if cb is not None and not _valid_url(cb):
            errors.append({"field": "callback_url", "message": "callback_url must be a valid URL"})
        if errors:
            raise _ApiError(422, errors[0]["message"], "validation_error", errors)

        assert isinstance(ext, str) and amount is not None and isinstance(currency, str)
        assert card is None or isinstance(card, str)
        currency = currency.strip().upper()
        extra = {k: v for k, v in data.items()
                 if k not in ("external_id", "amount", "currency", "card_number", "callback_url", "shop_code")}
        with self.lock:
            existing = self.ops[kind].get(ext)
            if existing is not None:
                diff = existing.same_request(amount, currency, card, cb)
                if diff:
                    what = "Payout" if kind == "payout" else "PayIn"
                    raise _ApiError(422, f"{what} with this external_id already exists with different parameters: "
                                         f"{', '.join(diff)}", "idempotency_conflict")
                return 200, existing.public(self.shop_code)
            if currency != self.shop_currency:
                raise _ApiError(422, f"Shop currency mismatch. Expected {self.shop_currency}.", "currency_mismatch")
            if kind == "payout" and amount > self.balance:
                raise _ApiError(422, f"Insufficient balance: available {format_amount(self.balance)}, "
                                     f"requested {format_amount(amount)}", "insufficient_balance")
            t = time.time()
            op = _Op(kind=kind, id=f"{'po' if kind == 'payout' else 'pi'}_{next(self._ids):06d}", external_id=ext,
                     amount=amount, currency=currency, card_number=card, callback_url=cb, extra=extra,
                     status="created", created_at=t, updated_at=t)
            if kind == "payin":
                op.payment_url = f"{root}/pay/{op.id}"
            self.ops[kind][ext] = op
            if kind == "payout":
                self.balance -= amount
                self._ledger("debit", op, -amount)
            self._schedule(op)
            return 201, op.public(self.shop_code)

    def _ledger(self, type_: str, op: _Op, delta: Decimal) -> None:
        self.ledger.record(type=type_, kind=op.kind, external_id=op.external_id, amount=delta, currency=op.currency,
                           balance=self.balance, at=time.time())

    def ledger_json(self) -> list[dict]:
        return self.ledger.rows(amount=format_amount, balance=format_amount)

    # ---- life cycle --------------------------------------------------------------------------
    def _schedule(self, op: _Op) -> None:
        delay = self.knobs.process_delay
        if delay <= 0 or op.status in FINAL_STATUSES:
            op.due = None
            return
        op.due = monotonic() + delay
        if self._proc_thread is None or not self._proc_thread.is_alive():
            self._proc_stop = False
            self._proc_thread = threading.Thread(target=self._process_loop, name="gateway-sandbox-processor",
                                                 daemon=True)
            self._proc_thread.start()
        self._proc_cv.notify_all()

    def _process_loop(self) -> None:
        with self.lock:
            while not self._proc_stop:
                now = monotonic()
                due = [op for ops in self.ops.values() for op in ops.values() if op.due is not None]
                for op in due:
                    if op.due is not None and op.due <= now:
                        self._step(op)
                        self._schedule(op)
                nxt = [op.due for ops in self.ops.values() for op in ops.values() if op.due is not None]
                self._proc_cv.wait(max(0.005, min(nxt) - monotonic()) if nxt else None)

    def _step(self, op: _Op) -> None:
        """One step along created -> processing -> success | failed (lock held)."""
        if op.status == "created":
            self._change(op, "processing")
        elif op.status == "processing":
            if self.rng.random() < self.knobs.final_failure_rate:
                self._change(op, "failed", self.rng.choice(FAILURE_REASONS))
            else:
                self._change(op, "success")

    def _change(self, op: _Op, status: str, failure_reason: str | None = None) -> None:
        """Every status change goes through here (lock held): money, times, callback."""
        op.status = status
        op.failure_reason = failure_reason if status in ("failed", "cancelled") else None
        op.updated_at = max(time.time(), op.updated_at)
        if status in FINAL_STATUSES:
            op.due = None
            if op.kind == "payout" and status in ("failed", "cancelled") and not op.refunded:
                op.refunded = True
                self.balance += op.amount
                self._ledger("refund", op, op.amount)
            if op.kind == "payin" and status == "success":
                self.balance += op.amount
                self._ledger("payin", op, op.amount)
        if op.callback_url:
            body = json.dumps(op.public(self.shop_code), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            self._sender.enqueue({"kind": op.kind, "external_id": op.external_id, "status": status,
                                  "url": op.callback_url, "body": body}, duplicate_after=0.05,
                                 **draw_faults(self.cb_rng, self.knobs, "drop", "duplicate"))

    def process(self, external_id: str, kind: str = "payout") -> str:
        """Move one object to a final status now (all remaining steps); returns that status."""
        with self.lock:
            op = self.ops[kind][external_id]
            while op.status not in FINAL_STATUSES:
                self._step(op)
            return op.status

    def process_all(self) -> int:
        """Move every payout and pay-in that is not final to a final status now; returns how many moved."""
        n = 0
        with self.lock:
            for kind, ops in self.ops.items():
                for ext, op in list(ops.items()):
                    if op.status not in FINAL_STATUSES:
                        self.process(ext, kind)
                        n += 1
        return n

    def set_status(self, external_id: str, status: str, failure_reason: str | None = None,
                   kind: str = "payout") -> None:
        """The admin side: put an object (not yet final) into ``status``. KeyError / ValueError."""
        if status not in PAYOUT_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.lock:
            op = self.ops[kind][external_id]
            if op.status in FINAL_STATUSES:
                raise ValueError(f"{kind} {external_id} is already final ({op.status})")
            if status == op.status:
                return
            if status == "failed" and not failure_reason:
                failure_reason = FAILURE_REASONS[0]
            self._change(op, status, failure_reason)
            self._schedule(op)

    def set_balance(self, value: Decimal | str | int) -> None:
        with self.lock:
            self.balance = Decimal(str(value))

    # ---- callbacks ---------------------------------------------------------------------------
    def _post_callback(self, item: dict) -> int:
        """A signed POST of the object, signed afresh on every try over exactly what goes on the wire."""
        url = requote_uri(item["url"])
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        ts = int(self.now())
        h = self.header_names
        headers = {h.api_key: self.api_key, h.timestamp: str(ts),
                   h.signature: sign(self.callback_secret, ts, "POST", target, item["body"]),
                   "Content-Type": "application/json", "User-Agent": "gateway-sandbox-callbacks/1"}
        return self._session.post(url, data=item["body"], headers=headers, timeout=self.knobs.callback_timeout,
                                  allow_redirects=False).status_code

    def _callback_entry(self, item: dict, outcome: str, http_status: int | None) -> dict:
        entry = {"kind": item["kind"], "external_id": item["external_id"], "status": item["status"],
                 "url": safe_url(item["url"]), "attempt": item["attempt"], "outcome": outcome,
                 "http_status": http_status, "at": time.time()}
        log.debug("gateway sandbox callback %s %s -> %s attempt %s: %s (HTTP %s)", item["kind"], item["external_id"],
                  entry["url"], item["attempt"], outcome, http_status)
        return entry

    def close(self) -> None:
        """Stop the background threads (processor, callback sender)."""
        with self.lock:
            self._proc_stop = True
            self._proc_cv.notify_all()
        if self._proc_thread is not None:
            self._proc_thread.join(timeout=2)
        super().close()
        self._session.close()

    def state(self, query: Mapping[str, str] | None = None) -> dict:
        with self.lock:
            return {"shop_code": self.shop_code, "currency": self.shop_currency,
                    "balance": format_amount(self.balance), "knobs": self.knobs.as_dict(),
                    "payouts": {k: op.status for k, op in self.ops["payout"].items()},
                    "payins": {k: op.status for k, op in self.ops["payin"].items()},
                    "ledger_entries": len(self.ledger), "requests_served": dict(self.requests_served),
                    "callbacks": {"pending": self.callbacks_pending, "log": len(self.callback_log)}}
