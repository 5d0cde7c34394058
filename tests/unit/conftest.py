"""Unit level: no Postgres, no Redis, no exsync process. Pure code, and each provider's client against its
own sandbox served in this process on a loopback port.

The factories below serve a sandbox with the options a test gives (as many as it asks for) and stop every
one after the test; the sandboxes with fixed options (``zc_sandbox`` …) are in tests/conftest.py.
"""
from __future__ import annotations

from contextlib import ExitStack, closing

import pytest

from tests.support import sandboxes


@pytest.fixture
def premium_sandboxes():
    """Factory: ``premium_sandboxes(**options)`` → (server, engine) of a Premium sandbox (seed 7 unless
    given), for tests that speak its HTTP API directly."""
    with ExitStack() as stack:
        def start(**options):
            srv = stack.enter_context(sandboxes.running("premium", **{"seed": 7, **options}))
            return srv, srv.engine

        yield start


@pytest.fixture
def premium_clients():
    """Factory: ``premium_clients(client_kw=None, **options)`` → (app, PremiumClient) of a Premium sandbox
    with those options; ``app.url`` is its root."""
    from providers.premium import PremiumClient
    from providers.premium.sandbox import DEFAULT_KEY, DEFAULT_LOGIN

    with ExitStack() as stack:
        def start(client_kw=None, **options):
            srv = stack.enter_context(sandboxes.running("premium", **options))
            kw = {"timeout": 5.0, **(client_kw or {})}
            client = stack.enter_context(closing(PremiumClient(srv.url, DEFAULT_LOGIN, DEFAULT_KEY, **kw)))
            srv.app.url = srv.url
            return srv.app, client

        yield start


@pytest.fixture
def gateway_clients():
    """Factory: ``gateway_clients(client_kw=None, **options)`` → (app, GatewayClient) of a gateway sandbox
    (seed 1 and a 0.02 s callback backoff unless given); ``app.url`` is its root."""
    from providers.gateway import GatewayClient
    from providers.gateway.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET

    with ExitStack() as stack:
        def start(client_kw=None, **options):
            options = {"seed": 1, "callback_backoff": 0.02, **options}
            srv = stack.enter_context(sandboxes.running("gateway", **options))
            kw = {"timeout": 5.0, **(client_kw or {})}
            client = stack.enter_context(closing(GatewayClient(srv.url, DEFAULT_API_KEY, DEFAULT_SECRET, **kw)))
            srv.app.url = srv.url
            return srv.app, client

        yield start


@pytest.fixture
def timestamped_gateway():
    """(app, client, seen): a gateway sandbox with replay protection on, a GatewayClient on it, and every
    API request's (X-Timestamp, sandbox clock at arrival, HTTP status) in ``seen``."""
    from providers.gateway import GatewayClient
    from providers.gateway.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET

    with sandboxes.running("gateway", seed=1) as srv:
        app = srv.app
        assert app.engine.knobs.replay_protection and app.engine.knobs.clock_skew == 0
        seen = sandboxes.record_timestamps(app)
        app.url = srv.url
        with closing(GatewayClient(srv.url, DEFAULT_API_KEY, DEFAULT_SECRET, timeout=5)) as client:
            yield app, client, seen


@pytest.fixture
def paysera_clients():
    """Factory: ``paysera_clients(client_kw=None, **options)`` → (app, server, PayseraClient) of a Paysera
    sandbox with those options."""
    from providers.paysera import PayseraClient
    from providers.paysera.sandbox import DEFAULT_MAC_ID, DEFAULT_MAC_KEY

    with ExitStack() as stack:
        def start(client_kw=None, **options):
            srv = stack.enter_context(sandboxes.running("paysera", **options))
            client = stack.enter_context(closing(PayseraClient(srv.url, DEFAULT_MAC_ID, DEFAULT_MAC_KEY,
                                                               **(client_kw or {}))))
            return srv.app, srv, client

        yield start
