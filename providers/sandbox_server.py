"""Moved to :mod:`providers.sandbox.server` (the sandboxes' base package). This name stays only for the
imports not yet switched (``cli/processes.py``, ``devtools/demo.py``, ``bench/``, ``tests/``); new code
imports ``from providers.sandbox import serve``."""
from providers.sandbox.server import SandboxServer, serve

__all__ = ["SandboxServer", "serve"]
