"""The OpenAPI document: served, complete, and true of the live app (schemathesis against real gunicorn).

Also what only a real server shows: a body with broken chunked framing is a 400 on every receiver, with or
without credentials, and nothing is stored.
"""
from __future__ import annotations

import itertools
import json
import socket
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation.modes import GenerationMode
from sqlalchemy import text

from providers.gateway.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET
from providers.gateway.signing import sign_headers
from providers.paysera.callbacks import sign_event
from tests.support.config import API_TOKEN, WEBHOOK_TOKEN
from tests.support.hardening import record
from webhooks.openapi import document, undocumented

AUTH = {"Authorization": "Bearer " + API_TOKEN}
EXAMPLES = 100  # per operation and mode


def test_every_route_is_documented_and_the_document_is_served(edge_client):
    app = edge_client.application
    assert undocumented(app) == []
    doc = edge_client.get("/api/v1/openapi.json")
    assert doc.status_code == 200
    body = doc.get_json()
    assert body["openapi"].startswith("3.1")
    assert body == json.loads(json.dumps(document(app)))
    served = {(rule.rule, m) for rule in app.url_map.iter_rules() for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert len(served) == sum(len(ops) for ops in body["paths"].values())


def _prepare(case, authenticate: bool, paysera_key) -> dict:
    """Credentials for half the cases (the other half are strangers); returns the headers to send."""
    path = case.operation.path
    if not authenticate:
        return {}
    if path.startswith("/webhooks/premium/"):
        case.path_parameters = {**(case.path_parameters or {}), "exchanger": "main", "token": WEBHOOK_TOKEN}
    elif path.startswith("/webhooks/gateway/"):
        case.path_parameters = {**(case.path_parameters or {}), "provider": "gw"}
    elif path.startswith("/webhooks/paysera/"):
        case.path_parameters = {**(case.path_parameters or {}), "provider": "ps"}
        if isinstance(case.body, dict) and isinstance(case.body.get("event"), str):
            try:
                case.body = {**case.body, "sign": sign_event(paysera_key, case.body["event"])}
            except UnicodeEncodeError:  # a lone surrogate cannot be signed: sent unsigned
                pass
    return dict(AUTH)


def _signed_gateway_call(case, base_url: str) -> requests.Response:
    """The gateway signs the exact bytes it sends: serialise, sign, send."""
    raw = json.dumps(case.body).encode()
    target = case.formatted_path
    signed = sign_headers(DEFAULT_API_KEY, DEFAULT_SECRET, "POST", target, raw)
    return requests.post(base_url + target, data=raw, timeout=30,
                         headers={**signed, "Content-Type": "application/json"})


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_live_app_keeps_its_document(live_web, paysera_signing_key, mode):
    """Generated requests (valid and invalid by the document) against real gunicorn: every answer has a
    documented status and matches its schema, and none is a 5xx (Postgres and Redis are up)."""
    schema = schemathesis.openapi.from_url(live_web.url + "/api/v1/openapi.json")
    statuses: Counter = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    served = requests.get(live_web.url + "/api/v1/openapi.json", timeout=10).json()["paths"]
    # schemathesis leaves out the operation that serves the document itself
    assert len(operations) == sum(len(methods) for methods in served.values()) - 1 >= 8
    turn = itertools.count()
    for operation in operations:
        spec = served[operation.path][operation.method.lower()]
        if mode is GenerationMode.NEGATIVE and not (spec.get("parameters") or spec.get("requestBody")):
            continue  # nothing a request to it could get wrong (GET /healthz)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.generate])
        def run(case):
            headers = _prepare(case, next(turn) % 2 == 0, paysera_signing_key[0])
            # Signed only in positive mode: a negative case may be negative by its missing headers.
            if (mode is GenerationMode.POSITIVE and case.operation.path.startswith("/webhooks/gateway/")
                    and headers and case.media_type == "application/json"):
                resp = _signed_gateway_call(case, live_web.url)
                case.validate_response(resp)
            else:
                resp = case.call_and_validate(headers=headers, timeout=30)
            statuses[resp.status_code] += 1
            assert resp.status_code < 500, (case.operation.path, resp.status_code, resp.text[:500])

        try:
            run()
        except Exception as exc:  # the server's own account of a failure is in its log
            log = live_web.log.read_text(errors="replace")[-4000:]
            what = f"{operation.method.upper()} {operation.path}"
            raise AssertionError(f"{what} failed; server log tail:\n{log}") from exc
    record("schemathesis_" + mode.value, {"operations": len(operations), "requests": sum(statuses.values()),
                                           "statuses": dict(sorted(statuses.items()))})


# -- what only a real server shows -------------------------------------------------------------------


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


@pytest.mark.parametrize("path", [f"/webhooks/premium/main/{WEBHOOK_TOKEN}", "/webhooks/premium/main/wrong",
                                  "/webhooks/gateway/gw", "/webhooks/paysera/ps", "/api/v1/bids"])
@pytest.mark.parametrize("framing", [b"zz\r\nbid_id=1\r\n0\r\n\r\n", b"5\r\nbid_id=1&status=new\r\n0\r\n\r\n",
                                     b"ffffffffffffffffffff\r\nx\r\n", b"3\r\nabc"])
def test_broken_chunked_bodies_are_400_and_store_nothing(live_web, db, path, framing):
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n"
               "Connection: close\r\n\r\n").encode() + framing
    answer = _raw_request(live_web.port, request)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 403), answer[:300]  # 403: the wrong token is refused before the body is read
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM inbox_events")).scalar_one() == 0
    # The server is still up for the next request.
    assert requests.get(live_web.url + "/healthz", timeout=5).status_code == 200
