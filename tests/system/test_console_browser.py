"""The console in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against the real
`exsync web` (gunicorn), a real `exsync worker` and `exsync beat`, the Premium and ZaleyCash sandboxes.

A payout above the route's four-eyes limit waits for a person; two approvers approve it from its page (the
link a notification carries), the worker pays it, and the sandbox's ledger shows it paid once. A viewer is
refused an action, a form without its CSRF token is refused, a wrong password is throttled, login and logout
work. A screenshot of every page is written to test-artifacts/console/ (kept by the run, ignored by git).

Chromium is never downloaded (no `playwright install`): .ci/run installs Debian's package; without it this
module fails, naming what is missing.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support import ROOT
from tests.support.config import make_env, write_config
from tests.support.net import free_port
from tests.support.operators import PASSWORD, add_operator
from tests.support.payouts import mirror_bid, payout_env, payout_toml
from tests.support.wait import wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "test-artifacts" / "console"
FOUR_EYES = 'approval_above = "5000"\napprovers = 2'


@pytest.fixture(scope="module")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium; "
                    f".ci/run does it) — the browser tests never download a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    return subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                            cwd=str(log.parent))


@pytest.fixture
def stack(runtime, premium_sandbox, zc_sandbox, database_url, redis_url, tmp_path):
    """exsync web + worker + beat on the test database, paying through the ZaleyCash sandbox."""
    from core.redis_url import client

    client(redis_url).delete("exsync")  # no message of an earlier test
    config = write_config(tmp_path, premium_sandbox.url, extra=payout_toml(zc_sandbox.url, route=FOUR_EYES))
    port = free_port()
    env = {**os.environ, **make_env(config, database_url, redis_url, **payout_env()),
           "EXSYNC_WEB_BIND": f"127.0.0.1:{port}", "EXSYNC_DATA_DIR": str(tmp_path / "data"),
           "EXSYNC_LOG_LEVEL": "WARNING"}
    procs = [_start(["web", "--workers", "1", "--threads", "4"], env, tmp_path / "web.log"),
             _start(["worker"], env, tmp_path / "worker.log"), _start(["beat"], env, tmp_path / "beat.log")]
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        def up():
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    return True
            except OSError:
                return False

        wait_for(up, 60, "exsync web to answer", *procs)
        yield url, procs, tmp_path
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page, url: str, name: str, password: str = PASSWORD, then: str = "/console/") -> None:
    page.goto(url + then)
    assert "/console/login" in page.url  # unauthenticated: sent to the login page
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button.primary")


def approve(page, reason: str) -> None:
    form = page.locator("form[action$='/approve']")
    form.locator("textarea[name=reason]").fill(reason)
    form.locator("button").click()


def test_four_eyes_payout_in_a_browser(stack, chromium, runtime, premium_sandbox, zc_sandbox):
    url, procs, tmp = stack
    for name, role in (("alice", "approver"), ("bob", "approver"), ("vera", "viewer"), ("ann", "admin")):
        add_operator(runtime, name, role)
    rid = mirror_bid(runtime, premium_sandbox, amount="100")  # ≈ 9,180 RUB: above approval_above
    with runtime.db.session() as s:
        s.execute(text("""INSERT INTO inbox_events (provider, endpoint, body, payload, state, attempts, last_error)
                          VALUES ('premium', 'main', :b, :p, 'dead', 10, 'ConnectionFailedError: sandbox down')"""),
                  {"b": f"bid_id={rid}&status=realpay".encode(), "p": '{"bid_id": %d, "status": "realpay"}' % rid})

    def payout():
        with runtime.db.session() as s:
            return s.execute(text("SELECT id, state, idempotency_key, last_error FROM payouts")).first()

    p = wait_for(lambda: (row := payout()) and row.state == "needs_review" and row, 60,
                 "beat and the worker to create the payout", *procs)
    assert "needs 2 approvals" in p.last_error
    link = f"/console/payouts/{p.id}"  # what a notification links to

    ctx = chromium.new_context(viewport={"width": 1360, "height": 900})
    page = ctx.new_page()
    page.goto(url + "/console/login")
    shot(page, "login")
    log_in(page, url, "alice", then=link)
    assert page.url == url + link  # back to the page the link named
    assert "needs 2 approvals" in page.content()
    approve(page, "customer verified by phone")
    page.wait_for_selector(".flash.ok")
    assert "approved by 1 of 2 distinct approvers (alice)" in page.content()
    page.goto(url + "/console/")
    assert f"#{p.id}" in page.content()
    shot(page, "overview")
    page.click("header form button")  # log out
    page.wait_for_url(re.compile(r".*/console/login.*"))
    page.goto(url + "/console/")
    assert "/console/login" in page.url  # logged out: sent to the login page again

    log_in(page, url, "bob", then=link)
    approve(page, "second pair of eyes: amount and account match")
    page.wait_for_selector(".flash.ok")

    wait_for(lambda: payout().state == "succeeded", 60, "the worker to pay the approved payout", *procs,
             interval=0.5)
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1  # the sandbox's ledger: paid once
    page.reload()
    body = page.content()
    assert "alice" in body and "bob" in body and "2 of 2 needed" in body and "succeeded" in body
    shot(page, "payout")

    for path, name in (("/console/payouts", "payouts"), (f"/console/bids?remote_id={rid}", "bids"),
                       (f"/console/bids/main/{rid}", "bid"), ("/console/inbox", "inbox"),
                       ("/console/providers", "providers"), ("/console/audit", "audit")):
        page.goto(url + path)
        assert page.locator("h1").count() == 1, path
        shot(page, name)
    page.goto(url + "/console/inbox")
    page.click("table a")
    assert "sandbox down" in page.content() and "status=realpay" in page.content()
    shot(page, "inbox_event")
    ctx.close()


def test_viewer_csrf_throttle_in_a_browser(stack, chromium, runtime, premium_sandbox):
    url, procs, tmp = stack
    add_operator(runtime, "vera", "viewer")
    add_operator(runtime, "olga", "operator")
    add_operator(runtime, "carl", "admin")
    with runtime.db.session() as s:
        eid = s.execute(text("""INSERT INTO inbox_events (provider, endpoint, body, state, last_error)
                                VALUES ('premium', 'main', 'x', 'dead', 'gave up') RETURNING id""")).scalar()
    ctx = chromium.new_context()
    page = ctx.new_page()

    # A viewer sees no action and is refused one posted with a valid token.
    log_in(page, url, "vera", then=f"/console/inbox/{eid}")
    assert page.locator("form[action$='/dismiss']").count() == 0
    token = page.get_attribute("meta[name=csrf-token]", "content")
    r = page.request.post(url + f"/console/inbox/{eid}/dismiss", form={"csrf_token": token, "reason": "mine"})
    assert r.status == 403 and "this needs the operator role" in r.text()
    page.click("header form button")

    # A form whose CSRF token was taken out is refused, and nothing happens.
    log_in(page, url, "olga", then=f"/console/inbox/{eid}")
    form = page.locator("form[action$='/dismiss']")
    form.locator("textarea").fill("duplicate of another event")
    page.evaluate("document.querySelectorAll(\"form[action$='/dismiss'] input[name=csrf_token]\")"
                  ".forEach(e => e.remove())")
    form.locator("button").click()
    page.wait_for_load_state()
    assert "The CSRF token is missing" in page.content()
    shot(page, "csrf_refused")
    page.goto(url + f"/console/inbox/{eid}")
    form = page.locator("form[action$='/dismiss']")
    form.locator("textarea").fill("duplicate of another event")
    form.locator("button").click()
    page.wait_for_selector(".flash.ok")
    with runtime.db.session() as s:
        assert s.execute(text("SELECT state FROM inbox_events WHERE id = :id"), {"id": eid}).scalar() == "dismissed"
    page.click("header form button")

    # Wrong passwords are throttled: then even the right one is refused for a while.
    from worker.actions.operators import THROTTLE_PER_NAME

    for _ in range(THROTTLE_PER_NAME):
        log_in(page, url, "carl", "not the password")
        assert "Wrong name, password or code." in page.content()
    log_in(page, url, "carl")
    assert "too many failed logins" in page.content() and "/console/login" in page.url
    shot(page, "login_throttled")
    ctx.close()
