"""Gateway callbacks: verify, then parse. Used by exsync's webhook receiver (and by tests).

The gateway POSTs the JSON payout (or pay-in) object to the ``callback_url`` given at create time,
signed like any request (``X-API-Key``, ``X-Timestamp``, ``X-Signature`` over timestamp + ``POST`` +
the callback URL's path and query + the raw body), and retries until it gets a 2xx. So a receiver:

1. reads the raw body BEFORE any JSON parsing, and the raw path (``path_with_query_from_environ``);
2. calls :func:`parse_callback` — a SignatureError (401 with :meth:`SignatureError.body`) when it is
   not from the gateway or is a replay; a CallbackError for a body that is not a JSON object;
3. stores the event and answers 2xx; the payload is a hint: re-read the payout with ``get_payout``
   before changing state (the lessons' "Receiving" rules).

A legitimate re-delivery is signed again with a new timestamp, so a replay cache does not block it:
deduplicate on (external_id, status, updated_at), not on the signature.
"""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from providers.gateway.errors import PROVIDER, CallbackError
from providers.gateway.signing import DEFAULT_HEADERS, DEFAULT_WINDOW, HeaderNames, ReplayStore, verify
from providers.gateway.types import PayIn, Payout

__all__ = ["parse_callback", "parse_payin_callback", "decode_callback"]


def decode_callback(body: bytes | str) -> dict:
    """The JSON object of a callback body (fractions as Decimal); CallbackError when it is not one."""
    try:
        value = json.loads(body if isinstance(body, str) else body.decode("utf-8"), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CallbackError("callback body is not JSON", code="bad_callback", provider=PROVIDER) from None
    if not isinstance(value, dict):
        raise CallbackError("callback body is not a JSON object", code="bad_callback", provider=PROVIDER)
    return value


def parse_callback(
    headers: Any,
    method: str,
    path: str,
    body: bytes | str,
    *,
    secret: str | bytes | Callable[[str], str | bytes | None],
    now: float | datetime | None = None,
    window: float = DEFAULT_WINDOW,
    replay_cache: ReplayStore | None = None,
    api_key: str | None = None,
    header_names: HeaderNames = DEFAULT_HEADERS,
) -> Payout:
    """Verify a payout callback (see :func:`providers.gateway.signing.verify`) and return its Payout.

    ``path``: the request target as received, path plus ``?query`` when there is one.
    """
    verify(secret, headers, method, path, body, now=now, window=window, seen=replay_cache, api_key=api_key,
           header_names=header_names)
    return Payout.from_raw(decode_callback(body))


def parse_payin_callback(headers: Any, method: str, path: str, body: bytes | str, **kw: Any) -> PayIn:
    """As :func:`parse_callback`, for a pay-in callback."""
    verify(kw.pop("secret"), headers, method, path, body, now=kw.pop("now", None),
           window=kw.pop("window", DEFAULT_WINDOW), seen=kw.pop("replay_cache", None), **kw)
    return PayIn.from_raw(decode_callback(body))
