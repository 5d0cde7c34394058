"""A provider's sandbox served for a test: ``providers.<name>.sandbox.create_app(**options)`` on a free
loopback port, its engine at hand as ``.engine``, its server and background threads stopped afterwards."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from typing import Any

from providers.sandbox import SandboxServer, serve


@contextmanager
def running(provider: str, **options: Any) -> Iterator[SandboxServer]:
    app = import_module(f"providers.{provider}.sandbox").create_app(**options)
    server = serve(app, port=0)
    server.engine = app.engine
    try:
        yield server
    finally:
        server.shutdown()
        app.engine.close()


def record_timestamps(app) -> list[tuple[int, float, int]]:
    """Wrap a (gateway) sandbox's WSGI app: every API request's (X-Timestamp, sandbox clock at arrival,
    HTTP status), in arrival order."""
    seen: list[tuple[int, float, int]] = []
    inner = app.wsgi_app

    def wsgi(environ, start_response):
        ts, now = environ.get("HTTP_X_TIMESTAMP"), app.engine.now()

        def start(status, headers, exc_info=None):
            if ts is not None:
                seen.append((int(ts), now, int(status.split()[0])))
            return start_response(status, headers, exc_info)

        return inner(environ, start)

    app.wsgi_app = wsgi
    return seen
