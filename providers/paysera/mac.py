"""Paysera MAC access authentication: signing (client side) and verification (sandbox side).

Exactly what Paysera's own libraries do (docs/providers/paysera.md, with Paysera's published example):

1. ``ext``: when the body is not empty, ``body_hash`` = base64(SHA-256(raw body bytes)); the extra
   parameters (``project_id``, ``location_id``, …) follow it; the whole is URL-encoded as a query string
   (PHP ``http_build_query``: ``body_hash=IftzxAtY...%3D&project_id=3``). Empty body and no parameters:
   ext is ``""`` and the ``ext`` attribute is left out of the header.
2. The normalized string is seven lines, each followed by ``\\n`` (the last one too, even when ext is
   empty): ts, nonce, METHOD, request URI (path plus ``?query`` when there is one), host (lower case),
   port (443 for https, 80 for http when the URL names none), ext (exactly as sent).
3. ``mac`` = base64(HMAC-SHA256(mac_key, normalized string)).

Header: ``MAC id="…", ts="…", nonce="…", mac="…"[, ext="…"]``. The nonce is 32 random characters of
printable ASCII without ``"`` and ``\\`` (the alphabet of Paysera's libraries, space included), so a
header value may contain ``,`` ``=`` and spaces: :func:`parse_header` reads quoted values.

The two classic mistakes Paysera fixed once in its own code are covered by tests: a missing default port
and a request URI without its query string.

Nothing here logs, and no error text ever contains the MAC key (or the MAC itself).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "MacHeader",
    "MacError",
    "NonceCache",
    "NONCE_ALPHABET",
    "make_nonce",
    "body_hash",
    "build_ext",
    "normalized_string",
    "calculate_mac",
    "authorization_header",
    "sign",
    "split_host_port",
    "request_uri",
    "parse_header",
    "verify",
]

# Printable ASCII (0x20-0x7E) without '"' (0x22) and '\' (0x5C): what Paysera's generateNonce() draws from.
NONCE_ALPHABET = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\')
DEFAULT_PORTS = {"https": 443, "http": 80}


def make_nonce(length: int = 32) -> str:
    """A random nonce (cryptographically random) from :data:`NONCE_ALPHABET`."""
    return "".join(secrets.choice(NONCE_ALPHABET) for _ in range(length))


def body_hash(body: bytes) -> str:
    """base64(SHA-256(body))."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def _ext_value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def build_ext(body: bytes | None, params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None) -> str:
    """The ``ext`` string: ``body_hash`` first (when the body is not empty), then ``params`` in order.

    ``None`` values are left out. Encoding is ``application/x-www-form-urlencoded`` like PHP's
    ``http_build_query`` (``=`` → ``%3D``, ``+`` → ``%2B``, ``/`` → ``%2F``, space → ``+``).
    """
    parts: list[tuple[str, str]] = []
    if body:
        parts.append(("body_hash", body_hash(body)))
    items = params.items() if isinstance(params, Mapping) else (params or ())
    for k, v in items:
        if v is not None:
            parts.append((str(k), _ext_value(v)))
    return urlencode(parts) if parts else ""


def normalized_string(ts: int | str, nonce: str, method: str, uri: str, host: str, port: int | str, ext: str) -> str:
    """The seven lines the MAC is computed over, each followed by a newline."""
    return "".join(f"{line}\n" for line in (ts, nonce, method.upper(), uri, host.lower(), port, ext))


def calculate_mac(mac_key: str | bytes, normalized: str) -> str:
    """base64(HMAC-SHA256(mac_key, normalized))."""
    key = mac_key.encode("utf-8") if isinstance(mac_key, str) else mac_key
    return base64.b64encode(hmac.new(key, normalized.encode("utf-8"), hashlib.sha256).digest()).decode("ascii")


def authorization_header(mac_id: str, ts: int | str, nonce: str, mac: str, ext: str = "") -> str:
    """``MAC id="…", ts="…", nonce="…", mac="…"`` plus ``, ext="…"`` when ext is not empty."""
    parts = [f'id="{mac_id}"', f'ts="{ts}"', f'nonce="{nonce}"', f'mac="{mac}"']
    if ext:
        parts.append(f'ext="{ext}"')
    return "MAC " + ", ".join(parts)


def split_host_port(netloc: str, scheme: str = "https") -> tuple[str, int]:
    """``host[:port]`` (a URL's netloc or a Host header) → (lower-case host, port with the default filled in).

    Userinfo is dropped; an IPv6 host keeps its brackets (as it appears in the Host header).
    """
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        host, rest = hostport[: end + 1], hostport[end + 1:]
        port_s = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_s = hostport.partition(":")
    if port_s:
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError("invalid port in host") from None
    else:
        try:
            port = DEFAULT_PORTS[scheme.lower()]
        except KeyError:
            raise ValueError(f"no default port for scheme {scheme!r}: name the port in the URL") from None
    return host.lower(), port


def request_uri(url: str) -> str:
    """Path plus ``?query`` when there is one (``/`` for an empty path), exactly as in the URL."""
    p = urlsplit(url)
    uri = p.path or "/"
    return f"{uri}?{p.query}" if p.query else uri


