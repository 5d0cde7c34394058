"""Client of the Paysera Wallet API (server time, configuration, wallet balance) and Transfer API (payouts).

Usable as a library on its own::

    from providers.paysera import PayseraClient
    c = PayseraClient("https://wallet.paysera.com", mac_id, mac_key, project_id=3)
    t = c.create_transfer("100.00", "EUR", {"type": "paysera", "paysera_account": {"account_number": "EVP…"}},
                          purpose="order 77")
    store(t.id)                       # at once: a lost answer from here on can be checked by id
    c.sign_transfer(t.id)             # authorise: only now can money move
    c.get_transfer(t.id).status       # "processing" … "done"

Facts this client is built for (docs/providers/paysera.md): every call but ``/rest/v1/server`` and
``/rest/v1/configuration`` is signed with MAC access authentication (:mod:`providers.paysera.mac`), the
query string is part of the signed URI, ``project_id``/``location_id`` travel inside ``ext``; success is
HTTP 200 with JSON, anything else is the error object (:mod:`providers.paysera.errors`).

Clock: the MAC carries a unix timestamp that the server checks against its own clock. The client learns
its offset from ``GET /rest/v1/server`` lazily, before its first signed call, and again when the server
refuses a request with 401: if the description names the timestamp or the re-sync moved the offset, the
request is signed again (new ts, new nonce) and sent once more. A 401 means the server did not act, so
this is safe even for ``create``/``sign``.

Outcomes of calls that may move money (``create_transfer``, ``sign_transfer``, ``reserve_transfer`` and
any ``POST`` through :meth:`request`): a read timeout, a connection lost after sending, a 5xx (503
included) or a garbled 200 raise :class:`providers.UnknownOutcomeError` — look the transfer up before
anything else. Other calls raise :class:`providers.RetryableError` for a 5xx and
:class:`providers.BadResponseError` for a garbled 200 (``providers.http.SEMANTICS``).
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import quote, urlencode, urlsplit

import requests

from providers.errors import ProviderError
from providers.http import (
    DEFAULT_POOL_MAXSIZE,
    HttpResponse,
    HttpTransport,
    TransportClient,
    json_dumps,
    unreadable_error,
)
from providers.paysera import mac as _mac
from providers.paysera.errors import ENVELOPE, PROVIDER, is_clock_rejection
from providers.paysera.types import Configuration, Transfer, TransferPage, WalletBalance
from providers.values import to_int

log = logging.getLogger("providers.paysera")

__all__ = ["PayseraClient", "TRANSFERS_PATH", "SERVER_PATH", "CONFIGURATION_PATH", "mask", "format_amount"]

SERVER_PATH = "/rest/v1/server"
CONFIGURATION_PATH = "/rest/v1/configuration"
TRANSFERS_PATH = "/transfer/rest/v1/transfers"
RESYNC_THRESHOLD = 2.0  # seconds: a re-sync that moves the offset this much justifies a retry (server time is
# whole seconds, so two estimates of an unchanged offset differ by up to about one second)
# The default clock, kept in a tuple (freezegun patches module attributes, not container contents) so that
# it can be recognised and replaced by a late lookup of time.time that freezegun can move.
_REAL_TIME = (time.time,)


def mask(value: str | None) -> str:
    """First 4 characters, the rest hidden (for logs and reprs)."""
    if not value:
        return "-"
    return f"{value[:4]}…"


def format_amount(value: Any, name: str = "amount") -> str:
    """Decimal/int/str → a plain decimal string (``Decimal("1E+2")`` → ``"100"``). Floats are refused."""
    if value is None or isinstance(value, bool):
        raise ValueError(f"{name} is required")
    if isinstance(value, float):
        raise TypeError(f"{name}: pass a Decimal, int or str, not a float")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except Exception:
        raise ValueError(f"{name}: not a decimal number") from None
    if not d.is_finite():
        raise ValueError(f"{name}: not a finite number")
    return format(d, "f")


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        dt = v if v.tzinfo else v.replace(tzinfo=timezone.utc)
        return str(int(dt.timestamp()))
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, (list, tuple, set, frozenset)):
        return ",".join(_query_value(x) for x in v)
    return str(v)


def _query(params: Mapping[str, Any] | None) -> str:
    """Query string in the caller's order, None values left out (exactly what is sent and signed)."""
    if not params:
        return ""
    return urlencode([(str(k), _query_value(v)) for k, v in params.items() if v is not None])


