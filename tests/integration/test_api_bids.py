"""The bid API against the real sandbox: create (idempotent), validation, provider failures, reads."""
from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import select

from core.runtime import Runtime
from models import Bid, BidStatusChange
from providers.premium.sandbox import DEFAULT_KEY
from tests.support.config import API_TOKEN, WEBHOOK_TOKEN
from webhooks.app import create_app

AUTH = {"Authorization": "Bearer " + API_TOKEN}
USDT = "TXs8nT1yWq7mPdv6mFiV4uh6Qm3zAbc123"


def create(client, body, headers=AUTH):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/v1/bids", data=data, content_type="application/json", headers=headers)


def good(**over):
    body = {"exchanger": "main", "direction_id": 1, "calc_amount": "0.01", "calc_action": 1,
            "fields": {"account2": USDT, "cf6": "buyer@example.com"}}
    body.update(over)
    return body


def no_secrets(resp):
    text = resp.get_data(as_text=True)
    assert DEFAULT_KEY not in text and WEBHOOK_TOKEN not in text and API_TOKEN not in text


def test_create_bid_happy_path(client, db, premium_sandbox, runtime):
    resp = create(client, good(api_id="order-1001"))
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert out["created"] is True and out["api_id"] == "order-1001"
    bid = out["bid"]
    assert bid["exchanger"] == "main" and bid["status"] == "new" and bid["api_id"] == "order-1001"
    assert isinstance(bid["amount_give"], str) and isinstance(bid["amount_get"], str)
    assert bid["amount_give"].startswith("0.01")
    assert [h["source"] for h in bid["history"]] == ["create"]
    no_secrets(resp)

    # The engine got our callback URL; we did not store it.
    remote = premium_sandbox.engine.bid(bid["remote_id"])
    assert remote["callback_url"] == runtime.settings.callback_url("main")
    assert remote["api_id"] == "order-1001"
    with db.session() as s:
        row = s.execute(select(Bid).where(Bid.remote_id == bid["remote_id"])).scalar_one()
        history = s.execute(select(BidStatusChange).where(BidStatusChange.bid_id == row.id)).scalars().all()
    assert row.created_via == "exsync"
    assert row.request_fields == {"account2": USDT, "cf6": "buyer@example.com"}
    assert [(h.from_status, h.to_status, h.source) for h in history] == [(None, "new", "create")]
    assert WEBHOOK_TOKEN not in repr(row.request_fields)


def test_api_id_is_generated_and_returned(client, db):
    resp = create(client, good())
    assert resp.status_code == 201
    assert resp.get_json()["api_id"].startswith("exs-")
    assert resp.get_json()["bid"]["api_id"] == resp.get_json()["api_id"]


def test_same_api_id_twice_returns_the_same_bid(client, db, premium_sandbox):
    first = create(client, good(api_id="order-2"))
    second = create(client, good(api_id="order-2"))
    assert first.status_code == 201 and second.status_code == 200
    assert second.get_json()["created"] is False
    assert second.get_json()["bid"]["remote_id"] == first.get_json()["bid"]["remote_id"]
    assert len(premium_sandbox.engine.truth()) == 1


def test_api_id_known_to_the_engine_only_is_found_and_stored(client, db, premium_sandbox):
    """A create whose answer was lost: the engine has the bid, our mirror does not."""
    remote_id = premium_sandbox.engine.add_bid(direction_id=1, amount="0.02", api_id="order-lost")
    resp = create(client, good(api_id="order-lost"))
    assert resp.status_code == 200, resp.get_json()
    out = resp.get_json()
    assert out["created"] is False and out["bid"]["remote_id"] == remote_id
    with db.session() as s:
        row = s.execute(select(Bid).where(Bid.remote_id == remote_id)).scalar_one()
    assert row.api_id == "order-lost" and row.created_via == "exsync"


def test_unknown_outcome_then_retry_with_the_same_api_id(client, db, premium_sandbox, settings):
    ex = dataclasses.replace(settings.exchangers["main"], timeout=0.3)
    slow = create_app(Runtime(dataclasses.replace(settings, exchangers={"main": ex}), _db=db), env={})
    premium_sandbox.engine.knobs.latency = 0.6
    resp = create(slow.test_client(), good(api_id="order-slow"))
    assert resp.status_code == 504
    out = resp.get_json()
    assert out["error"] == "outcome_unknown" and out["api_id"] == "order-slow"
    assert "order-slow" in out["message"]
    premium_sandbox.engine.knobs.latency = 0
    retry = create(client, good(api_id="order-slow"))
    assert retry.status_code == 200, retry.get_json()
    assert len(premium_sandbox.engine.truth()) == 1  # created once, found on the retry


