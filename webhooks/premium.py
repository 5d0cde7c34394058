"""Receiver of the Premium Exchanger ``callback_url``: ``POST /webhooks/premium/<exchanger>/<token>``.

The engine posts ``bid_id=<id>&status=<new status>`` once per status change, unsigned, never retried
(reference/premium-exchanger.md). So the URL carries an unguessable per-exchanger token, checked in
constant time, and the posted status is only a hint: the worker re-reads the bid with ``bid_info``.

Answers (all JSON):
  202 {"ok": true, "event": id}      stored (and enqueued, or left for the inbox sweeper)
  400 {"error": "bad_request", "field": …, "message": …}   authenticated but malformed: stored as
                                      state "dead" with last_error (nothing to process, but an operator
                                      sees what came, on /stuck); not enqueued
  403 {"error": "forbidden"}          wrong token;  403 {"error": "ip_not_allowed"}  allow-list
  404 {"error": "unknown_exchanger"}  405 wrong method;  413 {"error": "too_large"}
  503 {"error": "storage_unavailable"} + Retry-After: nothing was stored
Requests that fail the token or IP check are never stored: anyone can send them.
"""
from __future__ import annotations

import io
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, current_app, jsonify, request
from werkzeug.formparser import parse_form_data

from webhooks.auth import safe_headers, same_secret
from webhooks.inbox import Inbox, StorageUnavailable
from worker.logs import MASK

bp = Blueprint("premium", __name__)

STATUS_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BID_ID = 2**63 - 1
RETRY_AFTER = "10"
# Compared against when the exchanger does not exist, so both paths do the same constant-time work.
_DUMMY_TOKEN = secrets.token_urlsafe(32)


class Malformed(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _error(status: int, error: str, **extra: Any):
    resp = jsonify(error=error, **extra)
    resp.status_code = status
    return resp


def _unavailable():
    resp = _error(503, "storage_unavailable")
    resp.headers["Retry-After"] = RETRY_AFTER
    return resp


def _read_body(limit: int) -> bytes | None:
    """The raw body, or None when it is larger than ``limit`` (never reads more than limit + 1 bytes)."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    data = request.stream.read(limit + 1)
    return None if len(data) > limit else data


def _fields(body: bytes, mimetype: str) -> dict[str, list[Any]]:
    """Form (urlencoded or multipart, as PHP curl may send either) or a JSON object → {name: [values]}."""
    if mimetype == "application/json" or (not mimetype and body.lstrip().startswith(b"{")):
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Malformed("body", "is not valid JSON") from None
        if not isinstance(doc, dict):
            raise Malformed("body", "must be a JSON object")
        return {k: [v] for k, v in doc.items()}
    if mimetype == "multipart/form-data":
        environ = {
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": request.content_type,
            "REQUEST_METHOD": "POST",
        }
        _, form, _ = parse_form_data(environ, max_content_length=len(body) + 1)
        return {k: form.getlist(k) for k in form.keys()}
    if mimetype not in ("", "application/x-www-form-urlencoded"):
        raise Malformed("content_type", f"{mimetype!r} is not supported: send a form or JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("body", "is not UTF-8") from None
    out: dict[str, list[Any]] = {}
    for k, v in parse_qsl(text, keep_blank_values=True):
        out.setdefault(k, []).append(v)
    return out


def _one(fields: dict[str, list[Any]], name: str) -> Any:
    values = fields.get(name)
    if not values:
        raise Malformed(name, "is required")
    if len(values) > 1:
        raise Malformed(name, "is given more than once")
    return values[0]


def parse_payload(body: bytes, mimetype: str) -> dict[str, Any]:
    """``{"bid_id": int > 0, "status": short word}`` or ``Malformed`` naming the field."""
    fields = _fields(body, mimetype)
    raw_id = _one(fields, "bid_id")
    if isinstance(raw_id, str) and re.fullmatch(r"[0-9]{1,19}", raw_id.strip()):
        bid_id = int(raw_id.strip())
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        bid_id = raw_id
    else:
        raise Malformed("bid_id", "must be a positive integer")
    if not 0 < bid_id <= MAX_BID_ID:
        raise Malformed("bid_id", "must be a positive integer")
    status = _one(fields, "status")
    if not isinstance(status, str) or not STATUS_RE.match(status.strip()):
        raise Malformed("status", "must be a non-empty word of at most 64 letters, digits, '_' or '-'")
    return {"bid_id": bid_id, "status": status.strip()}


@bp.route("/webhooks/premium/<exchanger>/<token>", methods=["POST"])
def receive(exchanger: str, token: str):
    rt = current_app.extensions["exsync.runtime"]
    inbox: Inbox = current_app.extensions["exsync.inbox"]
    ex = rt.settings.exchangers.get(exchanger)
    token_ok = same_secret(token, ex.webhook_token if ex is not None else _DUMMY_TOKEN)
    if ex is None:
        return _error(404, "unknown_exchanger")
    if not token_ok:
        return _error(403, "forbidden")
    if not ex.ip_allowed(request.remote_addr):
        return _error(403, "ip_not_allowed")

    body = _read_body(rt.settings.webhook_max_body)
    if body is None:
        return _error(413, "too_large", limit=rt.settings.webhook_max_body)

    redact = current_app.extensions["exsync.redactor"].redact
    headers = safe_headers(request.headers.items(), redact)
    # The path without its token: the token must not be stored anywhere.
    query = request.query_string.decode("latin-1")
    headers[":path"] = redact(f"/webhooks/premium/{exchanger}/{MASK}" + (f"?{query}" if query else ""))
    event = dict(provider="premium", endpoint=exchanger, source_ip=request.remote_addr, headers=headers,
                 content_type=request.content_type, body=body)
    try:
        payload = parse_payload(body, request.mimetype)
    except Malformed as bad:
        try:
            inbox.store(**event, payload=None, state="dead", last_error=str(bad))
        except StorageUnavailable:
            return _unavailable()
        return _error(400, "bad_request", field=bad.field, message=bad.message)

    try:
        event_id = inbox.store(**event, payload=payload)
    except StorageUnavailable:
        return _unavailable()
    inbox.enqueue(event_id)
    return jsonify(ok=True, event=event_id), 202
