"""Request signing of the signed payout/pay-in gateway, as pure functions.

Self-contained on purpose: the client signs with it, the sandbox verifies with it, and exsync's webhook
receiver verifies the gateway's callbacks with it. Nothing here does I/O or knows about the client.

The contract (docs/providers/gateway.md; the provider fixes the headers and HMAC-SHA256, the
project fixes the rest, so names, window and clock are all parameters with these defaults)::

    X-API-Key:   <api key>
    X-Timestamp: <unix seconds, e.g. 1717000200>
    X-Signature: lowercase hex HMAC-SHA256(secret, f"{timestamp}{METHOD}{path_with_query}".encode() + body)

``path_with_query`` is the request target exactly as sent on the wire (``/api/v1/payouts/ord%201?x=1``:
percent-encoding kept, no scheme or host, ``?query`` only when there is one); ``body`` the raw bytes
sent (``b""`` for a GET). A receiver must sign what it *received*: read the raw body before any JSON
parsing and take the path from the raw request line (:func:`path_with_query_from_environ`).

Verifying (:func:`verify`) checks, in this order, and raises the first failure as a
:class:`SignatureError` subclass whose ``message`` is the gateway's own text:

=====================================  ===========================  =============================
check                                  message                      class
=====================================  ===========================  =============================
X-API-Key present                      ``API key required``         MissingApiKeyError
key known (when one is expected)       ``Invalid API key``          InvalidApiKeyError
X-Timestamp present                    ``Timestamp required``       MissingTimestampError
unix seconds (digits only)             ``Invalid timestamp format`` InvalidTimestampError
abs(now - timestamp) <= window         ``Timestamp window exceeded`` TimestampWindowError
signature matches (constant time)      ``Invalid signature``        InvalidSignatureError
signature not seen within the window   ``Replay``                   ReplayError (only with ``seen``)
=====================================  ===========================  =============================

Every one is an ``AuthError`` (HTTP 401, code ``unauthorized``): answer it with :meth:`SignatureError.body`.
No message ever contains the secret, the key or the signature.

Use in a Flask receiver::

    from providers.gateway.signing import ReplayCache, SignatureError, path_with_query_from_environ, verify
    replay = ReplayCache()                                # one per process; see ReplayStore for Redis
    body = request.get_data(cache=True)                   # raw bytes, before get_json()
    try:
        verify(secret, request.headers, request.method, path_with_query_from_environ(request.environ),
               body, seen=replay)
    except SignatureError as e:
        return e.body(), 401
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import quote

from providers.errors import AuthError

__all__ = [
    "DEFAULT_WINDOW",
    "HeaderNames",
    "DEFAULT_HEADERS",
    "string_to_sign",
    "sign",
    "sign_headers",
    "verify",
    "path_with_query_from_environ",
    "ReplayStore",
    "ReplayCache",
    "SignatureError",
    "MissingApiKeyError",
    "InvalidApiKeyError",
    "MissingTimestampError",
    "InvalidTimestampError",
    "TimestampWindowError",
    "InvalidSignatureError",
    "ReplayError",
    "SIGNATURE_ERRORS",
]

PROVIDER = "gateway"
DEFAULT_WINDOW = 300  # seconds either side of the receiver's clock

_TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")  # unix seconds; no sign, fraction, spaces or ISO dates


@dataclass(frozen=True)
class HeaderNames:
    """Names of the three signing headers (matched case-insensitively when reading)."""

    api_key: str = "X-API-Key"
    timestamp: str = "X-Timestamp"
    signature: str = "X-Signature"


DEFAULT_HEADERS = HeaderNames()


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

class SignatureError(AuthError):
    """A request (or callback) failed authentication. HTTP 401, code ``unauthorized``.

    ``message`` is the gateway's exact text; ``reason`` a stable symbolic name.
    """

    default_message = "Unauthorized"
    reason = "unauthorized"

    def __init__(self, message: str | None = None, *, code: Any = "unauthorized", http_status: int | None = 401,
                 provider: str | None = PROVIDER, **kw: Any) -> None:
        super().__init__(message or self.default_message, code=code, http_status=http_status, provider=provider,
                         **kw)

    def body(self) -> dict:
        """The gateway's error body for this failure (what a receiver answers with its 401)."""
        return {"message": self.message, "code": "unauthorized",
                "error": {"code": "unauthorized", "message": self.message}}


