"""POST /webhooks/gateway/<provider> and /webhooks/paysera/<provider>: verified, stored before the 2xx,
handled as a hint (the payout is made due and re-read from the provider), refused and never stored when
the signature, timestamp, key or body is wrong. Real Postgres, sandboxes over HTTP."""
from __future__ import annotations

import json
import time
import tomllib

import pytest
from sqlalchemy import select

from core.config import ConfigError
from core.payout_config import load_payout_config
from core.runtime import Runtime
from models import InboxEvent
from models.db import Database
from providers.gateway.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET
from providers.gateway.signing import sign_headers
from providers.sandbox import serve
from tests.support.payouts import CARD, PS_ACCOUNT, install_payouts, mirror_bid, payout_env, payouts
from webhooks.app import create_app
from worker import inbox
from worker.payouts import engine

GW_PATH = "/webhooks/gateway/gw"


def gw_toml(gw_url: str, callback_url: str | None = None) -> str:
    cb = f'callback_url = "{callback_url}"' if callback_url else ""
    return f"""
[payouts]
lease_seconds = 30
check_ladder = [15, 60]

[providers.zc]
type = "zaleycash"
base_url = "http://127.0.0.1:9"
secret_key_env = "EXSYNC_TEST_ZC_SECRET"

[providers.gw]
type = "gateway"
base_url = "{gw_url}"
api_key_env = "EXSYNC_TEST_GW_KEY"
secret_env = "EXSYNC_TEST_GW_SECRET"
timeout = 1.5
{cb}

[routes.main]
trigger_statuses = ["realpay"]

[[routes.main.rules]]
currency = "RUB"
provider = "gw"
destination_field = "account2"
"""


def events(db) -> list[InboxEvent]:
    with db.session() as s:
        return list(s.execute(select(InboxEvent).order_by(InboxEvent.id)).scalars())


def signed(body: bytes, *, secret: str = DEFAULT_SECRET, path: str = GW_PATH, ts: int | None = None) -> dict:
    h = sign_headers(DEFAULT_API_KEY, secret, "POST", path, body, timestamp=ts)
    return {**h, "Content-Type": "application/json"}


def gw_body(external_id: str = "exsync-main-1", status: str = "success") -> bytes:
    return json.dumps({"external_id": external_id, "status": status, "amount": "100.00", "currency": "RUB",
                       "updated_at": "2024-01-01T00:00:00Z"}).encode()


# -- gateway: end to end through a real server and the sandbox's own signed callbacks -----------------


def test_gateway_callback_makes_the_payout_due_and_the_engine_settles_it(runtime, db, broker, premium_sandbox,
                                                                        gw_sandbox):
    srv = serve(create_app(runtime, env={}), port=0)
    try:
        install_payouts(runtime, gw_toml(gw_sandbox.url, srv.url + GW_PATH + "?src=gw"))
        rid = mirror_bid(runtime, premium_sandbox, direction_id=2, fields={"account2": CARD})
        assert engine.create_due_payouts(runtime) == 1
        assert engine.submit_due(runtime) == {"submitted": 1}
        (p,) = payouts(runtime)
        assert p.state == "submitted" and p.next_attempt_at > p.updated_at  # its check waits on the ladder

        gw_sandbox.engine.process_all()  # created -> processing -> success, each change a signed callback
        assert gw_sandbox.engine.flush_callbacks(10)
        log = [c for c in gw_sandbox.engine.callback_log if c["external_id"] == p.idempotency_key]
        assert log and all(c["http_status"] == 202 for c in log), log
        evs = events(db)
        assert len(evs) == len(log)
        assert {(e.provider, e.endpoint, e.state) for e in evs} == {("gateway", "gw", "received")}
        assert evs[-1].payload["external_id"] == p.idempotency_key and evs[-1].payload["status"] == "success"
        assert evs[-1].headers[":path"] == GW_PATH + "?src=gw" and "X-Api-Key" not in evs[-1].headers

        # Nothing is settled from the callback itself: the handler only makes the payout due.
        results = [inbox.process_event(runtime, e.id) for e in evs]
        assert any("due for a check now" in r for r in results), results
        (p,) = payouts(runtime)
        assert p.state == "submitted" and p.checks == 0
        assert engine.submit_due(runtime) == {"succeeded": 1}  # find() re-read the truth
        assert engine.complete_due(runtime) == 1
        (p,) = payouts(runtime)
        assert p.state == "succeeded" and gw_sandbox.engine.executed(p.idempotency_key) == 1
        assert premium_sandbox.engine.bid(rid)["status"] == "success"
        # A late duplicate is harmless: processed with a note, nothing moves.
        again = inbox.process_event(runtime, _store_gateway(runtime, db, p.idempotency_key))
        assert again == f"payout {p.id} is succeeded: nothing to do"
    finally:
        srv.shutdown()


