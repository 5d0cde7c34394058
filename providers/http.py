"""The HTTP transport every provider client shares, and the one table that says what an answer means.

(Over 500 lines on purpose: the table, the mapping that applies it and the loop that calls the mapping are
one contract, read together; splitting them would put the table in one file and its only user in another.)

``HttpTransport`` owns one pooled ``requests.Session`` and applies a timeout to every call;
``TransportClient`` (the base of the four clients) runs every call through one loop — send, map the
answer, log one DEBUG line — and :func:`error_for` is the one function that turns an HTTP answer into
an error. A provider supplies only an :class:`Envelope`: how to decode and unwrap its answers and what
its own error codes mean (``providers/<name>/errors.py``).

What an answer means for a call that may simply be repeated (idempotent) and for a call that moves
money or creates something (not idempotent), decided here once — the ``SEMANTICS`` table:

====================================================  ======================  ========================
what happened                                         idempotent call         call that moves money
====================================================  ======================  ========================
not sent: connection refused, DNS failure, connect    ConnectionFailedError   ConnectionFailedError
timeout, TLS or proxy failure
sent, no answer: read timeout, connection reset or    UnknownOutcomeError     UnknownOutcomeError
closed after sending, truncated/undecodable body      (repeating it is how
                                                      to find out)
HTTP 429                                              RetryableError          RetryableError
HTTP 5xx, 503 included, without a provider code       RetryableError          UnknownOutcomeError
that vouches for it
a 1xx/2xx/3xx that is not a readable answer (an       BadResponseError        UnknownOutcomeError
HTML page, JSON of another shape, an unknown code)
HTTP 4xx without a provider code                      the provider's class for the status (default:
                                                      401/403 AuthError, 404/410 NotFoundError — on a
                                                      money call PermanentError: a missing path, not a
                                                      missing object —, other 4xx PermanentError)
the provider's own error code                         the class of the provider's code table, as is
malformed URL / request (our configuration)           PermanentError          PermanentError
====================================================  ======================  ========================

Why 503 is an unknown outcome on a money call (the gateway's rule, now everyone's): HTTP does not say
that a 503 was produced before anything ran. A load balancer with no healthy origin answers 503 having
forwarded nothing, but so may an origin whose database timed out after it handed the payout on, or a
proxy that gave up on a slow origin. Being wrong one way pays twice (a resend of a call that had
executed); being wrong the other way costs one lookup (``find``), which every rail has and which is
safe. So only the provider's own word proves "nothing ran": a code in its table (ZaleyCash 53
"Transaction processing error", Premium's maintenance envelope, every 4xx refusal) or a 429. On a call
that is safe to repeat a 503 stays plain retryable, with its ``Retry-After``.

Error messages name the provider, the host and the path only: never headers, query strings or keys;
the body is kept in ``ProviderError.raw_body``, never in the message.
"""
from __future__ import annotations

import json as _json
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable, Mapping, NamedTuple
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError as _U3ConnectTimeout
from urllib3.exceptions import NewConnectionError as _U3NewConnection

from providers.errors import (
    MAX_BODY_TEXT,
    AuthError,
    BadResponseError,
    ConnectionFailedError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
)
from providers.values import MAX_JSON_DEPTH, clean_text

DEFAULT_TIMEOUT = 15.0
DEFAULT_POOL_MAXSIZE = 32
USER_AGENT = "exsync/0.1 (+providers.http)"

__all__ = [
    "SEMANTICS",
    "Answer",
    "Refusal",
    "Envelope",
    "Reply",
    "error_for",
    "unreadable_error",
    "HttpTransport",
    "TransportClient",
    "HttpResponse",
    "make_session",
    "map_transport_error",
    "parse_retry_after",
    "json_dumps",
    "safe_url",
]

_ErrorClass = type[ProviderError]

# The table of the module text: what happened → (class on an idempotent call, class on a money call).
# None: the provider's class for the HTTP status (Envelope.status_class).
SEMANTICS: dict[str, tuple[_ErrorClass | None, _ErrorClass | None]] = {
    "not_sent": (ConnectionFailedError, ConnectionFailedError),
    "no_answer": (UnknownOutcomeError, UnknownOutcomeError),
    "rate_limited": (RetryableError, RetryableError),  # 429: refused before processing
    "server_error": (RetryableError, UnknownOutcomeError),  # 5xx, 503 included (see the module text)
    "unreadable": (BadResponseError, UnknownOutcomeError),
    "refused": (None, None),  # 4xx: the request was refused; the provider names the class
    "invalid_request": (PermanentError, PermanentError),  # our URL or headers are wrong: nothing was sent
}


