"""Client of the ZaleyCash API v2 (``{site}/api/v2/<endpoint>``, JSON in and out, Bearer tokens).

Usable as a library on its own::

    from providers.zaleycash import ZaleyCashClient
    zc = ZaleyCashClient("https://zaleycash.com", secret_key)
    zc.balance().get(1).balance                  # Decimal
    zc.transfer_internal(user_id=4711, currency=1, amount=Decimal("150.00"), operation_id="payout-42")

Auth (see docs/providers/zaleycash.md): ``POST /api/v2/token`` with ``Authorization: Bearer <secret_key>``
returns an access token valid for one hour; every other call sends ``Authorization: Bearer <token>``.
The client fetches the token on first use, keeps it until ``token_margin`` seconds before ``expires_at``
and shares it between threads: one lock, and only the thread holding it fetches, so N threads starting
together cause one token call. An answer with code 1 (Invalid access token) drops that token, fetches a
new one and sends the call once more; a second code 1 raises :class:`InvalidTokenError` (an AuthError).
Resending after code 1 is safe even for a transfer: code 1 is answered before anything runs, and the
transfer's ``operation_id`` makes any resend idempotent anyway.

Secrets: neither the secret key nor a token ever appears in a log line, an exception text or a ``repr``
(error texts from the provider are scrubbed of both before they are raised).
"""
from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping, NamedTuple
from urllib.parse import quote

import requests

from providers.http import DEFAULT_POOL_MAXSIZE, HttpTransport, TransportClient, unreadable_error
from providers.zaleycash.errors import ENVELOPE, PROVIDER, InvalidTokenError, StatusNotAvailableError
from providers.zaleycash.types import (
    Balances,
    Currency,
    Service,
    Token,
    Transfer,
    TransferStatus,
    User,
)
from providers.zaleycash.wire import dumps

log = logging.getLogger("providers.zaleycash")

API_PATH = "/api/v2/"
TOKEN_PATH = "/api/v2/token"
TRANSFER_PATH = "/api/v2/money/transfer/internal"
TOKEN_LIFETIME = 3600.0  # the documented lifetime, used when an answer has no expires_at

__all__ = ["ZaleyCashClient", "API_PATH", "TOKEN_PATH", "TRANSFER_PATH", "TOKEN_LIFETIME"]


class _CachedToken(NamedTuple):
    value: str
    expires_at: float  # unix seconds, as ZaleyCash said
    refresh_at: float  # when we stop using it and fetch a new one


def _plain_amount(value: Any) -> Decimal:
    """A positive, finite Decimal from a Decimal, int or decimal string. Floats are refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError("amount: pass a Decimal, int or str, not a float")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("amount: not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise ValueError("amount must be a positive finite number")
    return d


def _int_id(value: Any, name: str) -> int:
    """An int id from an int or a string of digits (ZaleyCash ids and currency codes are ints)."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: not an id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"{name} must be an integer id")


