"""Client of the signed payout/pay-in gateway (facts: docs/providers/gateway.md).

Usable as a library on its own::

    from providers.gateway import GatewayClient
    gw = GatewayClient("https://gateway.example", api_key, secret)
    payout, created = gw.create_payout("ord-77", Decimal("5000.00"), "RUB", "4111111111111111",
                                       callback_url="https://exsync.example/hooks/gateway")
    gw.get_payout("ord-77").status           # created | processing | success | failed | cancelled

Every request is signed (see :mod:`providers.gateway.signing`): a JSON body is serialised ONCE to bytes
and those exact bytes are signed and sent; the signed path is the request target exactly as it goes on
the wire (path parameters and the query string are percent-encoded here, so nothing re-encodes them
later). Amounts go out as decimal strings (``"5000.00"``), never floats.

Creates are idempotent at the gateway by ``external_id``: 201 = created now, 200 = it already existed
(same parameters; the existing object comes back). So after an :class:`UnknownOutcomeError` (a 5xx or
a read timeout on a create) ask with ``get_payout(external_id)`` — or simply send the same create again.

Timestamps and replays: ``X-Timestamp`` is always the current second of this machine's clock, never
ahead of it. A gateway refuses a signature it has already seen within its window (the sandbox does),
and identical requests signed in the same second carry the same signature, so per request (method,
path with query, body) the client uses each second at most once:

* identical reads (GET, HEAD, OPTIONS) within one second are coalesced: concurrent ones share one call,
  and a repeat later in that second is answered with that second's answer (a read in the same second
  is as fresh as the gateway can tell apart). Any write sent through this client ends that sharing, and
  an answer that should not be reused (5xx, 429, 401, a transport error) is given only to the callers
  that were already waiting for it;
* an identical write (or a read that cannot be shared) in a second already used waits for the next
  second and is signed with the then-current time: one identical write per second, each wait < 1 s
  when there is one at a time. A request that would wait more than ``max_sign_wait`` seconds (5; a burst of
  identical writes) raises a RetryableError (code ``signature_busy``) without sending anything;
* a ``Replay`` 401 (another process sent the identical request that second) was refused before any
  processing, so it is sent again, re-signed in the next second (up to ``MAX_REPLAY_RESENDS`` times;
  then a RetryableError) — safe even for a create.

Memory stays bounded: only the current second's signatures (at most ``MAX_SLOTS``) are remembered.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any, Iterable, Mapping
from urllib.parse import quote, urlencode

import requests

from providers.errors import RetryableError
from providers.gateway.errors import ENVELOPE, PROVIDER, parse_error_body
from providers.gateway.signing import DEFAULT_HEADERS, HeaderNames, ReplayError, sign
from providers.gateway.types import Balance, PayIn, Payout, format_amount
from providers.http import (
    DEFAULT_POOL_MAXSIZE,
    HttpResponse,
    HttpTransport,
    Reply,
    TransportClient,
    json_dumps,
    unreadable_error,
)

__all__ = ["GatewayClient", "GatewayPaths", "DEFAULT_PATHS", "mask_key"]


@dataclass(frozen=True)
class GatewayPaths:
    """Endpoint paths from the site root; ``{external_id}`` is replaced (percent-encoded)."""

    payouts: str = "/api/v1/payouts"
    payout: str = "/api/v1/payouts/{external_id}"
    payins: str = "/api/v1/payins"
    payin: str = "/api/v1/payins/{external_id}"
    balance: str = "/api/v1/balance"

    @classmethod
    def of(cls, value: "GatewayPaths | Mapping[str, str] | None") -> "GatewayPaths":
        if value is None:
            return DEFAULT_PATHS
        if isinstance(value, GatewayPaths):
            return value
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown path names: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        return replace(DEFAULT_PATHS, **dict(value))


DEFAULT_PATHS = GatewayPaths()
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # safe: identical ones in one second share an answer
_UNSHARED_STATUSES = frozenset({401, 408, 425, 429})  # answers a later caller must not be given (with 5xx)
MAX_SIGN_WAIT = 5.0  # seconds a request may wait for a second of its own before giving up (nothing sent)
MAX_REPLAY_RESENDS = 3
MAX_SLOTS = 4096

# The real monotonic clock in a tuple: freezegun patches module attributes, not container contents, and
# a deadline must pass even while a test holds the wall clock still.
_REAL_MONOTONIC = (time.monotonic,)

_Fingerprint = tuple[str, str, bytes]  # (method, path with query, body): with the second, the signature


@dataclass
class _Slot:
    second: int  # the second this request was last signed with
    generation: int  # the write generation it was signed in (see _Seconds.wrote)
    answer: "Future[HttpResponse] | None"  # the exchange identical reads may share; None: not shareable


class _Seconds:
    """Which second each distinct request was last signed with, and the reads that may be shared.

    Thread-safe. Only slots of the current second are kept (older ones can never collide again), at most
    ``MAX_SLOTS``: forgetting one early is safe, the gateway then answers ``Replay`` and the request is
    re-signed in the next second.
    """

    def __init__(self, max_wait: float = MAX_SIGN_WAIT) -> None:
        self.max_wait = max_wait
        self._cv = threading.Condition()
        self._slots: dict[_Fingerprint, _Slot] = {}
        self._generation = 0
        self._swept = -1

    def claim(self, fp: _Fingerprint, share: bool) -> tuple[int, "Future[HttpResponse] | None", bool]:
        """``(second, future, lead)``: lead → sign with ``second`` and send, then resolve ``future`` (reads);
        not lead → the answer is ``future``'s (an identical read of this second)."""
        deadline = _REAL_MONOTONIC[0]() + self.max_wait
        with self._cv:
            while True:
                now = time.time()
                second = int(now)
                self._sweep(second)
                slot = self._slots.get(fp)
                if slot is None or slot.second != second:  # (also when the clock stepped back)
                    future: Future[HttpResponse] | None = Future() if share else None
                    self._slots[fp] = _Slot(second, self._generation, future)
                    return second, future, True
                if share and slot.answer is not None and slot.generation == self._generation:
                    return second, slot.answer, False
                left = deadline - _REAL_MONOTONIC[0]()
                if left <= 0:
                    raise RetryableError(
                        f"{fp[0]} {fp[1].split('?', 1)[0]}: the identical request was already signed in every "
                        f"second of the last {self.max_wait:g} s (the gateway accepts one per second); nothing "
                        f"was sent", code="signature_busy", retry_after=1.0, provider=PROVIDER)
                self._cv.wait(min(second + 1 - now + 0.001, left))  # until the next second starts

    def settle(self, fp: _Fingerprint, second: int, shareable: bool) -> None:
        """The exchange signed with ``second`` is over; an answer not to be reused stops the sharing."""
        if shareable:
            return
        with self._cv:
            slot = self._slots.get(fp)
            if slot is not None and slot.second == second:
                slot.answer = None

    def wrote(self) -> None:
        """A write went through this client: no read answered before it is given out again."""
        with self._cv:
            self._generation += 1

    def _sweep(self, second: int) -> None:
        if second != self._swept:
            self._swept = second
            for fp in [fp for fp, slot in self._slots.items() if slot.second != second]:
                del self._slots[fp]
        if len(self._slots) >= MAX_SLOTS:  # oldest first: dicts keep insertion order
            for fp in list(self._slots)[: MAX_SLOTS // 2]:
                del self._slots[fp]

    def __len__(self) -> int:
        with self._cv:
            return len(self._slots)


def mask_key(key: str | None) -> str:
    """First 4 characters of a key, the rest hidden (for logs and repr)."""
    return f"{key[:4]}…" if key else "-"


def _query(params: Mapping[str, Any] | None) -> str:
    """``a=1&b=x%20y`` with every reserved character percent-encoded (None values left out)."""
    if not params:
        return ""
    items = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, Decimal):
            v = format(v, "f")
        items.append((str(k), str(v)))
    return urlencode(items, quote_via=quote, safe="")


