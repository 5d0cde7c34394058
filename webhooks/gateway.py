"""Receiver of the signed gateway's payout callbacks: ``POST /webhooks/gateway/<provider>``.

``<provider>`` is a ``[providers.<name>]`` of type ``gateway``; its ``callback_url`` should point here.
The gateway signs a callback like a request (reference/signed-gateway.md): ``X-Signature`` = HMAC-SHA256
over timestamp + ``POST`` + this request's raw path and query + the raw body, ``X-Timestamp`` within
±300 s. The raw body is read first, verified by ``providers.gateway.callbacks.parse_callback``, and only
then parsed. Replays (the same signature again inside the window) are refused through a ReplayCache kept
per process (app.extensions): with several web processes a replay could reach another process once
inside the window; that is harmless, since the stored event is only a hint (the worker re-reads the
payout from the gateway) — a shared Redis ReplayStore would close it.

Answers (all JSON):
  202 {"ok": true, "event": id}      stored (and enqueued, or left for the inbox sweeper)
  202 {"ok": true, "event": id, "state": "dead", "message": …}   verified but unusable (not a payout
                                      object, no external_id, a time out of range, text Postgres
                                      refuses): kept "dead" with its raw bytes for a person, not
                                      processed. Acknowledged because the gateway retries until 2xx:
                                      a 4xx would bring the same unusable event back forever.
  400 {"error": "bad_request"}        the body could not be read (broken chunked framing…): nothing stored
  401 the gateway's own error body (SignatureError.body()): bad/missing key, signature, timestamp, replay.
      A provider name that is not configured (or not a gateway) is verified against a key nobody has
      and answered the same way, so a stranger cannot probe for names.
  413 {"error": "too_large"}   405 wrong method   429 too many failed attempts from this source
  503 {"error": "storage_unavailable"} + Retry-After: nothing was stored, the gateway retries
Requests failing verification are never stored.
"""
from __future__ import annotations

import re
import secrets
import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from providers.gateway.callbacks import parse_callback
from providers.gateway.errors import CallbackError
from providers.gateway.signing import DEFAULT_WINDOW, ReplayCache, SignatureError, path_with_query_from_environ
from providers.gateway.types import Payout
from providers.values import BadValue, text, timestamp
from webhooks.inbox import Inbox, StorageUnavailable
from webhooks.inputs import read_body
from webhooks.openapi import documented
from webhooks.receiving import event_record, keep, too_large, unavailable

bp = Blueprint("gateway_callbacks", __name__)

WINDOW = DEFAULT_WINDOW
STATUS_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Verified against when the provider does not exist: the same checks, the same 401 as a wrong key.
_NOBODY = secrets.token_hex(32)


def _replay_cache() -> ReplayCache:
    ext = current_app.extensions
    cache = ext.get("exsync.gateway_replay")
    if cache is None:
        cache = ext.setdefault("exsync.gateway_replay", ReplayCache())
    return cache


def provider_config(rt, name: str, kind: str):
    """The configured provider ``name`` when it has type ``kind``, else None."""
    cfg = rt.payouts().providers.get(name)
    return cfg if cfg is not None and cfg.type == kind else None


def hint(payout: Payout) -> dict[str, Any]:
    """The payload kept in the inbox, every field checked (``BadValue`` names the first bad one)."""
    raw = payout.raw
    if not payout.external_id:
        raise BadValue("external_id", "is required")
    updated_at = raw.get("updated_at")
    failure = raw.get("failure_reason")
    return {
        "external_id": text(payout.external_id, "external_id", max_length=255),
        "status": None if payout.status is None else text(payout.status, "status", max_length=64, pattern=STATUS_RE,
                                                          describe="must be a word of at most 64 characters"),
        "updated_at": None if updated_at in (None, "") else timestamp(updated_at, "updated_at").isoformat(),
        "failure_reason": None if failure in (None, "") else text(str(failure), "failure_reason", max_length=1000),
    }


@bp.route("/webhooks/gateway/<provider>", methods=["POST"])
@documented(
    summary="The signed gateway's payout callbacks", tags=["receivers"],
    description="HMAC-SHA256 over timestamp + POST + path and query + raw body; timestamp within ±300 s; "
                "a signature is accepted once. The payout object is a hint: the worker asks the gateway.",
    parameters=[{"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "X-API-Key", "in": "header", "required": True, "schema": {"type": "string"}},
                {"name": "X-Timestamp", "in": "header", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
                {"name": "X-Signature", "in": "header", "required": True, "schema": {"type": "string"}}],
    requestBody={"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["external_id"],
        "properties": {"external_id": {"type": "string"}, "status": {"type": "string"},
                       "updated_at": {"type": "string"}, "failure_reason": {"type": "string"}}}}}},
    responses={202: "Accepted", 400: "Error", 401: "GatewayError", 413: "Error", 429: "Error", 503: "Error"})
def receive(provider: str):
    rt = current_app.extensions["exsync.runtime"]
    inbox: Inbox = current_app.extensions["exsync.inbox"]
    cfg = provider_config(rt, provider, "gateway")

    body = read_body(rt.settings.webhook_max_body)
    if body is None:
        return too_large(rt.settings.webhook_max_body)

    target = path_with_query_from_environ(request.environ)
    secret, api_key = (cfg.secrets["secret"], cfg.secrets["api_key"]) if cfg is not None else (_NOBODY, _NOBODY)
    payload, problem = None, None
    try:
        payout = parse_callback(request.headers, request.method, target, body, secret=secret, api_key=api_key,
                                now=time.time(), window=WINDOW, replay_cache=_replay_cache())
        payload = hint(payout)
    except SignatureError as exc:
        resp = jsonify(exc.body())
        resp.status_code = 401
        return resp
    except (CallbackError, BadValue) as exc:
        problem = str(exc)
    if cfg is None:  # verification against _NOBODY cannot pass; never store for an unknown name
        return jsonify(error="unauthorized"), 401

    try:
        event_id, dead = keep(inbox, event_record("gateway", provider, target), body, payload, problem)
    except StorageUnavailable:
        return unavailable()
    if dead is not None:
        return jsonify(ok=True, event=event_id, state="dead", message=dead), 202
    inbox.enqueue(event_id)
    return jsonify(ok=True, event=event_id), 202
