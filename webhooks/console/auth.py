"""Who is looking: sessions, CSRF, roles.

- The session is Flask's signed cookie, renamed ``exsync_console`` and scoped to ``/console/`` (the API and
  the receivers never see it), HttpOnly, SameSite=Lax, Secure whenever the request came over https
  (``EXSYNC_TRUSTED_PROXIES`` lets a TLS proxy say so). It ends ``IDLE_HOURS`` after its last request (the
  cookie's signature carries its time, so an older cookie is refused however it is replayed) and
  ``SESSION_HOURS`` after its login however active it was (the login time is in the signed session).
- It names the operator and their ``session_epoch``: disabling an operator or changing their password ends
  every session they had (worker/actions/operators.py).
- The signing key is one row of ``console_keys``, made by the first process that needs it.
- CSRF: every POST under /console/ carries the session's token (Flask-WTF), checked before the view runs.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from functools import wraps
from typing import Callable, NoReturn

from flask import Flask, abort, current_app, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from core.clock import now_utc
from models.operators import ConsoleKey
from models.states import OperatorRole
from providers.values import BadValue
from worker.actions import Actor
from worker.actions import operators as ops
from worker.actions.audit import RANK

SESSION_HOURS = 12  # a session ends this long after its login, however active
IDLE_HOURS = 2  # …and this long after its last request (the cookie's own signed age)
COOKIE = "exsync_console"
LOGIN_AT = "login_at"  # in the session: when its login happened (unix seconds)
PREFIX = "/console/"

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "console.login"
login_manager.login_message = "Log in to see this page."
login_manager.session_protection = "basic"


class Operator(UserMixin):
    """The logged-in operator (Flask-Login's user): id and epoch make the session's id."""

    def __init__(self, identity: ops.Identity) -> None:
        self.identity = identity
        self.name, self.role = identity.name, identity.role

    def get_id(self) -> str:
        return f"{self.identity.id}:{self.identity.session_epoch}"

    def may(self, role: str) -> bool:
        return RANK[OperatorRole(self.role)] >= RANK[OperatorRole(role)]


@login_manager.user_loader
def _load(session_id: str) -> Operator | None:
    op_id, _, epoch = session_id.partition(":")
    if not (op_id.isdigit() and epoch.isdigit()):
        return None
    logged_in = session.get(LOGIN_AT)
    if not isinstance(logged_in, (int, float)) or now_utc().timestamp() - logged_in > SESSION_HOURS * 3600:
        return None  # past the session's absolute lifetime, however active it was
    identity = ops.current(current_app.extensions["exsync.runtime"], int(op_id), int(epoch))
    return Operator(identity) if identity is not None else None


class ConsoleSessions(SecureCookieSessionInterface):
    """Sessions only under /console/, signed with the key kept in Postgres (loaded once per process)."""

    def open_session(self, app, request):
        if not request.path.startswith(PREFIX):
            return None  # a null session: nothing outside the console reads or writes one
        if not app.secret_key:
            try:
                app.secret_key = _signing_key(app)
            except SQLAlchemyError:
                return None  # Postgres is down: the console's before_request answers 503 (load_key)
        return super().open_session(app, request)

    def get_cookie_secure(self, app) -> bool:
        return request.is_secure


def _signing_key(app: Flask) -> str:
    db = app.extensions["exsync.runtime"].db
    with db.session() as s:
        s.execute(pg_insert(ConsoleKey).values(name="session", secret=secrets.token_urlsafe(48))
                  .on_conflict_do_nothing())
        return s.execute(select(ConsoleKey.secret).where(ConsoleKey.name == "session")).scalar_one()


def init_app(app: Flask) -> None:
    app.session_interface = ConsoleSessions()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_PATH=PREFIX, SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=timedelta(hours=IDLE_HOURS),
        REMEMBER_COOKIE_DURATION=timedelta(0),
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in the console's own before_request, not on the receivers
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600, WTF_CSRF_SSL_STRICT=True,
    )
    csrf.init_app(app)
    login_manager.init_app(app)


def actor() -> Actor:
    return Actor(current_user.name, "console", request.remote_addr)


def requires(role: str) -> Callable:
    """The view needs a logged-in operator with ``role`` or higher (403 otherwise; the action checks again)."""

    def wrap(view: Callable) -> Callable:
        @wraps(view)
        def inner(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.may(role):
                return render_template("error.html", title="Not allowed",
                                       message=f"You are a {current_user.role}: this needs the {role} role."), 403
            return view(*args, **kwargs)

        return inner

    return wrap


def setup_blueprint(bp) -> None:
    @bp.before_request
    def _load_key():
        # The key could not be read when the session was opened: try again here, where a database error is
        # the app's 503 storage_unavailable.
        if not current_app.secret_key:
            current_app.secret_key = _signing_key(current_app)

    @bp.before_request
    def _csrf():
        if request.method != "POST":
            return None
        if request.endpoint != "console.login" and not current_user.is_authenticated:
            # An ended session, or a request no console page made: nothing to redirect the form's data to.
            return render_template("error.html", title="Not logged in",
                                   message="Your session has ended: log in again.", back=url_for("console.login")), 403
        csrf.protect()
        return None

    @bp.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        # 403, as a forged request is: the form was not made by this session.
        return render_template("error.html", title="Form refused",
                               message=f"{exc.description} Reload the page and try again."), 403

    @bp.errorhandler(BadValue)
    def _bad_value(exc: BadValue):
        return render_template("error.html", title="Cannot read that", message=f"{exc.field}: {exc.message}"), 400

    @bp.errorhandler(404)
    def _not_found(exc):
        return render_template("error.html", title="Not found", message=exc.description), 404

    @bp.app_template_global()
    def may(role: str) -> bool:
        return bool(current_user.is_authenticated and current_user.may(role))

    from webhooks.console import filters

    for name in ("when", "money", "show", "change", "without"):
        bp.add_app_template_filter(getattr(filters, name), name)

    @bp.after_request
    def _no_store(resp):
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                                "frame-ancestors 'none'")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp


def not_found(what: str) -> NoReturn:
    abort(404, description=what)


__all__ = ["COOKIE", "actor", "csrf", "login_manager", "not_found", "redirect", "requires", "url_for"]
