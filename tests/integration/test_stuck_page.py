"""/stuck: the operator's page (HTML and JSON), behind the API token."""
from __future__ import annotations

import base64
import dataclasses
from datetime import datetime, timezone

from sqlalchemy import update

from core.runtime import Runtime
from models import BidPoll, InboxEvent
from tests.support.config import API_TOKEN
from webhooks.app import create_app
from worker.reconcile import Snapshot, apply_snapshot

BEARER = {"Authorization": "Bearer " + API_TOKEN}


def seed(db, settings):
    now = datetime.now(timezone.utc)
    with db.session() as s:
        ev = InboxEvent(provider="premium", endpoint="main", body=b"bid_id=5&status=payed",
                        payload={"bid_id": 5, "status": "payed"}, state="failed", attempts=3,
                        last_error="RetryableError: premium HTTP 502: <bad gateway>")
        s.add(ev)
        out = apply_snapshot(s, settings, "main", Snapshot(remote_id=4242, status="payed", observed_at=now), "sweep")
        s.execute(update(BidPoll).where(BidPoll.bid_id == out.bid_id)
                  .values(state="gave_up", next_poll_at=None, gave_up_at=now))
        s.flush()
        return ev.id


def test_stuck_page_shows_failed_event_and_gave_up_poll(client, db, settings):
    event_id = seed(db, settings)
    resp = client.get("/stuck", headers=BEARER)
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/html")
    html = resp.get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="10">' in html
    assert "Inbox events failing" in html and "Polls that gave up" in html
    assert f">{event_id}</td>" in html
    assert "{&#34;bid_id&#34;: 5, &#34;status&#34;: &#34;payed&#34;}" in html
    assert "RetryableError: premium HTTP 502: &lt;bad gateway&gt;" in html  # escaped
    assert 'href="api/v1/bids/main/4242"' in html
    assert "<script" not in html
    assert API_TOKEN not in html


def test_stuck_json(client, db, settings):
    event_id = seed(db, settings)
    resp = client.get("/stuck.json", headers=BEARER)
    assert resp.status_code == 200
    report = resp.get_json()
    assert report["inbox_failed"]["count"] == 1 and report["inbox_failed"]["rows"][0]["id"] == event_id
    assert report["polls_gave_up"]["rows"][0]["remote_id"] == 4242
    assert report["total"] >= 2


def test_stuck_accepts_basic_auth_for_browsers(client, db):
    basic = base64.b64encode(f"operator:{API_TOKEN}".encode()).decode()
    assert client.get("/stuck", headers={"Authorization": "Basic " + basic}).status_code == 200
    wrong = base64.b64encode(b"operator:guess").decode()
    resp = client.get("/stuck", headers={"Authorization": "Basic " + wrong})
    assert resp.status_code == 401
    assert 'Basic realm="exsync"' in resp.headers.getlist("WWW-Authenticate")
    assert client.get("/stuck").status_code == 401
    assert client.get("/stuck", headers={"Authorization": "Basic !!!"}).status_code == 401


def test_stuck_is_404_without_an_api_token(settings, db):
    c = create_app(Runtime(dataclasses.replace(settings, api_token=None), _db=db), env={}).test_client()
    assert c.get("/stuck").status_code == 404
    assert c.get("/stuck.json", headers=BEARER).status_code == 404
