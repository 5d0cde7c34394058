"""Receiver of Paysera callbacks: ``POST /webhooks/paysera/<provider>``.

``<provider>`` is a ``[providers.<name>]`` of type ``paysera`` with ``callback_public_key_pem`` (or
``callback_public_key_file``). The form carries ``event`` (a JSON string) and ``sign`` (base64 RSA PKCS#1
v1.5 SHA-256 over the raw ``event``, reference/paysera.md "Callbacks"); it is verified with the configured
public key (never fetched at run time). Paysera retries a delivery without a 2xx.

Answers:
  200 text ``OK``                     stored (and enqueued, or left for the inbox sweeper). The reference does
                                      not name a body; "OK" is what Paysera's other callbacks expect.
  400 {"error": "bad_request", "field": …, "message": …}  not a form with one event and one sign; or a
                                      signed event that is not an object (that one is stored "dead")
  401 {"error": "bad_signature" | "bad_base64"}  not from Paysera (wrong key, changed event): not stored
  404 {"error": "unknown_provider"} / {"error": "callbacks_not_configured"} (no public key configured)
  413 {"error": "too_large"}   503 {"error": "storage_unavailable"} + Retry-After: nothing was stored
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from providers.paysera.callbacks import CallbackSignatureError, CallbackVerifier
from webhooks.auth import safe_headers
from webhooks.gateway import provider_config
from webhooks.inbox import Inbox, StorageUnavailable
from webhooks.premium import Malformed, _error, _fields, _read_body, _unavailable

bp = Blueprint("paysera_callbacks", __name__)


def _verifier(name: str, pem: str) -> CallbackVerifier:
    """One verifier per provider and key, kept on the app (parsing a PEM per request is wasted work)."""
    cache: dict = current_app.extensions.setdefault("exsync.paysera_verifiers", {})
    v = cache.get((name, pem))
    if v is None:
        v = cache.setdefault((name, pem), CallbackVerifier(pem))
    return v


def _field(fields: dict[str, list[Any]], name: str) -> str:
    values = fields.get(name)
    if not values or values[0] in ("", None):
        raise Malformed(name, "is required")
    if len(values) > 1:
        raise Malformed(name, "is given more than once")
    if not isinstance(values[0], str):
        raise Malformed(name, "must be a string")
    return values[0]


def payload_of(event) -> dict[str, Any]:
    """The hint kept in the inbox: which transfer, which status, and its purpose (it carries our key)."""
    data = event.data or {}
    purpose = data.get("purpose") if isinstance(data.get("purpose"), dict) else {}
    return {"type": event.type, "object": event.object,
            "transfer_id": None if data.get("id") is None else str(data.get("id")),
            "status": None if data.get("status") is None else str(data.get("status")),
            "details": str(purpose.get("details") or "")[:1000] or None}


@bp.route("/webhooks/paysera/<provider>", methods=["POST"])
def receive(provider: str):
    rt = current_app.extensions["exsync.runtime"]
    inbox: Inbox = current_app.extensions["exsync.inbox"]
    cfg = provider_config(rt, provider, "paysera")
    if cfg is None:
        return _error(404, "unknown_provider")
    pem = cfg.options.get("callback_public_key_pem")
    if not pem:
        return _error(404, "callbacks_not_configured")

    body = _read_body(rt.settings.webhook_max_body)
    if body is None:
        return _error(413, "too_large", limit=rt.settings.webhook_max_body)
    try:
        fields = _fields(body, request.mimetype)
        raw_event, sign = _field(fields, "event"), _field(fields, "sign")
    except Malformed as bad:
        return _error(400, "bad_request", field=bad.field, message=bad.message)

    redact = current_app.extensions["exsync.redactor"].redact
    headers = safe_headers(request.headers.items(), redact)
    query = request.query_string.decode("latin-1")
    headers[":path"] = redact(request.path + (f"?{query}" if query else ""))
    stored = dict(provider="paysera", endpoint=provider, source_ip=request.remote_addr, headers=headers,
                  content_type=request.content_type, body=body)
    try:
        event = _verifier(provider, pem).verify(raw_event, sign)
    except CallbackSignatureError as exc:
        if exc.code != "bad_event":
            return _error(401, str(exc.code or "bad_signature"))
        # Signed by Paysera but not an event object: keep it for a person, nothing to process.
        try:
            inbox.store(**stored, payload=None, state="dead", last_error=f"event: {exc}")
        except StorageUnavailable:
            return _unavailable()
        return _error(400, "bad_request", field="event", message=str(exc))

    try:
        event_id = inbox.store(**stored, payload=payload_of(event))
    except StorageUnavailable:
        return _unavailable()
    inbox.enqueue(event_id)
    return Response("OK", status=200, mimetype="text/plain")