def semantics(row: str, idempotent: bool) -> _ErrorClass | None:
    return SEMANTICS[row][0 if idempotent else 1]


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Transport failures (no answer)
# --------------------------------------------------------------------------------------------------

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
    return any(isinstance(e, (_U3NewConnection, _U3ConnectTimeout, ConnectionRefusedError, socket.gaierror))
               for e in _chain(exc))


def map_transport_error(exc: BaseException, *, provider: str | None, url: str, what: str = "",
                        idempotent: bool = True) -> ProviderError:
    """A ``requests`` exception as a ProviderError: the first two rows of ``SEMANTICS``."""
    where = safe_url(url)
    why = _reason(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        row, code, msg = "not_sent", "connect_timeout", f"connect timeout to {where}"
    elif isinstance(exc, requests.exceptions.ReadTimeout):
        row, code, msg = "no_answer", "read_timeout", f"no answer within the read timeout from {where}"
    elif isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        row, code, msg = "not_sent", "connect_failed", f"could not open a connection to {where} ({why})"
    elif isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        row, code, msg = "no_answer", "broken_response", f"broken answer from {where} ({why})"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        if _never_sent(exc):
            row, code, msg = "not_sent", "connect_failed", f"could not connect to {where} ({why})"
        else:
            row, code, msg = "no_answer", "connection_lost", f"connection lost after sending to {where} ({why})"
    elif isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                          requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader,
                          requests.exceptions.URLRequired)):
        row, code, msg = "invalid_request", "invalid_request", f"invalid request to {where} ({type(exc).__name__})"
    else:
        row, code, msg = "no_answer", "transport_error", f"request to {where} failed ({why})"
    cls = semantics(row, idempotent) or UnknownOutcomeError
    return cls(msg, code=code, reason=code, provider=provider, call=what or None)


# --------------------------------------------------------------------------------------------------
# Answers: one mapping for every provider
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """One HTTP answer as the mapping sees it."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # the decoded JSON; None when the body was empty or not JSON
    is_json: bool = False
    text: str = ""  # the body as text (at most MAX_BODY_TEXT characters) when it was not JSON
    url: str = ""  # safe form
    content_type: str = ""
    size: int = 0

    @property
    def raw(self) -> Any:
        """What ``ProviderError.raw_body`` keeps: the decoded JSON, else the text, else None."""
        return self.body if self.is_json else (self.text or None)


@dataclass(frozen=True)
class Refusal:
    """A provider's error as its :class:`Envelope` reads it.

    ``cls``: the class the provider's own code means — its word, used as is. None: there is no code
    the provider's table knows, and the HTTP status decides (``SEMANTICS``); ``code``/``message``, when
    given, are still the provider's.
    """

    cls: _ErrorClass | None = None
    code: Any = None
    message: str = ""
    reason: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)  # more keyword arguments of ``cls``


class Envelope:
    """How one provider's answers are read. Subclassed once per provider (``providers/<name>/errors.py``).

    A subclass sets ``provider`` and ``money_calls`` and overrides :meth:`refusal` (its envelope and
    code table), and where needed :meth:`decode`, :meth:`data` and :meth:`status_class`.
    """

    provider = "provider"
    money_calls: frozenset[str] = frozenset()  # calls that are not idempotent unless told otherwise

    def decode(self, content: bytes) -> Any:
        """The JSON of a body (fractions as Decimal, a UTF-8 BOM tolerated); ValueError when it is not JSON."""
        return _json.loads(content.lstrip(b"\xef\xbb\xbf").decode("utf-8"), parse_float=Decimal)

    def refusal(self, answer: Answer, call: str) -> Refusal | None:
        """None when the answer is a success (believed on a 2xx only), else the provider's error."""
        return None if 200 <= answer.status < 300 else Refusal()

    def data(self, answer: Answer) -> Any:
        """The payload of a successful answer."""
        return answer.body

    def status_class(self, status: int, call: str, idempotent: bool) -> _ErrorClass:
        """The class of a 4xx that carries no code the provider's table knows."""
        if status in (401, 403):
            return AuthError
        if status in (404, 410):
            return NotFoundError if idempotent else PermanentError
        return PermanentError

    def idempotent(self, call: str) -> bool:
        return call not in self.money_calls

    # -- the same two functions for every provider (``providers.<name>.error_for`` / ``check_envelope``)
    def answer(self, status: int, content: Any, headers: Mapping[str, str] | None = None, url: str = "") -> Answer:
        """An :class:`Answer` from raw bytes (decoded here) or from an already decoded JSON value."""
        headers = headers or {}
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not isinstance(content, (bytes, bytearray)):
            return Answer(status, headers, content, content is not None, "", url, ctype, 0)
        raw = bytes(content)
        if raw and not raw.isspace():
            try:
                return Answer(status, headers, self.decode(raw), True, "", url, ctype, len(raw))
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
        text = clean_text(raw[: MAX_BODY_TEXT * 4].decode("utf-8", errors="replace"))[:MAX_BODY_TEXT]
        return Answer(status, headers, None, False, text, url, ctype, len(raw))

    def error_for(self, status: int, body: Any, *, call: str = "request", idempotent: bool | None = None,
                  headers: Mapping[str, str] | None = None) -> ProviderError | None:
        """The error an answer stands for, or None for a success. Pure: no I/O, never raises.

        ``body``: the raw bytes (decoded here) or the decoded JSON. ``idempotent``: False for a call that
        moves money or creates something; None = this provider's default for ``call``.
        """
        return error_for(self.answer(status, body, headers), self, call,
                         self.idempotent(call) if idempotent is None else idempotent)

    def check(self, status: int, body: Any, *, call: str = "request", idempotent: bool | None = None,
              headers: Mapping[str, str] | None = None) -> Any:
        """Raise the answer's error, or return its payload."""
        answer = self.answer(status, body, headers)
        err = error_for(answer, self, call, self.idempotent(call) if idempotent is None else idempotent)
        if err is not None:
            raise err
        return self.data(answer)


