"""Read-only queries for the API, the operator pages, metrics and the CLI. No Flask here.

Every function takes a SQLAlchemy ``Session`` and returns plain dicts/lists (Decimal and datetime values
left as they are; the caller formats them), so the web layer and the CLI print the same facts.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable, Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import liveness
from models import statuses as rules
from models.notifications import Heartbeat, Notification, ProviderBalance
from models.payouts import Payout, PayoutAttempt
from models.states import INBOX_TO_PROCESS, InboxState, PayoutState, PollState
from models.tables import Bid, BidPoll, BidStatusChange, InboxEvent, SweepCursor

# A received event not processed after this long means the worker or the broker is not doing its job.
UNPROCESSED_GRACE = timedelta(minutes=5)
# A poll row this far past its due time means beat or the workers are not keeping up.
OVERDUE_GRACE = timedelta(minutes=5)
TOP_ROWS = 20
MAX_REMOTE_ID = 2**63 - 1  # bigint

BID_COLUMNS = (
    "id", "exchanger", "remote_id", "api_id", "hash", "status", "status_title", "psys_give", "psys_get",
    "currency_code_give", "currency_code_get", "course_give", "course_get", "amount_give", "amount_get",
    "exchange_success", "user_hash", "user_ip", "request_fields", "created_via", "remote_changed_at",
    "observed_at", "archived_at", "first_seen_at", "updated_at",
)
HISTORY_COLUMNS = ("id", "from_status", "to_status", "source", "observed_at", "remote_changed_at",
                   "inbox_event_id", "note", "recorded_at")
POLL_COLUMNS = ("state", "next_poll_at", "step", "ladder_status", "polls", "last_polled_at", "last_error",
                "gave_up_at")
PAYOUT_COLUMNS = ("id", "exchanger", "remote_id", "provider", "amount", "currency", "state", "attempts",
                  "next_attempt_at", "updated_at")
RECENT_ATTEMPTS = timedelta(minutes=15)  # /metrics: payout calls started within this window
BEAT = "beat"  # the heartbeat row beat's notify job writes (models/notifications.py)
# Workers heard of within this window count on /stuck and /metrics (worker/liveness.py's METRICS_WINDOW).
WORKERS_WINDOW = 3600.0
INBOX_COLUMNS = ("id", "provider", "endpoint", "received_at", "source_ip", "content_type", "payload", "state",
                 "attempts", "last_error", "next_attempt_at", "processed_at")


def _row(obj: Any, columns: Iterable[str]) -> dict[str, Any]:
    return {c: getattr(obj, c) for c in columns}


def bid_dict(bid: Bid) -> dict[str, Any]:
    return _row(bid, BID_COLUMNS)


def list_bids(
    session: Session,
    exchanger: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Newest first (by our row id, i.e. first sighting)."""
    q = select(Bid).order_by(Bid.id.desc()).limit(limit).offset(offset)
    if exchanger is not None:
        q = q.where(Bid.exchanger == exchanger)
    if status is not None:
        q = q.where(Bid.status == status)
    return [bid_dict(b) for b in session.execute(q).scalars()]


def get_bid(session: Session, exchanger: str, remote_id: int) -> dict[str, Any] | None:
    """One bid with its full status history (oldest first) and its poll schedule."""
    bid = session.execute(
        select(Bid).where(Bid.exchanger == exchanger, Bid.remote_id == remote_id)
    ).scalar_one_or_none()
    if bid is None:
        return None
    out = bid_dict(bid)
    history = session.execute(
        select(BidStatusChange).where(BidStatusChange.bid_id == bid.id).order_by(BidStatusChange.id)
    ).scalars()
    out["history"] = [_row(h, HISTORY_COLUMNS) for h in history]
    poll = session.get(BidPoll, bid.id)
    out["poll"] = _row(poll, POLL_COLUMNS) if poll is not None else None
    return out


def get_bid_by_api_id(session: Session, exchanger: str, api_id: str) -> dict[str, Any] | None:
    """Like ``get_bid``, found by our own api_id (unique per exchanger)."""
    remote_id = session.execute(
        select(Bid.remote_id).where(Bid.exchanger == exchanger, Bid.api_id == api_id)
    ).scalar_one_or_none()
    return get_bid(session, exchanger, remote_id) if remote_id is not None else None


