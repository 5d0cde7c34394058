"""ZaleyCash as a payout rail: :class:`providers.payouts.PayoutRail` on top of :class:`ZaleyCashClient`.

A payout is ``POST money/transfer/internal`` to a linked child user, with our idempotency key as the
``operation_id``. ZaleyCash has no callbacks, so a payout's fate is learned from the answer itself, and
after an unknown outcome from :meth:`ZaleyCashRail.find`.

Why code 58 (Duplicate operation_id) means SUCCEEDED: ``operation_id`` is the idempotency key of a money
operation and 58 on a repeat means the first operation with that id was recorded. An internal transfer
is a ledger move inside ZaleyCash (no external leg that could still fail), so "recorded" is "paid".

``find(key)`` works in one of two ways:

1. With a ``status_path`` configured on the client, it asks that endpoint; code 55 (no such operation)
   is the one answer that yields ``None``.
2. Otherwise (the default: the endpoint's name is not public) it uses the documented fallback: it sends
   the SAME transfer again, with the same ``operation_id``, user, currency and amount. A repeat can never
   pay twice, and the answer tells what happened:

   * 58 → the first transfer was recorded: SUCCEEDED.
   * a fresh success → the first one never got through, and this probe just made the payout: SUCCEEDED.
     So ``find()`` may *complete* a payout. That is safe: the key is the same, so ZaleyCash still
     executes at most one transfer for it, and it is exactly what the engine would do next anyway.
   * 50/51 (not enough money) → :class:`providers.InsufficientFundsError`, never ``None``. ``None`` tells
     the engine "never executed: safe to send", and it may act on that beyond a plain resend (fail the
     payout, route it to another rail under a new key). But 51 does not prove absence: ZaleyCash may
     check the balance before it checks duplicates, and the first transfer executing is precisely what
     can have drained the balance. The error parks the payout instead; once money is topped up the next
     ``find()`` probe answers 58 (it existed) or pays it (it did not).
   * any other permanent refusal (wrong currency, unknown/inactive user, protected account, validation)
     → :class:`ProbeRefusedError`, an :class:`UnknownOutcomeError`: the same check-order doubt applies,
     so the payout stays unresolved (the engine keeps asking, then hands it to a person) rather than
     being failed on a guess.
   * retryable, unknown-outcome and auth errors propagate unchanged.

   The probe needs the payout's parameters: ``find()`` takes them from the requests this rail has sent
   (kept in memory) or from ``request_lookup(key)`` — the engine's stored payout, which survives a
   restart. Without either it raises :class:`LookupUnavailableError` (the outcome stays unknown).
"""
from __future__ import annotations

import collections
import threading
from decimal import Decimal
from typing import Any, Callable, Mapping

from providers.errors import InsufficientFundsError, NotFoundError, PermanentError, UnknownOutcomeError, ValidationError
from providers.payouts import FAILED, PENDING, SUCCEEDED, PayoutRequest, PayoutResult
from providers.zaleycash.client import ZaleyCashClient
from providers.zaleycash.errors import PROVIDER, DuplicateOperationError, OperationNotFoundError
from providers.zaleycash.types import Transfer

__all__ = ["ZaleyCashRail", "LookupUnavailableError", "ProbeRefusedError", "transfer_state"]

# Transfer status words, lower case. Anything unknown is PENDING: not final, ask again.
_SUCCEEDED_WORDS = frozenset({"success", "succeeded", "successful", "done", "completed", "complete", "approved",
                              "paid", "ok", "executed", "processed", "finished", "confirmed"})
_PENDING_WORDS = frozenset({"pending", "new", "created", "processing", "in_progress", "inprogress", "waiting",
                            "hold", "queued", "accepted"})
_FAILED_WORDS = frozenset({"failed", "fail", "error", "declined", "rejected", "cancelled", "canceled", "reverted",
                           "reversed", "refunded", "expired"})


def transfer_state(status: Any, default: str = SUCCEEDED) -> str:
    """A ZaleyCash transfer status → SUCCEEDED / PENDING / FAILED.

    ``default`` is used when the answer carries no status at all (a transfer answered with code 200 is a
    recorded ledger move); a status word we do not know is PENDING.
    """
    if status is None or str(status).strip() == "":
        return default
    s = str(status).strip().lower().replace("-", "_").replace(" ", "_")
    if s in _SUCCEEDED_WORDS:
        return SUCCEEDED
    if s in _FAILED_WORDS:
        return FAILED
    return PENDING


class LookupUnavailableError(UnknownOutcomeError):
    """``find()`` has neither a status endpoint nor the payout's parameters to probe with."""


class ProbeRefusedError(UnknownOutcomeError):
    """The ``find()`` probe was refused permanently; the original outcome is still unknown.

    The provider's error is ``__cause__``; its code is ``.code``.
    """


RequestLookup = Callable[[str], "PayoutRequest | None"]


