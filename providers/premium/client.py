"""Client of the Premium Exchanger user API v1 (``POST {site}/api/userapi/v1/<method>``).

Usable as a library on its own::

    from providers.premium import PremiumClient
    c = PremiumClient("https://exchanger.example", api_login, api_key)
    bid = c.bid_info(id=1350)
    for batch in c.iter_exchanges(start_time=t0, end_time=t1):
        ...

Facts this client is built for (see docs/providers/premium-exchanger.md): parameters are read from the
form body only (a JSON body is silently ignored), every answer is HTTP 200 with the error in the body,
numbers come back as strings, ``error`` is ``0`` or ``"0"`` on success.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping

import requests

from providers.errors import RetryableError
from providers.http import DEFAULT_POOL_MAXSIZE, HttpTransport, TransportClient
from providers.premium.errors import ENVELOPE, PROVIDER, decode_body
from providers.premium.types import (
    Bid,
    Calc,
    Direction,
    DirectionCurrencies,
    DirectionSummary,
    ExchangeItem,
    PartnerExchange,
    PartnerInfo,
    PartnerLink,
    PartnerPayout,
    TestInfo,
    parse_result,
)

log = logging.getLogger("providers.premium")

API_PATH = "/api/userapi/v1/"
MAX_LIMIT = 500  # get_exchanges: the engine caps limit at 500

__all__ = ["PremiumClient", "iter_exchanges", "decode_body", "form_value", "mask"]

def mask(login: str | None) -> str:
    """First 4 characters of a login, the rest hidden (for logs)."""
    if not login:
        return "-"
    return f"{login[:4]}…"


def form_value(value: Any, name: str = "") -> str | None:
    """One form value as the engine expects it. None → left out.

    Decimal/int/str are sent as plain decimal strings (``Decimal("1E+2")`` → ``"100"``), bools as 1/0,
    datetimes as unix seconds (a naive datetime is taken as UTC), lists as comma lists. Floats are
    refused: they cannot carry an amount exactly.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        raise TypeError(f"{name or 'value'}: pass a Decimal, int or str, not a float")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{name or 'value'}: not a finite number")
        s = format(value, "f")
        return s
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return str(int(dt.timestamp()))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        parts = [form_value(v, name) for v in value]
        return ",".join(p for p in parts if p is not None)
    return str(value)


def _amount(value: Any, name: str) -> str:
    if value is None:
        raise ValueError(f"{name} is required")
    if isinstance(value, str):
        s = value.strip()
        try:
            d = Decimal(s)
        except Exception:
            raise ValueError(f"{name}: not a decimal number") from None
        if not d.is_finite():
            raise ValueError(f"{name}: not a finite number")
        return s
    out = form_value(value, name)
    assert out is not None
    return out