def payout_ids_for_bid(session: Session, remote_id: int, exchanger: str | None = None) -> list[tuple[str, int]]:
    """(exchanger, payout id) of the payout of bid ``remote_id`` (one per exchanger that has that bid number)."""
    q = select(Payout.exchanger, Payout.id).where(Payout.remote_id == remote_id).order_by(Payout.exchanger)
    if exchanger is not None:
        q = q.where(Payout.exchanger == exchanger)
    return [(ex, pid) for ex, pid in session.execute(q)]


def list_inbox(session: Session, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first; the body is left out (it can be large): read it by id when needed."""
    q = select(InboxEvent).order_by(InboxEvent.id.desc()).limit(limit)
    if state is not None:
        q = q.where(InboxEvent.state == state)
    return [_row(e, INBOX_COLUMNS) for e in session.execute(q).scalars()]


def _section(session: Session, model: Any, where: list, order: Any, columns: Iterable[str],
             extra: Iterable[str] = ()) -> dict[str, Any]:
    """``{"count": n, "rows": [first TOP_ROWS rows]}`` for one stuck-report section."""
    count = session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
    rows = []
    if count:
        for obj in session.execute(select(model).where(*where).order_by(order).limit(TOP_ROWS)).scalars():
            rows.append(_row(obj, list(columns) + list(extra)))
    return {"count": count, "rows": rows}


def stuck_report(
    session: Session,
    now: datetime,
    *,
    stale_after: timedelta = timedelta(hours=1),
    sweep_interval: int = 60,
    exchangers: Iterable[str] = (),
    balance_low: Mapping[str, Mapping[str, Decimal]] | None = None,
    worker_stale_after: float | None = None,
    beat_gone_after: float | None = None,
) -> dict[str, Any]:
    """Everything that needs a person, oldest first within each section: the one source that ``/stuck``,
    the console's overview and the notifications (worker/notify.py, which passes every argument) read.

    ``exchangers`` (the configured ones) lets the report flag an exchanger that was never swept at all;
    ``balance_low`` (provider → currency → floor) flags provider balances under their floor;
    ``worker_stale_after`` flags workers whose canary is older (and "no worker" when none consumes);
    ``beat_gone_after`` flags a beat whose heartbeat is older. A section not asked for counts 0.
    Each section is ``{"count": n, "rows": [first TOP_ROWS rows]}``; ``total`` adds the counts.
    """
    report: dict[str, Any] = {"generated_at": now}
    report["payouts_needs_review"] = _payout_section(session, PayoutState.NEEDS_REVIEW, now)
    report["payouts_parked"] = _payout_section(session, PayoutState.PARKED, now)
    report["inbox_dead"] = _section(
        session, InboxEvent, [InboxEvent.state == InboxState.DEAD], InboxEvent.received_at, INBOX_COLUMNS)
    report["inbox_failed"] = _section(
        session, InboxEvent, [InboxEvent.state == InboxState.FAILED], InboxEvent.received_at, INBOX_COLUMNS)
    report["inbox_unprocessed"] = _section(
        session, InboxEvent,
        [InboxEvent.state == InboxState.RECEIVED, InboxEvent.received_at < now - UNPROCESSED_GRACE],
        InboxEvent.received_at, INBOX_COLUMNS)
    report["polls_gave_up"] = _poll_section(session, [BidPoll.state == PollState.GAVE_UP], BidPoll.gave_up_at)
    report["polls_overdue"] = _poll_section(
        session, [BidPoll.state == PollState.ACTIVE, BidPoll.next_poll_at < now - OVERDUE_GRACE],
        BidPoll.next_poll_at)
    report["bids_stale"] = _section(
        session, Bid,
        [Bid.status.not_in(rules.TERMINAL), Bid.archived_at.is_(None),
         Bid.observed_at < now - stale_after],
        Bid.observed_at, ("id", "exchanger", "remote_id", "status", "observed_at", "updated_at"))

    lag_limit = now - timedelta(seconds=3 * sweep_interval)
    cursors = session.execute(select(SweepCursor).order_by(SweepCursor.exchanger)).scalars().all()
    lagging = [
        _row(c, ("exchanger", "cursor_time", "last_started_at", "last_finished_at", "last_seen", "last_changed",
                 "last_error"))
        for c in cursors
        if c.last_error or c.last_finished_at is None or c.last_finished_at < lag_limit
    ]
    known = {c.exchanger for c in cursors}
    for name in sorted(set(exchangers) - known):
        lagging.append({"exchanger": name, "cursor_time": None, "last_started_at": None, "last_finished_at": None,
                        "last_seen": 0, "last_changed": 0, "last_error": "never swept"})
    report["sweeps_lagging"] = {"count": len(lagging), "rows": lagging}
    report["balances_low"] = _low_balances(session, balance_low or {})
    report["workers_gone"] = _workers_gone(session, worker_stale_after)
    report["beat_gone"] = _beat_gone(session, now, beat_gone_after)
    report["total"] = sum(v["count"] for v in report.values() if isinstance(v, dict))
    oldest = session.execute(select(func.min(Payout.updated_at))
                             .where(Payout.state == PayoutState.NEEDS_REVIEW)).scalar_one()
    report["oldest_needs_review_seconds"] = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    return report


def _payout_section(session: Session, state: PayoutState, now: datetime) -> dict[str, Any]:
    """Payouts in ``state``, longest waiting first, with ``reason`` (the payout's note) and ``waiting_seconds``."""
    out = _section(session, Payout, [Payout.state == state], Payout.updated_at, PAYOUT_COLUMNS, ("last_error",))
    for row in out["rows"]:
        row["reason"] = row.pop("last_error") or "-"
        row["waiting_seconds"] = max(0.0, (now - row["updated_at"]).total_seconds())
    return out


def _low_balances(session: Session, floors: Mapping[str, Mapping[str, Decimal]]) -> dict[str, Any]:
    rows = []
    for b in session.execute(select(ProviderBalance).order_by(ProviderBalance.provider, ProviderBalance.currency)
                             ).scalars():
        floor = floors.get(b.provider, {}).get(b.currency)
        if floor is not None and b.amount < floor:
            rows.append({"provider": b.provider, "currency": b.currency, "amount": b.amount, "floor": floor,
                         "checked_at": b.checked_at})
    return {"count": len(rows), "rows": rows[:TOP_ROWS]}


def _workers_gone(session: Session, stale_after: float | None) -> dict[str, Any]:
    """Workers (heard of within the hour, not stopped on request) whose canary is older than ``stale_after``,
    and a row ``hostname = None`` when no worker consumes at all."""
    if stale_after is None:
        return {"count": 0, "rows": []}
    workers = liveness.live_workers(session, WORKERS_WINDOW)
    # A worker without a canary yet is starting, until it has been up for the threshold.
    stale = [w for w in workers
             if (w["canary_age"] if w["canary_age"] is not None else w["up"]) > stale_after]
    rows = [{"hostname": w["hostname"], "canary_age": w["canary_age"], "up": w["up"]} for w in stale]
    if len(stale) == len(workers):
        rows.insert(0, {"hostname": None, "canary_age": None, "up": None})  # nothing consumes
    return {"count": len(rows), "rows": rows[:TOP_ROWS]}


def _beat_gone(session: Session, now: datetime, gone_after: float | None) -> dict[str, Any]:
    """Beat's heartbeat older than ``gone_after`` (none yet counts only once a worker has been up longer)."""
    if gone_after is None:
        return {"count": 0, "rows": []}
    at = session.get(Heartbeat, BEAT)
    if at is None:
        up = max((w["up"] for w in liveness.live_workers(session, WORKERS_WINDOW)), default=0.0)
        gone = up > gone_after
    else:
        gone = (now - at.at).total_seconds() > gone_after
    rows = [{"name": BEAT, "last_heartbeat": at.at if at else None}] if gone else []
    return {"count": len(rows), "rows": rows}


def _poll_section(session: Session, where: list, order: Any) -> dict[str, Any]:
    count = session.execute(select(func.count()).select_from(BidPoll).where(*where)).scalar_one()
    rows = []
    if count:
        q = (select(BidPoll, Bid.remote_id, Bid.status).join(Bid, Bid.id == BidPoll.bid_id)
             .where(*where).order_by(order).limit(TOP_ROWS))
        for poll, remote_id, status in session.execute(q):
            row = {"bid_id": poll.bid_id, "exchanger": poll.exchanger, "remote_id": remote_id, "status": status}
            row.update(_row(poll, POLL_COLUMNS))
            rows.append(row)
    return {"count": count, "rows": rows}


def metrics_snapshot(session: Session) -> dict[str, Any]:
    """Counts for /metrics, computed against the database clock so every web worker agrees."""
    now = session.execute(select(func.now())).scalar_one()
    bids = [
        {"exchanger": ex, "status": st, "count": n}
        for ex, st, n in session.execute(
            select(Bid.exchanger, Bid.status, func.count()).group_by(Bid.exchanger, Bid.status)
            .order_by(Bid.exchanger, Bid.status))
    ]
    inbox = dict(session.execute(select(InboxEvent.state, func.count()).group_by(InboxEvent.state)).all())
    polls = dict(session.execute(select(BidPoll.state, func.count()).group_by(BidPoll.state)).all())
    overdue = session.execute(
        select(func.count()).select_from(BidPoll)
        .where(BidPoll.state == PollState.ACTIVE, BidPoll.next_poll_at < now - OVERDUE_GRACE)
    ).scalar_one()
    oldest = session.execute(
        select(func.min(InboxEvent.received_at)).where(InboxEvent.state.in_(INBOX_TO_PROCESS))
    ).scalar_one()
    sweep_lag = {
        c.exchanger: (now - c.last_finished_at).total_seconds() if c.last_finished_at else None
        for c in session.execute(select(SweepCursor)).scalars()
    }
    payouts = [
        {"provider": provider or "none", "state": state, "count": n}
        for provider, state, n in session.execute(
            select(Payout.provider, Payout.state, func.count()).group_by(Payout.provider, Payout.state))
    ]
    oldest_review = session.execute(select(func.min(Payout.updated_at))
                                    .where(Payout.state == PayoutState.NEEDS_REVIEW)).scalar_one()
    attempts = [  # the recent ones only (ix_payout_attempts_started): a scrape never reads the whole history
        {"provider": provider or "none", "kind": kind, "outcome": outcome, "count": n}
        for provider, kind, outcome, n in session.execute(
            select(Payout.provider, PayoutAttempt.kind, PayoutAttempt.outcome, func.count())
            .join(Payout, Payout.id == PayoutAttempt.payout_id)
            .where(PayoutAttempt.started_at >= now - RECENT_ATTEMPTS)
            .group_by(Payout.provider, PayoutAttempt.kind, PayoutAttempt.outcome))
    ]
    balances = [
        {"provider": b.provider, "currency": b.currency, "amount": b.amount,
         "age_seconds": (now - b.checked_at).total_seconds()}
        for b in session.execute(select(ProviderBalance)).scalars()
    ]
    beat = session.get(Heartbeat, BEAT)
    unsent = session.execute(select(func.count()).select_from(Notification).where(
        Notification.sent_at.is_(None), Notification.resolved_at.is_(None))).scalar_one()
    return {
        "payouts": payouts,
        "oldest_needs_review_seconds": (now - oldest_review).total_seconds() if oldest_review else 0.0,
        "payout_attempts": attempts,
        "balances": balances,
        "beat_heartbeat_age_seconds": (now - beat.at).total_seconds() if beat else None,
        "notifications_unsent": unsent,
        "now": now,
        "bids": bids,
        "inbox": inbox,
        "polls": polls,
        "polls_overdue": overdue,
        "oldest_unprocessed_inbox_seconds": (now - oldest).total_seconds() if oldest else 0.0,
        "sweep_lag_seconds": sweep_lag,
    }
