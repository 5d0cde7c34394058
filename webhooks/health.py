"""Liveness, readiness and Prometheus metrics.

GET /healthz  200 {"ok": true}: the process answers (no I/O, so a slow database never restarts us)
GET /readyz   200 or 503 {"ok": …, "checks": {"postgres": "ok" | error type, "redis": …}}
GET /metrics  Prometheus text. Read from Postgres at scrape time, so every gunicorn worker reports the
              same numbers and nothing is lost when a worker restarts. When Postgres cannot be read
              the scrape still succeeds with ``exsync_database_up 0``.
"""
from __future__ import annotations

import logging
import math

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from models.queries import metrics_snapshot

log = logging.getLogger("exsync.webhooks.health")

bp = Blueprint("health", __name__)
INBOX_STATES = ("received", "processed", "failed", "dead")
POLL_STATES = ("active", "done", "gave_up")


@bp.get("/healthz")
def healthz():
    return jsonify(ok=True)


def _check_postgres() -> str:
    # The inbox's own connection: readiness means "callbacks can be stored"; its timeouts are short.
    try:
        current_app.extensions["exsync.inbox"].ping_database()
        return "ok"
    except Exception as exc:
        return type(exc).__name__


def _check_redis() -> str:
    # The broker connection the callbacks are enqueued on (2 s timeouts).
    inbox = current_app.extensions["exsync.inbox"]
    if not inbox.redis_url:
        return "not configured"
    try:
        inbox.publisher.ping()
        return "ok"
    except Exception as exc:
        return type(exc).__name__


@bp.get("/readyz")
def readyz():
    checks = {"postgres": _check_postgres(), "redis": _check_redis()}
    failed = [name for name, result in checks.items() if result != "ok"]
    resp = jsonify(ok=not failed, checks=checks, failed=failed)
    resp.status_code = 503 if failed else 200
    return resp


class SnapshotCollector:
    """A prometheus_client collector that reads ``metrics_snapshot`` on every scrape."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    def collect(self):
        up = GaugeMetricFamily("exsync_database_up", "1 when Postgres answered this scrape")
        try:
            with self.runtime.db.session() as session:
                snap = metrics_snapshot(session)
        except Exception as exc:
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        bids = GaugeMetricFamily("exsync_bids", "Mirrored bids by exchanger and status",
                                 labels=["exchanger", "status"])
        for row in snap["bids"]:
            bids.add_metric([row["exchanger"], row["status"]], row["count"])
        yield bids

        inbox = GaugeMetricFamily("exsync_inbox_events", "Inbox events by state", labels=["state"])
        for state in sorted(set(INBOX_STATES) | set(snap["inbox"])):
            inbox.add_metric([state], snap["inbox"].get(state, 0))
        yield inbox

        polls = GaugeMetricFamily("exsync_bid_polls", "Poll schedule rows by state", labels=["state"])
        for state in sorted(set(POLL_STATES) | set(snap["polls"])):
            polls.add_metric([state], snap["polls"].get(state, 0))
        yield polls

        yield GaugeMetricFamily("exsync_bid_polls_overdue",
                                "Active polls more than 5 minutes past their due time",
                                value=snap["polls_overdue"])
        yield GaugeMetricFamily("exsync_inbox_oldest_unprocessed_age_seconds",
                                "Age of the oldest received or failed inbox event (0 when none)",
                                value=snap["oldest_unprocessed_inbox_seconds"])

        lag = GaugeMetricFamily("exsync_sweep_lag_seconds",
                                "Seconds since the last finished sweep (+Inf: never finished)",
                                labels=["exchanger"])
        lags = dict(snap["sweep_lag_seconds"])
        for name in self.runtime.settings.exchangers:
            lags.setdefault(name, None)
        for name in sorted(lags):
            lag.add_metric([name], math.inf if lags[name] is None else lags[name])
        yield lag


def registry_for(runtime) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(runtime))
    return registry


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions.get("exsync.metrics")
    if registry is None:
        registry = current_app.extensions.setdefault(
            "exsync.metrics", registry_for(current_app.extensions["exsync.runtime"]))
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)
