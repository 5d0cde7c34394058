"""The Flask app factory: one blueprint per concern, JSON answers only.

``create_app(runtime)`` wires the receivers (``webhooks.premium``; ``webhooks.payout_callbacks`` for every
payout provider in providers/registry.py), the bid API (``webhooks.api``),
health and metrics (``webhooks.health``) and the operator page (``webhooks.stuck``). Every error,
expected or not, is answered in JSON: an unexpected exception becomes ``500 {"error": "internal"}``,
logged by type and redacted message only; a database that cannot be reached becomes
``503 {"error": "storage_unavailable"}``.

``settings.trusted_proxies`` (``EXSYNC_TRUSTED_PROXIES``, read with every setting by core/config.py): how
many reverse proxies in front of us append to ``X-Forwarded-For``. With 0 the source IP is the TCP peer
and forwarded headers are ignored, so nobody can fake an allowed IP by sending the header themselves.
"""
from __future__ import annotations

import logging
import re
from typing import Mapping

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.middleware.proxy_fix import ProxyFix

from core.config import trusted_proxies
from core.logs import redactor
from providers.values import BadValue
from webhooks.inbox import Inbox
from webhooks.inputs import guard_input
from webhooks.throttle import FAILURE_STATUSES, FailureThrottle

log = logging.getLogger("exsync.webhooks")

MAX_REQUEST_BYTES = 1024 * 1024  # any route; the receivers apply settings.webhook_max_body on top
_WORDS = re.compile(r"[^a-z0-9]+")


def _error_name(exc: HTTPException) -> str:
    """'Request Entity Too Large' → 'too_large', 'Method Not Allowed' → 'method_not_allowed'."""
    if exc.code == 413:
        return "too_large"
    return _WORDS.sub("_", (exc.name or "error").lower()).strip("_")


class _InOrderJSON(DefaultJSONProvider):
    sort_keys = False  # answers keep the order they were built in (error first, then details)


def create_app(runtime=None, env: Mapping[str, str] | None = None) -> Flask:
    """The app of ``runtime`` (default: the process's). ``env``: tests only, EXSYNC_TRUSTED_PROXIES taken
    from it instead of the settings (read by the same rule)."""
    from core import runtime as runtime_mod

    rt = runtime if runtime is not None else runtime_mod.get()
    proxies = rt.settings.trusted_proxies if env is None else trusted_proxies(env)

    app = Flask("exsync", static_folder=None)  # no static folder: the console serves its one style sheet itself
    # Wrapping wsgi_app is Flask's documented way to add WSGI middleware (mypy sees a method).
    app.wsgi_app = guard_input(app.wsgi_app)  # type: ignore[method-assign]  # every body read: errors → 400
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.url_map.merge_slashes = False  # "//" is a 404, not a 308 a webhook sender might not follow
    app.json = _InOrderJSON(app)
    app.extensions["exsync.runtime"] = rt
    app.extensions["exsync.inbox"] = Inbox(rt.db.engine, rt.settings.redis_url)
    app.extensions["exsync.redactor"] = redactor(rt.settings)
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # as above
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=0, x_port=0, x_prefix=0)

    from webhooks import api, console, health, openapi, payout_callbacks, premium, stuck

    for module in (premium, api, health, stuck, openapi):
        app.register_blueprint(module.bp)
    app.register_blueprint(payout_callbacks.blueprint())  # POST /webhooks/<type>/<provider>, per registry
    console.init_app(app)  # /console/: the operator's pages, with their own session cookie and CSRF

    redact = app.extensions["exsync.redactor"].redact
    throttle = FailureThrottle(rt.settings.redis_url, limit=rt.settings.webhook_fail_limit,
                               window=rt.settings.webhook_fail_window)
    app.extensions["exsync.throttle"] = throttle

    @app.after_request
    def throttle_failures(resp):
        # Only a request that failed authentication is counted or refused (see webhooks/throttle.py).
        if resp.status_code in FAILURE_STATUSES and request.path.startswith("/webhooks/"):
            wait = throttle.record_failure(request.remote_addr)
            if wait is not None:
                resp = jsonify(error="too_many_failures")
                resp.status_code = 429
                resp.headers["Retry-After"] = str(wait)
        return resp

    @app.errorhandler(BadValue)
    def bad_value(exc: BadValue):
        resp = jsonify(error="bad_request", field=exc.field, message=exc.message, fields={exc.field: exc.message})
        resp.status_code = 400
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        resp = jsonify(error=_error_name(exc))
        resp.status_code = exc.code or 500
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(DisconnectionError)
    @app.errorhandler(PoolTimeoutError)
    def storage_error(exc: Exception):
        log.warning("database unavailable on %s %s: %s", request.method, redact(request.path), type(exc).__name__)
        resp = jsonify(error="storage_unavailable")
        resp.status_code = 503
        resp.headers["Retry-After"] = "10"
        return resp

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Type and redacted message only: a message or a path may hold a token.
        log.error("unhandled %s on %s %s: %s", type(exc).__name__, request.method,
                  redact(request.path), redact(str(exc))[:500])
        resp = jsonify(error="internal")
        resp.status_code = 500
        return resp

    return app