def _seg(value: Any) -> str:
    s = str(value)
    if not s:
        raise ValueError("id must not be empty")
    return quote(s, safe="")


class PayseraClient(TransportClient):
    """One Paysera API client (MAC credentials). Thread-safe: share one instance across a thread pool.

    ``base_url`` is the site root (``https://wallet.paysera.com``); paths start at that root.
    ``project_id``/``location_id`` (Paysera's extra parameters) go into ``ext`` of every signed call.
    ``clock`` returns unix seconds; the default ``time.time`` is looked up at each call (freezegun-friendly).
    """

    provider = PROVIDER
    envelope = ENVELOPE

    def __init__(
        self,
        base_url: str,
        mac_id: str,
        mac_key: str,
        *,
        timeout: float | tuple[float, float] = 15.0,
        session: requests.Session | None = None,
        project_id: int | str | None = None,
        location_id: int | str | None = None,
        clock: Callable[[], float] | None = time.time,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
        verify: bool | str = True,
    ) -> None:
        if not base_url or "://" not in base_url:
            raise ValueError("base_url must be the site root, e.g. https://wallet.paysera.com")
        if not mac_id or not mac_key:
            raise ValueError("mac_id and mac_key are required")
        self.base_url = base_url.rstrip("/")
        p = urlsplit(self.base_url)
        _mac.split_host_port(p.netloc, p.scheme)  # fail early on a URL without a usable host/port
        self.mac_id = mac_id
        self._mac_key = mac_key
        self.project_id = project_id
        self.location_id = location_id
        self.timeout = timeout
        self._clock = (lambda: time.time()) if clock is None or clock is _REAL_TIME[0] else clock
        self._offset: float | None = None
        self._clock_lock = threading.Lock()
        self._http = HttpTransport(PROVIDER, timeout=timeout, session=session, pool_maxsize=pool_maxsize,
                                   verify=verify)

    def __repr__(self) -> str:  # never shows the key
        return f"PayseraClient({self.base_url!r}, mac_id={mask(self.mac_id)!r})"

    def _credential(self) -> str:
        return f"mac_id={mask(self.mac_id)}"

    def _secrets(self) -> Iterable[str]:
        return (self._mac_key,)

    # ------------------------------------------------------------------ clock
    @property
    def clock_offset(self) -> float | None:
        """Server time minus local time in seconds, once learned (None before the first sync)."""
        return self._offset

    def now(self) -> float:
        """The server's time as far as we know it (local clock plus the learned offset)."""
        return self._clock() + (self._offset or 0.0)

    def sync_clock(self) -> float:
        """Learn the clock offset from ``GET /rest/v1/server``; returns it."""
        before = self._clock()
        server = self.server_time()
        after = self._clock()
        offset = server - (before + after) / 2.0
        with self._clock_lock:
            self._offset = offset
        log.debug("paysera clock offset %.1fs (mac_id=%s)", offset, mask(self.mac_id))
        return offset

    def _ensure_clock(self) -> None:
        if self._offset is None:
            with self._clock_lock:
                need = self._offset is None
            if need:
                self.sync_clock()

    # ------------------------------------------------------------------ transport
    def _ext_params(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "location_id": self.location_id}

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        q = _query(params)
        return f"{self.base_url}{path}?{q}" if q else f"{self.base_url}{path}"

    def _send_once(self, method: str, url: str, body: bytes | None, auth: bool, call: str,
                   idempotent: bool) -> HttpResponse:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json;charset=utf-8"
        if auth:
            headers["Authorization"] = _mac.sign(method, url, body, self.mac_id, self._mac_key,
                                                 ts=int(self.now()), ext_params=self._ext_params())
        return self._http.send(method, url, data=body, headers=headers, what=call, idempotent=idempotent)

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
              auth: bool = True, idempotent: bool | None = None, call: str = "request") -> Any:
        method = method.upper()
        if idempotent is None:
            idempotent = method != "POST" and self.envelope.idempotent(call)
        url = self._url(path, params)
        body = json_dumps(json) if json is not None else None

        def exchange() -> HttpResponse:
            if auth:
                self._ensure_clock()
            resp = self._send_once(method, url, body, auth, call, idempotent)
            if resp.status == 401 and auth:
                err = self._error_of(resp, call, idempotent)
                if err is not None and self._resync_after(err):  # a 401 means Paysera did not act
                    log.debug("paysera %s: 401 after a clock re-sync check, signing again", call)
                    resp = self._send_once(method, url, body, auth, call, idempotent)
            return resp

        return self._request(call, idempotent, method, path, exchange).data

    def _resync_after(self, err: ProviderError) -> bool:
        """After a 401: re-sync the clock; True when a second try can help (ts refused or offset moved)."""
        old = self._offset
        try:
            new = self.sync_clock()
        except ProviderError:
            return False
        moved = old is None or abs(new - old) >= RESYNC_THRESHOLD
        return moved or is_clock_rejection(err)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                auth: bool = True) -> Any:
        """A signed call of any endpoint; returns the decoded JSON (fractions as Decimal).

        ``path`` starts at the site root (``/rest/v1/server``, ``/transfer/rest/v1/transfers``); ``params``
        become the query string (signed with the URI); ``json`` is the body (Decimals as strings). A
        ``POST`` is treated as a call that may move money (see the module notes).
        """
        return self._call(method, path, params=params, json=json, auth=auth)

    # ------------------------------------------------------------------ Wallet API
    def server_time(self) -> int:
        """``GET /rest/v1/server`` (no auth): the server's unix time."""
        data = self._call("GET", SERVER_PATH, auth=False, call="server")
        server = to_int(data.get("time")) if isinstance(data, Mapping) else None
        if server is None:
            raise unreadable_error(self.envelope, "server", True, "the answer has no time", raw_body=data)
        return server

    def configuration(self) -> Configuration:
        """``GET /rest/v1/configuration`` (no auth)."""
        return Configuration.from_raw(self._call("GET", CONFIGURATION_PATH, auth=False, call="configuration"))

    def wallet_balance(self, wallet_id: int | str) -> WalletBalance:
        """``GET /rest/v1/wallet/{id}/balance``: per currency, at disposal and reserved (Decimal)."""
        data = self._call("GET", f"/rest/v1/wallet/{_seg(wallet_id)}/balance", call="wallet_balance")
        return WalletBalance.from_raw(wallet_id, data)

    # ------------------------------------------------------------------ Transfer API
    def create_transfer(self, amount: Decimal | str | int, currency: str, beneficiary: Mapping[str, Any],
                        payer: str | Mapping[str, Any] | None = None, purpose: str | Mapping[str, Any] | None = None,
                        callback: str | Mapping[str, Any] | None = None, **extra: Any) -> Transfer:
        """``POST /transfers``: an invisible draft (status ``new``) that moves no money until signed.

        ``payer`` may be an account number; ``purpose`` a details string; ``callback`` a URL. ``extra``
        fields (``perform_at``, ``urgency``, ``cancelable``, …) are added to the body as given. Save the
        returned id at once: after a lost answer the draft can only be found by listing.
        """
        if not currency or not isinstance(currency, str):
            raise ValueError("currency is required")
        if not isinstance(beneficiary, Mapping) or not beneficiary:
            raise ValueError("beneficiary must be a non-empty mapping")
        body: dict[str, Any] = {"amount": {"amount": format_amount(amount), "currency": currency.upper()},
                                "beneficiary": dict(beneficiary)}
        if payer is not None:
            body["payer"] = {"account_number": payer} if isinstance(payer, str) else dict(payer)
        if purpose is not None:
            body["purpose"] = {"details": purpose} if isinstance(purpose, str) else dict(purpose)
        if callback is not None:
            body["callback"] = {"url": callback} if isinstance(callback, str) else dict(callback)
        body.update({k: v for k, v in extra.items() if v is not None})
        return Transfer.from_raw(self._call("POST", TRANSFERS_PATH, json=body, call="create_transfer"))

    def _action(self, transfer_id: Any, action: str, params: Mapping[str, Any], *, idempotent: bool) -> Transfer:
        body = {k: v for k, v in params.items() if v is not None} or None
        data = self._call("PUT", f"{TRANSFERS_PATH}/{_seg(transfer_id)}/{action}", json=body,
                          idempotent=idempotent, call=f"{action}_transfer")
        return Transfer.from_raw(data)

    def register_transfer(self, transfer_id: Any, **params: Any) -> Transfer:
        """``PUT /transfers/{id}/register``: visible in Paysera's web UI for signing there. Moves no money."""
        return self._action(transfer_id, "register", params, idempotent=True)

    def sign_transfer(self, transfer_id: Any, **params: Any) -> Transfer:
        """``PUT /transfers/{id}/sign``: authorise; processing starts (money moves). Not blindly repeatable:
        a lost answer is an :class:`UnknownOutcomeError` — ``get_transfer`` tells what happened."""
        return self._action(transfer_id, "sign", params, idempotent=False)

    def reserve_transfer(self, transfer_id: Any, **params: Any) -> Transfer:
        """``PUT /transfers/{id}/reserve``: lock the funds (error when there are none)."""
        return self._action(transfer_id, "reserve", params, idempotent=False)

    def get_transfer(self, transfer_id: Any) -> Transfer:
        """``GET /transfers/{id}``. An unsigned draft that Paysera deleted answers ``not_found``."""
        return Transfer.from_raw(self._call("GET", f"{TRANSFERS_PATH}/{_seg(transfer_id)}", call="get_transfer"))

    def reject_transfer(self, transfer_id: Any) -> Transfer:
        """``DELETE /transfers/{id}``: reject (revoke) a transfer that is not processed yet."""
        return Transfer.from_raw(self._call("DELETE", f"{TRANSFERS_PATH}/{_seg(transfer_id)}",
                                            call="reject_transfer"))

    def list_transfers(self, **filters: Any) -> TransferPage:
        """``GET /transfers`` with Paysera's filters: ``statuses`` (list or comma string),
        ``created_date_from``/``created_date_to`` (unix seconds or datetime), ``credit_account_number``,
        ``debit_account_number``, ``limit``, ``offset``. Newest first."""
        return TransferPage.from_raw(self._call("GET", TRANSFERS_PATH, params=filters, call="list_transfers"))

    def iter_transfers(self, *, page_size: int = 100, max_pages: int | None = None,
                       **filters: Any) -> Iterator[Transfer]:
        """Every transfer matching ``filters``, page by page (offset paging; duplicates across pages —
        from transfers created while reading — are skipped)."""
        seen: set[str | None] = set()
        offset, pages = int(filters.pop("offset", 0) or 0), 0
        while max_pages is None or pages < max_pages:
            page = self.list_transfers(**filters, limit=page_size, offset=offset)
            pages += 1
            for t in page:
                if t.id not in seen:
                    seen.add(t.id)
                    yield t
            if len(page) < page_size and not page.has_next:
                return
            if not page.items:
                return
            offset += len(page.items)