class ZaleyCashRail:
    """Pay out by internal transfer to a linked child user. Thread-safe.

    ``currencies``: our currency names → ZaleyCash int codes (``{"RUB": 1}``); a ``PayoutRequest.currency``
    that is a string of digits is taken as the code itself. ``request_lookup``: ``key → PayoutRequest``
    (the engine's stored payout), used by :meth:`find` after a restart. ``remember``: how many recent
    requests are kept in memory for :meth:`find` and for the "same key, other parameters" check.
    """

    def __init__(self, client: ZaleyCashClient, *, name: str = "zaleycash",
                 currencies: Mapping[str, int] | None = None, request_lookup: RequestLookup | None = None,
                 remember: int = 10_000) -> None:
        self.client = client
        self.name = name
        self.currencies = {str(k).strip().upper(): int(v) for k, v in (currencies or {}).items()}
        self.request_lookup = request_lookup
        self._remember_max = max(0, remember)
        self._sent: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ZaleyCashRail({self.name!r}, {self.client!r})"

    def balances(self) -> dict[str, Decimal]:
        """``GET user/balance`` per currency, named as in ``currencies`` (an unmapped code as its digits)."""
        names = {code: name for name, code in self.currencies.items()}
        return {names.get(b.currency, str(b.currency)): b.balance for b in self.client.balance()
                if b.currency is not None and b.balance is not None}

    # ------------------------------------------------------------------ parameters
    def currency_code(self, currency: str) -> int:
        """The ZaleyCash int code of ``currency`` (mapping first, then a string of digits)."""
        c = str(currency).strip()
        if c.upper() in self.currencies:
            return self.currencies[c.upper()]
        if c.isdigit():
            return int(c)
        raise ValidationError(f"currency {c!r} has no ZaleyCash code: add it to the rail's currency mapping",
                              fields={"currency": "no ZaleyCash code"}, code="unknown_currency", provider=PROVIDER)

    def transfer_params(self, req: PayoutRequest) -> dict[str, Any]:
        """The ``transfer_internal`` arguments for ``req``; ValidationError (nothing sent) when impossible."""
        dest = str(req.destination).strip()
        if not dest.isdigit():
            raise ValidationError("destination must be a ZaleyCash user id (digits)",
                                  fields={"destination": "not a user id"}, code="invalid_destination",
                                  provider=PROVIDER)
        return {"user_id": int(dest), "currency": self.currency_code(req.currency),
                "amount": Decimal(req.amount), "operation_id": req.key}

    def _remember(self, params: dict[str, Any]) -> None:
        """Keep the parameters sent under a key; a key reused with other parameters is refused."""
        key = params["operation_id"]
        with self._lock:
            seen = self._sent.get(key)
            if seen is not None and seen != params:
                raise ValidationError("idempotency key reused with other parameters (amount, currency or user)",
                                      fields={"key": "reused with other parameters"}, code="key_reused",
                                      provider=PROVIDER)
            if self._remember_max:
                self._sent[key] = params
                self._sent.move_to_end(key)
                while len(self._sent) > self._remember_max:
                    self._sent.popitem(last=False)

    def _params_for(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            params = self._sent.get(key)
        if params is not None:
            return params
        if self.request_lookup is not None:
            req = self.request_lookup(key)
            if req is not None:
                if req.key != key:
                    raise ValueError("request_lookup returned a payout with another key")
                return self.transfer_params(req)
        return None

    # ------------------------------------------------------------------ results
    @staticmethod
    def _result(t: Transfer) -> PayoutResult:
        return PayoutResult(state=transfer_state(t.status), provider_ref=t.transaction_id or t.operation_id,
                            code=200, message=t.status, raw=t.raw)

    @staticmethod
    def _already_recorded(key: str, err: DuplicateOperationError) -> PayoutResult:
        # 58: the first operation with this id was recorded. Its ZaleyCash id is not in this answer, so
        # the reference is our operation_id (which identifies it at ZaleyCash just as well).
        return PayoutResult(state=SUCCEEDED, provider_ref=key, code=err.code,
                            message=f"already recorded: {err.message}",
                            raw={"code": err.code, "message": err.message})

    # ------------------------------------------------------------------ PayoutRail
    def send(self, request: PayoutRequest) -> PayoutResult:
        """Transfer ``request.amount`` to user ``request.destination`` under ``operation_id = request.key``.

        SUCCEEDED on success and on code 58 (the first transfer with this key was recorded). Errors: see
        :mod:`providers.zaleycash.errors` — notably UnknownOutcomeError (call :meth:`find`),
        InsufficientFundsError (code 50/51), RetryableError (53, 73, 5xx answered before anything ran).
        """
        params = self.transfer_params(request)
        self._remember(params)
        try:
            t = self.client.transfer_internal(**params)
        except DuplicateOperationError as e:
            return self._already_recorded(request.key, e)
        return self._result(t)

    def find(self, key: str) -> PayoutResult | None:
        """What ZaleyCash knows about the payout ``key`` (see the module text for the fallback probe).

        Note: without a status endpoint this may *complete* the payout (a probe resend that succeeds);
        that is safe because the key — ZaleyCash's ``operation_id`` — is the same.
        """
        if self.client.status_path:
            try:
                st = self.client.transfer_status(key)
            except OperationNotFoundError:
                return None  # the status endpoint says it has no such operation
            return PayoutResult(state=transfer_state(st.status), provider_ref=st.transaction_id or key,
                                code=200, message=st.status, raw=st.raw)

        params = self._params_for(key)
        if params is None:
            raise LookupUnavailableError(
                f"find({key!r}): no status endpoint and no parameters to probe with; configure status_path "
                f"or pass request_lookup", code="no_lookup", provider=PROVIDER)
        try:
            t = self.client.transfer_internal(**params)
        except DuplicateOperationError as e:
            return self._already_recorded(key, e)  # it existed
        except InsufficientFundsError:
            raise  # park, never None: see the module text
        except (PermanentError, NotFoundError) as e:
            raise ProbeRefusedError(
                f"find({key!r}): the probe was refused ({type(e).__name__}, code {e.code}: {e.message}); "
                f"the outcome of the payout stays unknown", code=e.code, http_status=e.http_status,
                provider=PROVIDER) from e
        return self._result(t)  # it did not exist; the probe made it now
