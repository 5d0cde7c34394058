"""The Premium Exchanger sandbox, exercised over real HTTP like any client would."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from providers.premium.sandbox import DEFAULT_KEY, DEFAULT_LOGIN

AUTH = {"API-LOGIN": DEFAULT_LOGIN, "API-KEY": DEFAULT_KEY}
OTHER_LOGIN, OTHER_KEY = "otherLogin0000000000000000000002", "otherKey00000000000000000000002x"


class Receiver:
    """A tiny callback receiver: records every POST (path, content type, form)."""

    def __init__(self, status: int = 200):
        self.got: list[dict] = []
        self.status = status
        self.cv = threading.Condition()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def app(self, environ, start_response):
        req = Request(environ)
        with self.cv:
            self.got.append({"path": req.path, "ctype": req.mimetype, "form": dict(req.form),
                             "raw": req.get_data(as_text=True) if not req.form else None})
            self.cv.notify_all()
        return Response("ok", status=self.status)(environ, start_response)

    def wait(self, n: int, timeout: float = 5) -> list[dict]:
        with self.cv:
            self.cv.wait_for(lambda: len(self.got) >= n, timeout)
            return list(self.got)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def call(srv, method, data=None, headers=None, **kw):
    r = requests.post(f"{srv.url}/api/userapi/v1/{method}", data=data, headers=AUTH if headers is None else headers,
                      timeout=10, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def new_bid(srv, **fields):
    data = {"direction_id": "1", "calc_amount": "0.01", "calc_action": "1", "account2": "TXabc", **fields}
    j = call(srv, "create_bid", data)
    assert j["error"] == "0", j
    return j["data"]


# ---- transport and pre-method errors ---------------------------------------------------------------

def test_auth_errors_and_case_insensitive_headers(premium_sandboxes):
    srv, _ = premium_sandboxes()
    disabled = {"error": 1, "error_text": "Api disabled"}
    assert call(srv, "test", headers={}) == disabled
    assert call(srv, "test", headers={"API-LOGIN": DEFAULT_LOGIN, "API-KEY": "x" * 32}) == disabled
    assert call(srv, "test", headers={"API-LOGIN": "y" * 32, "API-KEY": DEFAULT_KEY}) == disabled
    ok = call(srv, "test", headers={"api-login": DEFAULT_LOGIN, "Api-Key": DEFAULT_KEY})
    assert ok["error"] == 0 and ok["data"]["ip"] == "127.0.0.1"
    assert set(ok["data"]) == {"ip", "user_id", "locale", "partner_id"}
    assert isinstance(ok["data"]["user_id"], str)


def test_ip_blocked_and_method_not_supported(premium_sandboxes):
    srv, _ = premium_sandboxes(ip_allowlist=["10.9.8.7"])
    assert call(srv, "test") == {"error": 2, "error_text": "IP blocked"}
    srv, _ = premium_sandboxes(ip_allowlist=["127.0.0.1"], methods={"test", "bid_info"})
    assert call(srv, "test")["error"] == 0
    assert call(srv, "create_bid", {"direction_id": "1"}) == {"error": 3, "error_text": "Method not supported"}
    assert call(srv, "no_such_method") == {"error": 3, "error_text": "Method not supported"}
    r = requests.get(f"{srv.url}/api/userapi/v1/test", headers=AUTH, timeout=5)
    assert r.status_code == 200 and r.json() == {"error": 3, "error_text": "Method not supported"}


def test_json_body_is_ignored_multipart_is_read(premium_sandboxes):
    srv, _ = premium_sandboxes()
    j = call(srv, "create_bid", json={"direction_id": "1", "calc_amount": "0.01", "account2": "T1"})
    assert j["error"] == "1" and j["error_text"] == "direction not found"
    bid = new_bid(srv)
    assert call(srv, "bid_info", json={"id": bid["id"]})["error_text"] == "no bid exists"
    multipart = {k: (None, v) for k, v in {"id": bid["id"]}.items()}
    assert call(srv, "bid_info", files=multipart)["data"]["id"] == bid["id"]


def test_api_off_and_method_level_maintenance(premium_sandboxes):
    srv, eng = premium_sandboxes(maintenance="api")
    assert call(srv, "test") == {"error": 1, "error_text": "Api disabled"}
    eng.knobs.maintenance = True
    assert call(srv, "test") == {"error": 1, "error_text": "maintenance", "data": []}
    assert call(srv, "get_directions")["error"] == 1
    assert call(srv, "get_direction", {"direction_id": "1"})["error"] == "1"
    j = call(srv, "create_bid", {"direction_id": "1", "calc_amount": "0.01", "account2": "T"})
    assert (j["error"], j["error_fields"]) == ("2", [])
    assert call(srv, "bid_info", {"id": "1"})["error"] == "2"
    assert call(srv, "cancel_bid", {"id": "1"})["error"] == "2"
    assert call(srv, "get_exchanges")["error"] == "0"  # no maintenance answer in the engine


# ---- catalogue methods -----------------------------------------------------------------------------

def test_currencies_directions_and_int_error_codes(premium_sandboxes):
    srv, _ = premium_sandboxes()
    j = call(srv, "get_direction_currencies")
    assert j["error"] == 0 and {"give", "get"} <= set(j["data"])
    assert set(j["data"]["give"][0]) == {"id", "title", "logo"}
    j = call(srv, "get_direction_currencies", {"currency_id_give": "2"})
    assert {c["id"] for c in j["data"]["get"]} == {"3", "4"}
    j = call(srv, "get_directions", {"currency_id_give": "1"})
    assert j["error"] == 0 and {d["direction_id"] for d in j["data"]} == {"1", "4"}
    assert call(srv, "get_directions", {"currency_id_give": "999"}) == {"error": 0, "error_text": "", "data": []}
    am, _ = premium_sandboxes(flavour="alwaysmoney")
    cur = call(am, "get_direction_currencies")["data"]["get"][0]
    assert {"xml_value", "fiat", "is_need_memo"} <= set(cur)


def test_get_direction_and_calc(premium_sandboxes):
    srv, eng = premium_sandboxes()
    d = call(srv, "get_direction", {"direction_id": "1"})
    assert d["error"] == "0"
    data = d["data"]
    assert data["min_give"] == "0.001" and data["max_get"] == "no" and isinstance(data["reserve"], str)
    assert data["get_fields"][0]["name"] == "account2" and data["get_fields"][0]["req"] == "1"
    assert isinstance(call(srv, "get_direction", {"direction_id": "3"})["data"]["get_fields"], dict)
    assert call(srv, "get_direction", {"direction_id": "77"}) == {
        "error": "1", "error_text": "direction not found", "data": []}
    # calc_action 1..4 round-trip on direction 2: 1 USDT = 92.15 RUB, 1% taken from the get side.
    c1 = call(srv, "get_calc", {"direction_id": "2", "calc_amount": "100", "calc_action": "1"})["data"]
    assert (c1["sum_give"], c1["sum_get"], c1["sum_get_com"], c1["changed"]) == ("100", "9215", "9122.85", "0")
    c2 = call(srv, "get_calc", {"direction_id": "2", "calc_amount": "9215", "calc_action": "2"})["data"]
    assert c2["sum_give"] == "100"
    c4 = call(srv, "get_calc", {"direction_id": "2", "calc_amount": "9122.85", "calc_action": "4"})["data"]
    assert Decimal(c4["sum_give"]) == Decimal("100")
    c3 = call(srv, "get_calc", {"direction_id": "3", "calc_amount": "100.5", "calc_action": "3"})["data"]
    assert c3["sum_give"] == "100" and c3["sum_give_com"] == "100.5"
    low = call(srv, "get_calc", {"direction_id": "2", "calc_amount": "1", "calc_action": "1"})["data"]
    assert low["changed"] == "1" and low["sum_give"] == "10"
    eng.disable_direction(2)
    assert call(srv, "get_calc", {"direction_id": "2", "calc_amount": "50"})["error"] == "1"


# ---- create_bid / bid_info -------------------------------------------------------------------------

def test_create_bid_shape_and_errors(premium_sandboxes):
    srv, eng = premium_sandboxes()
    j = call(srv, "create_bid", {"direction_id": "2", "calc_amount": "100", "account2": "4111111111111111",
                                 "api_id": "order-1", "cf6": "a@b.c"})
    assert j["error"] == "0" and j["error_fields"] == []
    b = j["data"]
    assert b["status"] == "new" and b["amount_give"] == "100" and b["amount_get"] == "9122.85"
    assert b["url"].startswith(srv.url) and b["hash"] in b["url"]
    assert b["api_actions"] == {"type": "default", "cancel": "api", "pay": "api", "pay_amount": "100",
                                "instruction": b["api_actions"]["instruction"]}
    assert {"psys_give", "psys_get", "currency_code_give", "currency_code_get", "status_title"} <= set(b)
    assert "hash_from" not in b
    assert eng.bid(int(b["id"]))["api_id"] == "order-1"
    dup = call(srv, "create_bid", {"direction_id": "2", "calc_amount": "100", "account2": "4111", "api_id": "order-1"})
    assert (dup["error"], dup["error_text"]) == ("3", "api id not unique")
    bad = call(srv, "create_bid", {"direction_id": "2", "calc_amount": "1"})
    assert bad["error"] == "3"
    assert bad["error_fields"] == {"sum1": "amount is less than minimum", "account2": "field is required"}
    big = call(srv, "create_bid", {"direction_id": "2", "calc_amount": "20000", "account2": "4111"})
    assert big["error_fields"] == {"sum1": "amount is more than maximum"}
    assert call(srv, "create_bid", {"direction_id": "99"})["error"] == "1"
    long_id = "x" * 150
    made = new_bid(srv, api_id=long_id)
    assert eng.bid(int(made["id"]))["api_id"] == "x" * 100
    assert call(srv, "create_bid", {"direction_id": "1", "calc_amount": "0.01", "account2": "T",
                                    "api_id": "x" * 120})["error_text"] == "api id not unique"


def test_alwaysmoney_flavour_bid_fields(premium_sandboxes):
    srv, eng = premium_sandboxes(flavour="alwaysmoney")
    b = new_bid(srv, cfgive3="bc1refund")
    assert b["hash_from"] == "" and b["hash_to"] == "" and b["statuses"]["success"]
    assert eng.bid(int(b["id"]))["fields"]["cfgive3"] == "bc1refund"
    eng.advance(int(b["id"]), ["payed", "realpay", "success"])
    info = call(srv, "bid_info", {"id": b["id"]})["data"]
    assert len(info["hash_from"]) == 64 and len(info["hash_to"]) == 64  # BTC in, USDT out: both on chain
    generic, geng = premium_sandboxes()
    gb = new_bid(generic, cfgive3="bc1refund")
    assert "cfgive3" not in geng.bid(int(gb["id"]))["fields"]


def test_bid_info_visibility_archive_and_disabled_direction(premium_sandboxes):
    srv, eng = premium_sandboxes(extra_keys=[(OTHER_LOGIN, OTHER_KEY)])
    b = new_bid(srv)
    by_id = call(srv, "bid_info", {"id": b["id"]})
    by_hash = call(srv, "bid_info", {"hash": b["hash"]})
    assert by_id["data"] == by_hash["data"] and by_id["error_fields"] == []
    assert call(srv, "bid_info", {"id": b["id"], "hash": "nope"})["error"] == "1"
    other = {"API-LOGIN": OTHER_LOGIN, "API-KEY": OTHER_KEY}
    assert call(srv, "bid_info", {"id": b["id"]}, headers=other) == {
        "error": "1", "error_text": "no bid exists", "data": [], "error_fields": []}
    ru = call(srv, "bid_info", {"id": b["id"]}, headers={**AUTH, "API-LANG": "ru_RU"})["data"]
    assert ru["status_title"] == "Новая заявка"
    eng.set_status(int(b["id"]), "payed")
    assert call(srv, "bid_info", {"id": b["id"]})["data"]["api_actions"]["type"] == "finished"
    eng.disable_direction(1)
    assert call(srv, "bid_info", {"id": b["id"]})["error_text"] == "no bid exists"
    eng.enable_direction(1)
    eng.archive(int(b["id"]))
    assert call(srv, "bid_info", {"id": b["id"]})["error_text"] == "no bid exists"
    assert int(b["id"]) not in eng.truth()
    with pytest.raises(KeyError):
        eng.bid(int(b["id"]))


# ---- actions ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, cancel, pay, success", [
    ("new", "cancel", "payed", "success"),
    ("techpay", "cancel", "payed", "success"),
    ("coldnew", "cancel", None, "success"),
    ("amlwait", "cancel", None, "success"),
    ("merchwait", "cancel", None, "success"),
    ("payed", None, None, "success"),
    ("realpay", None, None, "success"),
    ("cancel", "cancel", None, "success"),
    ("error", None, None, "success"),
    ("my3", None, None, "success"),
    ("success", None, None, None),
])
def test_action_rules(premium_sandboxes, status, cancel, pay, success):
    srv, eng = premium_sandboxes()
    for method, expect in (("cancel_bid", cancel), ("pay_bid", pay), ("success_bid", success)):
        bid_id = eng.add_bid(status=status)
        h = eng.bid(bid_id)["hash"]
        j = call(srv, method, {"hash": h})
        if expect is None:
            assert j == {"error": "1", "error_text": "no bid exists", "data": []}, method
            assert eng.bid(bid_id)["status"] == status
        else:
            assert (j["error"], j["data"]) == ("0", expect), method
            assert eng.bid(bid_id)["status"] == expect


def test_merchant_direction_pay_disabled(premium_sandboxes):
    srv, _ = premium_sandboxes()
    b = new_bid(srv, direction_id="4", calc_amount="0.001")
    assert b["api_actions"]["type"] == "address" and b["api_actions"]["pay"] == "disabled"
    assert call(srv, "pay_bid", {"id": b["id"]}) == {"error": "2", "error_text": "action disabled", "data": []}
    assert call(srv, "cancel_bid", {"id": b["id"]})["data"] == "cancel"


# ---- get_exchanges ---------------------------------------------------------------------------------

def test_get_exchanges_order_paging_and_filters(premium_sandboxes):
    srv, eng = premium_sandboxes(extra_keys=[(OTHER_LOGIN, OTHER_KEY)])
    ids = [eng.add_bid(api_id=f"a{i}", created_at=1_700_000_000 + i) for i in range(250)]
    eng.add_bid(api_login=OTHER_LOGIN)
    eng.add_bid(api_login=None)  # made on the site: no key sees it
    j = call(srv, "get_exchanges")
    items = j["data"]["items"]
    assert len(items) == 100 and [int(x["id"]) for x in items] == sorted(ids, reverse=True)[:100]
    assert set(items[0]) == {"id", "api_id", "time", "date", "psys_give", "psys_get", "currency_code_give",
                             "currency_code_get", "course_give", "course_get", "amount_give", "amount_get",
                             "exchange_success", "user_hash", "user_ip", "status", "hash"}
    assert len(call(srv, "get_exchanges", {"limit": "1000"})["data"]["items"]) == 250  # capped at 500
    page2 = call(srv, "get_exchanges", {"limit": "100", "offset": "100"})["data"]["items"]
    assert [int(x["id"]) for x in page2] == sorted(ids, reverse=True)[100:200]
    assert call(srv, "get_exchanges", {"offset": "250"}) == {"error": "0", "error_text": "", "data": []}
    sel = call(srv, "get_exchanges", {"id": f"{ids[3]},{ids[1]},99999"})["data"]["items"]
    assert [int(x["id"]) for x in sel] == [ids[3], ids[1]]
    assert [x["id"] for x in call(srv, "get_exchanges", {"api_id": "a7"})["data"]["items"]] == [str(ids[7])]
    assert call(srv, "get_exchanges", {"ip": "10.0.0.1"})["data"] == []
    # Time filter is on the LAST change, inclusive: an old bid changed now shows up in a recent window.
    eng.set_status(ids[0], "payed", at=1_800_000_000)
    eng.set_status(ids[1], "success", at=1_800_000_010)
    recent = call(srv, "get_exchanges", {"start_time": "1800000000", "end_time": "1800000010",
                                         "status_history": "1"})["data"]["items"]
    assert [int(x["id"]) for x in recent] == [ids[1], ids[0]]
    assert recent[0]["exchange_success"] == "1" and recent[1]["exchange_success"] == "0"
    assert [s["status"] for s in recent[0]["statuses"]] == ["new", "success"]
    assert recent[0]["statuses"][1]["time"] == "1800000010" and recent[0]["time"] == "1800000010"
    # ids[0] and ids[1] were edited later, so their creation second no longer matches (empty result).
    assert call(srv, "get_exchanges", {"start_time": "1700000000", "end_time": "1700000001"})["data"] == []
    window = call(srv, "get_exchanges", {"start_time": "1700000002", "end_time": "1700000004"})["data"]["items"]
    assert [int(x["id"]) for x in window] == [ids[4], ids[3], ids[2]]
    other = call(srv, "get_exchanges", headers={"API-LOGIN": OTHER_LOGIN, "API-KEY": OTHER_KEY})["data"]["items"]
    assert len(other) == 1
    eng.archive(ids[249])
    assert int(call(srv, "get_exchanges", {"limit": "1"})["data"]["items"][0]["id"]) == ids[248]


def test_bulk_add_100k_and_page(premium_sandboxes):
    srv, eng = premium_sandboxes()
    t0 = time.time()
    ids = eng.bulk_add(100_000, start_time=t0 - 3600, spread_seconds=3600, statuses=["new", "success", "my2"])
    assert len(ids) == 100_000 and len(eng.truth()) == 100_000
    assert set(eng.truth().values()) == {"new", "success", "my2"}
    page = call(srv, "get_exchanges", {"limit": "500", "offset": "1000"})["data"]["items"]
    assert [int(x["id"]) for x in page] == ids[::-1][1000:1500]
    win = call(srv, "get_exchanges", {"limit": "500", "start_time": str(int(t0) - 600),
                                      "end_time": str(int(t0) - 300)})["data"]["items"]
    assert win and all(int(t0) - 600 <= int(x["time"]) <= int(t0) - 300 for x in win)
    assert [int(x["id"]) for x in win] == sorted((int(x["id"]) for x in win), reverse=True)


# ---- callbacks -------------------------------------------------------------------------------------

def test_callbacks_are_bare_form_posts(premium_sandboxes, receiver):
    srv, eng = premium_sandboxes()
    b = new_bid(srv, callback_url=receiver.url + "/cb/tok123")
    call(srv, "pay_bid", {"id": b["id"]})
    eng.set_status(int(b["id"]), "payed")  # no change: no callback
    eng.set_status(int(b["id"]), "success")
    got = receiver.wait(2)
    assert eng.flush_callbacks(5)
    assert [g["form"] for g in got] == [{"bid_id": b["id"], "status": "payed"},
                                        {"bid_id": b["id"], "status": "success"}]
    assert got[0]["path"] == "/cb/tok123" and got[0]["ctype"] == "application/x-www-form-urlencoded"
    assert [c["outcome"] for c in eng.callback_log] == ["delivered", "delivered"]
    assert eng.callback_log[0]["http_status"] == 200
    nocb = new_bid(srv)
    call(srv, "cancel_bid", {"id": nocb["id"]})
    assert eng.flush_callbacks(5) and len(eng.callback_log) == 2


def test_callback_failure_is_not_retried(premium_sandboxes):
    srv, eng = premium_sandboxes()
    bad = Receiver(status=500)
    try:
        bid_id = eng.add_bid(callback_url=bad.url + "/cb")
        eng.set_status(bid_id, "payed")
        assert eng.flush_callbacks(5)
        time.sleep(0.2)
        assert len(bad.got) == 1 and eng.callback_log[-1]["outcome"] == "failed"
    finally:
        bad.close()
    dead = eng.add_bid(callback_url="http://127.0.0.1:9/nothing-listens")
    eng.set_status(dead, "payed")
    assert eng.flush_callbacks(5)
    assert eng.callback_log[-1]["outcome"] == "failed" and eng.callback_log[-1]["http_status"] is None


def _fault_run(premium_sandboxes, receiver, **knobs):
    srv, eng = premium_sandboxes(seed=42, **knobs)
    ids = [eng.add_bid(callback_url=receiver.url) for _ in range(30)]
    for i in ids:
        eng.set_status(i, "payed")
    assert eng.flush_callbacks(10)
    return ids, eng


def test_callback_drop_and_duplicate_are_seeded(premium_sandboxes):
    recv1, recv2 = Receiver(), Receiver()
    try:
        ids, eng = _fault_run(premium_sandboxes, recv1, callback_drop_rate=0.3, callback_duplicate_rate=0.3)
        _, eng2 = _fault_run(premium_sandboxes, recv2, callback_drop_rate=0.3, callback_duplicate_rate=0.3)
        outcomes = [(c["bid_id"] - ids[0], c["outcome"]) for c in eng.callback_log]
        assert outcomes == [(c["bid_id"] - ids[0], c["outcome"]) for c in eng2.callback_log]  # same seed
        dropped = {c["bid_id"] for c in eng.callback_log if c["outcome"] == "dropped"}
        duplicated = [c["bid_id"] for c in eng.callback_log if c["outcome"] == "duplicated"]
        assert dropped and duplicated
        time.sleep(0.1)
        received = [int(g["form"]["bid_id"]) for g in recv1.got]
        assert not dropped & set(received)
        assert all(received.count(i) == 2 for i in duplicated)
        assert len(received) == 30 - len(dropped) + len(duplicated)
    finally:
        recv1.close()
        recv2.close()


def test_callback_reorder_and_delay(premium_sandboxes, receiver):
    ids, eng = _fault_run(premium_sandboxes, receiver, callback_reorder_rate=0.4)
    received = [int(g["form"]["bid_id"]) for g in receiver.wait(30)]
    assert sorted(received) == ids and received != ids  # all arrive, not in change order
    assert any(c["reordered"] for c in eng.callback_log)
    srv, eng = premium_sandboxes(callback_delay=0.3)
    bid_id = eng.add_bid(callback_url=receiver.url)
    t = time.monotonic()
    eng.set_status(bid_id, "payed")
    assert eng.flush_callbacks(5) and time.monotonic() - t >= 0.3


# ---- faults, control API, partner, autopilot --------------------------------------------------------

def test_error_rate_and_latency(premium_sandboxes):
    srv, eng = premium_sandboxes()
    eng.knobs.error_rate = 1.0
    r1 = requests.post(f"{srv.url}/api/userapi/v1/bid_info", data={"id": "1"}, headers=AUTH, timeout=5)
    r2 = requests.post(f"{srv.url}/api/userapi/v1/bid_info", data={"id": "1"}, headers=AUTH, timeout=5)
    assert (r1.status_code, r1.headers["Content-Type"].split(";")[0]) == (502, "text/html")
    assert r2.status_code == 200 and r2.json()["error"] == "2" and r2.json()["error_text"] == "maintenance"
    for _ in range(2):  # no maintenance answer for get_exchanges: always the 502
        assert requests.post(f"{srv.url}/api/userapi/v1/get_exchanges", headers=AUTH, timeout=5).status_code == 502
    eng.knobs["error_rate"] = 0
    eng.knobs.latency = 0.25
    t = time.monotonic()
    assert call(srv, "test")["error"] == 0
    assert time.monotonic() - t >= 0.25
    assert eng.requests_served["bid_info"] == 2 and eng.requests_served["test"] == 1


def test_control_http_api(premium_sandboxes):
    srv, eng = premium_sandboxes()
    base = srv.url + "/_sandbox"
    r = requests.post(base + "/bids", json={"direction_id": 2, "amount": "50", "api_id": "ctl-1"}, timeout=5)
    bid_id = r.json()["id"]
    assert eng.bid(bid_id)["amount_give"] == Decimal("50")
    moved = requests.post(f"{base}/bids/{bid_id}/status", json={"status": "payed"}, timeout=5)
    assert moved.json()["status"] == "payed"
    assert requests.post(f"{base}/bids/{bid_id}/status", json={"status": "bogus"}, timeout=5).status_code == 400
    assert requests.get(f"{base}/bids/{bid_id}", timeout=5).json()["history"][-1][1] == "payed"
    state = requests.get(base + "/state", timeout=5).json()
    assert state["truth"] == {str(bid_id): "payed"} and state["knobs"]["latency"] == 0.0
    k = requests.post(base + "/knobs", json={"error_rate": 0.5, "maintenance": True}, timeout=5).json()
    assert k["error_rate"] == 0.5 and eng.knobs.maintenance is True
    assert requests.post(base + "/knobs", json={"nope": 1}, timeout=5).status_code == 400
    assert requests.post(f"{base}/bids/{bid_id}/archive", timeout=5).json()["archived"] is True
    assert requests.post(f"{base}/bids/{bid_id}/archive", timeout=5).status_code == 404
    assert eng.truth() == {}


def test_partner_methods(premium_sandboxes):
    srv, eng = premium_sandboxes()
    info = call(srv, "get_partner_info")
    assert info["error"] == "0" and set(info["data"]) == {"partner_id", "balance", "min_payout", "items"}
    assert set(info["data"]["items"][0]) == {"id", "title", "commission", "amount"}
    links = call(srv, "get_partner_links", {"limit": "5"})["data"]["items"]
    assert len(links) == 5 and set(links[0]) >= {"time", "date", "browser", "ip", "referrer", "query_string"}
    before = call(srv, "get_partner_payouts")["data"]["items"]
    assert {p["status"] for p in before} == {"1", "2", "3"}
    made = call(srv, "add_partner_payout", {"method_id": "1", "account": "TXpartner"})
    assert made["error"] == "0" and made["data"]["payout_id"].isdigit()
    p = call(srv, "get_partner_payouts", {"id": made["data"]["payout_id"]})["data"]["items"]
    assert p[0]["status"] == "0" and p[0]["account"] == "TXpartner"
    assert call(srv, "add_partner_payout", {"method_id": "1", "account": "TX"})["error"] == "1"  # balance spent
    new_bid(srv, partner_id=info["data"]["partner_id"])
    px = call(srv, "get_partner_exchanges")["data"]["items"]
    assert len(px) == 1 and {"accrued", "partner_reward"} <= set(px[0])
    eng.users[DEFAULT_LOGIN].partner_id = 0
    assert call(srv, "get_partner_info") == {"error": "1", "error_text": "no partner id", "data": []}
    eng.knobs.partner_program = False
    assert call(srv, "get_partner_payouts")["error_text"] == "no active partner program"


def test_autopilot_moves_bids_along_paths(premium_sandboxes):
    srv, eng = premium_sandboxes()
    ids = [eng.add_bid() for _ in range(20)]
    eng.start_autopilot(interval=0.02, paths=[["new", "techpay", "payed", "success"], ["new", "cancel"]],
                        step_probability=1.0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(s not in ("success", "cancel") for s in eng.truth().values()):
        time.sleep(0.02)
    eng.stop_autopilot()
    for i in ids:
        path = [s for _, s in eng.bid(i)["history"]]
        assert path in (["new", "techpay", "payed", "success"], ["new", "cancel"])