class ZaleyCashClient(TransportClient):
    """One ZaleyCash agent account (one secret key). Thread-safe: share one instance across a thread pool.

    Methods are named after the endpoints and take the API's own parameter names; each returns a typed
    result (see :mod:`providers.zaleycash.types`) or raises a :class:`providers.ProviderError` subclass
    (see :mod:`providers.zaleycash.errors`).

    ``status_path``: the path (from the site root) of a transfer-status endpoint, if you know one. Its
    name is not public, so the default is None and :meth:`transfer_status` is then unavailable. The path
    may contain ``{operation_id}``; otherwise the id is sent as the ``operation_id`` query parameter.
    """

    provider = PROVIDER
    envelope = ENVELOPE

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        *,
        timeout: float | tuple[float, float] = 15.0,
        session: requests.Session | None = None,
        token_margin: float = 60,
        status_path: str | None = None,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
    ) -> None:
        if not base_url or "://" not in base_url:
            raise ValueError("base_url must be the site root, e.g. https://zaleycash.com")
        if not secret_key:
            raise ValueError("secret_key is required")
        if token_margin < 0:
            raise ValueError("token_margin must be >= 0")
        self.base_url = base_url.rstrip("/")
        self._secret_key = secret_key
        self.timeout = timeout
        self.token_margin = float(token_margin)
        self.status_path = status_path
        self._http = HttpTransport(PROVIDER, timeout=timeout, session=session, pool_maxsize=pool_maxsize)
        self._token_lock = threading.Lock()
        self._tok: _CachedToken | None = None  # replaced as a whole: readers need no lock
        self._recent_tokens: tuple[str, ...] = ()  # the last few tokens, for scrubbing error texts
        self.token_fetches = 0  # tokens this client obtained (diagnostics, tests)

    def __repr__(self) -> str:  # never shows the key or the token
        return f"ZaleyCashClient({self.base_url!r})"


    # ------------------------------------------------------------------ token
    def token(self) -> Token:
        """``POST token``: fetch a new access token now (it also replaces the cached one)."""
        with self._token_lock:
            return self._fetch_token_locked()

    def _fetch_token_locked(self) -> Token:
        data = self._send("POST", TOKEN_PATH, bearer=self._secret_key, call="token", idempotent=True)
        tok = Token.from_raw(data)
        if not tok.access_token:
            raise unreadable_error(self.envelope, "token", True, "the answer carries no access_token")
        now = time.time()
        expires_at = tok.expires_at if tok.expires_at is not None else now + TOKEN_LIFETIME
        lifetime = max(0.0, expires_at - now)
        # Stop using it token_margin seconds early; for a short-lived (or clock-skewed) token, at half-life.
        refresh_at = expires_at - min(self.token_margin, lifetime / 2)
        self._recent_tokens = (*self._recent_tokens[-3:], tok.access_token)  # replaced whole: no lock to read
        self._tok = _CachedToken(tok.access_token, expires_at, refresh_at)
        self.token_fetches += 1
        log.info("zaleycash: new access token, valid for %.0f s", lifetime)
        return tok

    def _valid_token(self) -> str:
        """The cached token while it is fresh, else a new one (one fetching thread at a time)."""
        cached = self._tok
        if cached is not None and time.time() < cached.refresh_at:
            return cached.value
        with self._token_lock:
            cached = self._tok  # another thread may have fetched while we waited for the lock
            if cached is not None and time.time() < cached.refresh_at:
                return cached.value
            return self._fetch_token_locked().access_token

    def _drop_token(self, stale: str) -> None:
        """Forget ``stale`` unless another thread already replaced it."""
        with self._token_lock:
            if self._tok is not None and self._tok.value == stale:
                self._tok = None

    # ------------------------------------------------------------------ transport
    def _url(self, path: str) -> str:
        if "://" in path:
            raise ValueError("path starts at the site root (e.g. /api/v2/user/balance), not a full URL")
        return self.base_url + (path if path.startswith("/") else API_PATH + path)

    def _secrets(self) -> Iterable[str]:
        """The secret key and the tokens we hold: never in an error (a careless server may echo them)."""
        return (self._secret_key, *self._recent_tokens)

    def _send(self, http_method: str, path: str, *, bearer: str, call: str, idempotent: bool,
              params: Mapping[str, Any] | None = None, json: Any = None) -> Any:
        """One HTTP exchange with the given bearer; returns the envelope's ``response`` or raises."""
        headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json"}
        data = None
        if json is not None:
            data = dumps(json)
            headers["Content-Type"] = "application/json"
        return self._request(call, idempotent, http_method, path, lambda: self._http.send(
            http_method, self._url(path), params=params, data=data, headers=headers, what=call,
            idempotent=idempotent)).data

    def _call(self, http_method: str, path: str, *, call: str, idempotent: bool | None = None,
              params: Mapping[str, Any] | None = None, json: Any = None) -> Any:
        """An authenticated call: cached token, and on code 1 one renewal and one more try."""
        if idempotent is None:
            idempotent = http_method.upper() in ("GET", "HEAD")
        token = self._valid_token()
        try:
            return self._send(http_method, path, bearer=token, call=call, idempotent=idempotent,
                              params=params, json=json)
        except InvalidTokenError:
            # Refused before anything ran: renew (one thread fetches) and try once more.
            log.info("zaleycash: access token refused on %s (code 1), renewing it once", call)
            self._drop_token(token)
            token = self._valid_token()
            return self._send(http_method, path, bearer=token, call=call, idempotent=idempotent,
                              params=params, json=json)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None) -> Any:
        """An authenticated call of any endpoint; returns the envelope's ``response`` after the checks.

        ``path`` starts at the site root (``/api/v2/user/balance``); a path without a leading slash is
        taken as relative to ``/api/v2/``. Any method other than GET/HEAD is treated as not idempotent:
        a 5xx or garbled answer is then an :class:`UnknownOutcomeError`.
        """
        return self._call(method, path, call="request", params=params, json=json)

    # ------------------------------------------------------------------ endpoints
    def services(self) -> list[Service]:
        """``GET services``: the platforms ZaleyCash works with (``name``, ``alias``, ``need_oauth``)."""
        return Service.list_from_raw(self._call("GET", "services", call="services"))

    def user(self, email: str | None = None) -> User:
        """``GET user?email=``: look a user up by e-mail (:class:`UserNotFoundError` when there is none)."""
        params = {"email": email} if email is not None else None
        return User.from_raw(self._call("GET", "user", call="user", params=params))

    def register_user(self, name: str, email: str, plainPassword: str) -> User:  # noqa: N803 (API's name)
        """``POST user``: register a new user as a child of this agent.

        Safe to resend after a lost answer: a second registration fails with code 72 (Email already exist).
        """
        body = {"name": name, "email": email, "plainPassword": plainPassword}
        return User.from_raw(self._call("POST", "user", call="register_user", idempotent=True, json=body))

    def link_child(self, user: int | str) -> User:
        """``POST user/children``: link an existing user (by id) as a child of this agent."""
        uid = _int_id(user, "user")
        data = self._call("POST", "user/children", call="link_child", idempotent=True, json={"user": uid})
        linked = User.from_raw(data)
        return linked if linked.id is not None else User(id=uid, email=linked.email, is_active=linked.is_active,
                                                          name=linked.name, raw=linked.raw)

    def balance(self) -> Balances:
        """``GET user/balance``: the agent's balances per currency (Decimal)."""
        return Balances.from_raw(self._call("GET", "user/balance", call="balance"))

    def currencies(self) -> list[Currency]:
        """``GET money/currencies``: the currencies and their int codes."""
        return Currency.list_from_raw(self._call("GET", "money/currencies", call="currencies"))

    def transfer_internal(self, user_id: int | str, currency: int | str, amount: Decimal | int | str,
                          operation_id: str) -> Transfer:
        """``POST money/transfer/internal``: move ``amount`` of ``currency`` to the linked child ``user_id``.

        ``operation_id`` (ours, a string) is the idempotency key: sending it again never moves money twice;
        ZaleyCash answers :class:`DuplicateOperationError` (code 58) instead. A timeout, a dropped
        connection or a 5xx (503 included) raises :class:`providers.UnknownOutcomeError`: the transfer
        may have been recorded.
        """
        op = str(operation_id).strip() if operation_id is not None else ""
        if not op:
            raise ValueError("operation_id is required")
        uid, cur, amt = _int_id(user_id, "user_id"), _int_id(currency, "currency"), _plain_amount(amount)
        body = {"user_id": uid, "currency": cur, "amount": amt, "operation_id": op}
        data = self._call("POST", TRANSFER_PATH, call="transfer_internal", idempotent=False, json=body)
        return Transfer.from_raw(data, operation_id=op, user_id=uid, currency=cur, amount=amt)

    def transfer_status(self, operation_id: str) -> TransferStatus:
        """The state of the transfer with ``operation_id``, from the configured ``status_path``.

        Raises :class:`StatusNotAvailableError` when no ``status_path`` is configured and
        :class:`OperationNotFoundError` when ZaleyCash answers that it has no such operation (code 55).
        """
        if not self.status_path:
            raise StatusNotAvailableError("transfer_status: no status_path configured (the endpoint is not public)",
                                          code="no_status_path", provider=PROVIDER)
        op = str(operation_id)
        if "{operation_id}" in self.status_path:
            path, params = self.status_path.replace("{operation_id}", quote(op, safe="")), None
        else:
            path, params = self.status_path, {"operation_id": op}
        data = self._call("GET", path, call="transfer_status", params=params)
        return TransferStatus.from_raw(data, operation_id=op)

