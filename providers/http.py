"""A small HTTP transport shared by every provider client.

It owns one ``requests.Session`` (connection pooling, sized for use from a thread pool), applies a
timeout to every call and turns transport failures into the project's error hierarchy:

=====================================================  ===========================================
what happened                                          error
=====================================================  ===========================================
connection refused, DNS failure, connect timeout,      ``ConnectionFailedError`` (nothing was sent:
TLS handshake failure, proxy refused                   safe to resend any call)
read timeout, connection reset/closed after the        ``UnknownOutcomeError`` (the provider may have
request was sent, truncated/chunked body               acted: ask it before resending)
HTTP 429                                               ``RetryableError`` with ``retry_after``
HTTP 5xx                                               ``RetryableError`` (``UnknownOutcomeError`` for
                                                       a non-idempotent call, except 503)
body that is not JSON                                  ``RetryableError`` for a 5xx-ish answer, else
                                                       ``PermanentError``
malformed URL / request                                ``PermanentError`` (configuration)
=====================================================  ===========================================

Error messages name the provider, the host and the path only: never headers, query strings, bodies
or keys. Nothing here knows about a particular provider; clients map their own error bodies.
"""
from __future__ import annotations

import json as _json
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from providers.errors import (
    ConnectionFailedError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
)

try:  # urllib3 is a dependency of requests; the names are stable across 1.26 and 2.x
    from urllib3.exceptions import ConnectTimeoutError as _U3ConnectTimeout
    from urllib3.exceptions import NewConnectionError as _U3NewConnection
except Exception:  # pragma: no cover
    _U3ConnectTimeout = _U3NewConnection = ()  # type: ignore[assignment]

DEFAULT_TIMEOUT = 15.0
DEFAULT_POOL_MAXSIZE = 32
USER_AGENT = "exsync/0.1 (+providers.http)"

__all__ = [
    "HttpTransport",
    "TransportClient",
    "HttpResponse",
    "make_session",
    "map_transport_error",
    "raise_for_status",
    "decode_json",
    "parse_retry_after",
    "json_dumps",
    "safe_url",
]


def make_session(pool_maxsize: int = DEFAULT_POOL_MAXSIZE, pool_connections: int = 8) -> requests.Session:
    """A Session with pooled adapters and no automatic retries (retries are the caller's decision)."""
    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    s.headers["User-Agent"] = USER_AGENT
    return s


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path`` without userinfo, query or fragment (safe to log)."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if p.port:
            host = f"{host}:{p.port}"
        return f"{p.scheme}://{host}{p.path}"
    except Exception:
        return "<url>"


@dataclass
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str  # safe form (no query)
    elapsed: float
    http_method: str = "POST"
    _json_cache: Any = field(default=None, repr=False)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def json_dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with Decimals written as plain decimal strings (never floats)."""

    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            return format(o, "f")
        if isinstance(o, datetime):
            return o.isoformat()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=default).encode("utf-8")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _chain(exc: BaseException):
    """Every exception reachable from ``exc`` through args, .reason, __cause__ and __context__."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend([getattr(e, "reason", None), e.__cause__, e.__context__])
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))


