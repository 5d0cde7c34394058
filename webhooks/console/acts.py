"""What a person does: each POST checks its CSRF token (auth.py) and the role, then calls the same
``worker.actions`` function as the CLI (role checked again, audit row written in the action's transaction),
and redirects back to the object's page (303) with what happened."""
from __future__ import annotations

from typing import Callable

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from core.clock import now_utc
from models.states import OperatorRole
from providers.values import BadValue
from webhooks.console import bp
from webhooks.console.auth import LOGIN_AT, Operator, actor, requires
from webhooks.console.docs import form, page
from webhooks.console.forms import ActionForm, LoginForm, SwitchForm
from worker.actions import Forbidden, Refused
from worker.actions import inbox as inbox_actions
from worker.actions import operators as ops
from worker.actions import payouts as payout_actions
from worker.actions import routes as route_actions

REASON = {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}}
MAX_ID = 2**63 - 1


def _rt():
    return current_app.extensions["exsync.runtime"]


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.overview")


@bp.get("/login")
@page("The login form", query=["next"], public=True)
def login_page():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")), 302)
    return render_template("login.html", form=LoginForm(), error=None, next=request.args.get("next", ""))


@bp.post("/login")
@form("Log in: name, password and, when the operator has one, a TOTP code",
      {"name": {"type": "string"}, "password": {"type": "string"}, "code": {"type": "string"},
       "next": {"type": "string"}}, required=("csrf_token", "name", "password"), public=True)
def login():
    f = LoginForm()
    next_page = request.form.get("next", "")[:500]
    if not f.validate():
        return render_template("login.html", form=f, error="Give a name and a password.", next=next_page), 200
    try:
        identity = ops.login(_rt(), f.name.data or "", f.password.data or "", f.code.data, request.remote_addr)
    except ops.LoginThrottled as exc:
        return render_template("login.html", form=f, error=str(exc), next=next_page), 429
    except ops.LoginFailed:  # one answer for every cause (the audit row says which)
        return render_template("login.html", form=f, error="Wrong name, password or code.", next=next_page), 200
    session.clear()  # a fresh session, and so a fresh CSRF token, for the new login
    session.permanent = True
    session[LOGIN_AT] = now_utc().timestamp()
    login_user(Operator(identity))
    return redirect(_safe_next(next_page), 303)


@bp.post("/logout")
@form("Log out", {})
def logout():
    if current_user.is_authenticated:
        ops.logout(_rt(), actor())
    logout_user()
    session.clear()
    return redirect(url_for("console.login"), 303)


def _act(back: str, fn: Callable, done: str, form_class: type[ActionForm] = ActionForm):
    """Run an action from a form with a reason; back to ``back`` with what happened, or the refusal (409)."""
    f = form_class()
    if not f.validate():
        flash("; ".join(e for errs in f.errors.values() for e in errs) or "the form is incomplete", "error")
        return redirect(back, 303)
    try:
        fn(f)
    except Forbidden as exc:
        return render_template("error.html", title="Not allowed", message=str(exc)), 403
    except Refused as exc:
        return render_template("error.html", title="Refused", message=str(exc), back=back), 409
    flash(done, "ok")
    return redirect(back, 303)


def _payout_act(payout_id: int, fn: Callable, verb: str):
    back = url_for("console.payout", payout_id=payout_id)
    if payout_id > MAX_ID:
        raise BadValue("payout_id", "is too large")
    return _act(back, lambda f: fn(_rt(), actor(), payout_id, f.reason.data), f"payout {payout_id}: {verb}")


@bp.post("/payouts/<int:payout_id>/approve")
@form("Approve a payout in needs_review (one approval; paid once it has every approval its route needs)",
      REASON, path=["payout_id"], required=("csrf_token", "reason"))
@requires(OperatorRole.APPROVER)
def approve(payout_id: int):
    return _payout_act(payout_id, payout_actions.approve, "approved")


@bp.post("/payouts/<int:payout_id>/retry")
@form("Retry a failed, parked or needs_review payout", REASON, path=["payout_id"], required=("csrf_token", "reason"))
@requires(OperatorRole.OPERATOR)
def retry(payout_id: int):
    return _payout_act(payout_id, payout_actions.retry, "queued again")


@bp.post("/payouts/<int:payout_id>/cancel")
@form("Cancel a payout (never while money may be moving)", REASON, path=["payout_id"],
      required=("csrf_token", "reason"))
@requires(OperatorRole.OPERATOR)
def cancel(payout_id: int):
    return _payout_act(payout_id, payout_actions.cancel, "cancelled")


@bp.post("/inbox/<int:event_id>/replay")
@form("Replay a failed or dead inbox event", REASON, path=["event_id"], required=("csrf_token", "reason"))
@requires(OperatorRole.OPERATOR)
def replay(event_id: int):
    if event_id > MAX_ID:
        raise BadValue("event_id", "is too large")

    def run(f):
        ids = inbox_actions.replay(_rt(), actor(), [event_id], f.reason.data)
        if not ids:
            raise Refused(f"inbox event {event_id} is unknown or already processed")
        _enqueue(ids)

    return _act(url_for("console.inbox_event", event_id=event_id), run, f"inbox event {event_id}: replaying")


@bp.post("/inbox/<int:event_id>/dismiss")
@form("Dismiss a failed or dead inbox event", REASON, path=["event_id"], required=("csrf_token", "reason"))
@requires(OperatorRole.OPERATOR)
def dismiss(event_id: int):
    if event_id > MAX_ID:
        raise BadValue("event_id", "is too large")
    return _act(url_for("console.inbox_event", event_id=event_id),
                lambda f: inbox_actions.dismiss(_rt(), actor(), event_id, f.reason.data),
                f"inbox event {event_id}: dismissed")


@bp.post("/routes/<exchanger>/switch")
@form("Switch an exchanger's payouts on or off", {**REASON, "enabled": {"type": "string"}}, path=["exchanger"],
      required=("csrf_token", "reason"))
@requires(OperatorRole.ADMIN)
def switch(exchanger: str):
    return _act(url_for("console.providers"),
                lambda f: route_actions.switch(_rt(), actor(), exchanger, bool(f.enabled.data), f.reason.data),
                f"route {exchanger}: switched", SwitchForm)


def _enqueue(ids: list[int]) -> None:
    """Send replayed events to a worker now (beat's inbox sweep would find them anyway)."""
    from webhooks.inbox import Inbox

    inbox: Inbox = current_app.extensions["exsync.inbox"]
    for event_id in ids:
        inbox.enqueue(event_id)
