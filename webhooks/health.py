"""Liveness, readiness and Prometheus metrics.

GET /healthz  200 {"ok": true}: the process answers (no I/O, so a slow database never restarts us)
GET /readyz   200 or 503 {"ok": …, "checks": {"postgres": "ok" | error type, "redis": …, "workers": …},
              "failed": […], "degraded": […]}. Only postgres and redis decide the status: readiness
              means "callbacks can be stored". ``workers`` is "ok" when at least one worker ran its
              canary within the threshold (worker/liveness.py), else "stale" or "none"; it is reported
              (and listed in ``degraded``) but never turns the answer into a 503: that would take the
              receivers out of a load balancer, and the engine never resends a refused callback.
GET /metrics  Prometheus text. Read from Postgres at scrape time, so every gunicorn worker reports the
              same numbers and nothing is lost when a worker restarts. When Postgres cannot be read
              the scrape still succeeds with ``exsync_database_up 0``.
"""
from __future__ import annotations

import logging
import math

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from models import liveness as liveness_rows
from models.queries import RECENT_ATTEMPTS, metrics_snapshot
from models.states import AttemptOutcome, InboxState, PayoutState, PollState
from webhooks.openapi import documented
from worker.liveness import METRICS_WINDOW, Thresholds

log = logging.getLogger("exsync.webhooks.health")

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@documented(summary="Liveness: the process answers (no I/O)", tags=["health"], responses={200: "Health"})
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


def _check_workers() -> str:
    # Some worker proved within the threshold that it consumes (its canary ran): see worker/liveness.py.
    runtime = current_app.extensions["exsync.runtime"]
    try:
        stale_after = Thresholds.for_settings(runtime.settings).stale_after
        with runtime.db.session() as session:
            workers = liveness_rows.live_workers(session, METRICS_WINDOW)
    except Exception as exc:
        return type(exc).__name__
    if not workers:
        return "none"
    fresh = [w for w in workers if w["canary_age"] is not None and w["canary_age"] <= stale_after]
    return "ok" if fresh else "stale"


GATING = ("postgres", "redis")


@bp.get("/readyz")
@documented(summary="Readiness: callbacks can be stored (Postgres and Redis); workers reported", tags=["health"],
            responses={200: "Ready", 503: "Ready"})
def readyz():
    checks = {"postgres": _check_postgres(), "redis": _check_redis()}
    failed = [name for name, result in checks.items() if result != "ok"]
    checks["workers"] = _check_workers() if "postgres" not in failed else "unknown"
    degraded = [name for name, result in checks.items() if result != "ok" and name not in GATING]
    resp = jsonify(ok=not failed, checks=checks, failed=failed, degraded=degraded)
    resp.status_code = 503 if failed else 200
    return resp


