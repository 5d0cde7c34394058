"""PremiumClient over real HTTP against the Premium sandbox (providers.premium.sandbox), and a raw HTTP
responder for the transport faults the sandbox does not produce."""
from __future__ import annotations

import http.server
import logging
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from providers import (
    ConnectionFailedError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.premium import (
    ActionDisabledError,
    ApiDisabledError,
    BadResponseError,
    Bid,
    BidNotFoundError,
    DirectionNotFoundError,
    DuplicateApiIdError,
    IpBlockedError,
    MaintenanceError,
    MethodNotSupportedError,
    PartnerProgramError,
    PremiumClient,
    iter_exchanges,
)
from providers.premium.client import mask
from providers.premium.sandbox import DEFAULT_KEY, DEFAULT_LOGIN
from tests.support.net import refused_url

UTC = timezone.utc


def test_every_method_generic(premium_clients):
    app, c = premium_clients(flavour="generic", seed=1)
    t = c.test()
    assert t.ip == "127.0.0.1" and t.user_id == 1 and t.locale == "en_US"
    cur = c.get_direction_currencies()
    assert cur.give and cur.get and cur.give[0].xml_value is None
    assert {d.direction_id for d in c.get_directions()} == {1, 2, 3, 4}
    assert [d.direction_id for d in c.get_directions(currency_id_give=2)] == [2, 3]
    d3 = c.get_direction(3)
    assert [f.name for f in d3.give_fields] == ["account1"] and [f.name for f in d3.get_fields] == ["account2"]
    assert d3.max_give is None and isinstance(d3.min_give, Decimal)
    calc = c.get_calc(2, Decimal("100"))
    assert calc.sum_give == Decimal("100") and calc.sum_get_com == Decimal("9122.85") and calc.changed is False
    assert c.get_calc(2, "1", calc_action=1).changed is True  # below the minimum

    bid = c.create_bid(2, Decimal("100.00"), api_id="order-1", account1="TXabc", account2="4111111111111111",
                       cf6="a@example.com")
    assert isinstance(bid, Bid) and bid.status == "new" and bid.amount_give == Decimal("100")
    assert bid.api_actions.can_cancel and bid.hash_from is None
    assert app.engine.bid(bid.id)["fields"]["account2"] == "4111111111111111"
    assert c.bid_info(id=bid.id).hash == bid.hash and c.bid_info(hash=bid.hash).id == bid.id
    assert c.pay_bid(hash=bid.hash) == "payed"
    assert c.bid_info(id=bid.id).api_actions.finished
    assert c.success_bid(id=bid.id) == "success"
    b2 = c.create_bid(1, "0.01", account2="TQ" + "x" * 32)
    assert c.cancel_bid(id=b2.id) == "cancel" and c.cancel_bid(id=b2.id) == "cancel"  # already cancelled: ok

    items = c.get_exchanges(status_history=True)
    assert [i.id for i in items] == [b2.id, bid.id]  # id DESC
    done = items[1]
    assert done.exchange_success is True and done.api_id == "order-1"
    assert [s.status for s in done.statuses] == ["new", "payed", "success"]
    assert [i.id for i in c.get_exchanges(api_id="order-1")] == [bid.id]
    assert [i.id for i in c.get_exchanges(id=[bid.id, b2.id], limit=1)] == [b2.id]
    assert c.get_exchanges(start_time=datetime(2001, 1, 1, tzinfo=UTC), end_time=1000000000) == []

    info = c.get_partner_info()
    assert info.partner_id == 1 and info.balance == Decimal("152.35") and info.items
    assert len(c.get_partner_links(limit=5)) == 5
    assert isinstance(c.get_partner_exchanges(), list)
    assert {p.status for p in c.get_partner_payouts()} == {1, 2, 3}
    pid = c.add_partner_payout(method_id=1, account="TXpartner")
    assert isinstance(pid, int) and c.get_partner_payouts(id=pid)[0].status == 0


def test_every_method_alwaysmoney_and_lang(premium_clients):
    app, c = premium_clients(flavour="alwaysmoney", seed=2, client_kw={"lang": "ru_RU"})
    assert c.test().locale == "ru_RU"
    cur = c.get_direction_currencies()
    assert all(x.xml_value for x in cur.give + cur.get)
    assert {x.xml_value: x.fiat for x in cur.get}["CARDRUB"] is True
    bid = c.create_bid(4, "0.01", account2="ZC-1", cf6="a@example.com", cfgive3="bc1refund")
    assert bid.api_actions.type == "address" and bid.api_actions.address and not bid.api_actions.can_pay
    assert bid.statuses and bid.statuses["new"] == "Новая заявка" and bid.status_title == "Новая заявка"
    assert app.engine.bid(bid.id)["fields"]["cfgive3"] == "bc1refund"
    app.engine.advance(bid.id, ["payed", "realpay", "success"])
    info = c.bid_info(id=bid.id)
    assert info.status == "success" and info.hash_from and info.hash_to is None  # payout to fiat: no txid
    with pytest.raises(ActionDisabledError):
        c.pay_bid(id=c.create_bid(4, "0.01", account2="ZC-2", cf6="b@example.com").id)


def test_request_generic_call(premium_clients):
    app, c = premium_clients(seed=3)
    bid_id = app.engine.add_bid(direction_id=2, amount="50")
    raw = c.request("bid_info", params={"id": bid_id})
    assert raw["id"] == str(bid_id) and raw["amount_give"] == "50"
    same = c.request("bid_info", "/api/userapi/v1/bid_info", json={"id": bid_id})
    assert same["hash"] == raw["hash"]
    with pytest.raises(MethodNotSupportedError):
        c.request("no_such_method")


def test_auth_errors(premium_clients):
    app, _ = premium_clients()
    wrong = PremiumClient(app.url, DEFAULT_LOGIN, "X" * 32, timeout=5)
    with pytest.raises(ApiDisabledError) as ei:
        wrong.bid_info(id=1)  # never "no bid exists"
    assert ei.value.code == 1 and ei.value.retryable is False and "X" * 32 not in repr(ei.value) + str(ei.value)
    wrong.close()
    _, blocked = premium_clients(ip_allowlist=["10.9.9.9"])
    with pytest.raises(IpBlockedError):
        blocked.test()
    _, limited = premium_clients(methods=["test"])
    assert limited.test().user_id == 1
    with pytest.raises(MethodNotSupportedError):
        limited.bid_info(id=1)


def test_maintenance_modes(premium_clients):
    app, c = premium_clients(maintenance=True)
    bid_id = app.engine.add_bid(direction_id=2, amount="50")
    with pytest.raises(MaintenanceError) as ei:
        c.test()
    assert ei.value.code == 1 and ei.value.retryable
    with pytest.raises(MaintenanceError):
        c.bid_info(id=bid_id)
    with pytest.raises(MaintenanceError):
        c.cancel_bid(id=bid_id)
    assert [i.id for i in c.get_exchanges()] == [bid_id]  # no maintenance answer there
    app.engine.knobs.maintenance = "api"
    with pytest.raises(ApiDisabledError):
        c.bid_info(id=bid_id)
    app.engine.knobs.maintenance = False
    assert c.bid_info(id=bid_id).status == "new"


def test_not_found_errors(premium_clients):
    app, c = premium_clients()
    with pytest.raises(BidNotFoundError):
        c.bid_info(id=424242)
    done = app.engine.add_bid(direction_id=2, amount="50", status="success")
    with pytest.raises(BidNotFoundError) as ei:
        c.cancel_bid(id=done)  # exists, but its status forbids the action
    assert ei.value.maybe_status_forbids
    with pytest.raises(BidNotFoundError):
        c.success_bid(id=done)
    with pytest.raises(BidNotFoundError):
        c.pay_bid(id=done)
    old = app.engine.add_bid(direction_id=2, amount="50")
    assert c.bid_info(id=old).id == old
    app.engine.archive(old)
    with pytest.raises(BidNotFoundError):
        c.bid_info(id=old)
    foreign = app.engine.add_bid(direction_id=2, amount="50", api_login=None)
    with pytest.raises(BidNotFoundError):
        c.bid_info(id=foreign)
    for call in (lambda: c.get_direction(999), lambda: c.get_calc(999, "1"),
                 lambda: c.create_bid(999, "1", account2="x")):
        with pytest.raises(DirectionNotFoundError):
            call()


def test_validation_and_duplicate_api_id(premium_clients):
    app, c = premium_clients()
    with pytest.raises(ValidationError) as ei:
        c.create_bid(2, "1", api_id="v-1")
    assert type(ei.value) is ValidationError and ei.value.code == "3"
    assert set(ei.value.fields) == {"account2", "sum1"}
    first = c.create_bid(2, "100", api_id="dup-1", account2="4111111111111111")
    with pytest.raises(DuplicateApiIdError) as ei:
        c.create_bid(2, "100", api_id="dup-1", account2="4111111111111111")
    assert ei.value.reason == "api_id_not_unique" and not ei.value.retryable
    assert [i.id for i in c.get_exchanges(api_id="dup-1")] == [first.id]
    with pytest.raises(TypeError):
        c.create_bid(2, 100.0, account2="x")  # floats are refused
    app.engine.knobs.partner_program = False
    with pytest.raises(PartnerProgramError):
        c.get_partner_info()


def test_transient_faults_502_and_unknown_outcome(premium_clients):
    app, c = premium_clients(error_rate=1.0, seed=4)
    with pytest.raises(RetryableError) as ei:  # 502 with nginx HTML
        c.bid_info(id=1)
    assert type(ei.value) is RetryableError and ei.value.http_status == 502 and ei.value.code == "http_502"
    with pytest.raises(MaintenanceError):  # then the method's maintenance envelope
        c.bid_info(id=1)
    with pytest.raises(UnknownOutcomeError):  # 502 on a create without api_id: it may exist now
        c.create_bid(2, "100", account2="4111111111111111")
    with pytest.raises(MaintenanceError):  # maintenance envelope for test (int 1) ...
        c.test()
    with pytest.raises(RetryableError):  # ... and a create WITH api_id can simply be sent again
        c.create_bid(2, "100", api_id="safe-1", account2="4111111111111111")


def test_read_timeout_is_unknown_outcome_and_closed_port_is_connection_failed(premium_clients):
    app, c = premium_clients(latency=1.0, client_kw={"timeout": 0.2})
    with pytest.raises(UnknownOutcomeError) as ei:
        c.test()
    assert ei.value.code == "read_timeout" and not isinstance(ei.value, RetryableError)
    for url in (refused_url(), "http://exsync-no-such-host.invalid"):  # refused, DNS failure
        dead = PremiumClient(url, DEFAULT_LOGIN, DEFAULT_KEY, timeout=2)
        with pytest.raises(ConnectionFailedError) as ei:
            dead.create_bid(2, "100", account2="x")  # nothing was sent: safe even for a create
        assert ei.value.retryable and DEFAULT_KEY not in str(ei.value) and ei.value.code == "connect_failed"
        dead.close()


def test_logging_never_shows_secrets(premium_clients, caplog):
    app, c = premium_clients()
    caplog.set_level(logging.DEBUG, logger="providers.premium")
    c.test()
    with pytest.raises(BidNotFoundError):
        c.bid_info(id=99)
    text = caplog.text
    assert "premium test" in text and "BidNotFoundError" in text and mask(DEFAULT_LOGIN) in text
    assert DEFAULT_KEY not in text and DEFAULT_LOGIN not in text
    assert DEFAULT_KEY not in repr(c) and DEFAULT_LOGIN not in repr(c)


def test_concurrent_use_from_a_thread_pool(premium_clients):
    app, c = premium_clients()
    ids = [app.engine.add_bid(direction_id=2, amount=str(10 + i)) for i in range(40)]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda i: c.bid_info(id=i), ids * 3))
    assert [b.id for b in got] == ids * 3
    assert {b.amount_give for b in got[:40]} == {Decimal(10 + i) for i in range(40)}


