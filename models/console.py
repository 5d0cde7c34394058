"""Read queries of the console and ``exsync audit list``: filtered and paged in SQL, never in Python.

Lists are newest first and paged by keyset (``before``: the last id of the previous page, so a page costs
the same at a million rows as at ten); every filter has an index (migration 0008; ``bench/console.py``
times each list on a million bids and prints its plan). Each function returns plain dicts.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

PAGE = 50
AUDIT_COLUMNS = "id, at, actor, via, action, object_type, object_id, reason, before, after, source_ip"
BID_LIST_COLUMNS = ("b.id, b.exchanger, b.remote_id, b.status, b.amount_give, b.currency_code_give, b.amount_get, "
                    "b.currency_code_get, b.first_seen_at, b.updated_at, b.request_fields ->> 'account2' AS account2")
PAYOUT_LIST_COLUMNS = ("id, exchanger, remote_id, provider, amount, currency, state, attempts, last_error, "
                       "created_at, updated_at")
INBOX_LIST_COLUMNS = "id, provider, endpoint, received_at, state, attempts, last_error, payload"


def _rows(session: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(text(sql), params).mappings().all()]


def _where(clauses: list[str]) -> str:
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


def list_audit(session: Session, *, actor: str | None = None, action: str | None = None,
               object_type: str | None = None, object_id: str | None = None, since: datetime | None = None,
               before: int | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    for column, value in (("actor", actor), ("action", action), ("object_type", object_type),
                          ("object_id", object_id)):
        if value is not None:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    if since is not None:
        clauses.append("at >= :since")
        params["since"] = since
    if before is not None:
        clauses.append("id < :before")
        params["before"] = before
    return _rows(session, f"SELECT {AUDIT_COLUMNS} FROM audit_events {_where(clauses)} ORDER BY id DESC LIMIT :limit",
                 params)


def search_bids(session: Session, *, remote_id: int | None = None, status: str | None = None,
                exchanger: str | None = None, since: datetime | None = None, until: datetime | None = None,
                amount: Decimal | None = None, account: str | None = None, before: int | None = None,
                limit: int = PAGE) -> list[dict[str, Any]]:
    """Bids matching every filter given. ``amount`` matches what the customer gave or gets; ``account`` is
    the bid's account2 (what exsync's API sent to create_bid); the dates bound when exsync first saw it."""
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    for column, value in (("b.remote_id", remote_id), ("b.status", status), ("b.exchanger", exchanger)):
        if value is not None:
            name = column.split(".")[1]
            clauses.append(f"{column} = :{name}")
            params[name] = value
    if since is not None:
        clauses.append("b.first_seen_at >= :since")
        params["since"] = since
    if until is not None:
        clauses.append("b.first_seen_at < :until")
        params["until"] = until
    if amount is not None:
        clauses.append("(b.amount_give = :amount OR b.amount_get = :amount)")
        params["amount"] = amount
    if account is not None:
        clauses.append("b.request_fields IS NOT NULL AND (b.request_fields ->> 'account2') = :account")
        params["account"] = account
    if before is not None:
        clauses.append("b.id < :before")
        params["before"] = before
    return _rows(session, f"SELECT {BID_LIST_COLUMNS} FROM bids b {_where(clauses)} ORDER BY b.id DESC LIMIT :limit",
                 params)


def list_payouts(session: Session, *, state: str | None = None, provider: str | None = None,
                 exchanger: str | None = None, before: int | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    for column, value in (("state", state), ("provider", provider), ("exchanger", exchanger)):
        if value is not None:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    if before is not None:
        clauses.append("id < :before")
        params["before"] = before
    return _rows(session, f"SELECT {PAYOUT_LIST_COLUMNS} FROM payouts {_where(clauses)} ORDER BY id DESC LIMIT :limit",
                 params)


def list_inbox(session: Session, *, states: list[str], provider: str | None = None, before: int | None = None,
               limit: int = PAGE) -> list[dict[str, Any]]:
    clauses = ["state = ANY(:states)"]
    params: dict[str, Any] = {"limit": limit, "states": states}
    if provider is not None:
        clauses.append("provider = :provider")
        params["provider"] = provider
    if before is not None:
        clauses.append("id < :before")
        params["before"] = before
    return _rows(session, f"SELECT {INBOX_LIST_COLUMNS} FROM inbox_events {_where(clauses)} "
                          f"ORDER BY id DESC LIMIT :limit", params)


def inbox_event(session: Session, event_id: int) -> dict[str, Any] | None:
    rows = _rows(session, """SELECT id, provider, endpoint, received_at, source_ip, headers, content_type, body,
                                    payload, state, attempts, last_error, next_attempt_at, processed_at
                             FROM inbox_events WHERE id = :id""", {"id": event_id})
    return rows[0] if rows else None


def payout_detail(session: Session, payout_id: int) -> dict[str, Any] | None:
    """The payout with its bid's id, every attempt, its approvals and its audit rows."""
    rows = _rows(session, """SELECT p.*, b.status AS bid_status FROM payouts p JOIN bids b ON b.id = p.bid_id
                             WHERE p.id = :id""", {"id": payout_id})
    if not rows:
        return None
    out = rows[0]
    out.pop("lease_token", None)
    out["attempts_log"] = _rows(session, """SELECT n, kind, started_at, finished_at, outcome, http_status,
                                                   provider_code, message
                                            FROM payout_attempts WHERE payout_id = :id ORDER BY n""",
                                {"id": payout_id})
    out["approvals"] = _rows(session, "SELECT operator, at, reason FROM payout_approvals WHERE payout_id = :id "
                                      "ORDER BY id", {"id": payout_id})
    out["audit"] = audit_for(session, "payout", str(payout_id))
    return out