class PremiumClient(TransportClient):
    """One exchanger site, one API login. Thread-safe: share one instance across a thread pool.

    Methods are named as the API names them and take the API's own parameter names; each returns a typed
    result (see :mod:`providers.premium.types`) or raises a :class:`providers.ProviderError` subclass (see
    :mod:`providers.premium.errors`).
    """

    provider = PROVIDER
    envelope = ENVELOPE

    def __init__(
        self,
        base_url: str,
        api_login: str,
        api_key: str,
        lang: str | None = None,
        timeout: float | tuple[float, float] = 15.0,
        session: requests.Session | None = None,
        *,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
    ) -> None:
        if not base_url or "://" not in base_url:
            raise ValueError("base_url must be the site root, e.g. https://exchanger.example")
        self.base_url = base_url.rstrip("/")
        self.api_login = api_login
        self._api_key = api_key
        self.lang = lang
        self.timeout = timeout
        self._http = HttpTransport(PROVIDER, timeout=timeout, session=session, pool_maxsize=pool_maxsize)

    def __repr__(self) -> str:  # never shows the key
        return f"PremiumClient({self.base_url!r}, login={mask(self.api_login)!r})"

    def _credential(self) -> str:
        return f"login={mask(self.api_login)}"

    def _secrets(self) -> Iterable[str]:
        return (self._api_key,)

    # ------------------------------------------------------------------ transport
    def _headers(self) -> dict[str, str]:
        h = {"API-LOGIN": self.api_login, "API-KEY": self._api_key, "Accept": "application/json"}
        if self.lang:
            h["API-LANG"] = self.lang
        return h

    def _form(self, params: Mapping[str, Any] | None) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in (params or {}).items():
            s = form_value(v, k)
            if s is not None:
                out[str(k)] = s
        return out

    def request(self, method: str, path: str | None = None, *, params: Mapping[str, Any] | None = None,
                json: Any = None) -> Any:
        """An authenticated call of any API method; returns the envelope's ``data`` after the checks.

        ``request("some_method", params={...})`` posts the form to ``/api/userapi/v1/some_method``. ``path``
        (from the site root) overrides the URL. The engine reads form bodies only, so ``json`` must be a
        flat mapping and is sent as form fields.
        """
        if json is not None:
            if not isinstance(json, Mapping):
                raise TypeError("Premium reads form bodies only: json must be a flat mapping of fields")
            params = {**json, **(params or {})}
        return self._call(method, params, path=path)

    def _call(self, method: str, params: Mapping[str, Any] | None = None, *, path: str | None = None,
              idempotent: bool | None = None) -> Any:
        """POST the form; the envelope's ``data`` or a ProviderError (mapped by ``providers.http``)."""
        path = path if path else API_PATH + method
        if not path.startswith("/"):
            path = "/" + path
        form = self._form(params)
        if idempotent is None:
            idempotent = self.envelope.idempotent(method)
        return self._request(method, idempotent, "POST", path, lambda: self._http.send(
            "POST", self.base_url + path, data=form, headers=self._headers(), what=method,
            idempotent=idempotent)).data

    def _typed(self, method: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return parse_result(method, self._call(method, params, **kw))

    # ------------------------------------------------------------------ API methods
    def test(self) -> TestInfo:
        return self._typed("test")

    def get_direction_currencies(self, currency_id_give: int | None = None,
                                 currency_id_get: int | None = None) -> DirectionCurrencies:
        return self._typed("get_direction_currencies",
                           {"currency_id_give": currency_id_give, "currency_id_get": currency_id_get})

    def get_directions(self, currency_id_give: int | None = None,
                       currency_id_get: int | None = None) -> list[DirectionSummary]:
        return self._typed("get_directions", {"currency_id_give": currency_id_give, "currency_id_get": currency_id_get})

    def get_direction(self, direction_id: int) -> Direction:
        return self._typed("get_direction", {"direction_id": direction_id})

    def get_calc(self, direction_id: int, calc_amount: Decimal | str | int, calc_action: int = 1,
                 cd: str | Mapping[str, Any] | None = None) -> Calc:
        """``cd``: the direction's cd=1 fields in one URL-encoded string (a mapping is encoded for you)."""
        if isinstance(cd, Mapping):
            from urllib.parse import urlencode
            cd = urlencode({k: form_value(v, k) for k, v in cd.items() if v is not None})
        return self._typed("get_calc", {"direction_id": direction_id,
                                        "calc_amount": _amount(calc_amount, "calc_amount"),
                                        "calc_action": calc_action, "cd": cd})

    def get_exchanges(self, start_time: datetime | int | None = None, end_time: datetime | int | None = None,
                      ip: str | None = None, id: int | str | list[int] | None = None, api_id: str | None = None,
                      status_history: bool | int | None = None, limit: int | None = None,
                      offset: int | None = None) -> list[ExchangeItem]:
        """Bids of this login, newest id first. ``start_time``/``end_time`` filter the LAST CHANGE time.

        ``id`` may be a list (sent as a comma list). The engine's default limit is 100, its maximum 500.
        An empty result (``data: []``) is ``[]``.
        """
        return self._typed("get_exchanges", {
            "start_time": start_time, "end_time": end_time, "ip": ip, "id": id, "api_id": api_id,
            "status_history": status_history, "limit": limit, "offset": offset})

    def create_bid(self, direction_id: int, calc_amount: Decimal | str | int, calc_action: int = 1,
                   api_id: str | None = None, partner_id: int | None = None, callback_url: str | None = None,
                   **fields: Any) -> Bid:
        """Create a bid. ``fields``: account1, account2, cfgive8, cfgive3, cf1..cf99 or any other form field.

        Pass an ``api_id`` (your own id, ≤ 100 chars): a create whose answer was lost can then be sent again
        safely (it fails with :class:`DuplicateApiIdError`) and found with ``get_exchanges(api_id=…)``.
        Without one, a lost answer is an :class:`UnknownOutcomeError`.
        """
        if api_id is not None and len(str(api_id)) > 100:
            raise ValueError("api_id: the engine cuts it to 100 characters; pass at most 100")
        params = {"direction_id": direction_id, "calc_amount": _amount(calc_amount, "calc_amount"),
                  "calc_action": calc_action, "api_id": api_id, "partner_id": partner_id,
                  "callback_url": callback_url, **fields}
        return self._typed("create_bid", params, idempotent=api_id is not None)

    @staticmethod
    def _bid_ref(id: Any, hash: Any) -> dict[str, Any]:
        if id is None and not hash:
            raise ValueError("pass id or hash")
        return {"id": id, "hash": hash}

    def cancel_bid(self, id: int | None = None, hash: str | None = None) -> str:
        """Cancel; returns the new status. Only from new, techpay, coldnew, amlwait, merchwait (cancel: ok).

        Any other status answers "no bid exists" → :class:`BidNotFoundError` (``maybe_status_forbids``).
        """
        return self._typed("cancel_bid", self._bid_ref(id, hash))

    def pay_bid(self, id: int | None = None, hash: str | None = None) -> str:
        """Mark paid (→ ``payed``); only from new, techpay. Returns the new status."""
        return self._typed("pay_bid", self._bid_ref(id, hash))

    def success_bid(self, id: int | None = None, hash: str | None = None) -> str:
        """Mark done (→ ``success``); from any status but success. Returns the new status."""
        return self._typed("success_bid", self._bid_ref(id, hash))

    def bid_info(self, id: int | None = None, hash: str | None = None) -> Bid:
        """A bid created with this login. Archived/unknown → :class:`BidNotFoundError`."""
        return self._typed("bid_info", self._bid_ref(id, hash))

    def get_partner_info(self) -> PartnerInfo:
        return self._typed("get_partner_info")

    def get_partner_links(self, start_time: datetime | int | None = None, end_time: datetime | int | None = None,
                          ip: str | None = None, limit: int | None = None) -> list[PartnerLink]:
        return self._typed("get_partner_links", {"start_time": start_time, "end_time": end_time, "ip": ip,
                                                 "limit": limit})

    def get_partner_exchanges(self, start_time: datetime | int | None = None, end_time: datetime | int | None = None,
                              ip: str | None = None, id: int | str | list[int] | None = None,
                              status_history: bool | int | None = None,
                              limit: int | None = None) -> list[PartnerExchange]:
        return self._typed("get_partner_exchanges", {"start_time": start_time, "end_time": end_time, "ip": ip,
                                                     "id": id, "status_history": status_history, "limit": limit})

    def get_partner_payouts(self, start_time: datetime | int | None = None, end_time: datetime | int | None = None,
                            limit: int | None = None, id: int | None = None) -> list[PartnerPayout]:
        return self._typed("get_partner_payouts", {"start_time": start_time, "end_time": end_time, "limit": limit,
                                                   "id": id})

    def add_partner_payout(self, method_id: int, account: str) -> int | None:
        """Request a partner payout; returns ``payout_id``. Not idempotent: a lost answer is an unknown outcome."""
        return self._typed("add_partner_payout", {"method_id": method_id, "account": account})

    # ------------------------------------------------------------------ paging
    def iter_exchanges(self, *, start_time: datetime | int | None, end_time: datetime | int | None,
                       page_size: int = MAX_LIMIT, status_history: bool = False, overlap: int = 50,
                       max_rereads: int = 200) -> Iterator[list[ExchangeItem]]:
        """See :func:`iter_exchanges`."""
        return iter_exchanges(self, start_time=start_time, end_time=end_time, page_size=page_size,
                              status_history=status_history, overlap=overlap, max_rereads=max_rereads)


def iter_exchanges(client: PremiumClient, *, start_time: datetime | int | None, end_time: datetime | int | None,
                   page_size: int = MAX_LIMIT, status_history: bool = False, overlap: int = 50,
                   max_rereads: int = 200) -> Iterator[list[ExchangeItem]]:
    """Walk ``get_exchanges`` over a time window by offset; yield each page's NEW items as one batch.

    The engine orders by id DESC and filters on the LAST CHANGE time, so the list moves while we read it:

    * a bid that changes mid-walk leaves a window that ends in the past: everything after it moves UP
      one place, and a bid could slip from the next page into the part already read (a skip);
    * a new (or newly changed) bid enters at the top: everything moves DOWN (duplicates).

    Algorithm:

    1. Read ``limit=page_size`` at ``offset`` (starting at 0) and yield the items whose id was not seen
       before (de-duplicated by id; an empty batch is not yielded).
    2. A short page (fewer than ``page_size`` items) ends the walk.
    3. Otherwise advance ``offset`` by ``page_size - overlap``: consecutive reads overlap by ``overlap``
       places, which absorbs an upward shift of fewer than ``overlap`` items.
    4. Anchor check: after a full page, the next page's FIRST item must be an id already seen. If it is not
       (or the page is empty), the list moved up by ``overlap`` or more and items may have been jumped over:
       step back by ``page_size - overlap`` and read again (repeat until the anchor holds or the offset is
       0). A re-read page yields only what it adds. Then go on from step 2.

    What this guarantees: every bid that was in the window when the walk began and stayed in it until the
    walk ended is yielded exactly once. Bids that changed mid-walk (and so left or entered the window) may
    or may not be yielded; their new change time puts them in a later window, which the next sweep reads.
    If the list keeps moving so much that ``max_rereads`` step-backs are not enough, a
    :class:`providers.RetryableError` (code ``"window_unstable"``) is raised after the batches already
    yielded: sweep again, with a narrower window.
    """
    if not 1 <= page_size <= MAX_LIMIT:
        raise ValueError(f"page_size must be 1..{MAX_LIMIT} (the engine caps limit at {MAX_LIMIT})")
    if not 0 <= overlap < page_size:
        raise ValueError("overlap must be >= 0 and smaller than page_size")
    step = page_size - overlap
    seen: set[int] = set()
    offset = 0
    need_anchor = False
    rereads = 0
    while True:
        items = client.get_exchanges(start_time=start_time, end_time=end_time, status_history=status_history,
                                     limit=page_size, offset=offset)
        if need_anchor and offset > 0 and (not items or items[0].id not in seen):
            rereads += 1
            if rereads > max_rereads:
                raise RetryableError("get_exchanges: the window kept shifting while it was read",
                                     code="window_unstable", provider=PROVIDER)
            log.debug("premium iter_exchanges: shift at offset %d, stepping back", offset)
            offset = max(0, offset - step)
            continue
        new: list[ExchangeItem] = []
        for it in items:
            if it.id is None or it.id in seen:
                continue
            seen.add(it.id)
            new.append(it)
        if new:
            yield new
        if len(items) < page_size:
            return
        offset += step
        need_anchor = True

