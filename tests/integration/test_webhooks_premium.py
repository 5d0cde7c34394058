"""POST /webhooks/premium/<exchanger>/<token>: every answer, what is stored, and what never is."""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import time

import pytest
from sqlalchemy import select, text

from core.config import ConfigError
from core.runtime import Runtime
from models import Bid, InboxEvent
from models.db import Database
from tests.support.config import API_TOKEN, WEBHOOK_TOKEN
from webhooks.app import create_app

URL = f"/webhooks/premium/main/{WEBHOOK_TOKEN}"
QUEUE = "exsync"


def events(db) -> list[InboxEvent]:
    with db.session() as s:
        return list(s.execute(select(InboxEvent).order_by(InboxEvent.id)).scalars())


def post(client, body=b"bid_id=1350&status=payed", url=URL, content_type="application/x-www-form-urlencoded",
         **kw):
    return client.post(url, data=body, content_type=content_type, **kw)


# -- accepted --------------------------------------------------------------------------------------


def test_accepted_callback_is_stored_redacted_and_enqueued(client, db, broker):
    resp = post(client, headers={"Authorization": "Bearer " + API_TOKEN, "Cookie": "session=abc",
                                 "X-Echo": f"see {WEBHOOK_TOKEN}", "User-Agent": "premiumbox"},
                environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["ok"] is True and isinstance(body["event"], int)

    [ev] = events(db)
    assert ev.id == body["event"]
    assert (ev.provider, ev.endpoint, ev.state) == ("premium", "main", "received")
    assert ev.source_ip == "198.51.100.9"
    assert ev.body == b"bid_id=1350&status=payed"
    assert ev.content_type == "application/x-www-form-urlencoded"
    assert ev.payload == {"bid_id": 1350, "status": "payed"}
    lowered = {k.lower(): v for k, v in ev.headers.items()}
    assert "authorization" not in lowered and "cookie" not in lowered
    assert lowered["user-agent"] == "premiumbox"
    assert lowered["x-echo"] == "see ***"
    assert ev.headers[":path"] == "/webhooks/premium/main/***"
    # No token, no API token anywhere in the row.
    row = repr({c: getattr(ev, c) for c in InboxEvent.__table__.columns.keys()})
    assert WEBHOOK_TOKEN not in row and API_TOKEN not in row

    # Enqueued for process_inbox_event on the real broker (by the app's publisher thread).
    assert client.application.extensions["exsync.inbox"].publisher.flush()
    assert broker.llen(QUEUE) == 1
    message = json.loads(broker.lindex(QUEUE, 0))
    assert message["headers"]["task"] == "worker.tasks.process_inbox_event"
    assert message["headers"]["argsrepr"] == f"({ev.id},)"


def test_json_and_multipart_bodies_are_accepted(client, db, broker):
    assert post(client, json.dumps({"bid_id": 7, "status": "new"}), content_type="application/json").status_code == 202
    assert post(client, json.dumps({"bid_id": "8", "status": "my3"}),
                content_type="application/json").status_code == 202
    assert client.post(URL, data={"bid_id": "9", "status": "success"},
                       content_type="multipart/form-data").status_code == 202
    assert [e.payload for e in events(db)] == [
        {"bid_id": 7, "status": "new"}, {"bid_id": 8, "status": "my3"}, {"bid_id": 9, "status": "success"}]


def test_duplicate_callbacks_are_both_stored(client, db, broker):
    first, second = post(client), post(client)
    assert first.status_code == second.status_code == 202
    assert first.get_json()["event"] != second.get_json()["event"]
    assert len(events(db)) == 2
    assert client.application.extensions["exsync.inbox"].publisher.flush()
    assert broker.llen(QUEUE) == 2  # both enqueued: the worker re-reads the bid twice, harmlessly


def test_callback_is_processed_by_a_real_worker(runtime, client, db, premium_sandbox, celery_worker):
    """End to end: the stored event reaches a worker, which reads the bid and mirrors it."""
    bid_id = premium_sandbox.engine.add_bid(direction_id=1, amount="0.01", status="payed")
    resp = post(client, f"bid_id={bid_id}&status=payed".encode())
    assert resp.status_code == 202
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with db.session() as s:
            state = s.get(InboxEvent, resp.get_json()["event"]).state
            bid = s.execute(select(Bid).where(Bid.remote_id == bid_id)).scalar_one_or_none()
        if state == "processed" and bid is not None:
            break
        time.sleep(0.1)
    assert state == "processed"
    assert bid.status == "payed"


# -- refused before anything is stored ---------------------------------------------------------------


def test_wrong_token_is_403_and_not_stored(client, db, broker):
    resp = post(client, url="/webhooks/premium/main/" + "x" * len(WEBHOOK_TOKEN))
    assert resp.status_code == 403
    assert resp.get_json() == {"error": "forbidden"}
    assert post(client, url="/webhooks/premium/main/short").status_code == 403
    assert events(db) == []


def test_unknown_exchanger_answers_like_a_wrong_token(client, db, broker):
    # A stranger must not learn which exchanger names exist: the same 403 as a wrong token.
    unknown = post(client, url=f"/webhooks/premium/other/{WEBHOOK_TOKEN}")
    wrong = post(client, url="/webhooks/premium/main/" + "x" * len(WEBHOOK_TOKEN))
    assert (unknown.status_code, unknown.get_json()) == (wrong.status_code, wrong.get_json()) == (
        403, {"error": "forbidden"})
    assert events(db) == []


def test_get_is_405_json(client, db):
    resp = client.get(URL)
    assert resp.status_code == 405
    assert resp.get_json() == {"error": "method_not_allowed"}
    assert "POST" in resp.headers["Allow"]
    assert client.post("/webhooks/premium/main").status_code == 404
    assert client.post("/webhooks/premium/main").get_json() == {"error": "not_found"}


def test_ip_allow_list(settings, db, broker):
    ex = dataclasses.replace(settings.exchangers["main"], allowed_ips=(ipaddress.ip_network("203.0.113.0/29"),))
    app = create_app(Runtime(dataclasses.replace(settings, exchangers={"main": ex}), _db=db), env={})
    c = app.test_client()
    denied = post(c, environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert denied.status_code == 403
    assert denied.get_json() == {"error": "ip_not_allowed"}
    # Without trusted proxies a forged X-Forwarded-For changes nothing.
    forged = post(c, environ_base={"REMOTE_ADDR": "198.51.100.1"}, headers={"X-Forwarded-For": "203.0.113.2"})
    assert forged.status_code == 403
    assert events(db) == []
    assert post(c, environ_base={"REMOTE_ADDR": "203.0.113.2"}).status_code == 202


def test_trusted_proxy_gives_the_forwarded_source_ip(runtime, db, broker):
    c = create_app(runtime, env={"EXSYNC_TRUSTED_PROXIES": "1"}).test_client()
    resp = post(c, environ_base={"REMOTE_ADDR": "10.0.0.2"}, headers={"X-Forwarded-For": "203.0.113.5"})
    assert resp.status_code == 202
    assert events(db)[0].source_ip == "203.0.113.5"


def test_bad_trusted_proxies_stops_start_naming_the_key(runtime):
    with pytest.raises(ConfigError) as err:
        create_app(runtime, env={"EXSYNC_TRUSTED_PROXIES": "yes"})
    assert err.value.key == "EXSYNC_TRUSTED_PROXIES"


def test_too_large_is_413(client, runtime, db, broker):
    limit = runtime.settings.webhook_max_body
    resp = post(client, b"bid_id=1&status=new&pad=" + b"x" * limit)
    assert resp.status_code == 413
    assert resp.get_json() == {"error": "too_large", "limit": limit}
    assert events(db) == []


# -- authenticated but malformed: 400, kept as a dead event -------------------------------------------


@pytest.mark.parametrize("body, content_type, field", [
    (b"bid_id=abc&status=new", "application/x-www-form-urlencoded", "bid_id"),
    (b"bid_id=0&status=new", "application/x-www-form-urlencoded", "bid_id"),
    (b"bid_id=-5&status=new", "application/x-www-form-urlencoded", "bid_id"),
    (b"bid_id=1.5&status=new", "application/x-www-form-urlencoded", "bid_id"),
    (b"bid_id=99999999999999999999&status=new", "application/x-www-form-urlencoded", "bid_id"),
    (b"status=new", "application/x-www-form-urlencoded", "bid_id"),
    (b"bid_id=1&bid_id=2&status=new", "application/x-www-form-urlencoded", "bid_id"),
    (b"bid_id=12", "application/x-www-form-urlencoded", "status"),
    (b"bid_id=12&status=", "application/x-www-form-urlencoded", "status"),
    (b"bid_id=12&status=%3Cscript%3E", "application/x-www-form-urlencoded", "status"),
    (b"bid_id=12&status=" + b"a" * 65, "application/x-www-form-urlencoded", "status"),
    (b"\xff\xfe", "application/x-www-form-urlencoded", "body"),
    (b"{not json", "application/json", "body"),
    (b"[1, 2]", "application/json", "body"),
    (b'{"bid_id": true, "status": "new"}', "application/json", "bid_id"),
    (b'{"bid_id": 3, "status": 5}', "application/json", "status"),
    (b"<xml/>", "text/xml", "content_type"),
    # Hardened edges (issue 6): each of these once reached Postgres or int() and made a 500.
    (b"bid_id=12&status=new%00", "application/x-www-form-urlencoded", "status"),
    (b"bid_id=%C2%B2&status=new", "application/x-www-form-urlencoded", "bid_id"),
    (b"bid_id=12&status=n%0Aew", "application/x-www-form-urlencoded", "status"),
    (b"bid_id=12&st%00atus=new", "application/x-www-form-urlencoded", "status"),
    (b'{"bid_id": 3, "status": "\\ud800"}', "application/json", "status"),
    (b'{"bid_id": 3, "status": {"y": "\\u0000"}}', "application/json", "status.y"),
    (b'{"bid_id": 1e999999999, "status": "new"}', "application/json", "bid_id"),
    (b'{"bid_id": NaN, "status": "new"}', "application/json", "body"),
    (b'{"bid_id": ' + b"9" * 5000 + b', "status": "new"}', "application/json", "body"),
    (b"[" * 5000 + b"]" * 5000, "application/json", "body"),
])
def test_malformed_body_is_400_naming_the_field_and_kept_dead(client, db, broker, body, content_type, field):
    resp = post(client, body, content_type=content_type)
    assert resp.status_code == 400
    answer = resp.get_json()
    assert answer["error"] == "bad_request"
    assert answer["field"] == field
    [ev] = events(db)
    assert ev.state == "dead" and ev.payload is None
    assert ev.last_error.startswith(field)
    assert ev.body == body
    assert broker.llen(QUEUE) == 0  # nothing to process


# -- storage and broker failures ---------------------------------------------------------------------


def test_postgres_down_is_503_and_never_2xx(settings):
    dead_db = Database("postgresql+psycopg2://u@127.0.0.1:1/x")
    try:
        c = create_app(Runtime(settings, _db=dead_db), env={}).test_client()
        for _ in range(2):
            resp = post(c)
            assert resp.status_code == 503
            assert resp.get_json() == {"error": "storage_unavailable"}
            assert int(resp.headers["Retry-After"]) > 0
        # Malformed but authenticated: it could not be recorded either, so no 4xx pretending it was.
        assert post(c, b"bid_id=x").status_code == 503
        assert c.get("/api/v1/bids", headers={"Authorization": "Bearer " + API_TOKEN}).status_code == 503
    finally:
        dead_db.dispose()


def test_a_killed_database_connection_is_replaced_transparently(client, db, broker):
    """Postgres restarted (here: our backend terminated) between two callbacks: the second still lands."""
    assert post(client).status_code == 202
    with db.engine.begin() as conn:
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'exsync-inbox' "
            "AND datname = current_database()"
        )).scalar()
    assert killed >= 1
    assert post(client).status_code == 202
    assert len(events(db)) == 2