# ---- iter_exchanges ---------------------------------------------------------------------------------

def _past_window(app, n, statuses=("new", "payed", "realpay")):
    t0 = int(time.time()) - 10_000
    ids = app.engine.bulk_add(n, start_time=t0, spread_seconds=3000, statuses=list(statuses))
    return ids, t0, t0 + 3001


def test_iter_exchanges_plain_walk(premium_clients):
    app, c = premium_clients(seed=5)
    ids, start, end = _past_window(app, 1234)
    batches = list(c.iter_exchanges(start_time=start, end_time=end, page_size=200, overlap=20,
                                    status_history=True))
    got = [i.id for b in batches for i in b]
    assert sorted(got) == sorted(ids) and len(got) == len(set(got))
    assert all(i.statuses for b in batches for i in b)
    assert list(iter_exchanges(c, start_time=end + 10, end_time=end + 20)) == []


def test_iter_exchanges_bids_leaving_the_window_between_pages(premium_clients, caplog):
    """Bids already read change (→ leave a past window) after every page: more than the overlap."""
    caplog.set_level(logging.DEBUG, logger="providers.premium")
    app, c = premium_clients(seed=6)
    ids, start, end = _past_window(app, 900)
    rng = random.Random(6)

    # control: a naive offset walk under the same churn really does skip bids
    naive, changed_naive, offset = [], set(), 0
    while True:
        page = c.get_exchanges(start_time=start, end_time=end, limit=50, offset=offset)
        naive += [i.id for i in page]
        if len(page) < 50:
            break
        for bid_id in rng.sample([i for i in naive if i not in changed_naive], 12):
            app.engine.set_status(bid_id, "success")
            changed_naive.add(bid_id)
        offset += 50
    assert set(ids) - changed_naive - set(naive), "the scenario must be able to make a naive walk skip bids"

    app2, c2 = premium_clients(seed=7)
    ids, start, end = _past_window(app2, 900)
    seen, changed = [], set()
    for batch in c2.iter_exchanges(start_time=start, end_time=end, page_size=50, overlap=5):
        seen += [i.id for i in batch]
        candidates = [i for i in seen[:-5] if i not in changed]
        for bid_id in rng.sample(candidates, min(12, len(candidates))):
            app2.engine.set_status(bid_id, "success")
            changed.add(bid_id)
    assert len(seen) == len(set(seen))  # each bid once
    assert set(ids) - changed <= set(seen)  # every bid that stayed in the window was yielded
    assert len(changed) > 100 and "stepping back" in caplog.text  # the shift was detected, not lucky


