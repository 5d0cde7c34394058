"""A faithful fake of the signed payout/pay-in gateway, for tests, benchmarks, the demo and
``exsync sandbox gateway``.

It checks every request exactly as docs/providers/gateway.md describes the real server, so any client —
ours or someone else's — can talk to it::

    app = create_app()                          # accepts DEFAULT_API_KEY / DEFAULT_SECRET, shop currency RUB
    srv = serve(app, port=0)                    # threaded werkzeug server in a daemon thread
    gw = GatewayClient(srv.url, DEFAULT_API_KEY, DEFAULT_SECRET)
    gw.create_payout("ord-1", "5000.00", "RUB", "4111111111111111", callback_url="http://127.0.0.1:9/cb")
    app.engine.process_all()                    # created -> processing -> success, signed callbacks go out
    app.engine.executed("ord-1")                # 1: how many times the money really left
    srv.shutdown(); app.engine.close()

Nothing here is secret: the sandbox is for LOCAL USE ONLY. Its control routes under ``/_sandbox/`` need
no key at all — never expose a sandbox port to a network. Its API, the order of its checks, the ledger,
the life cycle, callbacks, fault knobs and control routes are in docs/providers/gateway.md ("The
sandbox").

Here: the HTTP layer (signature, scope, routing, faults, the control routes); ``engine`` holds the state.
"""
from __future__ import annotations

import json
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, unquote

from flask import Response
from werkzeug.http import http_date
from werkzeug.wrappers import Request as _WRequest

from providers.gateway.client import GatewayPaths
from providers.gateway.sandbox.engine import (
    DEFAULT_API_KEY,
    DEFAULT_SECRET,
    DEFAULT_SHOP_CODE,
    FAILURE_REASONS,
    Knobs,
    SandboxEngine,
    _ApiError,
)
from providers.gateway.signing import (
    DEFAULT_HEADERS,
    DEFAULT_WINDOW,
    HeaderNames,
    SignatureError,
    path_with_query_from_environ,
    verify,
)
from providers.gateway.types import format_amount
from providers.sandbox import SandboxServer, serve
from providers.sandbox.web import SandboxApp, bad_gateway, control_body, json_response, sandbox_app, serve_api_first

__all__ = ["create_app", "serve", "describe", "SandboxEngine", "SandboxServer", "Knobs", "DEFAULT_API_KEY",
           "DEFAULT_SECRET", "DEFAULT_SHOP_CODE", "FAILURE_REASONS"]


def _route_table(paths: GatewayPaths) -> list[tuple[re.Pattern, str, str]]:
    """(regex, kind, action) for every endpoint; ``{external_id}`` captures one path segment."""
    def rx(template: str) -> re.Pattern:
        return re.compile("^" + re.escape(template).replace(re.escape("{external_id}"), "(?P<external_id>[^/]+)")
                          + "$")
    return [(rx(paths.payouts), "payout", "create"), (rx(paths.payout), "payout", "get"),
            (rx(paths.payins), "payin", "create"), (rx(paths.payin), "payin", "get"),
            (rx(paths.balance), "", "balance")]


_ACTION_METHOD = {"create": "POST", "get": "GET", "balance": "GET"}


