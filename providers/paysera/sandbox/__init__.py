"""A faithful fake of Paysera's Wallet API (server time, configuration, wallet balance) and Transfer API,
for tests, benchmarks, ``exsync demo`` and ``exsync sandbox paysera``.

It behaves as docs/providers/paysera.md describes Paysera, so any client can talk to it as to Paysera::

    app = create_app()                          # accepts DEFAULT_MAC_ID / DEFAULT_MAC_KEY
    srv = serve(app, port=0)                    # threaded werkzeug server in a daemon thread
    c = PayseraClient(srv.url, DEFAULT_MAC_ID, DEFAULT_MAC_KEY)
    app.engine.executed(transfer_id)            # the admin side: ledger, knobs, status changes
    srv.shutdown(); app.engine.close()

Nothing here is secret: the sandbox is for LOCAL USE ONLY, and its control routes under ``/_sandbox/``
need no authentication at all — never expose a sandbox port to a network. How it verifies MACs, its
choices where the facts leave room, callbacks, fault knobs, ledger and control routes are in
docs/providers/paysera.md ("The sandbox").

Here: the HTTP layer (MAC check, faults, routes); ``engine`` holds the state, ``state`` its records.
"""
from __future__ import annotations

import json
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from flask import Response, request

from providers.paysera.mac import MacError, split_host_port, verify
from providers.paysera.sandbox.engine import SandboxEngine
from providers.paysera.sandbox.state import (
    DEFAULT_ACCOUNT,
    DEFAULT_MAC_ID,
    DEFAULT_MAC_KEY,
    DEFAULT_WALLET_ID,
    Knobs,
    _ApiError,
)
from providers.sandbox import SandboxServer, serve
from providers.sandbox.web import SandboxApp, control_body, json_response, sandbox_app

__all__ = ["create_app", "serve", "describe", "SandboxEngine", "SandboxServer", "Knobs", "DEFAULT_MAC_ID",
           "DEFAULT_MAC_KEY", "DEFAULT_WALLET_ID", "DEFAULT_ACCOUNT"]

TRANSFERS = "/transfer/rest/v1/transfers"


def _error(status: int, code: str, description: str, properties: dict | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "error_description": description}
    if properties:
        body["error_properties"] = properties
    return json_response(body, status)


