"""Paysera Transfer API as a :class:`providers.payouts.PayoutRail`.

The safe sequence (docs/providers/paysera.md): an unsigned transfer moves no money, so

1. ``create_transfer`` → an invisible draft (status ``new``) with an id;
2. ``store_id(key, transfer_id)`` at once (the payout engine persists it in its own row);
3. ``sign_transfer(id)`` → processing → done.

A payout is therefore safe to retry by key:

* the create's answer is lost (``UnknownOutcomeError`` from step 1): at most a draft exists, and nothing
  was paid. The draft carries our key in ``purpose.details`` (``… #exsync:<key>``), so :meth:`find`
  finds it by listing recent transfers (``list_transfers``: the Transfer API cannot look a transfer up
  by our key), stores its id through ``store_id`` and reports it as PENDING with ``code="new"``;
* storing the id fails (step 2): the draft is never signed and Paysera deletes it; ``send`` raises
  ``RetryableError(code="store_id_failed")`` — nothing was paid;
* the sign's answer is lost (``UnknownOutcomeError`` from step 3): :meth:`find` reads the stored id —
  ``processing``/``done`` means it went through, ``new`` means it did not.

**How find() reports an unsigned draft**: ``PayoutResult(state=PENDING, code="new", provider_ref=<id>,
message="draft: not signed, nothing was paid …")``. Nothing was paid; the engine should call
:meth:`send` again with the same key, which signs that draft (it never creates a second transfer while
the key has a live one). A draft that Paysera already deleted (``not_found`` for the stored id) is
reported as unknown (``None``) when no other transfer carries the key: Paysera deletes only unsigned
drafts, so nothing was paid and a new ``send`` is safe.

``send`` with a key that already has a transfer (checked: same amount and currency, else
``PermanentError(code="idempotency_key_reused")``) acts on its status: ``new``/``registered``/``reserved``
→ sign it; ``signed``/``processing``/``waiting_*`` → PENDING; ``done`` → SUCCEEDED;
``rejected``/``revoked``/``failed`` → FAILED (never a new transfer under the same key: a new attempt needs
a new key).

Status map: ``done`` → SUCCEEDED; ``new``, ``registered``, ``signed``, ``reserved``, ``processing``,
``waiting_funds``, ``waiting_registration``, ``waiting_password`` (and any unknown status) → PENDING;
``rejected``, ``revoked``, ``failed`` → FAILED (``code`` is ``failure_status.code`` when Paysera gives one).

Without ``store_id``/``load_id`` the rail keeps ids in a dict in memory: fine for scripts and tests, not for
several processes.
"""
from __future__ import annotations

import logging
import re
import threading
from decimal import Decimal
from typing import Any, Callable, Mapping

from providers.errors import BadResponseError, NotFoundError, PermanentError, RetryableError
from providers.payouts import FAILED, PENDING, SUCCEEDED, PayoutRequest, PayoutResult
from providers.paysera.client import PayseraClient
from providers.paysera.errors import PROVIDER, InvalidStateError
from providers.paysera.types import DRAFT_STATUSES, FINAL_FAILED_STATUSES, Transfer

log = logging.getLogger("providers.paysera")

__all__ = ["PayseraRail", "key_token", "result_for", "DEFAULT_LOOKBACK"]

KEY_PREFIX = "#exsync:"
DEFAULT_LOOKBACK = 7 * 24 * 3600  # seconds of transfers find() lists when no id is stored
_SIGNABLE = frozenset({"new", "registered", "reserved"})


def key_token(key: str) -> str:
    """The token put in ``purpose.details`` so a transfer can be found by our key."""
    return f"{KEY_PREFIX}{key}"


def _carries_key(t: Transfer, key: str) -> bool:
    pattern = r"(?:^|\s)" + re.escape(key_token(key)) + r"(?:\s|$)"
    return any(re.search(pattern, s or "") for s in (t.details, t.reference)) or t.reference == key