def create_app(*, api_key: str = DEFAULT_API_KEY, secret: str = DEFAULT_SECRET, shop_currency: str = "RUB",
               balance: Decimal | str | int = Decimal("1000000"), window: float = DEFAULT_WINDOW,
               latency: float = 0.0, error_rate: float = 0.0, fail_after_commit_rate: float = 0.0,
               process_delay: float = 0.0, final_failure_rate: float = 0.0, callback_secret: str | None = None,
               seed: int | None = None, shop_code: str = DEFAULT_SHOP_CODE, hang_seconds: float = 0.0,
               callback_drop_rate: float = 0.0, callback_duplicate_rate: float = 0.0,
               callback_max_attempts: int = 5, callback_backoff: float = 0.2,
               paths: GatewayPaths | dict | None = None, header_names: HeaderNames = DEFAULT_HEADERS) -> SandboxApp:
    """The sandbox as a Flask (WSGI) app; ``app.engine`` is its :class:`SandboxEngine`."""
    knobs = Knobs(latency=latency, error_rate=error_rate, fail_after_commit_rate=fail_after_commit_rate,
                  hang_seconds=hang_seconds, process_delay=process_delay, final_failure_rate=final_failure_rate,
                  callback_drop_rate=callback_drop_rate, callback_duplicate_rate=callback_duplicate_rate,
                  callback_max_attempts=callback_max_attempts, callback_backoff=callback_backoff)
    engine = SandboxEngine(api_key=api_key, secret=secret, shop_code=shop_code, shop_currency=shop_currency,
                           balance=balance, window=window, callback_secret=callback_secret, seed=seed, knobs=knobs,
                           paths=GatewayPaths.of(paths), header_names=header_names)
    routes = _route_table(engine.paths)
    app = sandbox_app("gateway_sandbox", engine)

    def api_view(req: _WRequest) -> Response:
        resp = checked_view(req)
        resp.headers["Date"] = http_date(engine.now())  # the server's (possibly skewed) clock, like a real one
        return resp

    def checked_view(req: _WRequest) -> Response:
        k = engine.knobs
        target = path_with_query_from_environ(req.environ)
        path, _, query = target.partition("?")
        engine.begin_request(req.method)
        body = req.get_data(cache=True)
        try:
            verify(engine.secret, req.headers, req.method, target, body, now=engine.now(), window=engine.window,
                   seen=engine.replay if k.replay_protection else None, api_key=engine.api_key,
                   header_names=engine.header_names)
        except SignatureError as e:
            return json_response(e.body(), 401)
        try:
            return dispatch(req, path, query, body)
        except _ApiError as e:
            return e.response()

    def dispatch(req: _WRequest, path: str, query: str, body: bytes) -> Response:
        k = engine.knobs
        scopes = parse_qs(query).get("shop_code")
        scope = scopes[0] if scopes else None
        match = None
        for rx, kind, action in routes:
            m = rx.match(path)
            if m:
                match = (m, kind, action)
                if req.method == _ACTION_METHOD[action]:
                    break
        if match is None:
            raise _ApiError(404, "Not found", "not_found")
        m, kind, action = match
        if req.method != _ACTION_METHOD[action]:
            raise _ApiError(405, "Method not allowed", "method_not_allowed")
        data: Any = None
        if action == "create":
            try:
                data = json.loads(body.decode("utf-8"), parse_float=Decimal) if body.strip() else None
            except (ValueError, UnicodeDecodeError):
                raise _ApiError(422, "Request body must be a JSON object", "validation_error",
                                [{"field": "body", "message": "Request body must be a JSON object"}]) from None
            if isinstance(data, dict) and data.get("shop_code") is not None:
                scope = str(data["shop_code"])
        if scope is not None and scope != engine.shop_code:
            raise _ApiError(403, "Access denied for this shop_code", "forbidden")
        if engine.roll(k.error_rate):  # before anything is committed
            raise _ApiError(500, "Internal server error", "internal_error")

        if action == "balance":
            with engine.lock:
                return json_response({"balance": format_amount(engine.balance), "currency": engine.shop_currency,
                                       "shop_code": engine.shop_code})
        if action == "get":
            obj = engine.get(unquote(m.group("external_id")), kind)
            if obj is None:
                raise _ApiError(404, "Payout not found" if kind == "payout" else "PayIn not found", "not_found")
            return json_response(obj)

        status, obj = engine.create(kind, data, root=req.host_url.rstrip("/"))
        if status == 201 and engine.roll(k.fail_after_commit_rate):
            # Committed, but the answer is lost: a stall past the client's timeout, or a proxy's 502.
            if k.hang_seconds > 0:
                time.sleep(k.hang_seconds)
            else:
                return bad_gateway()
        return json_response(obj, status)

    serve_api_first(app, lambda path: not path.startswith("/_sandbox/"), api_view)

    # ---- control API beyond state, knobs, callbacks, ledger, describe (no auth: local use only) ----

    def kind_of(plural: str) -> str:
        return "payout" if plural == "payouts" else "payin"

    @app.post("/_sandbox/process")
    def ctl_process() -> Response:
        b = control_body()
        if b.get("external_id"):
            try:
                status = engine.process(str(b["external_id"]), str(b.get("kind") or "payout"))
            except KeyError:
                return json_response({"error": "not found"}, 404)
            return json_response({"processed": 1, "status": status})
        return json_response({"processed": engine.process_all()})

    @app.get("/_sandbox/<any(payouts, payins):plural>/<path:external_id>")
    def ctl_get(plural: str, external_id: str) -> Response:
        obj = engine.get(external_id, kind_of(plural))
        if obj is None:
            return json_response({"error": "not found"}, 404)
        if plural == "payouts":
            obj["executed"] = engine.executed(external_id)
        return json_response(obj)

    @app.post("/_sandbox/<any(payouts, payins):plural>/<path:external_id>/status")
    def ctl_status(plural: str, external_id: str) -> Response:
        b = control_body()
        try:
            engine.set_status(external_id, str(b.get("status", "")), b.get("failure_reason"), kind_of(plural))
        except KeyError:
            return json_response({"error": "not found"}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(engine.get(external_id, kind_of(plural)))

    @app.post("/_sandbox/balance")
    def ctl_balance() -> Response:
        try:
            engine.set_balance(str(control_body().get("balance")))
        except (InvalidOperation, ValueError):
            return json_response({"error": "balance must be a decimal string"}, 400)
        return json_response({"balance": format_amount(engine.balance)})

    return app


def describe(target: Any = None) -> dict:
    """What a sandbox accepts, for ``exsync sandbox gateway`` to print (the defaults when ``target`` is None).

    ``target``: an app from :func:`create_app` or its engine.
    """
    engine = getattr(target, "engine", target)
    if engine is None:
        engine = SandboxEngine()
        engine.close()
    return engine.describe()