def test_redis_down_still_202_and_row_stored(settings, db, caplog):
    rt = Runtime(dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0"), _db=db)
    app = create_app(rt, env={})
    started = time.monotonic()
    resp = post(app.test_client())
    assert resp.status_code == 202
    assert time.monotonic() - started < 5
    [ev] = events(db)
    assert ev.id == resp.get_json()["event"] and ev.state == "received"  # the inbox sweeper enqueues it
    assert app.extensions["exsync.inbox"].publisher.flush(5)
    assert "1 inbox events stored, not enqueued (ConnectionError)" in caplog.text


def test_unexpected_exception_is_json_500_without_secrets(web_app, caplog):
    def boom():
        raise RuntimeError(f"kaboom with {WEBHOOK_TOKEN}")

    web_app.add_url_rule("/boom", view_func=boom)
    resp = web_app.test_client().get("/boom")
    assert resp.status_code == 500
    assert resp.get_json() == {"error": "internal"}
    assert WEBHOOK_TOKEN not in caplog.text
    assert "kaboom" in caplog.text


def test_fast_enqueue_sends_what_celery_delay_sends(web_app, broker):
    """The receiver LPUSHes the task message itself (see webhooks.inbox); it must stay Celery's own."""
    import base64

    from worker.tasks import process_inbox_event

    process_inbox_event.delay(41)
    publisher = web_app.extensions["exsync.inbox"].publisher
    publisher.publish(42)
    assert publisher.flush()
    ours, celery = (json.loads(m) for m in broker.lrange(QUEUE, 0, -1))  # LPUSH: newest first
    assert ours.keys() == celery.keys()
    assert ours["headers"].keys() == celery["headers"].keys()
    assert ours["properties"].keys() == celery["properties"].keys()
    assert ours["properties"]["delivery_info"] == celery["properties"]["delivery_info"]
    for k in ("content-type", "content-encoding"):
        assert ours[k] == celery[k]
    for k in ("task", "lang", "ignore_result", "retries"):
        assert ours["headers"][k] == celery["headers"][k]
    assert ours["headers"]["argsrepr"] == "(42,)"
    body = lambda m: json.loads(base64.b64decode(m["body"]))  # noqa: E731
    assert body(ours)[0] == [42] and body(celery)[0] == [41]
    assert body(ours)[1:] == body(celery)[1:]


def test_fields_the_receiver_does_not_use_cannot_refuse_a_callback(client, db, broker):
    # Kept in the raw body only: junk in them (NUL, lone surrogates) never reaches a jsonb column.
    body = b'{"bid_id": 3, "status": "new", "x\\u0000": {"y": "\\ud800"}}'
    resp = post(client, body, content_type="application/json")
    assert resp.status_code == 202
    [ev] = events(db)
    assert (ev.state, ev.payload, ev.body) == ("received", {"bid_id": 3, "status": "new"}, body)
