"""Secrets at the HTTP edge: constant-time token checks and redaction.

The API and the operator pages share one bearer token (``EXSYNC_API_TOKEN``). When it is not configured
they answer 404 ``{"error": "api_disabled"}``: an unconfigured deployment shows nothing, not even that
the pages exist behind a login.
"""
from __future__ import annotations

import base64
import hmac
from functools import wraps
from typing import Callable, Iterable

from flask import current_app, jsonify, request

# Headers never stored or logged: they carry credentials of the sender or of a proxy in front of us.
DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                             "api-key", "api-login"})


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison; a missing value still costs one comparison."""
    given_b = (given or "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given_b, expected.encode("utf-8"))


def safe_headers(headers: Iterable[tuple[str, str]], redact: Callable[[str], str]) -> dict[str, str]:
    """Request headers fit for storage: credentials dropped, any configured secret masked by ``redact``."""
    return {name: redact(value) for name, value in headers if name.lower() not in DROPPED_HEADERS}


def _presented_token() -> str | None:
    """The token from ``Authorization: Bearer <t>`` or from HTTP Basic (any user name, token as password)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and a non-ASCII header value
            return None
        return decoded.partition(":")[2]
    return None


def require_api_token(view: Callable) -> Callable:
    """Bearer (or Basic) with ``settings.api_token``: 401 when wrong, 404 when the API is off."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        token = current_app.extensions["exsync.runtime"].settings.api_token
        if not token:
            return jsonify(error="api_disabled"), 404
        if not same_secret(_presented_token(), token):
            resp = jsonify(error="unauthorized")
            resp.status_code = 401
            # Basic first: a browser opening /stuck then asks for the token as a password.
            resp.headers.add("WWW-Authenticate", 'Basic realm="exsync"')
            resp.headers.add("WWW-Authenticate", 'Bearer realm="exsync"')
            return resp
        return view(*args, **kwargs)

    return wrapper