class MissingApiKeyError(SignatureError):
    default_message, reason = "API key required", "api_key_required"


class InvalidApiKeyError(SignatureError):
    default_message, reason = "Invalid API key", "invalid_api_key"


class MissingTimestampError(SignatureError):
    default_message, reason = "Timestamp required", "timestamp_required"


class InvalidTimestampError(SignatureError):
    default_message, reason = "Invalid timestamp format", "invalid_timestamp_format"


class TimestampWindowError(SignatureError):
    """The timestamp is outside the window: almost always a wrong clock on one side.

    ``message`` stays the gateway's text; ``str()`` adds a hint to check the clock and, when known,
    ``skew`` (receiver time minus sender time, seconds: positive = the sender's clock is behind).
    """

    default_message, reason = "Timestamp window exceeded", "timestamp_window_exceeded"

    def __init__(self, message: str | None = None, *, skew: float | None = None, window: float | None = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.skew = skew
        self.window = window

    @property
    def hint(self) -> str:
        parts = ["check the clock: X-Timestamp must be the current UTC time in unix seconds"]
        if self.window is not None:
            parts[0] += f" within ±{int(self.window)} s of the gateway's clock"
        if self.skew is not None:
            side = "behind" if self.skew > 0 else "ahead of"
            parts.append(f"this clock looks {abs(int(self.skew))} s {side} the other side's (sync with NTP)")
        return "; ".join(parts)

    def __str__(self) -> str:
        return f"{super().__str__()} ({self.hint})"


class InvalidSignatureError(SignatureError):
    default_message, reason = "Invalid signature", "invalid_signature"


class ReplayError(SignatureError):
    """The same signature was already accepted within the window: a replayed (or doubled) request."""

    default_message, reason = "Replay", "replay"


SIGNATURE_ERRORS: dict[str, type[SignatureError]] = {
    cls.default_message.lower(): cls
    for cls in (MissingApiKeyError, InvalidApiKeyError, MissingTimestampError, InvalidTimestampError,
                TimestampWindowError, InvalidSignatureError, ReplayError)
}


# --------------------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------------------

def _bytes(value: str | bytes | bytearray | memoryview | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def string_to_sign(timestamp: str | int, method: str, path_with_query: str, body: bytes | str | None = b"") -> bytes:
    """``f"{timestamp}{METHOD}{path_with_query}".encode() + body`` (the method upper-cased)."""
    return f"{timestamp}{method.upper()}{path_with_query}".encode("utf-8") + _bytes(body)


def sign(secret: str | bytes, timestamp: str | int, method: str, path_with_query: str,
         body: bytes | str | None = b"") -> str:
    """Lowercase hex HMAC-SHA256 of :func:`string_to_sign` with ``secret``."""
    return hmac.new(_bytes(secret), string_to_sign(timestamp, method, path_with_query, body),
                    hashlib.sha256).hexdigest()


def sign_headers(api_key: str, secret: str | bytes, method: str, path_with_query: str,
                 body: bytes | str | None = b"", *, timestamp: int | str | None = None,
                 header_names: HeaderNames = DEFAULT_HEADERS) -> dict[str, str]:
    """The three signing headers for one request (``timestamp`` defaults to ``int(time.time())``)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {header_names.api_key: api_key, header_names.timestamp: ts,
            header_names.signature: sign(secret, ts, method, path_with_query, body)}


def _now(now: float | int | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return now.timestamp()  # a naive datetime is local time, as datetime.timestamp() reads it
    return float(now)


def _header(headers: Any, name: str) -> str | None:
    """A header from a dict, werkzeug ``Headers``, ``requests`` headers or a list of pairs, any case."""
    if headers is None:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    get = getattr(headers, "get", None)
    if get is not None:
        v = get(name)
        if v is not None:
            return v
    lname = name.lower()
    for k, v in items:
        if str(k).lower() == lname:
            return v
    return None


def path_with_query_from_environ(environ: Mapping[str, Any]) -> str:
    """The raw request target of a WSGI request (path and query exactly as received).

    Uses ``RAW_URI``/``REQUEST_URI`` (werkzeug's server, gunicorn, uWSGI) and falls back to re-quoting
    ``SCRIPT_NAME + PATH_INFO`` plus ``QUERY_STRING``. A full URL in the request line (proxy form) is
    cut down to its path.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        raw = str(raw)
        if "://" in raw.split("?", 1)[0]:
            after = raw.split("://", 1)[1]
            slash = after.find("/")
            raw = after[slash:] if slash >= 0 else "/"
        return raw
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    # PATH_INFO is percent-decoded and latin-1 decoded by the WSGI server: undo both.
    path = quote(path.encode("latin-1", errors="replace"), safe="/:@!$&'()*+,;=-._~")
    qs = environ.get("QUERY_STRING") or ""
    return f"{path}?{qs}" if qs else path


# --------------------------------------------------------------------------------------------------
# Replay protection
# --------------------------------------------------------------------------------------------------

class ReplayStore(Protocol):
    """Where verified signatures are remembered. Any object with this method will do.

    ``add`` must be atomic: return True when ``signature`` was not there (and remember it until
    ``expires_at``, unix seconds), False when it was. With several receiver processes use a shared
    store, e.g. Redis: ``bool(r.set(f"gw:sig:{signature}", 1, nx=True, exat=int(expires_at) + 1))``.
    """

    def add(self, signature: str, expires_at: float, now: float) -> bool: ...


class ReplayCache:
    """In-memory :class:`ReplayStore` for one process: signatures seen, kept until their window ends.

    Thread-safe. Memory is bounded by the request rate times the window (each entry ~150 bytes);
    ``max_entries`` is a hard cap after which the oldest entries are forgotten early.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self.max_entries = max_entries

    def add(self, signature: str, expires_at: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            self._prune(now)
            old = self._expiry.get(signature)
            if old is not None and old >= now:
                return False
            self._expiry[signature] = expires_at
            heapq.heappush(self._heap, (expires_at, signature))
            while len(self._expiry) > self.max_entries and self._heap:
                _, sig = heapq.heappop(self._heap)
                self._expiry.pop(sig, None)
            return True

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            exp, sig = heapq.heappop(self._heap)
            if self._expiry.get(sig) == exp:
                del self._expiry[sig]

    def __contains__(self, signature: str) -> bool:
        with self._lock:
            exp = self._expiry.get(signature)
            return exp is not None and exp >= time.time()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()
            self._heap.clear()


# --------------------------------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------------------------------

def _ct_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def verify(
    secret: str | bytes | Callable[[str], str | bytes | None],
    headers: Any,
    method: str,
    path_with_query: str,
    body: bytes | str | None,
    *,
    now: float | int | datetime | None = None,
    window: float = DEFAULT_WINDOW,
    seen: ReplayStore | None = None,
    api_key: str | None = None,
    header_names: HeaderNames = DEFAULT_HEADERS,
) -> None:
    """Check one signed request; return None or raise a :class:`SignatureError` subclass (see the table).

    ``secret``: the shared secret, or a function ``api_key -> secret`` (None for an unknown key: several
    keys, each with its own secret). ``api_key``: the one key accepted, compared in constant time (None
    = any key, checked only through the signature). ``now``: the receiver's clock (unix seconds or an
    aware datetime; default ``time.time()``). ``seen``: a :class:`ReplayStore`; a signature already
    accepted within the window is refused with ``Replay``. Only fully valid signatures are remembered,
    so garbage cannot fill the store or block a genuine request.
    """
    key = _header(headers, header_names.api_key)
    if key is None or not str(key).strip():
        raise MissingApiKeyError()
    key = str(key)
    if api_key is not None and not _ct_equal(key, api_key):
        raise InvalidApiKeyError()
    if callable(secret):
        resolved = secret(key)
        if resolved is None:
            raise InvalidApiKeyError()
        secret = resolved

    ts = _header(headers, header_names.timestamp)
    if ts is None or not str(ts).strip():
        raise MissingTimestampError()
    ts = str(ts)
    if not _TIMESTAMP_RE.match(ts):
        raise InvalidTimestampError()
    current = _now(now)
    skew = current - int(ts)
    if abs(skew) > window:
        raise TimestampWindowError(skew=skew, window=window)

    given = _header(headers, header_names.signature)
    given = str(given).strip().lower() if given is not None else ""
    expected = sign(secret, ts, method, path_with_query, body)
    if not given or not _ct_equal(expected, given):
        raise InvalidSignatureError()

    if seen is not None and not seen.add(expected, int(ts) + window, current):
        raise ReplayError()
