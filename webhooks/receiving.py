"""What every callback receiver does the same way: answers, form fields, and keeping the event.

Receivers (``webhooks.premium``, and ``webhooks.payout_callbacks`` for every registered payout provider)
authenticate first, then hand the raw event to ``keep``:
- a usable event is committed ``received`` with its payload (the hint the worker acts on);
- an authenticated event that cannot be used (malformed, a time out of range, text Postgres refuses)
  is committed ``dead`` with its raw bytes and the reason, for a person to look at — never answered
  503 while Postgres is up, never a 500;
- only a database that cannot be reached gives ``StorageUnavailable`` (the caller answers 503).
"""
from __future__ import annotations

import io
from typing import Any, Mapping
from urllib.parse import parse_qsl

from flask import current_app, jsonify, request
from werkzeug.formparser import parse_form_data

from models.states import InboxState
from providers.values import BadValue, check_json
from webhooks.auth import safe_headers
from webhooks.inbox import Inbox, InvalidEvent
from webhooks.inputs import decode_json

RETRY_AFTER = "10"


def error(status: int, error: str, **extra: Any):
    resp = jsonify(error=error, **extra)
    resp.status_code = status
    return resp


def unavailable():
    resp = error(503, "storage_unavailable")
    resp.headers["Retry-After"] = RETRY_AFTER
    return resp


def too_large(limit: int):
    return error(413, "too_large", limit=limit)


def fields(body: bytes, mimetype: str) -> dict[str, list[Any]]:
    """Form (urlencoded or multipart, as PHP curl may send either) or a JSON object → {name: [values]}.

    Nothing is judged here but the framing: ``one`` checks each value a receiver takes, so fields a
    receiver does not use (kept only in the raw body) cannot refuse a callback.
    """
    if mimetype == "application/json" or (not mimetype and body.lstrip().startswith(b"{")):
        doc = decode_json(body, check=False)
        if not isinstance(doc, dict):
            raise BadValue("body", "must be a JSON object")
        return {k: [v] for k, v in doc.items()}
    if mimetype == "multipart/form-data":
        environ = {
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": request.content_type,
            "REQUEST_METHOD": "POST",
        }
        _, form, _ = parse_form_data(environ, max_content_length=len(body) + 1)
        out = {k: form.getlist(k) for k in form.keys()}
    elif mimetype in ("", "application/x-www-form-urlencoded"):
        try:
            decoded = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadValue("body", "is not UTF-8") from None
        out = {}
        for k, v in parse_qsl(decoded, keep_blank_values=True):
            out.setdefault(k, []).append(v)
    else:
        raise BadValue("content_type", f"{mimetype[:100]!r} is not supported: send a form or JSON")
    return out


def one(values: Mapping[str, list[Any]], name: str) -> Any:
    """The single value of ``name``, checked for NUL and lone surrogates (anywhere inside, for JSON)."""
    found = values.get(name)
    if not found:
        raise BadValue(name, "is required")
    if len(found) > 1:
        raise BadValue(name, "is given more than once")
    check_json(found[0], name)
    return found[0]


def event_record(provider: str, endpoint: str, stored_path: str) -> dict[str, Any]:
    """The parts of the request every inbox row keeps; ``stored_path`` must hold no secret."""
    redact = current_app.extensions["exsync.redactor"].redact
    headers = safe_headers(request.headers.items(), redact)
    headers[":path"] = redact(stored_path)
    return dict(provider=provider, endpoint=endpoint, source_ip=request.remote_addr, headers=headers,
                content_type=request.content_type)


def keep(inbox: Inbox, event: Mapping[str, Any], body: bytes, payload: Mapping[str, Any] | None,
         problem: str | None = None) -> tuple[int, str | None]:
    """Commit the event; returns (id, None) when it is ``received``, (id, reason) when it is ``dead``.

    Raises ``StorageUnavailable`` only when the database cannot be reached.
    """
    if problem is None:
        try:
            check_json(payload, "payload")
        except BadValue as bad:
            problem = str(bad)
    if problem is None:
        try:
            return inbox.store(**event, body=body, payload=payload), None
        except InvalidEvent as exc:  # a value Postgres refused despite the checks: keep the raw bytes
            problem = f"refused by the database: {exc}"
    return inbox.store(**event, body=body, payload=None, state=InboxState.DEAD, last_error=problem[:1000]), problem
