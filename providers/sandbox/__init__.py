"""The base of the provider sandboxes: faithful fake servers for tests, benchmarks, the demo and
``exsync sandbox <provider>``. LOCAL USE ONLY — the ``/_sandbox/`` control routes have no auth.

Each provider's sandbox (``providers.<name>.sandbox``: ``create_app(**options)``, ``serve``) holds only what
is specific to that provider's API and builds on these parts:

* ``server`` — :func:`serve` / :class:`SandboxServer`: a threaded werkzeug server in a daemon thread;
* ``knobs`` — :class:`SandboxKnobs`: typed fault knobs changeable at run time;
* ``engine`` — :class:`Engine`: the lock, the knobs, seeded fault draws, request counters, the server clock,
  the callback log;
* ``callbacks`` — :class:`CallbackSender`: one background sender with drop / duplicate / reorder faults
  and retries;
* ``ledger`` — :class:`Ledger`: the money a payout sandbox really moved (``executed(ref)``);
* ``web`` — :func:`sandbox_app`: the Flask app with the control routes (state, knobs, callbacks, ledger,
  describe), JSON answers, nginx's 502 page, a dropped connection, the fast path around Flask.

Nothing here is secret and nothing here is production code: production talks to real providers through
the clients beside each sandbox.
"""
from providers.sandbox.callbacks import CallbackSender, draw_faults
from providers.sandbox.engine import Engine
from providers.sandbox.knobs import SandboxKnobs
from providers.sandbox.ledger import Ledger
from providers.sandbox.server import SandboxServer, serve

__all__ = ["CallbackSender", "Engine", "Ledger", "SandboxKnobs", "SandboxServer", "draw_faults", "serve"]
