"""Property-based fuzzing of every HTTP surface (hypothesis), against real Postgres; the parsers alone are
tests/unit/test_fuzz_parsers.py.

For every generated request, whatever its bytes:
- no 5xx (Postgres and Redis are up, so even a 503 would be a bug);
- the answer matches what the OpenAPI document says for that route and status;
- an authenticated 2xx means the event is committed (received with its payload, or dead with its raw
  bytes and reason), byte for byte what was sent; an unauthenticated answer stores nothing;
- a 4xx from the bid API creates nothing on the engine and nothing in the mirror;
- what was accepted round-trips unchanged (payloads, request fields, amounts).
Each surface's request count and answers by status are recorded (tests/support/hardening.py) for the README.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import quote

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from providers import values
from providers.gateway.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET
from providers.gateway.signing import sign_headers
from providers.paysera.callbacks import sign_event
from tests.support.config import API_TOKEN, WEBHOOK_TOKEN
from tests.support.hardening import record
from tests.support.strategies import any_text, dumps, hostile_numbers, json_value
from webhooks.openapi import document

AUTH = {"Authorization": "Bearer " + API_TOKEN}
PREMIUM = f"/webhooks/premium/main/{WEBHOOK_TOKEN}"
USDT = "TXs8nT1yWq7mPdv6mFiV4uh6Qm3zAbc123"  # an account2 the sandbox's direction 1 accepts
FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def q(value: str) -> str:
    """Percent-encoded as a hostile sender would, lone surrogates included (as invalid UTF-8 bytes)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def post_raw(client, url: str, body: bytes, content_type: str | None, **kw):
    """POST exactly these bytes (the test client would build a form of its own from an empty body)."""
    return client.post(url, input_stream=io.BytesIO(body), content_length=len(body), content_type=content_type,
                       **kw)


# -- the document every answer must match ------------------------------------------------------------


class Conformance:
    """Validates answers against the app's own OpenAPI document; tallies statuses per surface."""

    def __init__(self, app) -> None:
        self.doc = document(app)
        self.statuses: dict[str, Counter] = {}
        self._validators: dict = {}

    def check(self, surface: str, template: str, method: str, resp) -> None:
        self.statuses.setdefault(surface, Counter())[resp.status_code] += 1
        assert resp.status_code < 500, (surface, resp.status_code, resp.get_data()[:500])
        op = self.doc["paths"][template][method]
        answer = op["responses"].get(str(resp.status_code))
        assert answer is not None, f"{method.upper()} {template}: {resp.status_code} is not documented"
        content = answer.get("content", {})
        mimetype = resp.mimetype
        assert mimetype in content, (template, resp.status_code, mimetype, list(content))
        if mimetype == "application/json":
            key = (template, method, str(resp.status_code))
            if key not in self._validators:
                schema = {**content[mimetype]["schema"], "components": self.doc["components"]}
                self._validators[key] = jsonschema_rs.validator_for(schema)
            self._validators[key].validate(resp.get_json())

    def record(self) -> None:
        for surface, counts in self.statuses.items():
            record(f"fuzz_{surface}", {"requests": sum(counts.values()), "statuses": dict(sorted(counts.items()))})


@pytest.fixture
def conformance(edge_client):
    c = Conformance(edge_client.application)
    yield c
    c.record()


def inbox_rows(db, after: int) -> list:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, provider, endpoint, state, payload, body, last_error FROM inbox_events "
                                 "WHERE id > :after ORDER BY id"), {"after": after}).mappings().all()
    return [SimpleNamespace(**{**r, "body": bytes(r["body"])}) for r in rows]


def last_inbox_id(db) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT coalesce(max(id), 0) FROM inbox_events")).scalar_one()


# -- the receivers ---------------------------------------------------------------------------------------

content_types = st.sampled_from(["application/x-www-form-urlencoded", "application/json", "multipart/form-data",
                                 "text/plain", "", "application/json; charset=latin-1"])
premium_forms = st.builds(
    lambda bid, status, extra: "&".join([f"bid_id={q(bid)}", f"status={q(status)}", *extra]).encode(),
    st.one_of(st.integers(-5, 2**64).map(str), hostile_numbers, any_text),
    st.one_of(st.sampled_from(["new", "payed", "realpay", "success", "my1"]), any_text),
    st.lists(st.builds(lambda k, v: f"{q(k)}={q(v)}", any_text, any_text), max_size=3))
premium_json = st.builds(lambda bid, status, extra: dumps({**extra, "bid_id": bid, "status": status}),
                         st.one_of(st.integers(-5, 2**64), json_value), st.one_of(any_text, json_value),
                         st.dictionaries(any_text, json_value, max_size=3))