# Outcomes of a provider call that mean "something went wrong" (the alert rules in deploy/ use them).
ERROR_OUTCOMES = (AttemptOutcome.ERROR, AttemptOutcome.AUTH, AttemptOutcome.PERMANENT, AttemptOutcome.UNKNOWN,
                  AttemptOutcome.RETRYABLE, AttemptOutcome.LOST)


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
        for state in sorted(set(InboxState) | set(snap["inbox"])):
            inbox.add_metric([state], snap["inbox"].get(state, 0))
        yield inbox

        polls = GaugeMetricFamily("exsync_bid_polls", "Poll schedule rows by state", labels=["state"])
        for state in sorted(set(PollState) | set(snap["polls"])):
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
        yield from self.collect_payouts(snap)
        yield from self.collect_workers()

    def collect_payouts(self, snap: dict):
        """Payouts by provider and state, the oldest needs_review, provider calls by outcome, the balances
        the notify job last read (worker/notify.py: a provider is never called at scrape time) with their
        configured floors, beat's heartbeat and the notifications not yet delivered. Labels are names of
        configured things and states only: no error text (it may quote a provider's answer)."""
        payouts = GaugeMetricFamily("exsync_payouts", "Payouts by provider and state (provider none: no route "
                                    "rule matched)", labels=["provider", "state"])
        counts = {(r["provider"], r["state"]): r["count"] for r in snap["payouts"]}
        for provider in sorted({p for p, _ in counts} | set(self.runtime.settings.payouts.providers)):
            for state in PayoutState:
                payouts.add_metric([provider, state], counts.get((provider, state), 0))
        yield payouts
        yield GaugeMetricFamily("exsync_payout_oldest_needs_review_age_seconds",
                                "Seconds the oldest needs_review payout has waited for a person (0 when none)",
                                value=snap["oldest_needs_review_seconds"])
        attempts = GaugeMetricFamily("exsync_payout_attempts_recent",
                                     f"Calls made for payouts (kind: submit, find, complete) started within the last "
                                     f"{RECENT_ATTEMPTS.seconds // 60} minutes, by provider and outcome; error "
                                     f"outcomes: " + ", ".join(ERROR_OUTCOMES), labels=["provider", "kind", "outcome"])
        for r in sorted(snap["payout_attempts"], key=lambda r: (r["provider"], r["kind"], r["outcome"])):
            attempts.add_metric([r["provider"], r["kind"], r["outcome"]], r["count"])
        yield attempts
        balance = GaugeMetricFamily("exsync_provider_balance", "A payout provider's balance, as last read",
                                    labels=["provider", "currency"])
        age = GaugeMetricFamily("exsync_provider_balance_age_seconds", "Seconds since the balance was read",
                                labels=["provider", "currency"])
        for b in sorted(snap["balances"], key=lambda b: (b["provider"], b["currency"])):
            balance.add_metric([b["provider"], b["currency"]], float(b["amount"]))
            age.add_metric([b["provider"], b["currency"]], b["age_seconds"])
        yield balance
        yield age
        floor = GaugeMetricFamily("exsync_provider_balance_low_threshold",
                                  "[notifications.balance_low]: a balance under this needs a person",
                                  labels=["provider", "currency"])
        for provider, currencies in sorted(self.runtime.settings.notify.balance_low.items()):
            for currency, amount in sorted(currencies.items()):
                floor.add_metric([provider, currency], float(amount))
        yield floor
        beat = snap["beat_heartbeat_age_seconds"]
        yield GaugeMetricFamily("exsync_beat_heartbeat_age_seconds",
                                "Seconds since beat's notify job last ran (+Inf: never)",
                                value=math.inf if beat is None else beat)
        yield GaugeMetricFamily("exsync_notifications_unsent",
                                "Notifications not yet delivered to every target", value=snap["notifications_unsent"])

    def collect_workers(self):
        """Canary age per worker, how many consume, and the supervisor's restarts (worker/liveness.py)."""
        try:
            stale_after = Thresholds.for_settings(self.runtime.settings).stale_after
            with self.runtime.db.session() as session:
                workers = liveness_rows.live_workers(session, METRICS_WINDOW)
                restarts = liveness_rows.restart_counts(session)
        except Exception as exc:
            log.warning("metrics: worker liveness unavailable (%s)", type(exc).__name__)
            return
        age = GaugeMetricFamily("exsync_worker_canary_age_seconds",
                                "Seconds since the worker last ran its canary (+Inf: never), per worker "
                                "not stopped on request and heard of within the last hour", labels=["worker"])
        for w in workers:
            age.add_metric([w["hostname"]], math.inf if w["canary_age"] is None else w["canary_age"])
        yield age
        yield GaugeMetricFamily("exsync_workers_consuming",
                                "Workers whose canary ran within the stale threshold",
                                value=sum(1 for w in workers
                                          if w["canary_age"] is not None and w["canary_age"] <= stale_after))
        yield GaugeMetricFamily("exsync_worker_canary_stale_after_seconds",
                                "A worker whose canary is older than this does not consume", value=stale_after)
        counter = CounterMetricFamily("exsync_worker_restarts",
                                      "Workers restarted by the exsync run supervisor, by reason "
                                      "(exited: ended on its own; stalled: stopped consuming)", labels=["reason"])
        for reason, n in sorted(restarts.items()):
            counter.add_metric([reason], n)
        yield counter


def registry_for(runtime) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(runtime))
    return registry


@bp.get("/metrics")
@documented(summary="Prometheus metrics, read from Postgres at scrape time", tags=["health"],
            responses={200: {"description": "Prometheus text format 0.0.4",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics():
    registry = current_app.extensions.get("exsync.metrics")
    if registry is None:
        registry = current_app.extensions.setdefault(
            "exsync.metrics", registry_for(current_app.extensions["exsync.runtime"]))
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)