def _store_gateway(runtime, db, key: str) -> int:
    c = create_app(runtime, env={}).test_client()
    body = gw_body(key)
    resp = c.post(GW_PATH, data=body, headers=signed(body))
    assert resp.status_code == 202
    return resp.get_json()["event"]


# -- gateway: refusals ---------------------------------------------------------------------------------


def test_gateway_refusals_store_nothing(runtime, db, broker):
    install_payouts(runtime, gw_toml("http://127.0.0.1:9"))
    c = create_app(runtime, env={}).test_client()
    body = gw_body()

    wrong = c.post(GW_PATH, data=body, headers=signed(body, secret="not-the-secret"))
    assert wrong.status_code == 401
    assert wrong.get_json()["code"] == "unauthorized" and wrong.get_json()["error"]["code"] == "unauthorized"
    stale = c.post(GW_PATH, data=body, headers=signed(body, ts=int(time.time()) - 1000))
    assert stale.status_code == 401
    changed = c.post(GW_PATH, data=gw_body(status="failed"), headers=signed(body))
    assert changed.status_code == 401
    other_path = c.post(GW_PATH, data=body, headers=signed(body, path="/webhooks/gateway/other"))
    assert other_path.status_code == 401
    unsigned = c.post(GW_PATH, data=body, content_type="application/json")
    assert unsigned.status_code == 401
    assert events(db) == []

    headers = signed(body)
    assert c.post(GW_PATH, data=body, headers=headers).status_code == 202
    replay = c.post(GW_PATH, data=body, headers=headers)
    assert replay.status_code == 401
    assert len(events(db)) == 1

    # An unknown name (or one that is not a gateway) answers exactly as a wrong key: names cannot be probed.
    wrong_key = c.post(GW_PATH, data=body, headers={**signed(body), "X-API-Key": "not-the-key"})
    for name in ("nope", "zc"):
        r = c.post(f"/webhooks/gateway/{name}", data=body, headers=signed(body, path=f"/webhooks/gateway/{name}"))
        assert (r.status_code, r.get_json()) == (wrong_key.status_code, wrong_key.get_json())
        assert r.status_code == 401
    assert c.get(GW_PATH).status_code == 405
    big = b"{" + b" " * runtime.settings.webhook_max_body + b"}"
    assert c.post(GW_PATH, data=big, headers=signed(big)).status_code == 413
    # Signed, but not a payout object: kept dead for a person, never processed, and acknowledged (the
    # gateway retries until 2xx: a 4xx would bring the same unusable event back forever).
    junk = b"[1, 2]"
    bad = c.post(GW_PATH, data=junk, headers=signed(junk))
    assert bad.status_code == 202 and bad.get_json()["state"] == "dead"
    assert "not a JSON object" in bad.get_json()["message"]
    assert [e.state for e in events(db)] == ["received", "dead"]
    assert events(db)[-1].body == junk


def test_gateway_unknown_key_is_processed_with_a_note(runtime, db, broker):
    install_payouts(runtime, gw_toml("http://127.0.0.1:9"))
    event_id = _store_gateway(runtime, db, "exsync-main-404")
    assert inbox.process_event(runtime, event_id) == "no payout for external_id 'exsync-main-404' (ignored)"
    (ev,) = events(db)
    assert ev.state == "processed"


def test_gateway_postgres_down_is_503(settings):
    dead_db = Database("postgresql+psycopg2://u@127.0.0.1:1/x")
    try:
        rt = Runtime(settings, _db=dead_db)
        install_payouts(rt, gw_toml("http://127.0.0.1:9"))
        c = create_app(rt, env={}).test_client()
        body = gw_body()
        resp = c.post(GW_PATH, data=body, headers=signed(body))
        assert resp.status_code == 503 and resp.get_json() == {"error": "storage_unavailable"}
        assert int(resp.headers["Retry-After"]) > 0
    finally:
        dead_db.dispose()


# -- Paysera ---------------------------------------------------------------------------------------------


def install_paysera(runtime, url: str, public_key_pem: str | None) -> None:
    from providers.paysera.sandbox import DEFAULT_MAC_ID, DEFAULT_MAC_KEY

    key = f"callback_public_key_pem = '''{public_key_pem}'''" if public_key_pem else ""
    doc = tomllib.loads(f"""
[exchangers.main]
base_url = "http://127.0.0.1:1"

[payouts]
lease_seconds = 30
check_ladder = [15, 60]

[providers.ps]
type = "paysera"
base_url = "{url}"
mac_id = "{DEFAULT_MAC_ID}"
mac_key_env = "EXSYNC_TEST_PS_MAC_KEY"
timeout = 1.5
{key}

[routes.main]
trigger_statuses = ["realpay"]

[[routes.main.rules]]
currency = "RUB"
provider = "ps"
destination_field = "account2"
""")
    runtime.payout_config = load_payout_config(doc, {**payout_env(), "EXSYNC_TEST_PS_MAC_KEY": DEFAULT_MAC_KEY})
    runtime.forget_rails()