premium_valid = st.builds(lambda bid, status: f"bid_id={bid}&status={status}".encode(), st.integers(1, 2**63 - 1),
                          st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"))


@FUZZ
@given(body=st.one_of(premium_valid, premium_forms, premium_json, st.binary(max_size=300)),
       content_type=st.one_of(st.just("application/x-www-form-urlencoded"), content_types), token_ok=st.booleans())
def test_premium_receiver(edge_client, db, conformance, body, content_type, token_ok):
    before = last_inbox_id(db)
    url = PREMIUM if token_ok else "/webhooks/premium/main/" + "x" * len(WEBHOOK_TOKEN)
    resp = post_raw(edge_client, url, body, content_type or None,
                    environ_base={"REMOTE_ADDR": "192.0.2.1" if token_ok else "192.0.2.2"})
    conformance.check("premium", "/webhooks/premium/{exchanger}/{token}", "post", resp)
    rows = inbox_rows(db, before)
    if not token_ok:
        assert resp.status_code in (403, 429) and rows == []
        return
    if resp.status_code == 202:
        (row,) = rows
        assert (row.state, row.body) == ("received", body) and row.id == resp.get_json()["event"]
        assert set(row.payload) == {"bid_id", "status"} and row.payload["bid_id"] >= 1
    elif resp.status_code == 400 and rows:
        (row,) = rows
        assert (row.state, row.payload, row.body) == ("dead", None, body) and row.last_error
    else:  # a body that could not be read as a form, or too large: nothing to keep
        assert resp.status_code in (400, 413) and rows == []


gateway_objects = st.one_of(
    st.builds(lambda eid, status, updated, reason: {"external_id": eid, "status": status, "updated_at": updated,
                                                    "failure_reason": reason},
              st.one_of(st.just("exsync-main-1"), any_text, json_value), st.one_of(any_text, json_value),
              st.one_of(st.integers(), any_text, st.just(2**63 - 1), st.just("9999-12-31T23:59:59-23:59"), json_value),
              st.one_of(st.none(), any_text)),
    json_value)


_SENT: set[str] = set()


@FUZZ
@given(payload=st.one_of(gateway_objects.map(dumps), st.binary(max_size=200)), signed=st.booleans())
def test_gateway_receiver(edge_client, db, conformance, payload, signed):
    before = last_inbox_id(db)
    path = "/webhooks/gateway/gw"
    headers = sign_headers(DEFAULT_API_KEY, DEFAULT_SECRET, "POST", path, payload) if signed else {}
    resp = post_raw(edge_client, path, payload, "application/json", headers=headers,
                    environ_base={"REMOTE_ADDR": "192.0.2.3" if signed else "192.0.2.4"})
    conformance.check("gateway", "/webhooks/gateway/{provider}", "post", resp)
    rows = inbox_rows(db, before)
    if not signed:
        assert resp.status_code in (401, 429) and rows == []
        return
    if headers["X-Signature"] in _SENT:  # the same signed bytes again within the window: a replay
        assert resp.status_code == 401 and resp.get_json()["message"] == "Replay" and rows == []
        return
    _SENT.add(headers["X-Signature"])
    assert resp.status_code == 202, resp.get_json()
    (row,) = rows
    assert row.body == payload and row.id == resp.get_json()["event"]
    if row.state == "received":
        assert resp.get_json().get("state") is None
        assert json.loads(payload)["external_id"] == row.payload["external_id"]  # round-trips unchanged
    else:
        assert row.state == "dead" and row.payload is None and row.last_error == resp.get_json()["message"]


@FUZZ
@given(event=st.one_of(json_value.map(lambda v: v if isinstance(v, str) else json.dumps(v, default=str)),
                       st.builds(lambda i, s: json.dumps({"type": "done", "object": "transfer",
                                                          "data": {"id": i, "status": s}}, default=str),
                                 json_value, json_value)),
       mode=st.sampled_from(["signed", "wrong", "form-junk"]))
def test_paysera_receiver(edge_client, db, conformance, paysera_signing_key, event, mode):
    before = last_inbox_id(db)
    try:
        sign = sign_event(paysera_signing_key[0], event) if mode == "signed" else "c2lnbg=="
    except UnicodeEncodeError:  # a lone surrogate in the event: nobody can sign it
        sign, mode = "c2lnbg==", "wrong"
    data = {"event": event, "sign": sign} if mode != "form-junk" else {"event": event}
    resp = edge_client.post("/webhooks/paysera/ps", data=data,
                            environ_base={"REMOTE_ADDR": "192.0.2.5" if mode == "signed" else "192.0.2.6"})
    conformance.check("paysera", "/webhooks/paysera/{provider}", "post", resp)
    rows = inbox_rows(db, before)
    if mode != "signed":
        assert resp.status_code in (400, 401, 429) and rows == []
        return
    if values.first_unclean(event) or not event:
        assert resp.status_code == 400 and rows == []
        return
    assert (resp.status_code, resp.get_data()) == (200, b"OK")
    (row,) = rows
    assert row.state in ("received", "dead")
    assert (row.payload is None) == (row.state == "dead")


# -- the bid API and the operator's pages -------------------------------------------------------------------

valid_creates = st.fixed_dictionaries(
    {"exchanger": st.just("main"), "direction_id": st.sampled_from([1, 2, 3]),
     "calc_amount": st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100"), places=2).map(str),
     "fields": st.fixed_dictionaries({"account2": st.one_of(st.just(USDT), st.text(
         st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30))})},
    optional={"api_id": st.from_regex(r"\Afz-[a-z0-9]{1,12}\Z")}).map(dumps)
create_bodies = st.one_of(
    valid_creates,
    st.fixed_dictionaries({"exchanger": st.one_of(st.just("main"), any_text),
                           "direction_id": st.one_of(st.sampled_from([1, 2, 3]), st.integers(), json_value),
                           "calc_amount": st.one_of(st.sampled_from(["0.01", "100.50", 5]), hostile_numbers,
                                                    json_value)},
                          optional={"calc_action": st.one_of(st.sampled_from([1, 2]), json_value),
                                    "api_id": st.one_of(st.from_regex(r"\Afz-[a-z0-9]{1,12}\Z"), any_text),
                                    "fields": st.one_of(st.fixed_dictionaries({"account2": any_text}),
                                                        st.dictionaries(any_text, any_text, max_size=3), json_value),
                                    "extra": json_value}).map(dumps),
    json_value.map(dumps), st.binary(max_size=200))


@FUZZ
@given(body=create_bodies)
def test_bid_api_create(edge_client, db, conformance, premium_sandbox, body):
    engine_before = len(premium_sandbox.engine.truth())
    with db.engine.connect() as conn:
        mirror_before = conn.execute(text("SELECT count(*) FROM bids")).scalar_one()
    resp = post_raw(edge_client, "/api/v1/bids", body, "application/json", headers=AUTH)
    conformance.check("api_create", "/api/v1/bids", "post", resp)
    with db.engine.connect() as conn:
        mirror_after = conn.execute(text("SELECT count(*) FROM bids")).scalar_one()
    if resp.status_code in (200, 201):
        sent = json.loads(body, parse_float=Decimal)
        bid = resp.get_json()["bid"]
        assert bid["request_fields"] == (sent.get("fields") or None) or resp.status_code == 200
        assert mirror_after == mirror_before + (resp.status_code == 201)
    else:
        assert mirror_after == mirror_before
        if resp.status_code == 400:
            assert len(premium_sandbox.engine.truth()) == engine_before  # nothing reached the engine


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["limit", "offset", "exchanger", "status", "x"]),
                             st.one_of(any_text, hostile_numbers, st.integers(-5, 10**21).map(str)), max_size=4))
