"""The one receiver of payout-provider callbacks: ``POST /webhooks/<type>/<name>``, for every provider in
providers/registry.py whose descriptor has ``callbacks``.

``<type>`` is the provider type (one route and one OpenAPI operation per type, documented by its
descriptor), ``<name>`` a configured ``[providers.<name>]`` of that type. Every provider is received the
same way; its descriptor decides only how a callback is verified and acknowledged:

1. the raw body is read first (413 over ``webhook_max_body``; 400 when it cannot be read);
2. the form fields the descriptor names, if any, are extracted and checked (400 naming the field);
3. the descriptor's verifier judges the raw parts: a refusal (its own 4xx) stores nothing; a name that is
   not configured is verified against a key nobody has, so it is refused exactly like a wrong key;
4. a verified callback is committed to the inbox before any 2xx — ``received`` with the descriptor's
   payload (the hint the worker acts on, worker/payout_callbacks.py), or ``dead`` with its raw bytes and
   the reason when it is verified but unusable (acknowledged all the same: providers retry until a 2xx);
5. the descriptor's 2xx. A database that cannot be reached is a 503 with Retry-After: nothing stored.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from flask import Blueprint, Response, current_app, jsonify, request

from providers import registry
from providers.descriptor import Answer, CallbackRequest, Callbacks, ProviderConfig, Verifier
from providers.gateway.signing import path_with_query_from_environ
from providers.values import BadValue
from webhooks.inbox import Inbox, StorageUnavailable
from webhooks.inputs import read_body
from webhooks.openapi import documented
from webhooks.receiving import (
    error,
    event_record,
    fields,
    keep,
    one,
    too_large,
    unavailable,
)

log = logging.getLogger("exsync.webhooks.callbacks")

# What the receiver itself answers, whatever the provider: documented for every operation.
COMMON_ANSWERS = {400: "Error", 413: "Error", 429: "Error", 503: "Error"}

_verifiers_lock = threading.Lock()


def blueprint() -> Blueprint:
    """A route per provider type with callbacks, as registered now (built for each app)."""
    bp = Blueprint("payout_callbacks", __name__)
    for desc in registry.descriptors():
        if desc.callbacks is None:
            continue
        spec = dict(desc.callbacks.openapi)
        spec["tags"] = spec.get("tags", ["receivers"])
        spec["responses"] = {**COMMON_ANSWERS, **spec.get("responses", {})}
        bp.add_url_rule(f"/webhooks/{desc.type}/<provider>", endpoint=desc.type, methods=["POST"],
                        view_func=documented(**spec)(_view(desc.type)))
    return bp


def _view(kind: str) -> Callable[[str], Any]:
    def view(provider: str):
        return receive(kind, provider)

    view.__name__ = f"receive_{kind}"
    return view


def _verifier(kind: str, callbacks: Callbacks, provider: str, cfg: ProviderConfig | None) -> Verifier:
    """One verifier per configured provider (it may hold a parsed key or recent signatures), kept on the
    app; built again when the provider's configuration is replaced. Unknown names share one."""
    cache: dict = current_app.extensions.setdefault("exsync.callback_verifiers", {})
    slot = (kind, provider if cfg is not None else None)
    with _verifiers_lock:
        held = cache.get(slot)
        if held is None or held[0] is not cfg:
            held = cache[slot] = (cfg, callbacks.verifier(cfg))
        return held[1]


def _field(values: dict[str, list[Any]], name: str) -> str:
    value = one(values, name)
    if value in ("", None):
        raise BadValue(name, "is required")
    if not isinstance(value, str):
        raise BadValue(name, "must be a string")
    return value


def _respond(answer: Answer):
    if answer.text is not None:
        return Response(answer.text, status=answer.status, mimetype="text/plain")
    resp = jsonify(answer.json)
    resp.status_code = answer.status
    return resp


def receive(kind: str, provider: str):
    desc = registry.get(kind)
    callbacks = desc.callbacks if desc is not None else None
    if callbacks is None:  # unregistered since the app was built
        return error(404, "not_found")
    rt = current_app.extensions["exsync.runtime"]
    inbox: Inbox = current_app.extensions["exsync.inbox"]
    cfg = rt.payouts().providers.get(provider)
    if cfg is not None and cfg.type != kind:
        cfg = None

    body = read_body(rt.settings.webhook_max_body)
    if body is None:
        return too_large(rt.settings.webhook_max_body)
    form: dict[str, str] = {}
    if callbacks.form_fields:
        try:
            values = fields(body, request.mimetype)
            form = {name: _field(values, name) for name in callbacks.form_fields}
        except BadValue as bad:
            return error(400, "bad_request", field=bad.field, message=bad.message)

    target = path_with_query_from_environ(request.environ)
    verdict = _verifier(kind, callbacks, provider, cfg)(CallbackRequest(
        method=request.method, target=target, headers=request.headers, body=body, now=time.time(), form=form))
    if isinstance(verdict, Answer):
        return _respond(verdict)
    if cfg is None:  # a key nobody has cannot verify anything: never store for an unknown name
        return error(401, "unauthorized")

    try:
        event_id, dead = keep(inbox, event_record(kind, provider, target), body, verdict.payload, verdict.problem)
    except StorageUnavailable:
        return unavailable()
    if dead is not None:
        log.warning("%s callback for %r kept dead (event %s): %s", kind, provider, event_id, dead)
    else:
        inbox.enqueue(event_id)
    return _respond(callbacks.accepted(event_id, dead))