def test_iter_exchanges_concurrent_churn_and_new_bids(premium_clients):
    """A thread changes bids (they leave the past window) while the walk runs."""
    app, c = premium_clients(seed=8)
    ids, start, end = _past_window(app, 3000)
    changed: set[int] = set()
    stop = threading.Event()
    rng = random.Random(8)

    def churn():
        while not stop.is_set():
            for bid_id in rng.sample(ids, 3):
                app.engine.set_status(bid_id, "success")
                changed.add(bid_id)
            app.engine.add_bid(direction_id=2, amount="20")  # new bids: outside this (past) window
            time.sleep(0.002)

    th = threading.Thread(target=churn, daemon=True)
    th.start()
    try:
        seen = [i.id for b in c.iter_exchanges(start_time=start, end_time=end, page_size=100, overlap=10)
                for i in b]
    finally:
        stop.set()
        th.join(5)
    assert len(seen) == len(set(seen))
    assert set(ids) - changed <= set(seen)
    assert changed


def test_iter_exchanges_window_open_to_the_future_new_bids_shift_down(premium_clients):
    """New bids enter at the top mid-walk (pages shift down): no duplicates, nothing of the old set lost."""
    app, c = premium_clients(seed=9)
    ids = app.engine.bulk_add(700, start_time=time.time() - 3000, spread_seconds=2900)
    start, end = int(time.time()) - 4000, int(time.time()) + 3600
    seen = []
    for batch in c.iter_exchanges(start_time=start, end_time=end, page_size=100, overlap=10):
        seen += [i.id for i in batch]
        for _ in range(30):
            app.engine.add_bid(direction_id=2, amount="20")
        app.engine.set_status(batch[0].id, "my7")  # changes stay inside this window
    assert len(seen) == len(set(seen)) and set(ids) <= set(seen)


