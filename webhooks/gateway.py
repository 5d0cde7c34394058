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
  400 {"error": "bad_request", "message": …}  signed but not a payout object: stored "dead", not enqueued
  401 the gateway's own error body (SignatureError.body()): bad/missing key, signature, timestamp, replay
  404 {"error": "unknown_provider"}   413 {"error": "too_large"}   405 wrong method
  503 {"error": "storage_unavailable"} + Retry-After: nothing was stored, the gateway retries
Requests failing verification are never stored.
"""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from providers.gateway.callbacks import parse_callback
from providers.gateway.errors import CallbackError
from providers.gateway.signing import DEFAULT_WINDOW, ReplayCache, SignatureError, path_with_query_from_environ
from webhooks.auth import safe_headers
from webhooks.inbox import Inbox, StorageUnavailable
from webhooks.premium import _error, _read_body, _unavailable

bp = Blueprint("gateway_callbacks", __name__)

WINDOW = DEFAULT_WINDOW


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


@bp.route("/webhooks/gateway/<provider>", methods=["POST"])
def receive(provider: str):
    rt = current_app.extensions["exsync.runtime"]
    inbox: Inbox = current_app.extensions["exsync.inbox"]
    cfg = provider_config(rt, provider, "gateway")
    if cfg is None:
        return _error(404, "unknown_provider")

    body = _read_body(rt.settings.webhook_max_body)
    if body is None:
        return _error(413, "too_large", limit=rt.settings.webhook_max_body)

    target = path_with_query_from_environ(request.environ)
    try:
        payout = parse_callback(request.headers, request.method, target, body, secret=cfg.secrets["secret"],
                                api_key=cfg.secrets["api_key"], now=time.time(), window=WINDOW,
                                replay_cache=_replay_cache())
        bad = None
        if not payout.external_id:
            bad = "callback has no external_id"
    except SignatureError as exc:
        resp = jsonify(exc.body())
        resp.status_code = 401
        return resp
    except CallbackError as exc:
        payout, bad = None, str(exc)

    redact = current_app.extensions["exsync.redactor"].redact
    headers = safe_headers(request.headers.items(), redact)
    headers[":path"] = redact(target)
    event = dict(provider="gateway", endpoint=provider, source_ip=request.remote_addr, headers=headers,
                 content_type=request.content_type, body=body)
    if bad is not None:
        try:
            inbox.store(**event, payload=None, state="dead", last_error=bad)
        except StorageUnavailable:
            return _unavailable()
        return _error(400, "bad_request", message=bad)

    payload = {"external_id": payout.external_id, "status": payout.status,
               "updated_at": payout.updated_at.isoformat() if payout.updated_at else None,
               "failure_reason": payout.failure_reason}
    try:
        event_id = inbox.store(**event, payload=payload)
    except StorageUnavailable:
        return _unavailable()
    inbox.enqueue(event_id)
    return jsonify(ok=True, event=event_id), 202
