"""Receiver of Paysera callbacks: ``POST /webhooks/paysera/<provider>``.

``<provider>`` is a ``[providers.<name>]`` of type ``paysera`` with ``callback_public_key_pem`` (or
``callback_public_key_file``). The form carries ``event`` (a JSON string) and ``sign`` (base64 RSA PKCS#1
v1.5 SHA-256 over the raw ``event``, reference/paysera.md "Callbacks"); it is verified with the configured
public key (never fetched at run time). Paysera retries a delivery without a 2xx.

Answers:
  200 text ``OK``                     stored (and enqueued, or left for the inbox sweeper). The reference does
                                      not name a body; "OK" is what Paysera's other callbacks expect. A
                                      signed event that cannot be used (not an object, text Postgres refuses)
                                      is kept "dead" with its raw bytes for a person and also answered
                                      ``OK``: Paysera retries until it gets a 2xx.
  400 {"error": "bad_request", "field": …, "message": …}  not a form with one event and one sign (or
                                      text with NUL / lone surrogates, or an unreadable body): not stored
  401 {"error": "bad_signature" | "bad_base64"}  not from Paysera (wrong key, changed event): not stored.
                                      A provider name that is not configured, or has no callback key, is
                                      verified against a key nobody has: the same 401, so names cannot be
                                      probed (the missing key is logged for the operator).
  413 {"error": "too_large"}   429 too many failed attempts from this source
  503 {"error": "storage_unavailable"} + Retry-After: nothing was stored
"""
from __future__ import annotations

import functools
import logging
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, Response, current_app, request

from providers.paysera.callbacks import CallbackSignatureError, CallbackVerifier
from providers.values import BadValue
from webhooks.gateway import provider_config
from webhooks.inbox import Inbox, StorageUnavailable
from webhooks.inputs import read_body
from webhooks.openapi import NO_NUL, documented
from webhooks.receiving import error, event_record, fields, keep, one, too_large, unavailable

log = logging.getLogger("exsync.webhooks.paysera")

bp = Blueprint("paysera_callbacks", __name__)


def _verifier(name: str, pem: str) -> CallbackVerifier:
    """One verifier per provider and key, kept on the app (parsing a PEM per request is wasted work)."""
    cache: dict = current_app.extensions.setdefault("exsync.paysera_verifiers", {})
    v = cache.get((name, pem))
    if v is None:
        v = cache.setdefault((name, pem), CallbackVerifier(pem))
    return v


@functools.lru_cache(maxsize=1)
def _nobody() -> CallbackVerifier:
    """A verifier whose private key was thrown away: nothing verifies against it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return CallbackVerifier(key.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))


def _field(values: dict[str, list[Any]], name: str) -> str:
    value = one(values, name)
    if value in ("", None):
        raise BadValue(name, "is required")
    if not isinstance(value, str):
        raise BadValue(name, "must be a string")
    return value


def payload_of(event) -> dict[str, Any]:
    """The hint kept in the inbox: which transfer, which status, and its purpose (it carries our key)."""
    data = event.data or {}
    purpose = data.get("purpose") if isinstance(data.get("purpose"), dict) else {}
    return {"type": event.type, "object": event.object,
            "transfer_id": None if data.get("id") is None else str(data.get("id"))[:100],
            "status": None if data.get("status") is None else str(data.get("status"))[:64],
            "details": str(purpose.get("details") or "")[:1000] or None}


_TEXT = {"type": "string", "minLength": 1, "pattern": NO_NUL}
_FORM = {"type": "object", "required": ["event", "sign"],
         "properties": {"event": {**_TEXT, "description": "the event as a JSON string, as signed"},
                        "sign": {**_TEXT, "description": "base64 RSA PKCS#1 v1.5 SHA-256 of event"}}}


@bp.route("/webhooks/paysera/<provider>", methods=["POST"])
@documented(
    summary="Paysera's transfer callbacks", tags=["receivers"],
    description="Verified with the configured Paysera public key; the event is a hint: the worker asks Paysera.",
    requestBody={"required": True, "content": {"application/x-www-form-urlencoded": {"schema": _FORM},
                                               "multipart/form-data": {"schema": _FORM},
                                               "application/json": {"schema": _FORM}}},
    responses={200: {"description": "stored (or kept dead for a person)",
                     "content": {"text/plain": {"schema": {"const": "OK"}}}},
               400: "Error", 401: "Error", 413: "Error", 429: "Error", 503: "Error"})
def receive(provider: str):
    rt = current_app.extensions["exsync.runtime"]
    inbox: Inbox = current_app.extensions["exsync.inbox"]
    cfg = provider_config(rt, provider, "paysera")
    pem = cfg.options.get("callback_public_key_pem") if cfg is not None else None
    if cfg is not None and not pem:
        log.warning("paysera callback for %r refused: no callback_public_key_pem is configured", provider)

    body = read_body(rt.settings.webhook_max_body)
    if body is None:
        return too_large(rt.settings.webhook_max_body)
    try:
        values = fields(body, request.mimetype)
        raw_event, sign = _field(values, "event"), _field(values, "sign")
    except BadValue as bad:
        return error(400, "bad_request", field=bad.field, message=bad.message)

    payload, problem = None, None
    try:
        event = (_verifier(provider, pem) if pem else _nobody()).verify(raw_event, sign)
        payload = payload_of(event)
    except CallbackSignatureError as exc:
        if exc.code != "bad_event":
            return error(401, str(exc.code or "bad_signature"))
        problem = f"event: {exc}"  # signed by Paysera but not an event object: kept for a person
    if not pem:  # _nobody() cannot verify anything; never store for an unknown name
        return error(401, "bad_signature")

    query = request.query_string.decode("latin-1")
    record = event_record("paysera", provider, request.path + (f"?{query}" if query else ""))
    try:
        event_id, dead = keep(inbox, record, body, payload, problem)
    except StorageUnavailable:
        return unavailable()
    if dead is not None:
        log.warning("paysera callback kept dead (event %s): %s", event_id, dead)
    else:
        inbox.enqueue(event_id)
    return Response("OK", status=200, mimetype="text/plain")
