"""What needs a person: the stuck report's payout, balance, worker and beat sections, the same facts on
/stuck and /metrics (models.queries.stuck_report is their one source)."""
from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families

from core.config import NotifySettings
from core.runtime import Runtime
from models import Heartbeat, Payout, PayoutAttempt, ProviderBalance, liveness, queries
from tests.support.config import API_TOKEN
from webhooks.app import create_app
from worker.reconcile import Snapshot, apply_snapshot

BEARER = {"Authorization": "Bearer " + API_TOKEN}


def add_payout(s, settings, remote_id: int, state: str, *, reason: str | None = None, provider: str | None = "zc",
               amount: str = "150.500000000000000000", since: datetime | None = None) -> int:
    now = datetime.now(timezone.utc)
    bid = apply_snapshot(s, settings, "main", Snapshot(remote_id=remote_id, status="realpay", observed_at=now), "sweep")
    p = Payout(exchanger="main", bid_id=bid.bid_id, remote_id=remote_id, idempotency_key=f"k{remote_id}",
               provider=provider, amount=Decimal(amount), currency="RUB", destination="42", state=state,
               last_error=reason, updated_at=since or now)
    s.add(p)
    s.flush()
    return p.id


def samples(text):
    return {(x.name, tuple(sorted(x.labels.items()))): x.value
            for family in text_string_to_metric_families(text) for x in family.samples}


def test_payouts_waiting_for_a_person_are_in_the_report(db, settings):
    now = datetime.now(timezone.utc)
    with db.session() as s:
        old = add_payout(s, settings, 1, "needs_review", reason="above the auto-pay ceiling",
                         since=now - timedelta(minutes=30))
        new = add_payout(s, settings, 2, "needs_review", reason="retries ran out", since=now - timedelta(minutes=1))
        parked = add_payout(s, settings, 3, "parked", reason="InsufficientFundsError: 51")
        add_payout(s, settings, 4, "succeeded")
    with db.session() as s:
        r = queries.stuck_report(s, now)
    review = r["payouts_needs_review"]
    assert review["count"] == 2 and [row["id"] for row in review["rows"]] == [old, new]  # longest waiting first
    assert review["rows"][0]["reason"] == "above the auto-pay ceiling"
    assert review["rows"][0]["amount"] == Decimal("150.5") and 1795 <= review["rows"][0]["waiting_seconds"] < 1900
    assert r["payouts_parked"]["count"] == 1 and r["payouts_parked"]["rows"][0]["id"] == parked
    assert r["payouts_parked"]["rows"][0]["reason"] == "InsufficientFundsError: 51"
    assert 1795 <= r["oldest_needs_review_seconds"] < 1900
    assert r["total"] == 3  # nothing else: the worker and beat checks were not asked for


def test_nothing_waiting_means_zero_age(db):
    with db.session() as s:
        r = queries.stuck_report(s, datetime.now(timezone.utc))
    assert r["oldest_needs_review_seconds"] == 0.0 and r["total"] == 0


def test_low_balances_workers_and_beat(db):
    now = datetime.now(timezone.utc)
    with db.session() as s:
        s.add(ProviderBalance(provider="zc", currency="RUB", amount=Decimal("99.5"), checked_at=now))
        s.add(ProviderBalance(provider="zc", currency="USD", amount=Decimal("5000"), checked_at=now))
        s.add(ProviderBalance(provider="gw", currency="EUR", amount=Decimal("1"), checked_at=now))  # no floor
        liveness.record_started(s, "exsync-1@a")
        liveness.record_canary(s, "exsync-1@a", now)
        s.add(Heartbeat(name="beat", at=now - timedelta(minutes=10)))
    floors = {"zc": {"RUB": Decimal("100"), "USD": Decimal("100")}}
    with db.session() as s:
        r = queries.stuck_report(s, now, balance_low=floors, worker_stale_after=60, beat_gone_after=180)
    assert r["balances_low"]["rows"] == [{"provider": "zc", "currency": "RUB", "amount": Decimal("99.5"),
                                          "floor": Decimal("100"), "checked_at": r["balances_low"]["rows"][0]
                                          ["checked_at"]}]
    assert r["workers_gone"]["count"] == 0  # its canary ran just now
    assert r["beat_gone"]["count"] == 1 and r["beat_gone"]["rows"][0]["name"] == "beat"
    with db.session() as s:
        r = queries.stuck_report(s, now + timedelta(minutes=5), worker_stale_after=60, beat_gone_after=3600)
        s.execute(Heartbeat.__table__.update().values(at=now))
    assert r["beat_gone"]["count"] == 0
    with db.session() as s:  # the worker stops consuming: it is gone, and nothing consumes at all
        s.execute(liveness.WorkerLiveness.__table__.update().values(
            canary_consumed_at=now - timedelta(minutes=5), started_at=now - timedelta(hours=1)))
        r = queries.stuck_report(s, now, worker_stale_after=60)
    assert [row["hostname"] for row in r["workers_gone"]["rows"]] == [None, "exsync-1@a"]


