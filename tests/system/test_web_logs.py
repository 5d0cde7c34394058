"""The real gunicorn at DEBUG logs no form of any secret: percent-encoded (any case, partly, twice),
in a header, base64 in a Basic credential; nor does what the app stored of those requests."""
from __future__ import annotations

import base64
import http.client
import os
import random
import signal
import subprocess
import sys
import time
from urllib.parse import quote

from sqlalchemy import text as sql

from core.logs import MASK
from core.redis_url import client as redis_client
from providers.premium.sandbox import DEFAULT_KEY
from tests.support.config import API_TOKEN as api_token
from tests.support.config import WEBHOOK_TOKEN as hook_token
from tests.support.config import forget_webhook_failures, make_env, write_config
from tests.support.net import free_port
from tests.support.redaction import carries, pct


def _send(port: int, method: str, target: str, body: bytes | None = None, headers: dict | None = None) -> int:
    """One request with ``target`` exactly as given (no client re-encodes it); returns the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_real_gunicorn_at_debug_logs_no_form_of_any_secret(tmp_path, premium_sandbox, database_url, redis_url, db):
    r = redis_client(redis_url)
    forget_webhook_failures(redis_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXSYNC_")}
    env.update(make_env(write_config(tmp_path, premium_sandbox.url), database_url, redis_url,
                        EXSYNC_LOG_LEVEL="DEBUG", EXSYNC_WEB_BIND=f"127.0.0.1:{port}"))
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "web", "--workers", "1", "--threads", "4"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    rnd = random.Random(6)
    token_bytes = hook_token.encode()
    hook = "/webhooks/premium/main/"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    callback = b"bid_id=1350&status=payed"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _send(port, "GET", "/healthz") == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)

        forms = {  # how the webhook token is written in the path -> the answer it must get
            "literal": hook_token,
            "encoded": "".join(pct(b) for b in token_bytes),
            "encoded, lower case": "".join(pct(b, "lower") for b in token_bytes),
            "partly, mixed case": "".join(pct(b, "mixed", rnd) if rnd.random() < 0.5 else chr(b) for b in token_bytes),
        }
        statuses = {name: _send(port, "POST", hook + path, callback, form) for name, path in forms.items()}
        assert set(statuses.values()) == {202}, statuses  # every encoding is accepted, as the literal
        double = "".join("%25" + pct(b)[1:] for b in token_bytes)
        assert _send(port, "POST", hook + double, callback, form) == 403  # decoded once: not the token

        key_headers = {**form, "X-Echo": f"key {DEFAULT_KEY} / {quote(DEFAULT_KEY, safe='')}",
                       "X-Forwarded-Token": "".join(pct(b, "mixed", rnd) for b in api_token.encode())}
        assert _send(port, "POST", hook + hook_token, callback, key_headers) == 202
        basic = base64.b64encode(f"ops:{api_token}".encode()).decode()
        assert _send(port, "GET", "/api/v1/bids", headers={"Authorization": f"Bearer {api_token}"}) == 200
        assert _send(port, "GET", "/api/v1/bids", headers={"Authorization": f"Basic {basic}"}) == 200
        assert _send(port, "GET", "/api/v1/bids", headers={"X-Api-Key": api_token}) == 401
        encoded_api = "".join(pct(b, "mixed", rnd) for b in api_token.encode())
        assert _send(port, "GET", f"/api/v1/bids?token={encoded_api}&limit=5") == 401
        assert _send(port, "GET", "/api/v1/bids/" + quote(api_token, safe=""),
                     headers={"Authorization": f"Bearer {api_token}"}) in (400, 404)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        r.delete("exsync")  # the callbacks' messages: no worker here consumes them
        forget_webhook_failures(redis_url)  # nor do this test's refusals count later

    written = log_path.read_text(errors="replace")
    # DEBUG was on and gunicorn logged each request's raw path, masked.
    assert f"POST {hook}{MASK}" in written and written.count(f"{hook}{MASK}") >= 6, written
    assert "GET /api/v1/bids" in written
    for secret in (hook_token, api_token, DEFAULT_KEY):
        assert not carries(written, secret), secret
    for sent in [*forms.values(), double, encoded_api, basic[8:-4], quote(DEFAULT_KEY, safe="")]:
        assert sent not in written

    # What the app stored of those requests (path and headers) holds no form of them either.
    with db.engine.connect() as conn:
        rows = conn.execute(sql("SELECT headers::text FROM inbox_events")).scalars().all()
    assert len(rows) == len(forms) + 1
    for stored in rows:
        for secret in (hook_token, api_token, DEFAULT_KEY):
            assert not carries(stored, secret), stored
