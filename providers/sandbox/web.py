"""The web side every sandbox shares: its Flask app with the ``/_sandbox/`` control routes, JSON answers,
the faults a proxy in front of a provider produces, and a fast path around Flask for the API.

The control routes have NO AUTH: a sandbox is for local use only, never expose its port to a network.
"""
from __future__ import annotations

import json
import math
import re
import socket
from typing import Any, Callable, Iterable, Mapping

from flask import Flask, Response, request
from werkzeug.wrappers import Request

Respond = Callable[..., Response]

# What nginx answers when the application behind it fails: the body real clients meet.
HTML_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Compact JSON, non-ASCII kept as is."""
    return Response(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype="application/json", headers=dict(headers or {}))


def bad_gateway() -> Response:
    """nginx's 502 page."""
    return Response(HTML_502, status=502, mimetype="text/html")


def drop_connection(environ: Mapping[str, Any]) -> Response:
    """Close the client's connection without an answer (werkzeug then drops the response silently)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response(b"", status=500)


class SandboxApp(Flask):
    """A sandbox's Flask app: its engine rides along, for tests and tools to drive and inspect."""

    engine: Any


def sandbox_app(import_name: str, engine: Any, respond: Respond = json_response) -> SandboxApp:
    """A Flask app with ``app.engine`` and the control routes every sandbox has:

    ``GET /_sandbox/state`` (``engine.state(query)``), ``POST /_sandbox/knobs`` (a JSON object of knob
    values; an unknown knob or a bad value: 400 ``{"error"}``, else the knobs), ``GET
    /_sandbox/requests?key=&since=&window=`` (the API requests served: total, per second, the most in any
    sliding ``window`` seconds, by call and by source address; a bad number: 400), and where the engine has
    them ``GET /_sandbox/callbacks?last=N`` (the newest N attempts, 100 when N is missing or not a positive
    number), ``GET /_sandbox/ledger`` and ``GET /_sandbox/describe``. ``respond`` writes the JSON.
    """
    app = SandboxApp(import_name)
    app.engine = engine

    @app.get("/_sandbox/state")
    def ctl_state() -> Response:
        return respond(engine.state(request.args))

    @app.post("/_sandbox/knobs")
    def ctl_knobs() -> Response:
        try:
            engine.knobs.update(**control_body())
        except (AttributeError, ValueError, TypeError, ArithmeticError, re.error) as exc:
            return respond({"error": str(exc)}, 400)
        return respond(engine.knobs.as_dict())

    @app.get("/_sandbox/requests")
    def ctl_requests() -> Response:
        try:
            since = float(request.args["since"]) if request.args.get("since") else None
            window = float(request.args.get("window") or 1.0)
            if not (window > 0 and math.isfinite(window)) or (since is not None and not math.isfinite(since)):
                raise ValueError("since and window must be finite, window > 0")
        except ValueError as exc:
            return respond({"error": str(exc)}, 400)
        return respond(engine.request_log.summary(request.args.get("key") or None, since, window))

    if engine._sender is not None:
        @app.get("/_sandbox/callbacks")
        def ctl_callbacks() -> Response:
            try:
                n = int(request.args.get("last") or 100)
            except ValueError:
                n = 100
            return respond(engine.callback_log[-(n if n > 0 else 100):])

    if callable(getattr(engine, "ledger_json", None)):
        @app.get("/_sandbox/ledger")
        def ctl_ledger() -> Response:
            with engine.lock:
                return respond(engine.ledger_json())

    if callable(getattr(engine, "describe", None)):
        @app.get("/_sandbox/describe")
        def ctl_describe() -> Response:
            return respond(engine.describe())

    return app


def control_body() -> dict:
    """The JSON object of a control request (``{}`` when there is none)."""
    body = request.get_json(silent=True, force=True)
    return body if isinstance(body, dict) else {}


def serve_api_first(app: Flask, is_api: Callable[[str], bool], view: Callable[[Request], Response]) -> None:
    """Requests whose path ``is_api`` go to ``view`` without Flask's routing and contexts (about half the
    cost of a request); everything else (the control routes) goes through Flask."""
    flask_wsgi = app.wsgi_app

    def wsgi(environ: dict, start_response: Any) -> Iterable[bytes]:
        if is_api(environ.get("PATH_INFO", "")):
            return view(Request(environ))(environ, start_response)
        return flask_wsgi(environ, start_response)

    app.wsgi_app = wsgi  # type: ignore[method-assign]  # Flask's documented way to wrap its WSGI app