def audit_for(session: Session, object_type: str, object_id: str) -> list[dict[str, Any]]:
    return _rows(session, f"""SELECT {AUDIT_COLUMNS} FROM audit_events
                              WHERE object_type = :t AND object_id = :o ORDER BY id""",
                 {"t": object_type, "o": object_id})


def bid_extras(session: Session, bid_id: int, exchanger: str, remote_id: int) -> dict[str, Any]:
    """What a bid's page shows besides the bid and its history: its payout with attempts, its inbox events."""
    payout = _rows(session, "SELECT id FROM payouts WHERE bid_id = :id", {"id": bid_id})
    events = _rows(session, f"""SELECT {INBOX_LIST_COLUMNS} FROM inbox_events
                                WHERE provider = 'premium' AND endpoint = :ex AND (payload ->> 'bid_id') = :rid
                                ORDER BY id""", {"ex": exchanger, "rid": str(remote_id)})
    return {"payout": payout_detail(session, payout[0]["id"]) if payout else None, "inbox": events}


def _counts(session: Session, sql: str, since: datetime) -> dict[str, int]:
    return {k: int(v) for k, v in session.execute(text(sql), {"since": since}).all()}


def flow(session: Session, since: datetime) -> dict[str, Any]:
    """What moved since ``since``: callbacks received, status changes by source, payouts by state."""
    return {
        "callbacks": _counts(session, "SELECT provider, count(*) FROM inbox_events WHERE received_at >= :since "
                                      "GROUP BY provider ORDER BY provider", since),
        "changes": _counts(session, "SELECT source, count(*) FROM bid_status_changes WHERE recorded_at >= :since "
                                    "GROUP BY source ORDER BY source", since),
        "payouts": _counts(session, "SELECT state, count(*) FROM payouts WHERE updated_at >= :since "
                                    "GROUP BY state ORDER BY state", since),
    }


def provider_errors(session: Session, since: datetime, limit: int = 20) -> list[dict[str, Any]]:
    """The latest failed provider calls (attempts that did not succeed), newest first."""
    return _rows(session, """SELECT a.payout_id, p.provider, a.kind, a.started_at, a.outcome, a.http_status,
                                    a.provider_code, a.message
                             FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id
                             WHERE a.started_at >= :since AND a.outcome NOT IN ('succeeded', 'pending', 'started')
                             ORDER BY a.id DESC LIMIT :l""", {"since": since, "l": limit})


def balances(session: Session) -> dict[str, list[dict[str, Any]]]:
    """provider → its balances as the notify job last read them (currency, amount, checked_at)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in _rows(session, "SELECT provider, currency, amount, checked_at FROM provider_balances "
                              "ORDER BY provider, currency", {}):
        out.setdefault(row["provider"], []).append(row)
    return out