def _pem(sb) -> str:
    pem = sb.engine.public_key_pem
    return pem.decode() if isinstance(pem, bytes) else pem


def test_paysera_signed_callback_is_stored_and_handled(runtime, db, broker, premium_sandbox, ps_sandbox):
    install_paysera(runtime, ps_sandbox.url, _pem(ps_sandbox))
    ps_sandbox.engine.knobs.update(processing_delay=0.3)
    mirror_bid(runtime, premium_sandbox, direction_id=2, amount="100", fields={"account2": PS_ACCOUNT})
    assert engine.create_due_payouts(runtime) == 1
    assert engine.submit_due(runtime) == {"submitted": 1}
    (p,) = payouts(runtime)
    deadline = time.monotonic() + 5
    while ps_sandbox.engine.transfer(p.provider_ref)["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    data = ps_sandbox.engine.transfer(p.provider_ref)
    event = json.dumps({"type": "done", "object": "transfer", "data": data}, separators=(",", ":"), default=str)

    c = create_app(runtime, env={}).test_client()
    resp = c.post("/webhooks/paysera/ps", data={"event": event, "sign": ps_sandbox.engine.sign_event(event)})
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "OK"
    (ev,) = events(db)
    assert (ev.provider, ev.endpoint, ev.state) == ("paysera", "ps", "received")
    assert ev.payload["transfer_id"] == p.provider_ref and ev.payload["type"] == "done"
    assert inbox.process_event(runtime, ev.id) == f"payout {p.id} (submitted) due for a check now"
    assert engine.submit_due(runtime) == {"succeeded": 1}
    (p,) = payouts(runtime)
    assert p.state == "succeeded" and ps_sandbox.engine.executed(p.provider_ref) == 1

    # Found by our key in the purpose when the transfer id is not ours (e.g. a re-created draft).
    other = json.dumps({"type": "done", "object": "transfer",
                        "data": {**data, "id": "999999"}}, separators=(",", ":"), default=str)
    resp = c.post("/webhooks/paysera/ps", data={"event": other, "sign": ps_sandbox.engine.sign_event(other)})
    assert resp.status_code == 200
    assert inbox.process_event(runtime, events(db)[-1].id) == f"payout {p.id} is succeeded: nothing to do"


def test_paysera_refusals_store_nothing(runtime, db, broker, ps_sandbox):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from providers.paysera.callbacks import sign_event

    install_paysera(runtime, ps_sandbox.url, _pem(ps_sandbox))
    c = create_app(runtime, env={}).test_client()
    event = json.dumps({"type": "done", "object": "transfer", "data": {"id": "1", "status": "done"}})
    good = ps_sandbox.engine.sign_event(event)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    url = "/webhooks/paysera/ps"
    r = c.post(url, data={"event": event, "sign": sign_event(other_key, event)})
    assert r.status_code == 401 and r.get_json() == {"error": "bad_signature"}
    assert c.post(url, data={"event": event.replace('"1"', '"2"'), "sign": good}).status_code == 401
    assert c.post(url, data={"event": event, "sign": "%%%"}).status_code == 401
    r = c.post(url, data={"event": event})
    assert r.status_code == 400 and r.get_json()["field"] == "sign"
    # An unknown name answers exactly as a wrong key: names cannot be probed.
    assert c.post("/webhooks/paysera/nope", data={"event": event, "sign": good}).get_json() == {
        "error": "bad_signature"}
    assert events(db) == []
    assert c.post(url, data={"event": event, "sign": good}).status_code == 200
    assert len(events(db)) == 1
    assert inbox.process_event(runtime, events(db)[0].id) == "no payout for transfer 1 (ignored)"

    install_paysera(runtime, ps_sandbox.url, None)
    # No callback key configured: refused like a bad signature (logged for the operator), nothing stored.
    r = c.post(url, data={"event": event, "sign": good})
    assert (r.status_code, r.get_json()) == (401, {"error": "bad_signature"})
    assert len(events(db)) == 1


def test_paysera_callback_key_config(tmp_path, ps_sandbox):
    from providers.paysera.sandbox import DEFAULT_MAC_KEY

    def load(extra: str):
        doc = tomllib.loads(f"""
[providers.ps]
type = "paysera"
base_url = "http://127.0.0.1:9"
mac_id = "m"
mac_key_env = "K"
{extra}
""")
        return load_payout_config(doc, {"K": DEFAULT_MAC_KEY}).providers["ps"]

    pem_file = tmp_path / "paysera.pem"
    pem_file.write_text(_pem(ps_sandbox))
    assert load(f'callback_public_key_file = "{pem_file}"').options["callback_public_key_pem"] == _pem(ps_sandbox)
    assert "callback_public_key_pem" not in load("").options
    with pytest.raises(ConfigError, match="callback_public_key_pem"):
        load('callback_public_key_pem = "not a key"')
    with pytest.raises(ConfigError, match="callback_public_key_file"):
        load(f'callback_public_key_file = "{tmp_path}/missing.pem"')
    with pytest.raises(ConfigError, match="not both"):
        load(f"callback_public_key_file = \"{pem_file}\"\ncallback_public_key_pem = '''{_pem(ps_sandbox)}'''")


# -- hardened edges (issue 6): hostile input once made a 500 or a 503 while Postgres was up --------------


@pytest.mark.parametrize("raw, reason", [
    (b'{"external_id": "exsync-main-1", "status": "success", "updated_at": 9223372036854775807}', "updated_at"),
    (b'{"external_id": "exsync-main-1", "status": "success", "updated_at": "9999-12-31T23:59:59-23:59"}',
     "updated_at"),
    (b'{"external_id": "exsync-main-1", "status": "success", "updated_at": 1e999999999}', "updated_at"),
    (b'{"external_id": "exsync-\\u0000", "status": "success"}', "external_id"),
    (b'{"external_id": "exsync-main-1", "status": "\\ud800"}', "status"),
    (b'{"external_id": "exsync-main-1", "status": "success", "failure_reason": "a\\u0000b"}', "failure_reason"),
    (b'{"external_id": "exsync-main-1", "status": "succ\\ness"}', "status"),
    (b"[" * 5000 + b"]" * 5000, "not JSON"),
    (b'{"status": "success"}', "external_id"),
    # JSON false is no id: it once became the text "False", a key nobody sent (found by the fuzz test)
    (b'{"external_id": false, "status": null, "updated_at": 0, "failure_reason": null}', "external_id"),
])
def test_gateway_signed_but_unusable_is_kept_dead_and_acknowledged(runtime, db, broker, raw, reason):
    install_payouts(runtime, gw_toml("http://127.0.0.1:9"))
    c = create_app(runtime, env={}).test_client()
    resp = c.post(GW_PATH, data=raw, headers=signed(raw))
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["state"] == "dead" and reason in resp.get_json()["message"]
    (ev,) = events(db)
    assert (ev.state, ev.payload, ev.body) == ("dead", None, raw)
    assert reason in ev.last_error
    assert broker.llen("exsync") == 0  # nothing to process: not enqueued


def test_paysera_lone_surrogate_is_400_before_any_signature_check(runtime, db, broker, ps_sandbox):
    install_paysera(runtime, ps_sandbox.url, _pem(ps_sandbox))
    c = create_app(runtime, env={}).test_client()
    for name in ("ps", "nope"):
        r = c.post(f"/webhooks/paysera/{name}", data=b'{"event":"\\ud800","sign":"AAAA"}',
                   content_type="application/json")
        assert r.status_code == 400 and r.get_json()["field"] == "event", r.get_json()
        r = c.post(f"/webhooks/paysera/{name}", data={"event": "a\x00b", "sign": "AAAA"})
        assert r.status_code == 400 and r.get_json()["field"] == "event"
    assert events(db) == []


@pytest.mark.parametrize("event", [
    '{"type": "done", "object": "transfer", "data": {"id": "1\\u0000", "status": "done"}}',
    '{"type": "done", "object": "transfer", "data": {"id": "1", "status": "\\udfff"}}',
    '{"type": "\\u0000", "object": "transfer", "data": {}}',
    "[1, 2]",
])
def test_paysera_signed_but_unusable_is_kept_dead_with_ok(runtime, db, broker, ps_sandbox, event):
    install_paysera(runtime, ps_sandbox.url, _pem(ps_sandbox))
    c = create_app(runtime, env={}).test_client()
    r = c.post("/webhooks/paysera/ps", data={"event": event, "sign": ps_sandbox.engine.sign_event(event)})
    assert (r.status_code, r.get_data()) == (200, b"OK")
    (ev,) = events(db)
    assert ev.state == "dead" and ev.payload is None and ev.last_error
    assert event.encode() in ev.body or b"event=" in ev.body
    assert broker.llen("exsync") == 0