def test_stuck_page_and_json_show_payouts(client, db, settings):
    with db.session() as s:
        pid = add_payout(s, settings, 5, "needs_review", reason="limit <max_amount> exceeded")
    html = client.get("/stuck", headers=BEARER).get_data(as_text=True)
    assert "Payouts waiting for a person" in html and f">{pid}</td>" in html
    assert "limit &lt;max_amount&gt; exceeded" in html  # escaped
    assert ">150.5</td>" in html  # a Decimal without its 17 trailing zeros
    assert "nothing stuck" not in html
    report = client.get("/stuck.json", headers=BEARER).get_json()
    assert report["payouts_needs_review"]["rows"][0]["id"] == pid
    assert report["payouts_needs_review"]["rows"][0]["reason"] == "limit <max_amount> exceeded"


def test_metrics_payout_series(db, settings):
    floors = NotifySettings(balance_low={"zc": {"RUB": Decimal("1000")}})
    app = create_app(Runtime(dataclasses.replace(settings, notify=floors), _db=db), env={})
    now = datetime.now(timezone.utc)
    with db.session() as s:
        review = add_payout(s, settings, 1, "needs_review", since=now - timedelta(seconds=300))
        add_payout(s, settings, 2, "needs_review", provider=None)
        add_payout(s, settings, 3, "succeeded")
        for n, outcome in enumerate(["succeeded", "error", "error"], 1):
            s.add(PayoutAttempt(payout_id=review, n=n, kind="submit", started_at=now, outcome=outcome,
                                message="secret-looking provider text"))
        s.add(PayoutAttempt(payout_id=review, n=4, kind="submit", started_at=now - timedelta(hours=1),
                            outcome="error"))  # not recent: not counted
        s.add(ProviderBalance(provider="zc", currency="RUB", amount=Decimal("250.75"),
                              checked_at=now - timedelta(seconds=40)))
    body = app.test_client().get("/metrics").get_data(as_text=True)
    m = samples(body)
    assert m[("exsync_payouts", (("provider", "zc"), ("state", "needs_review")))] == 1
    assert m[("exsync_payouts", (("provider", "none"), ("state", "needs_review")))] == 1
    assert m[("exsync_payouts", (("provider", "zc"), ("state", "succeeded")))] == 1
    assert m[("exsync_payouts", (("provider", "zc"), ("state", "parked")))] == 0  # every state, always
    assert 299 <= m[("exsync_payout_oldest_needs_review_age_seconds", ())] < 400
    key = (("kind", "submit"), ("outcome", "error"), ("provider", "zc"))
    assert m[("exsync_payout_attempts_recent", key)] == 2
    assert m[("exsync_provider_balance", (("currency", "RUB"), ("provider", "zc")))] == 250.75
    assert 39 <= m[("exsync_provider_balance_age_seconds", (("currency", "RUB"), ("provider", "zc")))] < 120
    assert m[("exsync_provider_balance_low_threshold", (("currency", "RUB"), ("provider", "zc")))] == 1000
    assert math.isinf(m[("exsync_beat_heartbeat_age_seconds", ())])
    assert m[("exsync_notifications_unsent", ())] == 0
    assert "secret-looking" not in body  # no error text in a label


def test_a_starting_worker_is_not_gone(db):
    """Before its first canary a worker is starting, not gone, until it has been up for the threshold."""
    now = datetime.now(timezone.utc)
    with db.session() as s:
        liveness.record_started(s, "exsync-2@b")
    with db.session() as s:
        assert queries.stuck_report(s, now, worker_stale_after=60)["workers_gone"]["count"] == 0
        s.execute(liveness.WorkerLiveness.__table__.update().values(started_at=now - timedelta(minutes=5)))
    with db.session() as s:
        rows = queries.stuck_report(s, now, worker_stale_after=60)["workers_gone"]["rows"]
    assert [r["hostname"] for r in rows] == [None, "exsync-2@b"]


def test_the_openapi_document_names_every_section(db):
    from webhooks.openapi import STUCK_SECTIONS

    with db.session() as s:
        r = queries.stuck_report(s, datetime.now(timezone.utc))
    assert {k for k, v in r.items() if isinstance(v, dict)} == set(STUCK_SECTIONS)
