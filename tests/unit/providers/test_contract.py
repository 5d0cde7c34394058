"""One provider contract: the four clients against the same HTTP answers, judged by the one table.

A scripted HTTP server gives every client the same answers (a refused port, a connection closed after the
request, a hang past the read timeout, 429, 5xx, an HTML page with 200, a 4xx without a provider code); each
client makes one call that is safe to repeat and one that moves money (or creates something), and the error
must be the class ``providers.http.SEMANTICS`` names for that row and that kind of call — the same for all
four. The provider-specific codes are tested per provider against recorded answers and the sandboxes
(tests/unit/providers/<provider>/).
"""
from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from providers import (
    BadResponseError,
    ConnectionFailedError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.gateway import GatewayClient
from providers.http import SEMANTICS
from providers.paysera import PayseraClient
from providers.premium import PremiumClient
from providers.zaleycash import ZaleyCashClient
from tests.support.net import refused_url

SECRETS = {"premium": "prem-key-0123456789", "zaleycash": "zc-secret-0123456789", "gateway": "gw-secret-0123456789",
           "paysera": "ps-mac-key-0123456789"}
READ_TIMEOUT = 0.3

# name → (client factory, (idempotent call name, how), (money call name, how))
CLIENTS = {
    "premium": (lambda url: PremiumClient(url, "login-1", SECRETS["premium"], timeout=(3, READ_TIMEOUT)),
                ("bid_info", lambda c: c.bid_info(id=1)),
                ("add_partner_payout", lambda c: c.add_partner_payout(method_id=1, account="T123"))),
    "zaleycash": (lambda url: ZaleyCashClient(url, SECRETS["zaleycash"], timeout=(3, READ_TIMEOUT)),
                  ("balance", lambda c: c.balance()),
                  ("transfer_internal", lambda c: c.transfer_internal(1001, 1, Decimal("1.00"), "op-1"))),
    "gateway": (lambda url: GatewayClient(url, "gw-key-1", SECRETS["gateway"], timeout=(3, READ_TIMEOUT)),
                ("get_payout", lambda c: c.get_payout("ord-1")),
                ("create_payout", lambda c: c.create_payout("ord-1", Decimal("1.00"), "RUB", "4111111111111111"))),
    "paysera": (lambda url: PayseraClient(url, "mac-id-1", SECRETS["paysera"], timeout=(3, READ_TIMEOUT)),
                ("get_transfer", lambda c: c.get_transfer("t-1")),
                ("sign_transfer", lambda c: c.sign_transfer("t-1"))),
}
# Calls a client makes before the one under test (a ZaleyCash token, the Paysera server time): with a
# refused port those fail first, with the same class.
FIRST_CALL = {"zaleycash": "token", "paysera": "server"}
# A 4xx without a provider code: each provider's reading of the status (SEMANTICS["refused"] is None),
# the same for both kinds of call and never an unknown outcome. Premium answers HTTP 200 only, so a 4xx is
# something in front of it (BadResponseError); Paysera's REST stack answers 400 for invalid requests.
REFUSED_400 = {"premium": BadResponseError, "zaleycash": PermanentError, "gateway": PermanentError,
               "paysera": ValidationError}

HTML = {"Content-Type": "text/html"}
PAGE = b"<html><body>upstream trouble</body></html>"

# The decisions, written out here (not read back from the code): row → (idempotent call, money call).
TABLE = {
    "not_sent": (ConnectionFailedError, ConnectionFailedError),
    "no_answer": (UnknownOutcomeError, UnknownOutcomeError),
    "rate_limited": (RetryableError, RetryableError),
    "server_error": (RetryableError, UnknownOutcomeError),  # 503 included
    "unreadable": (BadResponseError, UnknownOutcomeError),
    "refused": (None, None),  # the provider's class for the status: REFUSED_400
    "invalid_request": (PermanentError, PermanentError),
}

# case → (SEMANTICS row, what the server does, HTTP status the error carries)
CASES = {
    "refused port": ("not_sent", "refused", None),
    "reset after sending": ("no_answer", "drop", None),
    "read timeout": ("no_answer", "hang", None),
    "429": ("rate_limited", (429, {"Retry-After": "7", **HTML}, b"slow down"), 429),
    "500": ("server_error", (500, HTML, PAGE), 500),
    "502": ("server_error", (502, HTML, PAGE), 502),
    "503": ("server_error", (503, {"Retry-After": "30", **HTML}, PAGE), 503),
    "504": ("server_error", (504, HTML, PAGE), 504),
    "200 html": ("unreadable", (200, HTML, PAGE), 200),
    "400 html": ("refused", (400, HTML, PAGE), 400),
}


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers the preliminaries (token, server time) properly and everything else with ``action``."""

    action: Any = None
    hits: list[str] = []

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if path == "/api/v2/token":
            return self._send(200, {"Content-Type": "application/json"}, json.dumps(
                {"code": 200, "message": "OK", "response": {"access_token": "tok-1", "expires_at": time.time() + 3600}}
            ).encode())
        if path == "/rest/v1/server":
            now = json.dumps({"time": int(time.time())}).encode()
            return self._send(200, {"Content-Type": "application/json"}, now)
        self.hits.append(f"{self.command} {path}")
        action = self.action
        if action == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if action == "hang":
            time.sleep(READ_TIMEOUT * 2)
            return self._send(200, {"Content-Type": "application/json"}, b"{}")
        self._send(*action)

    def _send(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    srv.daemon_threads = True
    srv.block_on_close = False
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(CLIENTS))
def test_money_semantics_are_one_table(server, name, case, caplog):
    row, action, status = CASES[case]
    make, read, money = CLIENTS[name]
    caplog.set_level(logging.DEBUG, logger=f"providers.{name}")
    for idempotent, (call, how) in ((True, read), (False, money)):
        expected = TABLE[row][0 if idempotent else 1] or REFUSED_400[name]
        _Scripted.action, _Scripted.hits = action, []
        caplog.clear()
        client = make(refused_url() if action == "refused" else server)
        try:
            with pytest.raises(ProviderError) as ei:
                how(client)
        finally:
            client.close()
        err = ei.value
        assert type(err) is expected, (name, case, call, err)
        # the contract's fields, the same on every provider's error
        failed_call = FIRST_CALL.get(name, call) if action == "refused" else call
        assert (err.provider, err.call, err.http_status) == (name, failed_call, status) and err.reason
        assert err.retryable is (expected not in (UnknownOutcomeError, PermanentError, ValidationError))
        if status is not None:
            assert err.raw_body == (b"slow down" if status == 429 else PAGE).decode()
            assert "upstream" not in str(err) + repr(err)  # the body never in the text
        if status in (429, 503):
            assert err.retry_after == (7.0 if status == 429 else 30.0)
        if isinstance(err, UnknownOutcomeError):  # "may have run" is said only of a call that reached the server
            assert _Scripted.hits, (name, case)
        if action == "refused":
            assert not _Scripted.hits
        assert SECRETS[name] not in str(err) + repr(err) + json.dumps(err.__dict__, default=str)
        # one DEBUG line per call, from the shared loop: provider, call, method and path, time, outcome
        lines = [r.getMessage() for r in caplog.records if r.name == f"providers.{name}"]
        assert any(line.startswith(f"{name} {failed_call} ") and f" {type(err).__name__}(code=" in line
                   for line in lines), lines
        assert all(SECRETS[name] not in line for line in lines)


def test_the_table_is_the_one_in_the_code():
    assert SEMANTICS == TABLE


def test_the_503_decision():
    """503 is a plain retry on a call that is safe to repeat and an unknown outcome on one that moves
    money: HTTP does not promise that nothing ran (see providers/http.py). Only the provider's own code
    (or a 429, or any 4xx) proves that."""
    from providers.zaleycash import TransactionProcessingError, error_for
    vouched = error_for(500, {"code": 53, "message": "Transaction processing error"}, call="transfer_internal")
    assert type(vouched) is TransactionProcessingError and vouched.retryable  # ZaleyCash's word: nothing ran
    bare = error_for(503, b"<html>Service Unavailable</html>", call="transfer_internal")
    assert type(bare) is UnknownOutcomeError
