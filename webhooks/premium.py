"""Receiver of the Premium Exchanger ``callback_url``: ``POST /webhooks/premium/<exchanger>/<token>``.

The engine posts ``bid_id=<id>&status=<new status>`` once per status change, unsigned, never retried
(docs/providers/premium-exchanger.md). So the URL carries an unguessable per-exchanger token, checked in
constant time, and the posted status is only a hint: the worker re-reads the bid with ``bid_info``.

Answers (all JSON):
  202 {"ok": true, "event": id}      stored (and enqueued, or left for the inbox sweeper)
  400 {"error": "bad_request", "field": …, "message": …}   authenticated but malformed: stored as
                                      state "dead" with last_error (nothing to process, but an operator
                                      sees what came, on /stuck); not enqueued. The engine never
                                      retries, so the answer only informs whoever reads its logs.
  400 {"error": "bad_request"}        the body could not be read (broken chunked framing…): nothing stored
  403 {"error": "forbidden"}          wrong token, or an exchanger that does not exist (the same answer
                                      and the same work, so a stranger cannot probe for names);
  403 {"error": "ip_not_allowed"}     right token, address outside the allow-list
  405 wrong method;  413 {"error": "too_large"};  429 too many failed attempts from this source
  503 {"error": "storage_unavailable"} + Retry-After: nothing was stored
Requests that fail the token or IP check are never stored: anyone can send them.
"""
from __future__ import annotations

import re
import secrets
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from core.logs import MASK
from providers.values import BadValue, text, whole_number
from webhooks.auth import same_secret
from webhooks.inbox import Inbox, StorageUnavailable
from webhooks.inputs import read_body
from webhooks.openapi import documented
from webhooks.receiving import error, event_record, fields, keep, one, too_large, unavailable

bp = Blueprint("premium", __name__)

STATUS_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_BID_ID = 2**63 - 1
# Compared against when the exchanger does not exist, so both paths do the same constant-time work.
_DUMMY_TOKEN = secrets.token_urlsafe(32)


def parse_payload(body: bytes, mimetype: str) -> dict[str, Any]:
    """``{"bid_id": int > 0, "status": short word}`` or ``BadValue`` naming the field."""
    values = fields(body, mimetype)
    raw_id = one(values, "bid_id")
    bid_id = whole_number(raw_id.strip() if isinstance(raw_id, str) else raw_id, "bid_id",
                          minimum=1, maximum=MAX_BID_ID)
    status = text(one(values, "status"), "status", max_length=64, pattern=STATUS_RE, strip=True,
                  describe="must be a non-empty word of at most 64 letters, digits, '_' or '-'")
    return {"bid_id": bid_id, "status": status}


FORM = {"type": "object", "required": ["bid_id", "status"],
        "properties": {"bid_id": {"type": "integer", "minimum": 1, "maximum": MAX_BID_ID},
                       "status": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}}


@bp.route("/webhooks/premium/<exchanger>/<token>", methods=["POST"])
@documented(
    summary="The Premium Exchanger engine's callback_url", tags=["receivers"],
    description="Unsigned and never retried by the engine: the token in the path authenticates it. The "
                "posted status is a hint; the worker re-reads the bid with bid_info.",
    parameters=[{"name": "exchanger", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "the exchanger's webhook token (never stored or logged)"}],
    requestBody={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": FORM},
                                               "multipart/form-data": {"schema": FORM},
                                               "application/json": {"schema": FORM}}},
    responses={202: "Accepted", 400: "Error", 403: "Error", 413: "Error", 429: "Error", 503: "Error"})
def receive(exchanger: str, token: str):
    rt = current_app.extensions["exsync.runtime"]
    inbox: Inbox = current_app.extensions["exsync.inbox"]
    ex = rt.settings.exchangers.get(exchanger)
    token_ok = same_secret(token, ex.webhook_token if ex is not None else _DUMMY_TOKEN)
    if ex is None or not token_ok:
        return error(403, "forbidden")
    if not ex.ip_allowed(request.remote_addr):
        return error(403, "ip_not_allowed")

    body = read_body(rt.settings.webhook_max_body)
    if body is None:
        return too_large(rt.settings.webhook_max_body)
    # The path without its token: the token must not be stored anywhere.
    query = request.query_string.decode("latin-1")
    event = event_record("premium", exchanger, f"/webhooks/premium/{exchanger}/{MASK}" + (f"?{query}" if query else ""))
    try:
        payload, problem = parse_payload(body, request.mimetype), None
    except BadValue as bad:
        payload, problem = None, bad
    try:
        event_id, dead = keep(inbox, event, body, payload, None if problem is None else str(problem))
    except StorageUnavailable:
        return unavailable()
    if problem is not None:
        return error(400, "bad_request", field=problem.field, message=problem.message)
    if dead is not None:
        return error(400, "bad_request", field="body", message=dead)
    inbox.enqueue(event_id)
    return jsonify(ok=True, event=event_id), 202