def unreadable_error(envelope: Envelope, call: str, idempotent: bool, why: str, *, http_status: int | None = None,
                     raw_body: Any = None, code: Any = "bad_response") -> ProviderError:
    """The ``unreadable`` row for an answer a client finds unusable after the envelope accepted it
    (e.g. an object without the field it must have)."""
    cls = semantics("unreadable", idempotent) or BadResponseError
    if cls is UnknownOutcomeError:
        why += _MAYBE_EXECUTED
    return cls(why, code=code, reason="unreadable", http_status=http_status, provider=envelope.provider,
               call=call, raw_body=raw_body)


_MAYBE_EXECUTED = "; the call may have been executed: look it up before sending it again"


def error_for(answer: Answer, envelope: Envelope, call: str, idempotent: bool) -> ProviderError | None:
    """THE mapping: the error an HTTP answer stands for (None for a success). Pure, never raises.

    The provider's envelope reads its own code first; only when it has none the status decides, by
    ``SEMANTICS`` (the module text).
    """
    status = answer.status
    refusal = envelope.refusal(answer, call)
    if refusal is None:
        if 200 <= status < 300:
            return None
        refusal = Refusal()  # a "success" on a 4xx/5xx is not one: the status decides
    retry_after = parse_retry_after(answer.headers.get("Retry-After")) if status == 429 or status >= 500 else None
    common: dict[str, Any] = {"http_status": status, "provider": envelope.provider, "call": call,
                              "raw_body": answer.raw, "fields": refusal.fields, "retry_after": retry_after}
    if refusal.cls is not None:  # the provider's own code: its word stands
        message = refusal.message or f"error {refusal.code}"
        return refusal.cls(message, code=refusal.code, reason=refusal.reason, **refusal.extra, **common)

    where = f" from {answer.url}" if answer.url else ""
    if status == 429:
        row = "rate_limited"
    elif status >= 500:
        row = "server_error"
    elif status >= 400:
        row = "refused"
    else:
        row = "unreadable"
    cls = semantics(row, idempotent) or envelope.status_class(status, call, idempotent)
    if row == "unreadable":
        what = refusal.message or f"not a {envelope.provider} answer"
        kind = answer.content_type or ("JSON" if answer.is_json else "no content type")
        message = f"{what} (HTTP {status}{where}, {kind}, {answer.size} bytes)"
        code = refusal.code if refusal.code is not None else "bad_response"
    else:
        message = refusal.message or f"HTTP {status}{where}"
        code = refusal.code if refusal.code is not None else f"http_{status}"
    if cls is UnknownOutcomeError and (row == "unreadable" or not refusal.message):  # a provider's text stays as sent
        message += _MAYBE_EXECUTED
    return cls(message, code=code, reason=refusal.reason or row, **refusal.extra, **common)