def sign(method: str, url: str, body: bytes | None, mac_id: str, mac_key: str, *, ts: int,
         nonce: str | None = None, ext_params: Mapping[str, Any] | None = None) -> str:
    """The ``Authorization`` header value for one request to ``url`` (the full URL, query included)."""
    p = urlsplit(url)
    host, port = split_host_port(p.netloc, p.scheme)
    nonce = make_nonce() if nonce is None else nonce
    ext = build_ext(body, ext_params)
    mac = calculate_mac(mac_key, normalized_string(ts, nonce, method, request_uri(url), host, port, ext))
    return authorization_header(mac_id, ts, nonce, mac, ext)


# --------------------------------------------------------------------------------------------------
# Server side: parse and verify
# --------------------------------------------------------------------------------------------------

class MacError(Exception):
    """A request the server must refuse. ``reason`` is one of: ``missing``, ``malformed``, ``unknown_id``,
    ``bad_mac``, ``body_hash``, ``stale_ts``, ``replayed_nonce``. The message never holds a key or a MAC."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class MacHeader:
    id: str
    ts: str
    nonce: str
    mac: str
    ext: str = ""

    @property
    def ext_params(self) -> dict[str, str]:
        """``ext`` decoded (``body_hash``, ``project_id``, …); a repeated name keeps its last value."""
        return dict(parse_qsl(self.ext, keep_blank_values=True))


_ATTR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"]*)"\s*(?:,|$)')


def parse_header(value: str | None) -> MacHeader:
    """Parse ``MAC id="…", ts="…", nonce="…", mac="…"[, ext="…"]``; raise :class:`MacError` otherwise."""
    if not value or not value.strip():
        raise MacError("missing", "Authorization header is missing")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.upper() != "MAC":
        raise MacError("missing", "Authorization scheme is not MAC")
    attrs: dict[str, str] = {}
    pos, rest = 0, rest.strip()
    while pos < len(rest):
        m = _ATTR.match(rest, pos)
        if not m:
            raise MacError("malformed", "Authorization header is malformed")
        name = m.group(1)
        if name in attrs:
            raise MacError("malformed", f"attribute {name} given twice")
        attrs[name] = m.group(2)
        pos = m.end()
    missing = [k for k in ("id", "ts", "nonce", "mac") if not attrs.get(k)]
    if missing:
        raise MacError("malformed", f"Authorization header lacks {', '.join(missing)}")
    if not attrs["ts"].isdigit():
        raise MacError("malformed", "ts is not a unix timestamp")
    return MacHeader(attrs["id"], attrs["ts"], attrs["nonce"], attrs["mac"], attrs.get("ext", ""))


class NonceCache:
    """Nonces seen per MAC id, each kept until its ts leaves the window. Thread-safe."""

    def __init__(self, window: float = 300.0) -> None:
        self.window = window
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def check_and_remember(self, mac_id: str, nonce: str, ts: int, now: float, window: float | None = None) -> bool:
        """True when the nonce is new (and is now remembered); False when it was seen within the window."""
        window = self.window if window is None else window
        with self._lock:
            if now >= self._next_prune:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
                self._next_prune = now + max(1.0, window / 10)
            key = (mac_id, nonce)
            exp = self._seen.get(key)
            if exp is not None and exp > now:
                return False
            # A nonce can be reused once the request that carried it could no longer pass the ts check.
            self._seen[key] = max(ts, now) + window
            return True

    def __len__(self) -> int:
        return len(self._seen)


def verify(header: str | MacHeader | None, *, method: str, uri: str, host: str, port: int | str, body: bytes,
           key_for: Callable[[str], str | None], now: float | None = None, window: float = 300.0,
           nonces: NonceCache | None = None) -> MacHeader:
    """Check one received request; return its parsed header or raise :class:`MacError`.

    Recomputes the MAC over what was received (method, request URI with its query, host, port, ext as
    sent), then checks: ``body_hash`` in ext equals the hash of the received body (and is absent when the
    body is empty), ``|ts - now| <= window``, and the nonce was not seen for this id within the window.
    ``key_for(mac_id)`` returns the key or None for an unknown id.
    """
    h = header if isinstance(header, MacHeader) else parse_header(header)
    key = key_for(h.id)
    if not key:
        raise MacError("unknown_id", "unknown MAC id")
    expected = calculate_mac(key, normalized_string(h.ts, h.nonce, method, uri, host, port, h.ext))
    if not hmac.compare_digest(expected.encode("ascii"), h.mac.encode("ascii", errors="replace")):
        raise MacError("bad_mac", "MAC does not match the request")
    sent_hash = h.ext_params.get("body_hash")
    if body:
        if sent_hash is None or not hmac.compare_digest(sent_hash.encode("ascii", errors="replace"),
                                                        body_hash(body).encode("ascii")):
            raise MacError("body_hash", "body_hash in ext does not match the request body")
    elif sent_hash is not None and sent_hash != body_hash(b""):
        raise MacError("body_hash", "body_hash in ext does not match the (empty) request body")
    now = time.time() if now is None else now
    ts = int(h.ts)
    if abs(ts - now) > window:
        raise MacError("stale_ts", f"timestamp is outside the allowed window of {int(window)} s "
                                   f"(server time {int(now)})")
    if nonces is not None and not nonces.check_and_remember(h.id, h.nonce, ts, now, window):
        raise MacError("replayed_nonce", "nonce was already used")
    return h