class GatewayClient(TransportClient):
    """One gateway site, one API key. Thread-safe: share one instance across a thread pool.

    ``base_url`` is the site root (``https://host[:port]``). ``shop_code`` (optional) selects the shop
    scope: sent in create bodies and as a query parameter of reads. ``paths`` overrides endpoint paths
    (a :class:`GatewayPaths` or a mapping of some of its names); ``header_names`` the signing headers.
    ``max_sign_wait``: how long an identical request may wait for a second of its own (module doc).
    """

    provider = PROVIDER
    envelope = ENVELOPE

    def __init__(
        self,
        base_url: str,
        api_key: str,
        secret: str,
        *,
        timeout: float | tuple[float, float] = 15.0,
        session: requests.Session | None = None,
        shop_code: str | None = None,
        paths: GatewayPaths | Mapping[str, str] | None = None,
        header_names: HeaderNames = DEFAULT_HEADERS,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
        max_sign_wait: float = MAX_SIGN_WAIT,
    ) -> None:
        if not base_url or "://" not in base_url:
            raise ValueError("base_url must be the site root, e.g. https://gateway.example")
        if not api_key or not secret:
            raise ValueError("api_key and secret are required")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._secret = secret
        self.shop_code = shop_code
        self.paths = GatewayPaths.of(paths)
        self.header_names = header_names
        self.timeout = timeout
        self._http = HttpTransport(PROVIDER, timeout=timeout, session=session, pool_maxsize=pool_maxsize)
        self._seconds = _Seconds(max_sign_wait)  # see "Timestamps and replays" in the module doc

    def __repr__(self) -> str:  # never shows the key or the secret
        return f"GatewayClient({self.base_url!r}, key={mask_key(self.api_key)!r})"

    def _credential(self) -> str:
        return f"key={mask_key(self.api_key)}"

    def _secrets(self) -> Iterable[str]:
        return (self._secret, self.api_key)

    # ------------------------------------------------------------------ signing
    def signed_headers(self, method: str, path_with_query: str, body: bytes = b"", *,
                       timestamp: int | None = None) -> dict[str, str]:
        """The signing headers for one request (exposed for debugging and for other HTTP stacks)."""
        method = method.upper()
        ts = int(time.time()) if timestamp is None else int(timestamp)
        h = self.header_names
        return {h.api_key: self.api_key, h.timestamp: str(ts),
                h.signature: sign(self._secret, ts, method, path_with_query, body)}

    # ------------------------------------------------------------------ transport
    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        q = _query(params)
        if not q:
            return path
        return f"{path}{'&' if '?' in path else '?'}{q}"

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None,
              idempotent: bool | None = None, call: str = "request") -> Reply:
        """Send one signed request; the ``Reply`` (status, decoded JSON) of a 2xx, raises otherwise."""
        method = method.upper()
        target = self._target(path, params)
        raw = json_dumps(body) if body is not None else b""  # serialised once: these bytes are signed and sent
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS and self.envelope.idempotent(call)

        def exchange() -> HttpResponse:
            resp = self._exchange(method, target, raw, call, idempotent)
            if resp.status == 401 and _is_replay(resp):  # refused before any processing, every time
                raise RetryableError(f"the gateway refused {MAX_REPLAY_RESENDS + 1} signatures in a row as "
                                     f"replays (other senders send this identical request every second); "
                                     f"nothing was processed", code="replay", reason="replay", http_status=401,
                                     retry_after=1.0, provider=PROVIDER, call=call)
            return resp

        return self._request(call, idempotent, method, target, exchange)

    def _exchange(self, method: str, target: str, raw: bytes, call: str, idempotent: bool) -> HttpResponse:
        """One signed exchange, each signature used once (see "Timestamps and replays" in the module doc)."""
        fp = (method, target, raw)
        share = method in _READ_METHODS
        owned: list[Future[HttpResponse]] = []  # answers other identical reads wait for
        resends = 0
        try:
            while True:
                second, future, lead = self._seconds.claim(fp, share)
                if not lead:
                    assert future is not None  # a follower always has the leader's exchange
                    resp = future.result()  # raises what that exchange raised
                    break
                if future is not None:
                    owned.append(future)
                try:
                    resp = self._send_signed(method, target, raw, call, idempotent, second)
                except BaseException:
                    self._seconds.settle(fp, second, shareable=False)
                    raise
                replay = resp.status == 401 and _is_replay(resp)
                self._seconds.settle(fp, second, shareable=not replay and _shareable(resp))
                if not (replay and resends < MAX_REPLAY_RESENDS):
                    break
                # Another sender used this exact signature this second: refused before any processing,
                # so sign it again in the next second (claim waits for it).
                resends += 1
        except BaseException as exc:
            for f in owned:
                f.set_exception(exc)
            raise
        finally:
            if not share:
                self._seconds.wrote()
        for f in owned:
            f.set_result(resp)
        return resp

    def _send_signed(self, method: str, target: str, raw: bytes, call: str, idempotent: bool,
                     timestamp: int) -> HttpResponse:
        headers = self.signed_headers(method, target, raw, timestamp=timestamp)
        headers["Accept"] = "application/json"
        if raw:
            headers["Content-Type"] = "application/json"
        return self._http.send(method, self.base_url + target, data=raw or None, headers=headers, what=call,
                               idempotent=idempotent)

    def _object(self, reply: Reply, call: str) -> Any:
        """The answer's JSON object; a 2xx without one is the table's "unreadable" row."""
        if not isinstance(reply.data, Mapping):
            raise unreadable_error(self.envelope, call, self.envelope.idempotent(call),
                                   "the answer is not a JSON object", http_status=reply.status, raw_body=reply.data)
        return reply.data

    def _path(self, template: str, external_id: str) -> str:
        if external_id is None or str(external_id) == "":
            raise ValueError("external_id is required")
        return template.replace("{external_id}", quote(str(external_id), safe=""))

    def _scope(self) -> dict[str, str] | None:
        return {"shop_code": self.shop_code} if self.shop_code else None

    # ------------------------------------------------------------------ API methods
    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None) -> Any:
        """A signed call to any path from the site root; returns the decoded JSON body (None when empty).

        Errors are mapped as for the named methods (a 5xx on a POST/PATCH is an UnknownOutcomeError).
        """
        return self._call(method, path, params=params, body=json).data

    def create_payout(self, external_id: str, amount: Decimal | int | str, currency: str, card_number: str,
                      callback_url: str | None = None, **extra: Any) -> tuple[Payout, bool]:
        """Create a payout; ``(payout, created)``: created False when it already existed (HTTP 200).

        ``card_number``: the recipient card, wallet or account. ``extra``: more body fields (None dropped).
        A 5xx or a read timeout raises UnknownOutcomeError: the payout may exist, ask ``get_payout``.
        """
        body = self._create_body(external_id, amount, currency, callback_url, extra, card_number=card_number)
        reply = self._call("POST", self.paths.payouts, body=body, call="create_payout")
        return Payout.from_raw(self._object(reply, "create_payout")), reply.status == 201

    def get_payout(self, external_id: str) -> Payout:
        """The payout with this external_id; PayoutNotFoundError when the gateway has none."""
        reply = self._call("GET", self._path(self.paths.payout, external_id), params=self._scope(), call="get_payout")
        return Payout.from_raw(self._object(reply, "get_payout"))

    def create_payin(self, external_id: str, amount: Decimal | int | str, currency: str,
                     callback_url: str | None = None, **extra: Any) -> tuple[PayIn, bool]:
        """Create a pay-in (money coming in); ``(payin, created)`` as for :meth:`create_payout`."""
        body = self._create_body(external_id, amount, currency, callback_url, extra)
        reply = self._call("POST", self.paths.payins, body=body, call="create_payin")
        return PayIn.from_raw(self._object(reply, "create_payin")), reply.status == 201

    def get_payin(self, external_id: str) -> PayIn:
        """The pay-in with this external_id; PayInNotFoundError when the gateway has none."""
        reply = self._call("GET", self._path(self.paths.payin, external_id), params=self._scope(), call="get_payin")
        return PayIn.from_raw(self._object(reply, "get_payin"))

    def balance(self) -> Balance:
        return Balance.from_raw(self._object(self._call("GET", self.paths.balance, params=self._scope(),
                                                        call="balance"), "balance"))

    def _create_body(self, external_id: Any, amount: Any, currency: Any, callback_url: str | None,
                     extra: Mapping[str, Any], **more: Any) -> dict:
        body: dict[str, Any] = {"external_id": external_id, "amount": format_amount(amount), "currency": currency}
        body.update(more)
        if callback_url is not None:
            body["callback_url"] = callback_url
        if self.shop_code:
            body["shop_code"] = self.shop_code
        for k, v in extra.items():
            if v is not None:
                body[k] = format_amount(v, k) if isinstance(v, Decimal) else v
        return body


def _shareable(resp: HttpResponse) -> bool:
    """An answer an identical read later in the same second may be given (not a transient failure)."""
    return resp.status < 500 and resp.status not in _UNSHARED_STATUSES


def _is_replay(resp: HttpResponse) -> bool:
    """A 401 whose message is the gateway's replay refusal."""
    _code, message, _fields = parse_error_body(resp.content)
    return (message or "").strip().lower().startswith(ReplayError.default_message.lower())
