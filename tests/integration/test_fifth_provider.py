"""A provider is one descriptor: a throwaway fifth payout provider ("courier"), written here and nowhere
else — a tiny sandbox, a rail, a callback verifier — is registered, configured from TOML, pays a mirrored
bid end to end through the payout engine, and calls back through the generic receiver
``POST /webhooks/courier/<name>``. Nothing outside this file knows it exists.

Real Postgres, Redis and the Premium sandbox; the courier's sandbox is served over HTTP.
"""
from __future__ import annotations

import hmac
import json
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from typing import Any, Mapping

import pytest
import requests
from flask import Flask, jsonify, request
from sqlalchemy import select, text

from core.clock import now_utc
from core.config import ConfigError, load_settings
from core.redis_url import client as redis_client
from core.runtime import Runtime
from models import InboxEvent
from providers import registry
from providers.descriptor import (
    Answer,
    CallbackRequest,
    Callbacks,
    Descriptor,
    HintRefused,
    Option,
    PayoutHint,
    ProviderConfig,
    Verified,
)
from providers.errors import PermanentError, RetryableError
from providers.payouts import FAILED, PENDING, SUCCEEDED, PayoutRequest, PayoutResult
from providers.sandbox import serve
from tests.support.config import forget_webhook_failures, make_env, write_config
from webhooks.app import create_app
from webhooks.openapi import document, undocumented
from worker import inbox, reconcile
from worker.payouts import engine

TOKEN = "courier-token-0123456789"
CARD = "4111111111111111"


# -- the provider: sandbox, rail, verifier, descriptor ----------------------------------------------------


class Ledger:
    """The courier sandbox's truth: transfers by our reference, and how often each one executed."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.transfers: dict[str, dict] = {}
        self.executed: dict[str, int] = {}
        self.lock = threading.Lock()

    def settle(self, reference: str) -> dict:
        with self.lock:
            self.transfers[reference]["state"] = "done"
            return dict(self.transfers[reference])

    def close(self) -> None:
        pass


def courier_sandbox(*, token: str = TOKEN, latency: float = 0.0, error_rate: float = 0.0,
                    fail_after_commit_rate: float = 0.0, seed: int | None = None) -> Flask:
    """POST /v1/transfers (idempotent by ``reference``: a repeat answers the first transfer), GET
    /v1/transfers/<reference>; ``Authorization: Bearer <token>``. Transfers start ``processing``."""
    app = Flask("courier-sandbox")
    ledger = app.engine = Ledger(token)  # type: ignore[attr-defined]  # app.engine, as every sandbox has

    @app.before_request
    def auth():
        if request.headers.get("Authorization") != f"Bearer {ledger.token}":
            return jsonify(error="unauthorized"), 401

    @app.post("/v1/transfers")
    def create():
        body = request.get_json()
        with ledger.lock:
            known = ledger.transfers.get(body["reference"])
            if known is not None:
                return jsonify(known), 200
            t = {"id": f"c-{len(ledger.transfers) + 1}", "reference": body["reference"], "amount": body["amount"],
                 "currency": body["currency"], "to": body["to"], "state": "processing"}
            ledger.transfers[t["reference"]] = t
            ledger.executed[t["reference"]] = ledger.executed.get(t["reference"], 0) + 1
            return jsonify(t), 201

    @app.get("/v1/transfers/<reference>")
    def show(reference: str):
        with ledger.lock:
            t = ledger.transfers.get(reference)
        return (jsonify(t), 200) if t is not None else (jsonify(error="not_found"), 404)

    return app


STATES = {"processing": PENDING, "done": SUCCEEDED, "returned": FAILED}


class CourierRail:
    def __init__(self, cfg: ProviderConfig) -> None:
        self.name = cfg.name
        self.base_url, self.timeout = cfg.base_url, cfg.timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {cfg.secrets['token']}"

    def _result(self, resp: requests.Response) -> PayoutResult:
        if resp.status_code >= 500:
            raise RetryableError(f"courier answered {resp.status_code}", http_status=resp.status_code,
                                 provider="courier")
        if resp.status_code not in (200, 201):
            raise PermanentError(f"courier answered {resp.status_code}", http_status=resp.status_code,
                                 provider="courier")
        t = resp.json()
        return PayoutResult(state=STATES[t["state"]], provider_ref=t["id"], code=t["state"], raw=t)

    def send(self, req: PayoutRequest) -> PayoutResult:
        return self._result(self.session.post(self.base_url + "/v1/transfers", timeout=self.timeout, json={
            "reference": req.key, "amount": str(req.amount), "currency": req.currency, "to": req.destination}))

    def find(self, key: str) -> PayoutResult | None:
        resp = self.session.get(f"{self.base_url}/v1/transfers/{key}", timeout=self.timeout)
        return None if resp.status_code == 404 else self._result(resp)


def courier_verifier(cfg: ProviderConfig | None):
    """Callbacks carry ``X-Courier-Token``; the body is {"reference": …, "state": …}."""
    token = cfg.secrets["token"] if cfg is not None else "nobody has this token"

    def verify(req: CallbackRequest):
        if not hmac.compare_digest(req.headers.get("X-Courier-Token", "").encode(), token.encode()):
            return Answer(403, {"error": "bad_token"})
        try:
            body = json.loads(req.body)
            return Verified({"reference": str(body["reference"]), "state": str(body.get("state"))})
        except (ValueError, KeyError, TypeError) as exc:
            return Verified(None, problem=f"not a courier transfer: {type(exc).__name__}")

    return verify


def courier_hint(payload: Mapping[str, Any]) -> PayoutHint:
    if not payload.get("reference"):
        raise HintRefused("payload has no reference")
    return PayoutHint(key=payload["reference"], status=payload.get("state"),
                      label=f"reference {payload['reference']!r}")


COURIER = Descriptor(
    type="courier",
    title="Courier (a test's throwaway provider)",
    options=(Option("token_env", "secret", required=True),
             Option("priority", "whole", minimum=1, maximum=5, default=3)),
    rail=lambda cfg, store: CourierRail(cfg),
    sandbox=courier_sandbox,
    describe_sandbox=lambda app, url: {"base_url": url, "token": app.engine.token},
    callbacks=Callbacks(
        verifier=courier_verifier, hint=courier_hint,
        accepted=lambda event_id, dead: Answer(200, {"received": event_id, "kept_dead": dead is not None}),
        openapi={"summary": "Courier callbacks",
                 "parameters": [{"name": "X-Courier-Token", "in": "header", "required": True,
                                 "schema": {"type": "string"}}],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                 "responses": {200: {"description": "stored", "content": {"application/json": {
                     "schema": {"type": "object", "required": ["received"]}}}},
                               403: "Error"}}),
)


# -- the test ----------------------------------------------------------------------------------------------


@pytest.fixture
def courier():
    registry.register(COURIER)
    yield COURIER
    registry.unregister("courier")


@pytest.fixture
def courier_server(courier):
    app = courier_sandbox()
    server = serve(app, port=0)
    server.engine = app.engine
    yield server
    server.shutdown()


COURIER_TOML = """
[payouts]
check_ladder = [15, 60]