def test_bid_api_list(edge_client, db, conformance, query):
    qs = "&".join(f"{q(k)}={q(v)}" for k, v in query.items())
    resp = edge_client.get("/api/v1/bids?" + qs, headers=AUTH)
    conformance.check("api_list", "/api/v1/bids", "get", resp)
    assert resp.status_code in (200, 400)


@pytest.fixture
def one_bid(edge_client, premium_sandbox) -> int:
    resp = edge_client.post("/api/v1/bids", headers=AUTH, json={"exchanger": "main", "direction_id": 1,
                                                                "calc_amount": "0.01", "fields": {"account2": USDT}})
    assert resp.status_code == 201
    return resp.get_json()["bid"]["remote_id"]


@FUZZ
@given(exchanger=st.one_of(st.just("main"), any_text), remote_id=st.one_of(hostile_numbers, any_text,
                                                                           st.integers(-5, 2**70).map(str)))
def test_bid_api_detail(edge_client, db, conformance, one_bid, exchanger, remote_id):
    remote_id = str(one_bid) if remote_id == "0" else remote_id  # the one bid that exists, now and then
    path = f"/api/v1/bids/{q(exchanger)}/{q(remote_id)}"
    resp = edge_client.get(path, headers=AUTH)
    # (A path the router does not match at all gets the app-wide 404, the same documented error body.)
    conformance.check("api_detail", "/api/v1/bids/{exchanger}/{remote_id}", "get", resp)
    assert resp.status_code in (200, 404)


@FUZZ
@given(path=st.sampled_from(["/stuck", "/stuck.json", "/api/v1/openapi.json", "/healthz", "/readyz", "/metrics"]),
       query=st.dictionaries(any_text, any_text, max_size=3),
       authorization=st.one_of(st.none(), st.just(AUTH["Authorization"]), any_text.map(lambda t: "Basic " + t),
                               any_text.map(lambda t: "Bearer " + t)))
def test_operator_pages(edge_client, db, conformance, path, query, authorization):
    qs = "&".join(f"{q(k)}={q(v)}" for k, v in query.items())
    headers = {}
    if authorization is not None:
        try:
            authorization.encode("latin-1")
        except UnicodeEncodeError:
            authorization = authorization.encode("utf-8", "surrogatepass").decode("latin-1")
        headers["Authorization"] = authorization.replace("\r", "").replace("\n", "")  # HTTP cannot carry them
    resp = edge_client.get(path + ("?" + qs if qs else ""), headers=headers)
    conformance.check("operator_pages", path, "get", resp)
