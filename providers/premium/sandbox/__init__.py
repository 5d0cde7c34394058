"""A faithful fake of the Premium Exchanger user API v1 ("premiumbox" engine), for tests, benchmarks,
``exsync demo`` and ``exsync sandbox premium``.

It behaves like the real engine as docs/providers/premium-exchanger.md describes (the engine's code wins
over its manual), so any client can talk to it as to a real exchanger site::

    app = create_app()                       # accepts DEFAULT_LOGIN / DEFAULT_KEY
    srv = serve(app, port=0)                 # threaded werkzeug server in a daemon thread
    requests.post(srv.url + "/api/userapi/v1/test",
                  headers={"API-LOGIN": DEFAULT_LOGIN, "API-KEY": DEFAULT_KEY})
    app.engine.set_status(bid_id, "payed")   # the admin side: drive bids, inject faults
    srv.shutdown(); app.engine.close()

Nothing here is secret: the sandbox is for LOCAL USE ONLY. Its control routes under ``/_sandbox/`` need
no key at all — never expose a sandbox port to a network. Its choices where the facts leave room, its
fault knobs, callbacks and control routes are in docs/providers/premium-exchanger.md ("The sandbox").

Here: the HTTP layer (checks before any method, faults, the envelope, the control routes);
``catalogue`` what the site offers, ``engine`` its state and admin side, ``methods`` the API methods.
"""
from __future__ import annotations

from typing import Any, Iterable

from flask import Response
from werkzeug.wrappers import Request

from providers.premium.sandbox.catalogue import ALL_METHODS, DEFAULT_KEY, DEFAULT_LOGIN, STATUSES, _s
from providers.premium.sandbox.engine import Knobs, SandboxEngine
from providers.premium.sandbox.methods import _Api, _Ctx
from providers.sandbox import SandboxServer, serve
from providers.sandbox.web import SandboxApp, bad_gateway, control_body, json_response, sandbox_app, serve_api_first

__all__ = ["create_app", "serve", "SandboxEngine", "SandboxServer", "Knobs", "DEFAULT_LOGIN", "DEFAULT_KEY",
           "API_PATH", "ALL_METHODS", "STATUSES"]

API_PATH = "/api/userapi/v1/"

# Methods whose "error" is an int; every other method answers with strings ("0", "1", ...).
_INT_ERROR_METHODS = frozenset({"test", "get_direction_currencies", "get_directions"})
# Methods whose envelope always carries error_fields.
_FIELDS_METHODS = frozenset({"create_bid", "bid_info"})
# The maintenance answer of each method (code, text); methods not listed have none.
_MAINTENANCE = {
    "test": (1, "maintenance"), "get_direction_currencies": (1, "maintenance"),
    "get_directions": (1, "maintenance"), "get_direction": ("1", "maintenance"),
    "get_calc": ("1", "maintenance"), "create_bid": ("2", "maintenance"), "bid_info": ("2", "maintenance"),
    "cancel_bid": ("2", "maintenance"), "pay_bid": ("2", "maintenance"), "success_bid": ("2", "maintenance"),
}


def _envelope(method: str, code: Any, text: str, data: Any, fields: dict | None) -> dict:
    if method in _INT_ERROR_METHODS:
        code = int(code)
    else:
        code = str(code)
    out = {"error": code, "error_text": text, "data": data}
    if method in _FIELDS_METHODS:
        out["error_fields"] = fields or []
    return out


def _lang(header: str | None) -> str:
    h = (header or "").strip().lower()
    return "ru_RU" if h.startswith("ru") else "en_US"