def test_iter_exchanges_argument_checks(premium_clients):
    _, c = premium_clients()
    with pytest.raises(ValueError):
        list(c.iter_exchanges(start_time=0, end_time=1, page_size=501))
    with pytest.raises(ValueError):
        list(c.iter_exchanges(start_time=0, end_time=1, page_size=10, overlap=10))


# ---- transport faults the sandbox does not produce (a raw HTTP responder, not a Premium fake) --------

class _Scripted(http.server.BaseHTTPRequestHandler):
    script: list = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = self.script.pop(0)
        if action == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, headers, body = action
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def scripted():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    c = PremiumClient(f"http://127.0.0.1:{srv.server_port}", DEFAULT_LOGIN, DEFAULT_KEY, timeout=3)
    yield c
    c.close()
    srv.shutdown()
    srv.server_close()


def test_transport_faults(scripted):
    c = scripted
    html = {"Content-Type": "text/html"}
    _Scripted.script[:] = [
        (429, {"Retry-After": "7", **html}, b"slow down"),
        (503, {"Retry-After": "2", **html}, b"<h1>Briefly unavailable for scheduled maintenance</h1>"),
        (200, html, b"<html>Checking your browser...</html>"),
        (504, html, b"<html>Gateway Timeout</html>"),
        (200, html, b"<html>garbled</html>"),
        "drop",
        (200, {"Content-Type": "application/json"}, b'PHP Notice: x\n{"error":"0","error_text":"","data":"payed"}'),
    ]
    with pytest.raises(RetryableError) as ei:
        c.test()
    assert ei.value.http_status == 429 and ei.value.retry_after == 7.0
    with pytest.raises(RetryableError) as ei:
        c.bid_info(id=1)
    assert ei.value.http_status == 503 and ei.value.retry_after == 2.0
    with pytest.raises(BadResponseError) as ei:
        c.get_exchanges()
    assert ei.value.http_status == 200 and "Checking" not in ei.value.message
    with pytest.raises(UnknownOutcomeError):
        c.add_partner_payout(method_id=1, account="T")  # 504: may have been created
    with pytest.raises(UnknownOutcomeError):
        c.create_bid(2, "100", account2="x")  # garbled 200 on a create: may have been created
    with pytest.raises(UnknownOutcomeError) as ei:
        c.pay_bid(id=1)  # connection closed after the request was sent
    assert ei.value.code == "connection_lost"
    assert c.pay_bid(id=1) == "payed"
    for err_cls in (RetryableError, UnknownOutcomeError, ConnectionFailedError):
        assert issubclass(err_cls, ProviderError)