def result_for(t: Transfer) -> PayoutResult:
    """A transfer's state as the payout engine sees it (see the module's status map)."""
    status = t.status or ""
    if status == "done":
        return PayoutResult(SUCCEEDED, provider_ref=t.id, code=status, raw=t.raw)
    if status in FINAL_FAILED_STATUSES:
        fs = t.failure_status
        return PayoutResult(FAILED, provider_ref=t.id, code=(fs.code if fs and fs.code else status),
                            message=(fs.message if fs and fs.message else f"transfer {status}"), raw=t.raw)
    if status in DRAFT_STATUSES:
        return PayoutResult(PENDING, provider_ref=t.id, code=status,
                            message="draft: not signed, nothing was paid; send() with the same key signs it",
                            raw=t.raw, unsent=True)
    return PayoutResult(PENDING, provider_ref=t.id, code=status or None, raw=t.raw)


_RANK = {"done": 5, "processing": 4, "signed": 4, "waiting_funds": 3, "waiting_registration": 3,
         "waiting_password": 3, "reserved": 2, "registered": 1, "new": 1}


class PayseraRail:
    """PayoutRail over one :class:`PayseraClient`.

    ``payer_account``: the account number money leaves from (else Paysera's default for the client).
    ``beneficiary_type``: ``"paysera"`` (destination = a Paysera account number, or an e-mail when it has
    an ``@``) or ``"bank"`` (destination = an IBAN; the beneficiary name comes from
    ``request.extra["beneficiary_name"]``). ``request.extra["beneficiary"]`` (a full beneficiary object)
    overrides both; ``request.extra["callback_url"]`` registers a callback.
    ``lookback``: how far back (seconds) :meth:`find` lists transfers when no id is stored.
    """

    def __init__(self, client: PayseraClient, *, name: str = "paysera", payer_account: str | None = None,
                 beneficiary_type: str = "paysera", store_id: Callable[[str, str], None] | None = None,
                 load_id: Callable[[str], str | None] | None = None, lookback: float = DEFAULT_LOOKBACK,
                 page_size: int = 100, wallet_id: str | None = None) -> None:
        if beneficiary_type not in ("paysera", "bank"):
            raise ValueError("beneficiary_type must be 'paysera' or 'bank'")
        if (store_id is None) != (load_id is None):
            raise ValueError("pass both store_id and load_id, or neither")
        self.client = client
        self.name = name
        self.wallet_id = wallet_id  # the wallet whose balance balances() reads (None: not read)
        self.payer_account = payer_account
        self.beneficiary_type = beneficiary_type
        self.lookback = lookback
        self.page_size = page_size
        self._ids: dict[str, str] = {}
        self._ids_lock = threading.Lock()
        self._store = store_id or self._mem_store
        self._load = load_id or self._mem_load

    def __repr__(self) -> str:
        return f"PayseraRail(name={self.name!r}, client={self.client!r})"

    # ---- in-memory id store (no callbacks given) ------------------------------------------------
    def _mem_store(self, key: str, transfer_id: str) -> None:
        with self._ids_lock:
            self._ids[key] = transfer_id

    def _mem_load(self, key: str) -> str | None:
        with self._ids_lock:
            return self._ids.get(key)

    # ---- request → transfer body ----------------------------------------------------------------
    def _beneficiary(self, req: PayoutRequest) -> dict[str, Any]:
        given = req.extra.get("beneficiary")
        if isinstance(given, Mapping):
            return dict(given)
        name = req.extra.get("beneficiary_name")
        if self.beneficiary_type == "bank":
            b: dict[str, Any] = {"type": "bank", "bank_account": {"iban": req.destination.replace(" ", "")}}
        else:
            ident = {"email": req.destination} if "@" in req.destination else {"account_number": req.destination}
            b = {"type": "paysera", "paysera_account": ident}
        if name:
            b["name"] = str(name)
        return b

    @staticmethod
    def _purpose(req: PayoutRequest) -> dict[str, str]:
        details = f"{req.description} {key_token(req.key)}".strip()
        return {"details": details}

    # ---- PayoutRail -----------------------------------------------------------------------------
    def balances(self) -> dict[str, Decimal]:
        """The wallet's money at disposal per currency (empty without a ``wallet_id``)."""
        if self.wallet_id is None:
            return {}
        return {c: b.at_disposal for c, b in self.client.wallet_balance(self.wallet_id).currencies.items()}

    def send(self, request: PayoutRequest) -> PayoutResult:
        """Create (draft) → store id → sign; or act on the transfer the key already has (module notes)."""
        existing = self._stored_transfer(request.key)
        if existing is not None:
            self._check_same(existing, request)
            if existing.status in _SIGNABLE:
                return self._sign(existing.id, request.key)
            return result_for(existing)
        t = self.client.create_transfer(
            request.amount, request.currency, self._beneficiary(request), payer=self.payer_account,
            purpose=self._purpose(request), callback=request.extra.get("callback_url"))
        if not t.id:  # never signed, so nothing can be paid: the plain "unreadable" answer of a read
            raise BadResponseError("create_transfer answered without an id: the draft (if any) stays unsigned",
                                   code="bad_response", provider=PROVIDER, call="create_transfer")
        try:
            self._store(request.key, t.id)
        except Exception as exc:
            # Never sign what we could not record: the draft expires unsigned, nothing is paid.
            raise RetryableError(f"could not store the transfer id ({type(exc).__name__}); the draft stays "
                                 "unsigned and nothing was paid", code="store_id_failed", provider=PROVIDER) from exc
        log.debug("paysera rail %s: draft %s stored for key %s", self.name, t.id, request.key)
        return self._sign(t.id, request.key)

    @staticmethod
    def _check_same(t: Transfer, req: PayoutRequest) -> None:
        """A key replayed with another amount or currency is an error, never a second payout."""
        if t.amount is not None and (t.amount.amount != req.amount or t.amount.currency != req.currency.upper()):
            raise PermanentError(f"payout key already used for transfer {t.id} of {t.amount.amount} "
                                 f"{t.amount.currency}", code="idempotency_key_reused", provider=PROVIDER)

    def _sign(self, transfer_id: str | None, key: str) -> PayoutResult:
        try:
            return result_for(self.client.sign_transfer(transfer_id))
        except InvalidStateError:
            # Signed meanwhile (e.g. by an earlier attempt whose answer was lost), or rejected: read it.
            return result_for(self.client.get_transfer(transfer_id))

    def _stored_transfer(self, key: str) -> Transfer | None:
        """The transfer under the stored id, or None (no id, or an unsigned draft Paysera deleted)."""
        transfer_id = self._load(key)
        if not transfer_id:
            return None
        try:
            return self.client.get_transfer(transfer_id)
        except NotFoundError:
            log.info("paysera rail %s: stored transfer %s is gone (an unsigned draft expires)", self.name,
                     transfer_id)
            return None

    def find(self, key: str) -> PayoutResult | None:
        """What Paysera knows about the payout with ``key``; None when no transfer carries it.

        Stored id first; without one (or when it is gone), the transfers of the last ``lookback`` seconds
        are listed and searched for the key in ``purpose.details``; a transfer found that way has its id
        stored (so ``send`` continues with it). An unsigned draft is PENDING with ``code="new"``.
        """
        t = self._stored_transfer(key)
        if t is not None:
            return result_for(t)
        found = self._search(key)
        if found is None or not found.id:  # _search keeps only transfers with an id
            return None
        try:
            self._store(key, found.id)
        except Exception as exc:  # find() stays read-only in effect: report what we saw
            log.warning("paysera rail %s: could not store transfer id found by key (%s)", self.name,
                        type(exc).__name__)
        return result_for(found)

    def _search(self, key: str) -> Transfer | None:
        since = int(self.client.now() - self.lookback)
        filters: dict[str, Any] = {"created_date_from": since}
        if self.payer_account:
            filters["debit_account_number"] = self.payer_account
        matches = [t for t in self.client.iter_transfers(page_size=self.page_size, **filters)
                   if t.id and _carries_key(t, key)]
        if not matches:
            return None
        if len([t for t in matches if _RANK.get(t.status or "", 0) >= 3]) > 1:
            log.error("paysera rail %s: %d transfers moved money for key %s", self.name, len(matches), key)
        # Prefer the transfer that got furthest (money moved beats a draft), then the newest.
        matches.sort(key=lambda t: (_RANK.get(t.status or "", 0), t.created_at.timestamp() if t.created_at else 0),
                     reverse=True)
        return matches[0]