def _raw_uri(environ: Mapping[str, Any]) -> str:
    """The request URI as the client sent it (werkzeug and gunicorn keep it; else rebuilt)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if "://" in raw:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        return raw
    from urllib.parse import quote

    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/;=,~!$&'()*+:@-._")
    qs = environ.get("QUERY_STRING", "")
    return f"{path}?{qs}" if qs else path


def create_app(*, mac_id: str = DEFAULT_MAC_ID, mac_key: str = DEFAULT_MAC_KEY, window: float = 300,
               clock_skew: float = 0, wallets: Mapping[Any, Any] | None = None, latency: float = 0.0,
               error_rate: float = 0.0, fail_after_commit_rate: float = 0.0, seed: int | None = None,
               hang_seconds: float = 0.0, fault_match: str = "", processing_delay: float = 0.0,
               draft_ttl: float = 3600.0, callback_attempts: int = 4, callback_retry_delay: float = 0.1,
               extra_keys: Iterable[tuple[str, str]] | None = None,
               private_key_pem: bytes | str | None = None) -> SandboxApp:
    """The sandbox as a Flask (WSGI) app; ``app.engine`` is its :class:`SandboxEngine`."""
    knobs = Knobs(latency=latency, error_rate=error_rate, fail_after_commit_rate=fail_after_commit_rate,
                  hang_seconds=hang_seconds, fault_match=fault_match, clock_skew=clock_skew,
                  processing_delay=processing_delay, draft_ttl=draft_ttl, callback_attempts=callback_attempts,
                  callback_retry_delay=callback_retry_delay)
    engine = SandboxEngine([(mac_id, mac_key), *(extra_keys or [])], window=window, knobs=knobs, wallets=wallets,
                           seed=seed, private_key_pem=private_key_pem)
    app = sandbox_app("paysera_sandbox", engine)

    def authenticate() -> tuple[str | None, Response | None]:
        """(mac id, None) when the MAC checks out, else (None, a 401 answer)."""
        try:
            host, port = split_host_port(request.host, request.scheme)
        except ValueError:
            return None, _error(400, "invalid_request", "the Host header is not host[:port]")
        try:
            h = verify(request.headers.get("Authorization"), method=request.method, uri=_raw_uri(request.environ),
                       host=host, port=port, body=request.get_data(cache=True), key_for=engine.key_for,
                       now=engine.now(), window=engine.window, nonces=engine.nonces)
        except MacError as exc:
            with engine.lock:
                engine.requests_log.append({"method": request.method, "path": request.path, "ext": {},
                                            "refused": exc.reason})
            return None, _error(401, "unauthorized", exc.message)
        with engine.lock:
            engine.requests_log.append({"method": request.method, "path": request.path,
                                        "ext": {k: v for k, v in h.ext_params.items() if k != "body_hash"},
                                        "mac_id": h.id, "refused": None})
        return h.id, None

    def faults_apply() -> bool:
        pattern = engine.knobs.fault_match
        return not pattern or re.search(pattern, f"{request.method} {request.path}") is not None

    def api(action, *, auth: bool = True, mutating: bool = False) -> Response:
        """Run one API action with authentication and the fault knobs around it."""
        k = engine.knobs
        rule = request.url_rule.rule if request.url_rule else request.path
        engine.begin_request(f"{request.method} {rule}")
        client_id = None
        if auth:
            client_id, refusal = authenticate()
            if refusal is not None:
                return refusal
        engine.advance()
        faulty = faults_apply()
        if faulty and engine.roll(k.error_rate):
            return _error(500, "internal_server_error", "unexpected internal system error")
        try:
            with engine.lock:
                status, body = action(client_id)
        except _ApiError as exc:
            resp = _error(exc.status, exc.code, exc.description, exc.properties)
        else:
            resp = json_response(body, status)
            if faulty and mutating and engine.roll(k.fail_after_commit_rate):
                resp = _error(500, "internal_server_error", "unexpected internal system error")
        if faulty and k.hang_seconds:
            time.sleep(k.hang_seconds)
        return resp

    def body_json() -> Any:
        raw = request.get_data(cache=True)
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise _ApiError(400, "invalid_request", "request body is not valid JSON") from None

    # ---- Wallet API ----------------------------------------------------------------------------

    @app.get("/rest/v1/server")
    def server() -> Response:
        return api(lambda _c: (200, {"time": int(engine.now())}), auth=False)

    @app.get("/rest/v1/configuration")
    def configuration() -> Response:
        return api(lambda _c: (200, {"minimum_password_length": 8}), auth=False)

    @app.get("/rest/v1/wallet/<wallet_id>/balance")
    def wallet_balance(wallet_id: str) -> Response:
        def action(_c):
            try:
                return 200, engine.balance_json(wallet_id)
            except KeyError:
                raise _ApiError(404, "not_found", "wallet not found") from None
        return api(action)

    @app.get("/publickey")
    def publickey() -> Response:
        return Response(engine.public_key_pem, mimetype="text/plain")

    # ---- Transfer API --------------------------------------------------------------------------

    @app.post(TRANSFERS)
    def create_transfer() -> Response:
        def action(client_id):
            return 200, engine.transfer_json(engine.create(body_json(), client_id or ""))
        return api(action, mutating=True)

    @app.get(TRANSFERS)
    def list_transfers() -> Response:
        return api(lambda _c: (200, engine.list(request.args)))

    @app.get(TRANSFERS + "/<transfer_id>")
    def get_transfer(transfer_id: str) -> Response:
        return api(lambda _c: (200, engine.transfer_json(engine._get(transfer_id))))

    @app.delete(TRANSFERS + "/<transfer_id>")
    def reject_transfer(transfer_id: str) -> Response:
        return api(lambda _c: (200, engine.transfer_json(engine.reject(transfer_id))), mutating=True)

    @app.put(TRANSFERS + "/<transfer_id>/<any(register, sign, reserve):what>")
    def transfer_action(transfer_id: str, what: str) -> Response:
        def action(_c):
            body_json()  # optional parameters (convert_currency, user_ip, …): accepted, must be JSON
            return 200, engine.transfer_json(getattr(engine, what)(transfer_id))
        return api(action, mutating=True)

    @app.errorhandler(404)
    def not_found(_e) -> Response:
        return _error(404, "not_found", "resource not found")

    @app.errorhandler(405)
    def not_allowed(_e) -> Response:
        return _error(405, "invalid_request", "method not allowed for this resource")

    # ---- control API beyond state, knobs, describe, ledger, callbacks (no auth: local use only) ----

    @app.get("/_sandbox/transfers")
    def ctl_transfers() -> Response:
        with engine.lock:
            ids = list(engine.transfers) + list(engine.deleted)
            return json_response([engine.transfer(i) for i in ids])

    @app.get("/_sandbox/transfers/<transfer_id>")
    def ctl_transfer(transfer_id: str) -> Response:
        try:
            return json_response(engine.transfer(transfer_id))
        except KeyError:
            return json_response({"error": "no such transfer"}, 404)

    @app.post("/_sandbox/transfers/<transfer_id>/status")
    def ctl_status(transfer_id: str) -> Response:
        b = control_body()
        try:
            return json_response(engine.set_status(transfer_id, str(b.get("status", "")),
                                                   failure_code=b.get("failure_code"),
                                                   failure_message=b.get("failure_message")))
        except KeyError:
            return json_response({"error": "no such transfer"}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)

    @app.post("/_sandbox/wallets/<wallet_id>/balance")
    def ctl_balance(wallet_id: str) -> Response:
        b = control_body()
        try:
            engine.set_balance(wallet_id, str(b["currency"]), Decimal(str(b["amount"])))
            return json_response(engine.balance_json(wallet_id))
        except KeyError:
            return json_response({"error": "no such wallet (or currency/amount missing)"}, 404)
        except (InvalidOperation, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)

    @app.post("/_sandbox/tick")
    def ctl_tick() -> Response:
        engine.advance()
        return json_response({"server_time": int(engine.now())})

    return app


def describe(app: Any) -> dict:
    """``app.engine.describe()``: mac_id, mac_key, public key PEM, wallets (for ``exsync sandbox paysera``)."""
    return app.engine.describe()
