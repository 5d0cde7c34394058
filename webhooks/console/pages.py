"""What a person looks at. Every list is filtered and paged in SQL (``models.console``), newest first,
``?before=<id>`` for the next page."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app, render_template, request
from flask_login import current_user

from core.clock import now_utc
from models import console as q
from models import liveness
from models.queries import get_bid
from models.states import AuditAction, InboxState, OperatorRole, PayoutState, values
from providers.values import BadValue, amount, text, timestamp, whole_number
from webhooks.console import bp
from webhooks.console.auth import not_found, requires
from webhooks.console.docs import page
from webhooks.console.forms import ActionForm, SwitchForm
from webhooks.inputs import query_number, query_text
from webhooks.openapi import documented

WORKER_WINDOW = 60.0  # seconds: a worker not heard of for this long is gone
MAX_ID = 2**63 - 1
MAX_TEXT = 200


def _rt():
    return current_app.extensions["exsync.runtime"]


def _choice(name: str, allowed: list[str]) -> str | None:
    value = query_text(name, max_length=MAX_TEXT)
    if value is not None and value not in allowed:
        raise BadValue(name, f"must be one of {', '.join(allowed)}")
    return value


def _before() -> int | None:
    return query_number("before", 0, minimum=1, maximum=MAX_ID) if request.args.get("before") else None


def _next(rows: list[dict], limit: int = q.PAGE) -> int | None:
    return rows[-1]["id"] if len(rows) == limit else None


# -- overview --------------------------------------------------------------------------------------

def link(section: str, row: dict[str, Any]) -> str | None:
    """Where a row of the stuck report leads in the console."""
    if section.startswith("inbox") and "id" in row:
        return f"/console/inbox/{row['id']}"
    if section.startswith("payout") and "id" in row:
        return f"/console/payouts/{row['id']}"
    if row.get("exchanger") and row.get("remote_id"):
        return f"/console/bids/{row['exchanger']}/{row['remote_id']}"
    return None


def _sections(report: dict[str, Any]) -> list[tuple[str, str, str, list[str], dict[str, Any]]]:
    """(key, title, help, columns, section) in /stuck's order and words; a section /stuck does not list yet
    comes last with its own columns."""
    from webhooks.stuck import SECTIONS

    known = {key for key, *_ in SECTIONS}
    out = [(key, title, help_, columns, report[key]) for key, title, help_, columns in SECTIONS if key in report]
    for key, value in report.items():
        if key not in known and isinstance(value, dict) and "rows" in value:
            columns = list(value["rows"][0]) if value["rows"] else []
            out.append((key, key.replace("_", " ").capitalize(), "", columns, value))
    return out


@bp.get("/")
@page("Overview: everything that needs a person now, and the last hour's flow")
@requires(OperatorRole.VIEWER)
def overview():
    from worker import notify

    rt, now = _rt(), now_utc()
    report = notify.report(rt, now)  # the stuck report with every check, as /stuck and notifications read it
    with rt.db.session() as s:
        workers = liveness.live_workers(s, WORKER_WINDOW)
        flow = q.flow(s, now - timedelta(hours=1))
    return render_template("overview.html", sections=_sections(report), workers=workers, flow=flow,
                           total=report["total"], link=link, now=now)


# -- payouts ---------------------------------------------------------------------------------------

@bp.get("/payouts")
@page("Payouts, filtered by state, provider and exchanger", query=["state", "provider", "exchanger", "before"])
@requires(OperatorRole.VIEWER)
def payouts():
    rt = _rt()
    f = {"state": _choice("state", values(PayoutState)), "provider": query_text("provider", max_length=MAX_TEXT),
         "exchanger": query_text("exchanger", max_length=MAX_TEXT)}
    with rt.db.session() as s:
        rows = q.list_payouts(s, **f, before=_before())
    return render_template("payouts.html", rows=rows, f=f, states=values(PayoutState), next=_next(rows),
                           providers=sorted(rt.payouts().providers), exchangers=sorted(rt.settings.exchangers))


@bp.get("/payouts/<int:payout_id>")
@page("One payout: every attempt, its approvals and audit rows; approve, retry, cancel", path=["payout_id"])
@requires(OperatorRole.VIEWER)
def payout(payout_id: int):
    rt = _rt()
    with rt.db.session() as s:
        p = q.payout_detail(s, payout_id) if payout_id <= MAX_ID else None
        if p is None:
            not_found(f"no payout {payout_id}")
        from worker.actions.payouts import required_approvals

        need = required_approvals(rt, s, payout_id)
    return render_template("payout.html", p=p, need=need, form=ActionForm())


# -- bids ------------------------------------------------------------------------------------------

@bp.get("/bids")
@page("Bids, searched by id, status, exchanger, date, amount and account",
      query=["remote_id", "status", "exchanger", "since", "until", "amount", "account", "before"])
@requires(OperatorRole.VIEWER)
def bids() -> str:
    a = request.args
    f: dict[str, Any] = {
        "remote_id": whole_number(a["remote_id"].strip(), "remote_id", minimum=1) if a.get("remote_id") else None,
        "status": query_text("status", max_length=64), "exchanger": query_text("exchanger", max_length=MAX_TEXT),
        "since": timestamp(a["since"], "since") if a.get("since") else None,
        "until": timestamp(a["until"], "until") if a.get("until") else None,
        "amount": amount(a["amount"], "amount") if a.get("amount") else None,
        "account": text(a["account"].strip(), "account", max_length=MAX_TEXT) if a.get("account", "").strip() else None,
    }
    with _rt().db.session() as s:
        rows = q.search_bids(s, **f, before=_before())
    shown = {k: ("" if v is None else str(v)) for k, v in f.items()}
    return render_template("bids.html", rows=rows, f=shown, next=_next(rows),
                           exchangers=sorted(_rt().settings.exchangers))


@bp.get("/bids/<exchanger>/<int:remote_id>")
@page("One bid: its status timeline with sources, its payout and attempts, its inbox events",
      path=["exchanger", "remote_id"])
@requires(OperatorRole.VIEWER)
def bid(exchanger: str, remote_id: int):
    text(exchanger, "exchanger", max_length=MAX_TEXT)
    with _rt().db.session() as s:
        b = get_bid(s, exchanger, remote_id) if remote_id <= MAX_ID else None
        if b is None:
            not_found(f"no bid {exchanger}/{remote_id}")
        extras = q.bid_extras(s, b["id"], exchanger, remote_id)
    return render_template("bid.html", b=b, payout=extras["payout"], events=extras["inbox"])


# -- inbox -----------------------------------------------------------------------------------------

INBOX_SHOWN = [InboxState.FAILED, InboxState.DEAD, InboxState.DISMISSED, InboxState.RECEIVED, InboxState.PROCESSED]


@bp.get("/inbox")
@page("Inbox events, failed and dead by default", query=["state", "provider", "before"])
@requires(OperatorRole.VIEWER)
def inbox():
    state = _choice("state", values(INBOX_SHOWN))
    states = [state] if state else [InboxState.FAILED, InboxState.DEAD]
    provider = query_text("provider", max_length=MAX_TEXT)
    with _rt().db.session() as s:
        rows = q.list_inbox(s, states=list(states), provider=provider, before=_before())
    return render_template("inbox.html", rows=rows, state=state or "", provider=provider or "",
                           states=values(INBOX_SHOWN), next=_next(rows))


@bp.get("/inbox/<int:event_id>")
@page("One inbox event with its raw body; replay, dismiss", path=["event_id"])
@requires(OperatorRole.VIEWER)
def inbox_event(event_id: int):
    with _rt().db.session() as s:
        ev = q.inbox_event(s, event_id) if event_id <= MAX_ID else None
        if ev is None:
            not_found(f"no inbox event {event_id}")
        audit = q.audit_for(s, "inbox_event", str(event_id))
    raw = bytes(ev["body"] or b"").decode("utf-8", errors="replace")
    return render_template("inbox_event.html", ev=ev, raw=raw, audit=audit, form=ActionForm())


# -- providers and routes --------------------------------------------------------------------------

@bp.get("/providers")
@page("Providers and routes: balances as last read, recent errors, each route's off switch")
@requires(OperatorRole.VIEWER)
def providers() -> str:
    from worker.actions import routes as route_actions

    rt = _rt()
    switches = route_actions.switches(rt)
    with rt.db.session() as s:
        # Stored by the notify job (worker/notify.py): a page view never waits on a provider.
        balances = q.balances(s)
        errors = q.provider_errors(s, now_utc() - timedelta(days=1))
        audit = q.list_audit(s, object_type="route", limit=20)
    return render_template("providers.html", cfg=rt.payouts(), balances=balances, switches=switches, errors=errors,
                           audit=audit, form=SwitchForm())


# -- audit -----------------------------------------------------------------------------------------

@bp.get("/audit")
@page("The audit trail, newest first", query=["actor", "action", "object_type", "object_id", "before"])
@requires(OperatorRole.VIEWER)
def audit():
    f = {"actor": query_text("actor", max_length=MAX_TEXT), "action": _choice("action", values(AuditAction)),
         "object_type": _choice("object_type", ["payout", "inbox_event", "route", "operator"]),
         "object_id": query_text("object_id", max_length=MAX_TEXT)}
    with _rt().db.session() as s:
        rows = q.list_audit(s, **f, before=_before())
    return render_template("audit.html", rows=rows, f={k: v or "" for k, v in f.items()}, next=_next(rows),
                           actions=values(AuditAction), me=current_user.name)


# -- the style sheet -------------------------------------------------------------------------------

@bp.get("/static/console.css")
@documented(summary="The console's style sheet", tags=["console"], security=[],
            responses={200: {"description": "CSS", "content": {"text/css": {"schema": {"type": "string"}}}}})
def stylesheet():
    from pathlib import Path

    from flask import Response

    css = (Path(__file__).parent / "static" / "console.css").read_text(encoding="utf-8")
    return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=3600"})