[providers.cr]
type = "courier"
base_url = "{url}"
token_env = "EXSYNC_TEST_COURIER_TOKEN"
priority = 2

[routes.main]
trigger_statuses = ["realpay"]

[[routes.main.rules]]
currency = "RUB"
provider = "cr"
destination_field = "account2"
"""


def courier_env(tmp_path, premium_sandbox, database_url, redis_url, url: str, toml: str = COURIER_TOML) -> dict:
    path = write_config(tmp_path, premium_sandbox.url, extra=toml.format(url=url))
    return make_env(path, database_url, redis_url, EXSYNC_TEST_COURIER_TOKEN=TOKEN)


@pytest.fixture
def courier_runtime(tmp_path, premium_sandbox, database_url, redis_url, db, courier_server):
    forget_webhook_failures(redis_url)
    rt = Runtime(load_settings(courier_env(tmp_path, premium_sandbox, database_url, redis_url, courier_server.url)),
                 _db=db)
    yield rt
    redis_client(redis_url).delete("exsync")  # the receiver's enqueues: no worker here consumes them


def mirror_realpay_bid(rt: Runtime, premium_sandbox) -> int:
    rid = premium_sandbox.engine.add_bid(direction_id=2, amount=Decimal("100"), status="realpay",
                                         fields={"account2": CARD})
    snap = reconcile.Snapshot.from_provider(rt.premium("main").bid_info(id=rid), now_utc())
    with rt.db.session() as s:
        reconcile.apply_snapshot(s, rt.settings, "main", snap, "create", request_fields={"account2": CARD},
                                 created_via="exsync")
    return rid


def the_payout(rt: Runtime):
    with rt.db.session() as s:
        (p,) = s.execute(text("SELECT * FROM payouts")).all()
    return p


def test_a_fifth_provider_pays_and_calls_back_from_its_descriptor_alone(courier_runtime, courier_server,
                                                                       premium_sandbox, db):
    rt = courier_runtime
    cfg = rt.payouts().providers["cr"]
    assert (cfg.type, cfg.options, cfg.secrets) == ("courier", {"priority": 2}, {"token": TOKEN})
    assert TOKEN in rt.settings.secrets()  # redacted like every secret

    # config → rail → engine: sent once, pending at the courier
    rid = mirror_realpay_bid(rt, premium_sandbox)
    assert engine.create_due_payouts(rt) == 1
    assert engine.submit_due(rt) == {"submitted": 1}
    p = the_payout(rt)
    assert (p.provider, p.state, p.destination) == ("cr", "submitted", CARD)
    assert courier_server.engine.executed == {p.idempotency_key: 1}

    # The courier settles it and calls back through the generic receiver.
    settled = courier_server.engine.settle(p.idempotency_key)
    client = create_app(rt, env={}).test_client()
    body = json.dumps({"reference": settled["reference"], "state": settled["state"]}).encode()
    resp = client.post("/webhooks/courier/cr", data=body, headers={"X-Courier-Token": TOKEN},
                       content_type="application/json")
    assert (resp.status_code, resp.get_json()) == (200, {"received": resp.get_json()["received"], "kept_dead": False})
    with db.session() as s:
        (ev,) = s.execute(select(InboxEvent)).scalars().all()
        event_id, stored = ev.id, (ev.provider, ev.endpoint, ev.state, ev.payload)
    assert stored == ("courier", "cr", "received", {"reference": p.idempotency_key, "state": "done"})

    # The worker finds the handler through the registry; the hint only makes the payout due.
    assert inbox.process_event(rt, event_id) == f"payout {p.id} (submitted) due for a check now"
    assert the_payout(rt).state == "submitted"
    assert engine.submit_due(rt) == {"succeeded": 1}  # find() asked the courier
    assert engine.complete_due(rt) == 1
    p = the_payout(rt)
    assert p.state == "succeeded" and p.provider_ref == settled["id"]
    assert courier_server.engine.executed == {p.idempotency_key: 1}
    assert premium_sandbox.engine.bid(rid)["status"] == "success"


def test_the_fifth_providers_callbacks_are_refused_like_any_others(courier_runtime, db):
    client = create_app(courier_runtime, env={}).test_client()
    body = b'{"reference": "exsync-main-1", "state": "done"}'
    wrong = client.post("/webhooks/courier/cr", data=body, headers={"X-Courier-Token": "wrong"})
    unknown = client.post("/webhooks/courier/nope", data=body, headers={"X-Courier-Token": TOKEN})
    assert (wrong.status_code, wrong.get_json()) == (unknown.status_code, unknown.get_json()) == (
        403, {"error": "bad_token"})
    assert client.post("/webhooks/courier/cr", data=b"x" * (1 << 20)).status_code == 413
    with db.session() as s:
        assert s.execute(select(InboxEvent)).scalars().all() == []

    junk = client.post("/webhooks/courier/cr", data=b"[1]", headers={"X-Courier-Token": TOKEN})
    assert junk.status_code == 200 and junk.get_json()["kept_dead"] is True
    with db.session() as s:
        (ev,) = s.execute(select(InboxEvent)).scalars().all()
        assert (ev.state, ev.body, ev.payload) == ("dead", b"[1]", None)

    # Documented like every route, from the descriptor.
    app = client.application
    assert undocumented(app) == []
    op = document(app)["paths"]["/webhooks/courier/{provider}"]["post"]
    assert op["summary"] == "Courier callbacks" and {"200", "400", "403", "413", "429", "503"} <= set(op["responses"])


def test_the_config_schema_of_the_fifth_provider_names_its_keys(courier, tmp_path, premium_sandbox, database_url):
    def error(toml: str, **env_change) -> ConfigError:
        env = courier_env(tmp_path, premium_sandbox, database_url, None, "http://127.0.0.1:9", toml)
        env.update(env_change)
        with pytest.raises(ConfigError) as info:
            load_settings({k: v for k, v in env.items() if v is not None})
        return info.value

    assert error(COURIER_TOML.replace("priority = 2", "priority = 9")).key == "providers.cr.priority"
    assert error(COURIER_TOML.replace("priority = 2", 'colour = "red"')).key == "providers.cr.colour"
    assert error(COURIER_TOML.replace('token_env = "EXSYNC_TEST_COURIER_TOKEN"\n', "")).key == "providers.cr.token_env"
    missing = error(COURIER_TOML, EXSYNC_TEST_COURIER_TOKEN=None)
    assert missing.key == "EXSYNC_TEST_COURIER_TOKEN" and "providers.cr.token_env" in missing.problem
    unregistered = textwrap.dedent(COURIER_TOML).replace('type = "courier"', 'type = "pigeon"')
    assert error(unregistered).key == "providers.cr.type"


def test_the_sandbox_command_serves_the_fifth_provider(courier):
    from devtools import sandboxes

    assert "courier" in sandboxes.providers()
    app = sandboxes.build("courier", latency=0.0, error_rate=0.0, fail_after_commit_rate=0.0, seed=1)
    assert sandboxes.banner("courier", app, "http://127.0.0.1:9999")[1:] == [
        "  base_url: http://127.0.0.1:9999", f"  token: {TOKEN}"]


def test_inbox_dispatch_needs_no_import_side_effect():
    """A script that calls inbox.process_event without importing worker.tasks still finds every payout
    provider's handler (they were once registered by importing worker.payout_callbacks)."""
    code = ("import sys; from worker import inbox; "
            "assert all(inbox.handler_for(t) is not None for t in ('premium', 'gateway', 'paysera')); "
            "assert inbox.handler_for('zaleycash') is None and inbox.handler_for('nope') is None; "
            "assert 'worker.tasks' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