def test_engine_validation_errors_come_back_field_by_field(client, db):
    resp = create(client, good(calc_amount="0.00001", fields={"cf6": "x@example.com"}))
    assert resp.status_code == 422
    out = resp.get_json()
    assert out["error"] == "validation"
    assert out["fields"]["account2"] == "field is required"
    assert out["fields"]["sum1"] == "amount is less than minimum"
    assert out["api_id"]


@pytest.mark.parametrize("fields, name", [
    ({"Account2": "x"}, "Account2"),
    ({"account2": "x" * 501}, "account2"),
    ({"account2": 12345}, "account2"),
    ({"callback_url": "http://evil.example"}, "callback_url"),
])
def test_local_field_checks_are_422_naming_the_field(client, db, premium_sandbox, fields, name):
    resp = create(client, good(fields=fields))
    assert resp.status_code == 422
    assert name in resp.get_json()["fields"]
    assert premium_sandbox.engine.truth() == {}


@pytest.mark.parametrize("body, field", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b"", None),
    (good(calc_amount="abc"), "calc_amount"),
    (good(calc_amount="-5"), "calc_amount"),
    (good(calc_amount="0"), "calc_amount"),
    (good(calc_amount="NaN"), "calc_amount"),
    (good(calc_amount=True), "calc_amount"),
    (good(direction_id="1"), "direction_id"),
    (good(calc_action=9), "calc_action"),
    (good(api_id="has space"), "api_id"),
    (good(api_id="x" * 101), "api_id"),
    (good(fields=["account2"]), "fields"),
    (good(exchanger=5), "exchanger"),
])
def test_malformed_requests_are_400(client, db, body, field):
    resp = create(client, body)
    assert resp.status_code == 400
    out = resp.get_json()
    assert out["error"] == "bad_request"
    if field:
        assert field in out["fields"]


def test_amount_as_json_number_is_exact(client, db):
    resp = create(client, b'{"exchanger": "main", "direction_id": 1, "calc_amount": 0.015, '
                          b'"fields": {"account2": "' + USDT.encode() + b'"}}')
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["bid"]["amount_give"].startswith("0.015")


def test_auth(client, db, settings):
    assert create(client, good(), headers={}).status_code == 401
    wrong = create(client, good(), headers={"Authorization": "Bearer " + "x" * len(API_TOKEN)})
    assert wrong.status_code == 401 and wrong.get_json() == {"error": "unauthorized"}
    assert client.get("/api/v1/bids").status_code == 401
    off = create_app(Runtime(dataclasses.replace(settings, api_token=None), _db=db), env={}).test_client()
    resp = create(off, good())
    assert resp.status_code == 404 and resp.get_json() == {"error": "api_disabled"}


def test_unknown_exchanger_and_direction_are_404(client, db):
    resp = create(client, good(exchanger="nope"))
    assert resp.status_code == 404 and resp.get_json() == {"error": "unknown_exchanger"}
    resp = create(client, good(direction_id=999))
    assert resp.status_code == 404 and resp.get_json()["error"] == "direction_not_found"


def test_maintenance_is_503_with_retry_after(client, db, premium_sandbox):
    premium_sandbox.engine.knobs.maintenance = True
    resp = create(client, good(api_id="order-m"))
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "provider_unavailable" and resp.get_json()["api_id"] == "order-m"
    assert int(resp.headers["Retry-After"]) > 0


def test_provider_refusing_our_key_is_502_without_the_key(client, db, premium_sandbox):
    premium_sandbox.engine.knobs.maintenance = "api"
    resp = create(client, good())
    assert resp.status_code == 502
    assert resp.get_json()["error"] == "provider_auth"
    no_secrets(resp)


def test_list_and_detail(client, db):
    a = create(client, good(api_id="order-a")).get_json()["bid"]
    b = create(client, good(api_id="order-b", calc_amount="0.02")).get_json()["bid"]
    listed = client.get("/api/v1/bids?exchanger=main&limit=10", headers=AUTH)
    assert listed.status_code == 200
    assert [x["remote_id"] for x in listed.get_json()["bids"]] == [b["remote_id"], a["remote_id"]]
    assert client.get("/api/v1/bids?status=success", headers=AUTH).get_json()["bids"] == []
    assert client.get("/api/v1/bids?limit=abc", headers=AUTH).status_code == 400
    assert client.get("/api/v1/bids?limit=100000", headers=AUTH).status_code == 400

    detail = client.get(f"/api/v1/bids/main/{a['remote_id']}", headers=AUTH)
    assert detail.status_code == 200
    got = detail.get_json()["bid"]
    assert got["api_id"] == "order-a"
    assert [h["source"] for h in got["history"]] == ["create"]
    assert got["poll"]["state"] == "active"
    assert client.get("/api/v1/bids/main/999999", headers=AUTH).status_code == 404
    assert client.get(f"/api/v1/bids/main/{2**70}", headers=AUTH).status_code == 404
    no_secrets(detail)


