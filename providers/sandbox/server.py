"""A threaded werkzeug server for the sandboxes: tests, benchmarks, ``exsync sandbox``, the demo."""
from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request: benchmarks send thousands a second."""

    disable_nagle_algorithm = True  # headers and body go out in separate writes: don't wait for ACKs

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class SandboxServer:
    """A threaded werkzeug server running ``app`` in a daemon thread; ``url`` is the site root."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self.app = app
        self.host = host
        self.port = self._server.server_port
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)
        self.url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "SandboxServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> SandboxServer:
    """Serve a sandbox WSGI app on ``host:port`` (0 = a free port) in a background thread."""
    return SandboxServer(app, host, port)