# --------------------------------------------------------------------------------------------------
# The transport and the client base
# --------------------------------------------------------------------------------------------------

class HttpTransport:
    """One pooled session. Thread-safe for concurrent calls."""

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
        idempotent: bool = True,
    ) -> HttpResponse:
        """Send one request; transport failures raise (``SEMANTICS``), any HTTP status returns.

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
            raise map_transport_error(exc, provider=self.provider, url=url, what=what,
                                      idempotent=idempotent) from None
        return HttpResponse(
            status=r.status_code, headers=r.headers, content=content, url=safe_url(url),
            elapsed=time.monotonic() - started, http_method=http_method.upper(),
        )

    def close(self) -> None:
        if self._own_session:
            self.session.close()


class Reply(NamedTuple):
    status: int
    data: Any  # the envelope's payload


class TransportClient:
    """Base of every provider client: owns ``self._http`` and runs every call through :meth:`_request`.

    A client sets ``provider`` and ``envelope``, and may override :meth:`_credential` (the masked
    credential its DEBUG line shows) and :meth:`_secrets` (texts never to appear in an error).
    """

    provider = "provider"
    envelope: Envelope
    _http: HttpTransport

    def _credential(self) -> str:
        return ""

    def _secrets(self) -> Iterable[str]:
        return ()

    def _request(self, call: str, idempotent: bool, http_method: str, path: str,
                 exchange: Callable[[], HttpResponse]) -> Reply:
        """One call: ``exchange()`` signs and sends (once, or more when the provider's protocol needs it),
        the answer is mapped by :func:`error_for`, and one DEBUG line records the call, the masked
        credential, the time taken and the outcome (path only: no query, body or header)."""
        started = time.monotonic()
        outcome = "ok"
        try:
            answer = self._answer(exchange())
            err = error_for(answer, self.envelope, call, idempotent)
            if err is not None:
                raise err
            return Reply(answer.status, self.envelope.data(answer))
        except ProviderError as e:
            if e.call is None:
                e.call = call
            self._scrub(e)
            outcome = f"{type(e).__name__}(code={e.code!r})"
            raise
        except Exception as e:  # programming errors: logged, never swallowed
            outcome = f"crash {type(e).__name__}"
            raise
        finally:
            log = logging.getLogger(f"providers.{self.provider}")
            if log.isEnabledFor(logging.DEBUG):
                cred = self._credential()
                log.debug("%s %s %s %s%s %.3fs %s", self.provider, call, http_method.upper(), path.split("?", 1)[0],
                          f" {cred}" if cred else "", time.monotonic() - started, outcome)

    def _answer(self, resp: HttpResponse) -> Answer:
        return self.envelope.answer(resp.status, resp.content, resp.headers, resp.url)

    def _error_of(self, resp: HttpResponse, call: str, idempotent: bool) -> ProviderError | None:
        """The error an answer stands for, for a client that must judge it before :meth:`_request` does."""
        return error_for(self._answer(resp), self.envelope, call, idempotent)

    def _scrub(self, err: ProviderError) -> None:
        """Take every secret of this client out of an error's message, fields and body."""
        secrets = [s for s in self._secrets() if s]
        if not secrets:
            return

        def clean(value: Any, depth: int = 0) -> Any:
            if isinstance(value, str):
                for s in secrets:
                    value = value.replace(s, "***")
                return value
            if depth > MAX_JSON_DEPTH:
                return None
            if isinstance(value, Mapping):
                return {clean(k): clean(v, depth + 1) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v, depth + 1) for v in value]
            return value

        message = clean(err.message)
        if message != err.message:
            err.message = message
            err.args = (message,)
        err.fields = {k: clean(v) for k, v in err.fields.items()}
        err.raw_body = clean(err.raw_body)

    @property
    def session(self) -> requests.Session:
        return self._http.session

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
