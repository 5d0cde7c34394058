"""The one input layer of every HTTP surface: bodies, JSON, query and path values.

- ``guard_input`` wraps each request's ``wsgi.input``: whatever the server's reader raises on a broken
  body (gunicorn's ``InvalidChunkSize``, ``NoMoreData``, a reset connection…) becomes a 400, wherever the
  body is read (a receiver, ``get_data``, form parsing).
- ``read_body`` reads at most ``limit`` + 1 bytes; ``json_body`` decodes bounded JSON (fractions as
  Decimal, no NaN/Infinity, no NUL or lone surrogate anywhere);
- ``query_number`` / ``query_text`` / ``path_text`` check query and path values with the rules of
  ``providers.values``.
Every refusal is a ``BadValue`` (field and message), which the app answers
``400 {"error": "bad_request", "field": …, "message": …}``.
"""
from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any, Callable, Iterator, Pattern

from flask import request
from werkzeug.exceptions import BadRequest

from providers.values import BadValue, check_json, text, whole_number

log = logging.getLogger("exsync.webhooks.inputs")

MAX_QUERY_TEXT = 200


class BodyUnreadable(BadRequest):
    """The request body broke off or was framed wrongly: nothing of it can be trusted."""

    description = "the request body could not be read"


class _SafeInput:
    """A ``wsgi.input`` whose read errors are ``BodyUnreadable`` (a werkzeug 400)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def _guard(self, fn: Callable, *args: Any) -> Any:
        try:
            return fn(*args)
        except BadRequest:
            raise
        except Exception as exc:  # the server's own parse errors have no common base class
            log.info("request body unreadable: %s", type(exc).__name__)
            raise BodyUnreadable() from None

    def read(self, *args: Any) -> bytes:
        return self._guard(self._raw.read, *args)

    def readline(self, *args: Any) -> bytes:
        return self._guard(self._raw.readline, *args)

    def readlines(self, *args: Any) -> list[bytes]:
        return self._guard(self._raw.readlines, *args)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


def guard_input(wsgi_app: Callable) -> Callable:
    """WSGI middleware: every request body is read through ``_SafeInput``."""

    def app(environ: dict, start_response: Callable) -> Any:
        raw = environ.get("wsgi.input")
        if raw is not None and not isinstance(raw, _SafeInput):
            environ["wsgi.input"] = _SafeInput(raw)
        return wsgi_app(environ, start_response)

    return app


def read_body(limit: int) -> bytes | None:
    """The raw body, or None when it is larger than ``limit`` (never reads more than limit + 1 bytes)."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    data = request.stream.read(limit + 1)
    return None if len(data) > limit else data


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def decode_json(raw: bytes | str, field: str = "body", *, check: bool = True) -> Any:
    """JSON with fractions as Decimal, refusing NaN/Infinity and over-long integers; with ``check``, NUL
    and lone surrogates anywhere too (``check=False``: the caller checks each part, naming it)."""
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        # UnicodeDecodeError is a ValueError; so is an integer longer than Python's 4300-digit limit.
        raise BadValue(field, "is not valid JSON") from None
    if check:
        check_json(value, field)
    return value


def json_body(limit: int) -> Any:
    """The request's JSON body (``None`` when empty), bounded by ``limit`` bytes."""
    raw = read_body(limit)
    if raw is None:
        raise BadValue("body", f"must be at most {limit} bytes")
    if not raw.strip():
        return None
    return decode_json(raw)


def query_number(name: str, default: int, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """``default`` when absent; ``?limit=`` (empty) is not a number and is refused like any other."""
    raw = request.args.get(name)
    if raw is None:
        return default
    return whole_number(raw, name, minimum=minimum, maximum=maximum)


def query_text(name: str, *, max_length: int = MAX_QUERY_TEXT, pattern: Pattern[str] | None = None,
               describe: str | None = None) -> str | None:
    """None when absent or empty (an empty filter filters nothing)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    return text(raw, name, max_length=max_length, pattern=pattern, describe=describe)


def path_text(value: str, name: str, *, max_length: int = MAX_QUERY_TEXT) -> str:
    return text(value, name, max_length=max_length)