def create_app(api_login: str = DEFAULT_LOGIN, api_key: str = DEFAULT_KEY, *, flavour: str = "generic",
               latency: float = 0.0, error_rate: float = 0.0, maintenance: bool | str = False,
               callback_drop_rate: float = 0.0, callback_duplicate_rate: float = 0.0,
               callback_reorder_rate: float = 0.0, callback_delay: float = 0.0, seed: int | None = None,
               ip_allowlist: Iterable[str] | None = None, methods: Iterable[str] | None = None,
               extra_keys: Iterable[tuple[str, str]] | None = None,
               action_delay: float | None = None) -> SandboxApp:
    """The sandbox as a Flask (WSGI) app; ``app.engine`` is its :class:`SandboxEngine`."""
    knobs = Knobs(latency=latency, error_rate=error_rate, maintenance=maintenance,
                  callback_drop_rate=callback_drop_rate, callback_duplicate_rate=callback_duplicate_rate,
                  callback_reorder_rate=callback_reorder_rate, callback_delay=callback_delay)
    engine = SandboxEngine([(api_login, api_key), *(extra_keys or [])], flavour=flavour, seed=seed, knobs=knobs,
                           ip_allowlist=ip_allowlist, methods=methods, action_delay=action_delay)
    api = _Api(engine)
    app = sandbox_app("premium_sandbox", engine)

    def pre_error(code: int, text: str) -> Response:
        return json_response({"error": code, "error_text": text})

    def api_view(request: Request, method: str) -> Response:
        k = engine.knobs
        engine.begin_request(method, request.remote_addr)
        if k.maintenance == "api":
            return pre_error(1, "Api disabled")
        login, key = request.headers.get("API-LOGIN", ""), request.headers.get("API-KEY", "")
        user = engine.users.get(login)
        if user is None or not key or user.key != key:
            return pre_error(1, "Api disabled")
        if engine.ip_allowlist is not None and request.remote_addr not in engine.ip_allowlist:
            return pre_error(2, "IP blocked")
        if method not in ALL_METHODS or method not in engine.methods or request.method != "POST":
            return pre_error(3, "Method not supported")
        if engine.roll(k.error_rate):
            with engine.lock:  # alternate between the proxy's 502 and the method's maintenance answer
                engine._fault_flip = not engine._fault_flip
                as_html = engine._fault_flip or method not in _MAINTENANCE
            if as_html:
                return bad_gateway()
            return json_response(_envelope(method, *_MAINTENANCE[method], [], None))
        if k.maintenance and method in _MAINTENANCE:
            return json_response(_envelope(method, *_MAINTENANCE[method], [], None))
        ctx = _Ctx()
        ctx.method, ctx.form, ctx.user = method, request.form, user
        ctx.lang, ctx.ip = _lang(request.headers.get("API-LANG")), request.remote_addr or ""
        ctx.root = request.host_url.rstrip("/")
        with engine.lock:
            code, text, data, fields = getattr(api, method)(ctx)
        return json_response(_envelope(method, code, text, data, fields))

    serve_api_first(app, lambda path: path.startswith(API_PATH),
                    lambda req: api_view(req, req.environ.get("PATH_INFO", "")[len(API_PATH):]))

    # ---- control API beyond state, knobs and callbacks (no auth: local use only) ----------------

    def bid_or_404(fn):
        try:
            return fn()
        except KeyError:
            return json_response({"error": "no such bid"}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)

    @app.post("/_sandbox/bids")
    def ctl_add_bid() -> Response:
        args = {k: v for k, v in control_body().items()
                if k in ("direction_id", "amount", "status", "api_login", "api_id", "callback_url", "fields",
                         "created_at")}
        return bid_or_404(lambda: json_response({"id": engine.add_bid(**args)}))

    @app.post("/_sandbox/bids/bulk")
    def ctl_bulk() -> Response:
        b = control_body()
        args = {k: v for k, v in b.items() if k in ("api_login", "start_time", "spread_seconds", "statuses")}
        return bid_or_404(lambda: json_response({"ids": engine.bulk_add(int(b.get("n", 0)), **args)}))

    @app.get("/_sandbox/bids/<int:bid_id>")
    def ctl_bid(bid_id: int) -> Response:
        def get():
            r = engine.bid(bid_id)
            for k in ("amount_give", "amount_get", "course_give", "course_get"):
                r[k] = _s(r[k])
            return json_response(r)
        return bid_or_404(get)

    @app.post("/_sandbox/bids/<int:bid_id>/status")
    def ctl_status(bid_id: int) -> Response:
        b = control_body()

        def do():
            engine.set_status(bid_id, str(b.get("status", "")), at=b.get("at"))
            return json_response({"id": bid_id, "status": engine.bid(bid_id)["status"]})
        return bid_or_404(do)

    @app.post("/_sandbox/bids/<int:bid_id>/advance")
    def ctl_advance(bid_id: int) -> Response:
        path = list(control_body().get("path") or [])

        def do() -> Response:
            engine.advance(bid_id, path)
            return json_response({"id": bid_id, "status": engine.bid(bid_id)["status"]})
        return bid_or_404(do)

    @app.post("/_sandbox/bids/<int:bid_id>/archive")
    def ctl_archive(bid_id: int) -> Response:
        def do() -> Response:
            engine.archive(bid_id)
            return json_response({"id": bid_id, "archived": True})
        return bid_or_404(do)

    @app.post("/_sandbox/directions/<int:direction_id>/<any(enable, disable):what>")
    def ctl_direction(direction_id: int, what: str) -> Response:
        if direction_id not in engine.directions:
            return json_response({"error": "no such direction"}, 404)
        (engine.enable_direction if what == "enable" else engine.disable_direction)(direction_id)
        return json_response({"id": direction_id, "enabled": what == "enable"})

    @app.post("/_sandbox/autopilot")
    def ctl_autopilot() -> Response:
        b = control_body()
        if b.get("on", True):
            engine.start_autopilot(interval=float(b.get("interval", 1.0)))
        else:
            engine.stop_autopilot()
        return json_response({"autopilot": bool(b.get("on", True))})

    return app