def test_postgres_down_is_503_with_the_api_id(settings):
    from models.db import Database

    dead_db = Database("postgresql+psycopg2://u@127.0.0.1:1/x")
    try:
        c = create_app(Runtime(settings, _db=dead_db), env={}).test_client()
        resp = create(c, good())
        assert resp.status_code == 503
        assert resp.get_json()["error"] == "storage_unavailable" and resp.get_json()["api_id"].startswith("exs-")
    finally:
        dead_db.dispose()


# -- hardened edges (issue 6): each input once made a 500, a lost field or a broken retry ---------------

@pytest.mark.parametrize("raw, field", [
    ('{"exchanger": "main", "direction_id": 1, "calc_amount": "1", "fields": {"account2": "a\\u0000b"}}',
     "body.fields.account2"),
    ('{"exchanger": "main", "direction_id": 1, "calc_amount": "1", "fields": {"account2": "\\ud800"}}',
     "body.fields.account2"),
    ('{"exchanger": "main\\u0000", "direction_id": 1, "calc_amount": "1"}', "body.exchanger"),
    ('{"exchanger": "main", "direction_id": 1, "calc_amount": 1e99999999}', "calc_amount"),
    ('{"exchanger": "main", "direction_id": 1, "calc_amount": 1e999999999999999999}', "calc_amount"),
    ('{"exchanger": "main", "direction_id": 1, "calc_amount": "1e99999999"}', "calc_amount"),
    ('{"exchanger": "main", "direction_id": 1, "calc_amount": NaN}', "body"),
    ('{"exchanger": "main", "direction_id": 1, "calc_amount": "1", "calc_action": 1.0}', "calc_action"),
    ('{"exchanger": "main", "direction_id": 1, "calc_amount": "1", "api_id": "order-7\\n"}', "api_id"),
    ('{"exchanger": "main", "direction_id": ' + "9" * 5000 + ', "calc_amount": "1"}', "body"),
])
def test_hostile_create_requests_are_400_and_reach_no_engine(client, db, premium_sandbox, raw, field):
    resp = create(client, raw.encode())
    assert resp.status_code == 400, resp.get_json()
    assert field in resp.get_json()["fields"]
    assert premium_sandbox.engine.truth() == {}


def test_field_name_with_a_trailing_newline_is_refused(client, db, premium_sandbox):
    resp = create(client, good(fields={"account2\n": USDT}))
    assert resp.status_code == 422 and "account2\n" in resp.get_json()["fields"]
    assert premium_sandbox.engine.truth() == {}


def test_same_api_id_with_other_fields_is_a_conflict(client, db, premium_sandbox):
    assert create(client, good(api_id="order-77")).status_code == 201
    again = create(client, good(api_id="order-77", fields={"account2": "another-wallet"}))
    assert again.status_code == 409 and again.get_json()["error"] == "api_id_conflict"
    assert len(premium_sandbox.engine.truth()) == 1


def test_retry_after_a_sweep_mirrored_the_bid_stores_its_fields(client, db, premium_sandbox, runtime):
    # The engine created the bid but storing our answer failed (Postgres was down); a sweep then mirrored
    # it without our request fields. The caller's retry with the same api_id must not lose them.
    from worker import sweep

    premium_sandbox.engine.add_bid(api_id="order-88", fields=good()["fields"])
    sweep.sweep_exchanger(runtime, "main")
    with db.session() as s:
        assert s.execute(select(Bid.request_fields).where(Bid.api_id == "order-88")).scalar_one() is None
    resp = create(client, good(api_id="order-88"))
    assert resp.status_code == 200 and resp.get_json()["created"] is False
    assert resp.get_json()["bid"]["request_fields"] == good()["fields"]


@pytest.mark.parametrize("query", ["limit=²", "limit=٣", "limit=0", "offset=99999999999999999999",
                                   "offset=-1", "status=a%00b", "exchanger=%00", "limit=1%00"])
def test_list_query_values_are_checked(client, db, query):
    resp = client.get(f"/api/v1/bids?{query}", headers=AUTH)
    assert resp.status_code == 400, (query, resp.get_json())
    assert resp.get_json()["error"] == "bad_request"


@pytest.mark.parametrize("path", ["main%00/1", "main/1%00", "main/²", "main/0", f"main/{2**63}"])
def test_detail_paths_that_name_no_bid_are_404(client, db, path):
    resp = client.get(f"/api/v1/bids/{path}", headers=AUTH)
    assert resp.status_code == 404 and resp.get_json() == {"error": "not_found"}