def _reason(exc: BaseException) -> str:
    """A short, secret-free description: the innermost OS error text or the exception class."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.strerror:
            return f"{type(e).__name__}: {e.strerror}"
    for e in _chain(exc):
        if isinstance(e, socket.timeout) or "Timeout" in type(e).__name__:
            return "timed out"
    return type(exc).__name__


def _never_sent(exc: BaseException) -> bool:
    for e in _chain(exc):
        if _U3NewConnection and isinstance(e, (_U3NewConnection, _U3ConnectTimeout)):
            return True
        if isinstance(e, (ConnectionRefusedError, socket.gaierror)):
            return True
    return False


def map_transport_error(exc: BaseException, *, provider: str | None, url: str, what: str = "") -> ProviderError:
    """Turn a ``requests`` exception into a ProviderError (see the module table)."""
    where = safe_url(url)
    label = f"{what} " if what else ""
    reason = _reason(exc)
    kw = {"provider": provider}
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ConnectionFailedError(f"{label}connect timeout to {where}", code="connect_timeout", **kw)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return UnknownOutcomeError(f"{label}no answer within the read timeout from {where}", code="read_timeout", **kw)
    if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return ConnectionFailedError(f"{label}could not open a connection to {where} ({reason})",
                                     code="connect_failed", **kw)
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return UnknownOutcomeError(f"{label}broken answer from {where} ({reason})", code="broken_response", **kw)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _never_sent(exc):
            return ConnectionFailedError(f"{label}could not connect to {where} ({reason})", code="connect_failed", **kw)
        return UnknownOutcomeError(f"{label}connection lost after sending to {where} ({reason})",
                                   code="connection_lost", **kw)
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader,
                        requests.exceptions.URLRequired)):
        return PermanentError(f"{label}invalid request to {where} ({type(exc).__name__})", code="invalid_request", **kw)
    return UnknownOutcomeError(f"{label}request to {where} failed ({reason})", code="transport_error", **kw)


def raise_for_status(resp: HttpResponse, *, provider: str | None, idempotent: bool = True, what: str = "") -> None:
    """Raise for 429 and 5xx; leave every other status to the provider's own mapping.

    For a call that is not idempotent, a 5xx other than 503 may come after the provider acted (a gateway
    timing out while the origin still works), so it is an ``UnknownOutcomeError`` there.
    """
    status = resp.status
    label = f"{what} " if what else ""
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
        msg = f"{label}HTTP {status} from {resp.url}"
        if status >= 500 and status != 503 and not idempotent:
            raise UnknownOutcomeError(msg, code=f"http_{status}", http_status=status, provider=provider)
        raise RetryableError(msg, code=f"http_{status}", http_status=status, provider=provider,
                             retry_after=retry_after)


def decode_json(resp: HttpResponse, *, provider: str | None, retryable: bool | None = None,
                idempotent: bool = True, what: str = "") -> Any:
    """Decode a JSON body (numbers with a fraction become ``Decimal``, never float).

    A body that is not JSON raises ``RetryableError`` when the status is 5xx-ish (or ``retryable`` is
    True), else ``PermanentError``; for a non-idempotent call a retryable case becomes
    ``UnknownOutcomeError`` instead.
    """
    if resp._json_cache is not None:
        return resp._json_cache
    raw = resp.content.lstrip(b"\xef\xbb\xbf").strip()
    try:
        value = _json.loads(raw.decode("utf-8"), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        pass
    else:
        resp._json_cache = value
        return value
    label = f"{what} " if what else ""
    kind = resp.content_type or "unknown content type"
    msg = f"{label}answer from {resp.url} is not JSON (HTTP {resp.status}, {kind}, {len(resp.content)} bytes)"
    if retryable is None:
        retryable = resp.status >= 500 or resp.status in (408, 429)
    kw = {"code": "bad_response", "http_status": resp.status, "provider": provider}
    if retryable:
        if not idempotent:
            raise UnknownOutcomeError(msg, **kw)
        raise RetryableError(msg, **kw)
    raise PermanentError(msg, **kw)


class HttpTransport:
    """One pooled session plus the error mapping. Thread-safe for concurrent calls."""

    def __init__(
        self,
        provider: str,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
        verify: bool | str = True,
    ) -> None:
        self.provider = provider
        self.timeout = timeout
        self.session = session if session is not None else make_session(pool_maxsize=pool_maxsize)
        self._own_session = session is None
        self.verify = verify

    def send(
        self,
        http_method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | bytes | str | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        what: str = "",
    ) -> HttpResponse:
        """Send one request; transport failures raise (see the module table), any HTTP status returns.

        ``data`` may be a mapping (form-encoded), or exact bytes for signed bodies; ``json`` is
        serialised with :func:`json_dumps` (Decimals as strings).
        """
        hdrs = dict(headers or {})
        body: Any = data
        if json is not None:
            if data is not None:
                raise ValueError("pass data or json, not both")
            body = json_dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        started = time.monotonic()
        try:
            r = self.session.request(
                http_method.upper(), url, params=params, data=body, headers=hdrs,
                timeout=self.timeout if timeout is None else timeout, allow_redirects=False, verify=self.verify,
            )
            content = r.content  # read the body inside the try: a reset here is an unknown outcome too
        except requests.exceptions.RequestException as exc:
            raise map_transport_error(exc, provider=self.provider, url=url, what=what) from None
        return HttpResponse(
            status=r.status_code, headers=r.headers, content=content, url=safe_url(url),
            elapsed=time.monotonic() - started, http_method=http_method.upper(),
        )

    def close(self) -> None:
        if self._own_session:
            self.session.close()


class TransportClient:
    """Base of every provider client: owns ``self._http`` (an HttpTransport) and closes it."""

    _http: HttpTransport

    @property
    def session(self) -> requests.Session:
        return self._http.session

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
