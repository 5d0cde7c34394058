"""/healthz, /readyz and /metrics."""
from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from core.runtime import Runtime
from models import InboxEvent, SweepCursor, liveness
from models.db import Database
from webhooks.app import create_app
from worker.liveness import Thresholds
from worker.reconcile import Snapshot, apply_snapshot


def test_healthz_does_no_io(settings):
    dead_db = Database("postgresql+psycopg2://u@127.0.0.1:1/x")
    rt = Runtime(dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0"), _db=dead_db)
    resp = create_app(rt, env={}).test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"ok": True}
    dead_db.dispose()


def test_readyz_ok(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"ok": True, "checks": {"postgres": "ok", "redis": "ok", "workers": "none"},
                               "failed": [], "degraded": ["workers"]}


def test_readyz_reports_workers_without_failing_on_them(client, db, settings):
    """``workers`` is ok while some worker ran its canary within the threshold; a stale or missing worker is
    reported (degraded) but never a 503: the receivers must keep storing callbacks."""
    stale_after = Thresholds.for_settings(settings).stale_after
    with db.session() as s:
        liveness.record_started(s, "exsync-1@a")
        liveness.record_canary(s, "exsync-1@a", datetime.now(timezone.utc))
    body = client.get("/readyz").get_json()
    assert body["checks"]["workers"] == "ok" and body["degraded"] == []

    with db.session() as s:  # its last canary ran longer ago than the threshold
        s.execute(text("UPDATE worker_liveness SET canary_consumed_at = now() - make_interval(secs => :a)"),
                  {"a": stale_after + 1})
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json()["checks"]["workers"] == "stale" and resp.get_json()["degraded"] == ["workers"]

    with db.session() as s:  # stopped on request: no longer expected to consume
        liveness.record_stopped(s, "exsync-1@a")
    assert client.get("/readyz").get_json()["checks"]["workers"] == "none"


def test_readyz_names_what_failed(settings, db):
    c = create_app(Runtime(dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0"), _db=db),
                   env={}).test_client()
    resp = c.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["failed"] == ["redis"]
    assert resp.get_json()["checks"]["postgres"] == "ok"

    dead_db = Database("postgresql+psycopg2://u@127.0.0.1:1/x")
    resp = create_app(Runtime(settings, _db=dead_db), env={}).test_client().get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["failed"] == ["postgres"]
    assert resp.get_json()["checks"]["workers"] == "unknown"
    dead_db.dispose()


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_count(client, db, settings):
    now = datetime.now(timezone.utc)
    with db.session() as s:
        for rid, status in [(1, "new"), (2, "new"), (3, "success")]:
            apply_snapshot(s, settings, "main", Snapshot(remote_id=rid, status=status, observed_at=now), "sweep")
        s.add(InboxEvent(provider="premium", endpoint="main", body=b"", state="received",
                         received_at=now - timedelta(seconds=120)))
        s.add(InboxEvent(provider="premium", endpoint="main", body=b"", state="dead"))
        s.add(SweepCursor(exchanger="main", last_finished_at=now - timedelta(seconds=30)))
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    m = samples(resp.get_data(as_text=True))
    assert m[("exsync_database_up", ())] == 1
    assert m[("exsync_bids", (("exchanger", "main"), ("status", "new")))] == 2
    assert m[("exsync_bids", (("exchanger", "main"), ("status", "success")))] == 1
    assert m[("exsync_inbox_events", (("state", "received"),))] == 1
    assert m[("exsync_inbox_events", (("state", "dead"),))] == 1
    assert m[("exsync_inbox_events", (("state", "failed"),))] == 0
    assert m[("exsync_bid_polls", (("state", "active"),))] == 2
    assert m[("exsync_bid_polls", (("state", "done"),))] == 1
    assert m[("exsync_bid_polls_overdue", ())] == 0
    assert m[("exsync_inbox_oldest_unprocessed_age_seconds", ())] >= 119
    assert 29 <= m[("exsync_sweep_lag_seconds", (("exchanger", "main"),))] < 120


def test_metrics_worker_series(client, db, settings):
    stale_after = Thresholds.for_settings(settings).stale_after
    with db.session() as s:
        liveness.record_started(s, "exsync-1@a")
        liveness.record_canary(s, "exsync-1@a", datetime.now(timezone.utc))
        liveness.record_started(s, "exsync-2@a")  # never ran a canary
        liveness.record_started(s, "exsync-3@a")
        liveness.record_stopped(s, "exsync-3@a")  # stopped on request: not shown
        liveness.record_restart(s, "exsync-9@a", "exited", 1)
        liveness.record_restart(s, "exsync-8@a", "exited", 0)
        liveness.record_restart(s, "exsync-7@a", "stalled", 3)
    m = samples(client.get("/metrics").get_data(as_text=True))
    assert 0 <= m[("exsync_worker_canary_age_seconds", (("worker", "exsync-1@a"),))] < 5
    assert math.isinf(m[("exsync_worker_canary_age_seconds", (("worker", "exsync-2@a"),))])
    assert ("exsync_worker_canary_age_seconds", (("worker", "exsync-3@a"),)) not in m
    assert m[("exsync_workers_consuming", ())] == 1
    assert m[("exsync_worker_canary_stale_after_seconds", ())] == stale_after
    assert m[("exsync_worker_restarts_total", (("reason", "exited"),))] == 2
    assert m[("exsync_worker_restarts_total", (("reason", "stalled"),))] == 1


def test_metrics_without_database(settings):
    dead_db = Database("postgresql+psycopg2://u@127.0.0.1:1/x")
    resp = create_app(Runtime(settings, _db=dead_db), env={}).test_client().get("/metrics")
    assert resp.status_code == 200
    assert samples(resp.get_data(as_text=True)) == {("exsync_database_up", ()): 0}
    dead_db.dispose()


def test_never_swept_exchanger_lags_forever(client, db):
    m = samples(client.get("/metrics").get_data(as_text=True))
    assert math.isinf(m[("exsync_sweep_lag_seconds", (("exchanger", "main"),))])
