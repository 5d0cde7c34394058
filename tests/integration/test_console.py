"""The console in this process (Flask's test client against the real Postgres): sessions, CSRF, roles, every
page, the actions through worker/actions, and hostile input (never a 5xx). The same in a real browser against
real processes: tests/system/test_console_browser.py."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from tests.support.operators import PASSWORD, add_operator
from tests.support.payouts import install_payouts, mirror_bid, one, payout_toml
from worker.payouts import engine

FOUR_EYES = 'approval_above = "5000"\napprovers = 2'
TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')


def token(client, path="/console/login") -> str:
    page = client.get(path)
    m = TOKEN.search(page.get_data(as_text=True))
    assert m, page.get_data(as_text=True)[:500]
    return m.group(1)


def log_in(client, name, password=PASSWORD, **extra):
    return client.post("/console/login", data={"csrf_token": token(client), "name": name, "password": password,
                                               **extra})


@pytest.fixture
def console(web_app):
    return web_app.test_client()


def test_unauthenticated_is_sent_to_the_login_page(console, db):
    for path in ("/console/", "/console/payouts", "/console/payouts/1", "/console/bids/main/1", "/console/inbox",
                 "/console/inbox/1", "/console/providers", "/console/audit", "/console/bids"):
        r = console.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/console/login?next="), path
    r = console.get("/console/login")
    assert r.status_code == 200 and "exsync console" in r.get_data(as_text=True)
    # The API token is not a console credential.
    from tests.support.config import API_TOKEN

    r = console.get("/console/", headers={"Authorization": "Bearer " + API_TOKEN})
    assert r.status_code == 302


def test_login_session_cookie_and_logout(runtime, console):
    add_operator(runtime, "ann", "admin")
    r = log_in(console, "ann", "wrong password!!")
    assert r.status_code == 200 and "Wrong name, password or code." in r.get_data(as_text=True)
    r = log_in(console, "ann", next="/console/audit")
    assert r.status_code == 303 and r.headers["Location"] == "/console/audit"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("exsync_console=") and "HttpOnly" in cookie and "Path=/console/" in cookie
    assert "SameSite=Lax" in cookie and "Expires=" in cookie
    page = console.get("/console/audit").get_data(as_text=True)
    assert "login" in page and "ann" in page
    r = console.post("/console/logout", data={"csrf_token": token(console, "/console/")})
    assert r.status_code == 303 and console.get("/console/").status_code == 302
    # An open redirect is refused: next must stay inside the console.
    r = log_in(console, "ann", next="//evil.example/x")
    assert r.headers["Location"] == "/console/"


def test_a_form_without_its_csrf_token_is_refused(runtime, console):
    add_operator(runtime, "ann", "admin")
    r = console.post("/console/login", data={"name": "ann", "password": PASSWORD})
    assert r.status_code == 403 and "CSRF" in r.get_data(as_text=True)
    r = console.post("/console/payouts/1/cancel", data={"reason": "x"})
    assert r.status_code == 403 and "log in again" in r.get_data(as_text=True)  # no session at all
    log_in(console, "ann")
    r = console.post("/console/payouts/1/cancel", data={"reason": "x"})
    assert r.status_code == 403 and "CSRF" in r.get_data(as_text=True)
    r = console.post("/console/payouts/1/cancel", data={"reason": "x", "csrf_token": "forged"})
    assert r.status_code == 403
    with runtime.db.session() as s:
        assert s.execute(text("SELECT count(*) FROM audit_events WHERE action = 'cancel'")).scalar() == 0


def test_a_disabled_operator_loses_their_session(runtime, console):
    from worker.actions import Actor
    from worker.actions import operators as ops

    add_operator(runtime, "ben", "viewer")
    log_in(console, "ben")
    assert console.get("/console/").status_code == 200
    ops.disable(runtime, Actor.shell(), "ben", "left")
    assert console.get("/console/").status_code == 302


def test_four_eyes_through_the_console(runtime, console, premium_sandbox, zc_sandbox, web_app):
    install_payouts(runtime, payout_toml(zc_sandbox.url, route=FOUR_EYES))
    rid = mirror_bid(runtime, premium_sandbox, amount="100")
    engine.create_due_payouts(runtime)
    pid = one(runtime).id
    for name, role in (("alice", "approver"), ("bob", "approver"), ("vera", "viewer")):
        add_operator(runtime, name, role)
    viewer = web_app.test_client()
    log_in(viewer, "vera")
    page = viewer.get(f"/console/payouts/{pid}").get_data(as_text=True)
    assert "needs 2 approvals" in page and "Approve" not in page and "you can look, not act" in page
    r = viewer.post(f"/console/payouts/{pid}/approve", data={"csrf_token": token(viewer, "/console/"),
                                                             "reason": "me too"})
    assert r.status_code == 403 and "this needs the approver role" in r.get_data(as_text=True)

    log_in(console, "alice")
    r = console.post(f"/console/payouts/{pid}/approve", data={"csrf_token": token(console, "/console/"),
                                                              "reason": ""})
    assert r.status_code == 303 and one(runtime).state == "needs_review"  # no reason: nothing done
    assert "a reason is required" in console.get(f"/console/payouts/{pid}").get_data(as_text=True)
    r = console.post(f"/console/payouts/{pid}/approve", data={"csrf_token": token(console, "/console/"),
                                                              "reason": "known customer"})
    assert r.status_code == 303
    r = console.post(f"/console/payouts/{pid}/approve", data={"csrf_token": token(console, "/console/"),
                                                              "reason": "again"})
    assert r.status_code == 409 and "alice already approved" in r.get_data(as_text=True)
    second = web_app.test_client()
    log_in(second, "bob")
    second.post(f"/console/payouts/{pid}/approve", data={"csrf_token": token(second, "/console/"),
                                                         "reason": "checked the bid"})
    assert one(runtime).state == "pending"
    assert engine.submit_due(runtime) == {"succeeded": 1}
    page = console.get(f"/console/payouts/{pid}").get_data(as_text=True)
    assert "alice" in page and "bob" in page and "known customer" in page and "2 of 2 needed" in page
    bid = console.get(f"/console/bids/main/{rid}").get_data(as_text=True)
    assert f"Payout #{pid}" in bid and "realpay" in bid
    with runtime.db.session() as s:
        vias = s.execute(text("SELECT DISTINCT via FROM audit_events WHERE action = 'approve'")).scalars().all()
    assert vias == ["console"]


def test_every_page_renders(runtime, console, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = mirror_bid(runtime, premium_sandbox, amount="5")
    engine.create_due_payouts(runtime)
    with runtime.db.session() as s:
        eid = s.execute(text("""INSERT INTO inbox_events (provider, endpoint, body, payload, state, last_error)
                                VALUES ('premium', 'main', :b, :p, 'dead', 'gave up') RETURNING id"""),
                        {"b": b"bid_id=%d&status=<script>" % rid,
                         "p": '{"bid_id": %d, "status": "realpay"}' % rid}).scalar()
        s.execute(text("INSERT INTO provider_balances (provider, currency, amount) VALUES ('zc', 'RUB', 1234.50)"))
    add_operator(runtime, "ann", "admin")
    log_in(console, "ann")
    pid = one(runtime).id
    for path, needle in [("/console/", "Needs a person now"), ("/console/payouts?state=pending", f"#{pid}"),
                         (f"/console/payouts/{pid}", "Attempts"), ("/console/bids?amount=5", f"main/{rid}"),
                         (f"/console/bids?remote_id={rid}", f"main/{rid}"),
                         (f"/console/bids/main/{rid}", "Status timeline"), ("/console/inbox", f">{eid}<"),
                         (f"/console/inbox/{eid}", "&lt;script&gt;"), ("/console/providers", "Switch off"),
                         ("/console/providers", "1234.5 RUB"),
                         ("/console/audit", "login"), ("/console/static/console.css", "--fg")]:
        r = console.get(path)
        assert r.status_code == 200 and needle in r.get_data(as_text=True), path
    assert console.get("/console/payouts/99999").status_code == 404
    assert console.get("/console/bids/main/99999").status_code == 404
    r = console.get("/console/bids?amount=lots")
    assert r.status_code == 400 and "amount" in r.get_data(as_text=True)
    r = console.get("/console/payouts?state=bogus")
    assert r.status_code == 400


def test_dismiss_and_route_switch_through_the_console(runtime, console, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    with runtime.db.session() as s:
        eid = s.execute(text("INSERT INTO inbox_events (provider, endpoint, body, state) "
                             "VALUES ('premium', 'main', 'x', 'dead') RETURNING id")).scalar()
    add_operator(runtime, "ann", "admin")
    log_in(console, "ann")
    t = token(console, "/console/")
    r = console.post(f"/console/inbox/{eid}/dismiss", data={"csrf_token": t, "reason": "test event"})
    assert r.status_code == 303
    assert "dismissed" in console.get(f"/console/inbox/{eid}").get_data(as_text=True)
    r = console.post("/console/routes/main/switch", data={"csrf_token": t, "reason": "incident"})
    assert r.status_code == 303
    from worker.actions import routes

    assert routes.switches(runtime) == {"main": False}
    r = console.post("/console/routes/main/switch", data={"csrf_token": t, "reason": "over", "enabled": "y"})
    assert routes.switches(runtime) == {"main": True}
    r = console.post("/console/routes/nowhere/switch", data={"csrf_token": t, "reason": "x"})
    assert r.status_code == 409 and "no payout route &#39;nowhere&#39;" in r.get_data(as_text=True)


def test_postgres_down_is_503_never_500(settings):
    from core.runtime import Runtime
    from models.db import Database
    from webhooks.app import create_app

    dead_db = Database("postgresql+psycopg2://u@127.0.0.1:1/x")
    try:
        c = create_app(Runtime(settings, _db=dead_db), env={}).test_client()
        for path in ("/console/", "/console/login", "/console/payouts/1"):
            r = c.get(path)
            assert r.status_code == 503 and r.get_json() == {"error": "storage_unavailable"}, path
        assert c.post("/console/login", data={"name": "ann", "password": "x"}).status_code == 503
    finally:
        dead_db.dispose()


def test_a_session_ends_when_idle_and_after_its_hours(runtime, console):
    from datetime import timedelta

    from freezegun import freeze_time

    from core.clock import now_utc
    from webhooks.console.auth import IDLE_HOURS, SESSION_HOURS

    add_operator(runtime, "ann", "admin")
    start = now_utc()
    with freeze_time(start) as frozen:
        log_in(console, "ann")
        frozen.move_to(start + timedelta(hours=IDLE_HOURS, minutes=1))
        assert console.get("/console/").status_code == 302  # idle too long: the cookie is too old
        log_in(console, "ann")
        start = now_utc()
        for hour in range(1, SESSION_HOURS):  # active every hour…
            frozen.move_to(start + timedelta(hours=hour))
            assert console.get("/console/").status_code == 200
        frozen.move_to(start + timedelta(hours=SESSION_HOURS, minutes=1))
        assert console.get("/console/").status_code == 302  # …and still ended after SESSION_HOURS


def test_totp_login_through_the_console(runtime, console):
    import pyotp

    from worker.actions import Actor
    from worker.actions import operators as ops

    add_operator(runtime, "ann", "admin")
    secret = ops.set_totp(runtime, Actor.shell(), "ann", True)
    r = log_in(console, "ann")
    assert r.status_code == 200 and "Wrong name, password or code." in r.get_data(as_text=True)
    r = log_in(console, "ann", code=pyotp.TOTP(secret).now())
    assert r.status_code == 303 and console.get("/console/").status_code == 200
