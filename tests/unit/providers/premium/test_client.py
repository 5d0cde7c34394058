"""PremiumClient: recorded answers fed to the pure parsers/mappers, then the client over real HTTP
against the Premium sandbox (providers.premium.sandbox) and a few raw sockets for transport faults."""
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
    AuthError,
    ConnectionFailedError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.http import parse_retry_after, safe_url
from providers.premium import (
    ActionDisabledError,
    ApiDisabledError,
    BadResponseError,
    Bid,
    BidNotFoundError,
    Calc,
    Currency,
    Direction,
    DirectionCurrencies,
    DirectionNotFoundError,
    DirectionSummary,
    DuplicateApiIdError,
    ExchangeItem,
    Field,
    IpBlockedError,
    MaintenanceError,
    MethodNotSupportedError,
    PartnerExchange,
    PartnerInfo,
    PartnerLink,
    PartnerPayout,
    PartnerProgramError,
    PremiumClient,
    StatusEntry,
    TestInfo,
    check_envelope,
    decode_body,
    error_for,
    iter_exchanges,
    parse_result,
)
from providers.premium.client import form_value, mask
from providers.premium.sandbox import DEFAULT_KEY, DEFAULT_LOGIN, create_app, serve
from tests.support.net import refused_url
from tests.support.recorded import answer, answer_names

UTC = timezone.utc


def recorded(name: str):
    """(call, envelope) of a recorded answer: its body decoded from the bytes as sent."""
    found = answer("premium", name)
    return found.call, decode_body(found.content)


def parsed(name: str):
    method, env = recorded(name)
    return parse_result(method, check_envelope(200, env, call=method))


# =====================================================================================================
# 1. Recorded answers → pure parsing and error mapping
# =====================================================================================================

def test_fixture_set_is_complete():
    names = answer_names("premium")
    assert len(names) >= 38
    for n in names:  # every file is a decodable envelope
        assert "error" in recorded(n)[1]


def test_test_info():
    r = parsed("test__ok.json")
    assert isinstance(r, TestInfo)
    assert (r.ip, r.user_id, r.locale, r.partner_id) == ("203.0.113.7", 12, "ru_RU", 0)


def test_direction_currencies_generic_and_alwaysmoney():
    g = parsed("get_direction_currencies__generic.json")
    assert isinstance(g, DirectionCurrencies)
    assert [c.id for c in g.give] == [1, 7] and g.get[0].title == "Sberbank RUB"
    assert g.give[0].xml_value is None and g.give[0].fiat is None and g.give[0].is_need_memo is None
    a = parsed("get_direction_currencies__alwaysmoney.json")
    assert all(isinstance(c, Currency) for c in a.give + a.get)
    usdt = a.give[0]
    assert (usdt.xml_value, usdt.fiat, usdt.is_need_memo) == ("USDTTRC20", False, False)
    assert usdt.raw["sort"] == "4"  # unknown field kept
    # "get" arrived as a dict keyed by id
    assert {c.xml_value: (c.fiat, c.is_need_memo) for c in a.get} == {"TON": (False, True), "CASHUSD": (True, False)}


def test_directions_list_and_empty():
    ds = parsed("get_directions__list.json")
    assert [type(d) for d in ds] == [DirectionSummary, DirectionSummary]
    assert ds[0].direction_id == 15 and ds[1].currency_give_id == 7 and ds[1].currency_get_title == "Sberbank RUB"
    assert parsed("get_directions__empty.json") == []


def test_direction_generic_limits_and_fields():
    d = parsed("get_direction__generic.json")
    assert isinstance(d, Direction)
    assert d.id == 15 and d.reserve == Decimal("1543021.55") and d.course_get == Decimal("5912345.1234")
    assert d.min_give == Decimal("0.001") and d.max_give is None and d.min_get is None
    assert d.max_get == Decimal("500000")
    assert d.timeline_text == "Exchange takes 5-30 minutes"
    assert all(isinstance(f, Field) for f in d.fields)
    assert [f.name for f in d.give_fields] == ["account1"] and d.give_fields[0].req is True
    assert d.give_fields[0].options is None
    bank = d.dir_fields[1]
    assert (bank.type, bank.req, bank.cd, bank.options) == ("select", True, True, {"1": "Sber", "2": "Tinkoff"})


def test_direction_fields_sent_as_dict_and_no_limits():
    d = parsed("get_direction__dict_fields.json")
    assert [f.name for f in d.give_fields] == ["account1", "cfgive3"]
    assert [f.name for f in d.get_fields] == ["account2", "cfget_memo"]
    assert d.get_fields[1].label == "Memo"  # a bare string value is tolerated
    assert d.dir_fields == []
    assert (d.min_give, d.max_give, d.min_get, d.max_get) == (None, None, None, None)
    assert d.reserve == Decimal("84210.123456789")
    assert d.timeline_text == "top-level timeline"  # info: [] and the text at top level
    assert d.raw["brand_new_field"] == {"x": 1}


def test_calc_exact_decimals():
    c = parsed("get_calc__ok.json")
    assert isinstance(c, Calc)
    assert c.sum_give == Decimal("0.00100000") and str(c.sum_give_com) == "0.00101000"
    assert c.changed is True and c.max_give is None and c.com_give == "1%"


def test_exchanges_with_history():
    items = parsed("get_exchanges__history.json")
    assert [type(i) for i in items] == [ExchangeItem, ExchangeItem]
    a, b = items
    assert a.id == 1351 and a.api_id == "ord-77" and a.amount_give == Decimal("0.015")
    assert a.time == datetime(2024, 5, 29, 16, 30, tzinfo=UTC) and a.time.tzinfo is not None
    assert a.exchange_success is True and a.status == "success" and a.hash == "a1b2c3d4e5f6"
    assert [s.status for s in a.statuses] == ["new", "payed", "success"]
    assert all(isinstance(s, StatusEntry) and s.time.tzinfo for s in a.statuses)
    assert a.raw["not_in_manual"] == "kept in raw"
    assert b.api_id is None and b.exchange_success is False and b.status == "my3" and b.statuses == []
    assert b.amount_give == Decimal("9") and isinstance(b.course_get, Decimal)


def test_exchanges_empty_result_is_empty_list():
    assert parsed("get_exchanges__empty.json") == []


def test_bid_generic():
    b = parsed("create_bid__generic.json")
    assert isinstance(b, Bid)
    assert (b.id, b.hash, b.status) == (1350, "a1b2c3d4e5f6", "new")
    assert b.amount_give == Decimal("9") and b.amount_get == Decimal("805.50")
    assert b.api_actions.can_cancel and b.api_actions.can_pay and b.api_actions.pay_amount == Decimal("9")
    assert b.hash_from is None and b.hash_to is None and b.statuses is None
    f = parsed("bid_info__generic_finished.json")
    assert f.api_actions.finished and not f.api_actions.can_cancel and f.status == "payed"


def test_bid_alwaysmoney():
    c = parsed("create_bid__alwaysmoney.json")
    assert c.api_actions.type == "address" and c.api_actions.address.startswith("TQn9")
    assert c.api_actions.pay.startswith("https://")  # pay is a URL: not via API
    assert c.hash_from is None and c.statuses["success"] == "Completed"
    i = parsed("bid_info__alwaysmoney.json")
    assert i.id == 88012 and i.hash_from == "0x3f1c9a7e" and i.hash_to == "b5c8e1f0a"
    assert i.amount_get == Decimal("18.684")  # a JSON number: decoded as Decimal, never float
    assert set(i.statuses) == {"new", "payed", "success", "cancel"}  # sent as a list
    assert i.raw["extra_am_field"] is True


@pytest.mark.parametrize("name,status", [("cancel_bid__ok.json", "cancel"), ("pay_bid__ok.json", "payed"),
                                         ("success_bid__ok.json", "success")])
def test_status_changing_calls_return_the_new_status(name, status):
    assert parsed(name) == status


def test_partner_results():
    info = parsed("get_partner_info__ok.json")
    assert isinstance(info, PartnerInfo) and info.partner_id == 12 and info.balance == Decimal("15.42")
    assert info.items[1].commission == Decimal("0.5") and info.items[1].amount == Decimal("0.00021")
    links = parsed("get_partner_links__ok.json")
    assert isinstance(links[0], PartnerLink) and links[0].query_string == "rid=12" and links[0].time.tzinfo
    ex = parsed("get_partner_exchanges__ok.json")
    assert isinstance(ex[0], PartnerExchange) and ex[0].accrued and ex[0].partner_reward == Decimal("1.20")
    pays = parsed("get_partner_payouts__ok.json")
    assert all(isinstance(p, PartnerPayout) for p in pays)
    assert [(p.status, p.status_name) for p in pays] == [(1, "paid"), (3, "cancelled_by_user")]
    assert pays[0].pay_amount == Decimal("12.00")
    assert parsed("add_partner_payout__ok.json") == 33


ERROR_CASES = [
    # file, method it is fed to, class, retryable, reason
    ("any__api_disabled.json", "bid_info", ApiDisabledError, False, "api_disabled"),
    ("any__api_disabled.json", "test", ApiDisabledError, False, "api_disabled"),
    ("any__ip_blocked.json", "get_exchanges", IpBlockedError, False, "ip_blocked"),
    ("any__method_not_supported.json", "create_bid", MethodNotSupportedError, False, "method_not_supported"),
    ("test__maintenance.json", "test", MaintenanceError, True, "maintenance"),
    ("bid_info__maintenance.json", "bid_info", MaintenanceError, True, "maintenance"),
    ("bid_info__no_bid.json", "bid_info", BidNotFoundError, False, "no_bid"),
    ("cancel_bid__no_bid.json", "cancel_bid", BidNotFoundError, False, "no_bid"),
    ("pay_bid__action_disabled.json", "pay_bid", ActionDisabledError, False, "action_disabled"),
    ("get_direction__not_found.json", "get_direction", DirectionNotFoundError, False, "direction_not_found"),
    ("create_bid__direction_not_found.json", "create_bid", DirectionNotFoundError, False, "direction_not_found"),
    ("create_bid__validation.json", "create_bid", ValidationError, False, "validation"),
    ("create_bid__validation_no_fields.json", "create_bid", ValidationError, False, "validation"),
    ("create_bid__api_id_not_unique.json", "create_bid", DuplicateApiIdError, False, "api_id_not_unique"),
    ("get_partner_info__no_program.json", "get_partner_info", PartnerProgramError, False, "partner"),
    ("add_partner_payout__no_partner_id.json", "add_partner_payout", PartnerProgramError, False, "partner"),
    ("bid_info__unknown.json", "bid_info", PermanentError, False, "unknown"),
]


@pytest.mark.parametrize("name,method,cls,retryable,reason", ERROR_CASES)
def test_error_mapping(name, method, cls, retryable, reason):
    _, env = recorded(name)
    err = error_for(200, env, call=method)
    assert type(err) is cls
    assert err.retryable is retryable
    assert (err.provider, err.code, err.message, err.http_status) == ("premium", env["error"], env["error_text"], 200)
    assert err.call == method and err.reason == reason and err.raw_body == env
    with pytest.raises(cls):
        check_envelope(200, env, call=method)


def test_error_hierarchy_placement():
    assert issubclass(ApiDisabledError, AuthError) and issubclass(IpBlockedError, AuthError)
    assert issubclass(MethodNotSupportedError, AuthError) and issubclass(MaintenanceError, RetryableError)
    assert issubclass(BidNotFoundError, NotFoundError) and issubclass(DirectionNotFoundError, NotFoundError)
    assert issubclass(DuplicateApiIdError, ValidationError) and issubclass(PartnerProgramError, PermanentError)
    assert issubclass(BadResponseError, RetryableError)


def test_validation_fields_and_status_hint():
    _, env = recorded("create_bid__validation.json")
    err = error_for(200, env, call="create_bid")
    assert err.fields == {"account2": "Invalid card number", "cf6": "E-mail is required"}
    _, env = recorded("create_bid__validation_no_fields.json")
    assert error_for(200, env, call="create_bid").fields == {}  # error_fields: [] → {}
    assert error_for(200, recorded("cancel_bid__no_bid.json")[1], call="cancel_bid").maybe_status_forbids is True
    assert error_for(200, recorded("bid_info__no_bid.json")[1], call="bid_info").maybe_status_forbids is False
    # api id reuse reported inside error_fields instead of error_text
    dup = error_for(200, {"error": "3", "error_text": "", "error_fields": {"api_id": "api id not unique"}},
                    call="create_bid")
    assert type(dup) is DuplicateApiIdError and dup.message


@pytest.mark.parametrize("code", [0, "0", " 0 "])
def test_zero_and_string_zero_are_success(code):
    env = {"error": code, "error_text": "", "data": {"ip": "1.2.3.4"}}
    assert error_for(200, env, call="test") is None and check_envelope(200, env, call="test") == {"ip": "1.2.3.4"}


def test_int_pre_method_code_wins_over_method_meaning():
    # A translated "Api disabled" (int 1, no data) on bid_info must never read as "no bid exists".
    err = error_for(200, {"error": 1, "error_text": "API выключено администратором"}, call="bid_info")
    assert type(err) is ApiDisabledError
    assert type(error_for(200, {"error": 2, "error_text": "??"}, call="cancel_bid")) is IpBlockedError
    assert type(error_for(200, {"error": 3, "error_text": "??"}, call="create_bid")) is MethodNotSupportedError
    # the same codes as strings keep the method's own meaning
    assert type(error_for(200, {"error": "1", "error_text": "??", "data": []}, call="bid_info")) is BidNotFoundError
    assert type(error_for(200, {"error": "2", "error_text": "Ведутся работы", "data": []},
                          call="success_bid")) is MaintenanceError
    assert type(error_for(200, {"error": "1", "error_text": "balance is less than minimum payout", "data": []},
                          call="add_partner_payout")) is PermanentError


@pytest.mark.parametrize("env", [[], "oops", None, {"data": {"id": "1"}}, {"error": "", "error_text": ""}])
def test_not_an_envelope(env):
    err = error_for(200, env, call="bid_info")
    assert isinstance(err, BadResponseError) and err.retryable


def test_decode_body_tolerance():
    assert decode_body(b'\xef\xbb\xbf{"error":0,"data":{"x":1.10}}')["data"]["x"] == Decimal("1.10")
    noisy = b'<br />\n<b>Deprecated</b>: something in wp-includes on line 12<br />\n{"error":"0","data":"cancel"}'
    assert check_envelope(200, decode_body(noisy), call="cancel_bid") == "cancel"
    with pytest.raises(ValueError):
        decode_body(b"<html><body>502 Bad Gateway</body></html>")


def test_form_values():
    assert form_value(Decimal("1E+2")) == "100" and form_value(Decimal("0.00000001")) == "0.00000001"
    assert form_value(datetime(2024, 5, 29, 16, 30, tzinfo=UTC)) == "1717000200"
    assert form_value(True) == "1" and form_value([3, 1, 2]) == "3,1,2" and form_value(None) is None
    with pytest.raises(TypeError):
        form_value(0.1)
    assert mask(DEFAULT_LOGIN) == DEFAULT_LOGIN[:4] + "…"


def test_retry_after_and_safe_url():
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert safe_url("https://u:p@h.example:8443/api/x?key=s#f") == "https://h.example:8443/api/x"


# =====================================================================================================
# 2. Over real HTTP against the sandbox
# =====================================================================================================

@pytest.fixture
def sandbox():
    """Factory: start a sandbox with options; returns (app, client). Everything is stopped afterwards."""
    started = []

    def start(client_kw=None, **opts):
        app = create_app(**opts)
        srv = serve(app, host="127.0.0.1", port=0)
        client = PremiumClient(srv.url, DEFAULT_LOGIN, DEFAULT_KEY, **{"timeout": 5.0, **(client_kw or {})})
        started.append((app, srv, client))
        app.url = srv.url
        return app, client

    yield start
    for app, srv, client in started:
        client.close()
        srv.shutdown()
        app.engine.close()


def test_every_method_generic(sandbox):
    app, c = sandbox(flavour="generic", seed=1)
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


def test_every_method_alwaysmoney_and_lang(sandbox):
    app, c = sandbox(flavour="alwaysmoney", seed=2, client_kw={"lang": "ru_RU"})
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


def test_request_generic_call(sandbox):
    app, c = sandbox(seed=3)
    bid_id = app.engine.add_bid(direction_id=2, amount="50")
    raw = c.request("bid_info", params={"id": bid_id})
    assert raw["id"] == str(bid_id) and raw["amount_give"] == "50"
    same = c.request("bid_info", "/api/userapi/v1/bid_info", json={"id": bid_id})
    assert same["hash"] == raw["hash"]
    with pytest.raises(MethodNotSupportedError):
        c.request("no_such_method")


def test_auth_errors(sandbox):
    app, _ = sandbox()
    wrong = PremiumClient(app.url, DEFAULT_LOGIN, "X" * 32, timeout=5)
    with pytest.raises(ApiDisabledError) as ei:
        wrong.bid_info(id=1)  # never "no bid exists"
    assert ei.value.code == 1 and ei.value.retryable is False and "X" * 32 not in repr(ei.value) + str(ei.value)
    wrong.close()
    _, blocked = sandbox(ip_allowlist=["10.9.9.9"])
    with pytest.raises(IpBlockedError):
        blocked.test()
    _, limited = sandbox(methods=["test"])
    assert limited.test().user_id == 1
    with pytest.raises(MethodNotSupportedError):
        limited.bid_info(id=1)


def test_maintenance_modes(sandbox):
    app, c = sandbox(maintenance=True)
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


def test_not_found_errors(sandbox):
    app, c = sandbox()
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


def test_validation_and_duplicate_api_id(sandbox):
    app, c = sandbox()
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


def test_transient_faults_502_and_unknown_outcome(sandbox):
    app, c = sandbox(error_rate=1.0, seed=4)
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


def test_read_timeout_is_unknown_outcome_and_closed_port_is_connection_failed(sandbox):
    app, c = sandbox(latency=1.0, client_kw={"timeout": 0.2})
    with pytest.raises(UnknownOutcomeError) as ei:
        c.test()
    assert ei.value.code == "read_timeout" and not isinstance(ei.value, RetryableError)
    for url in (refused_url(), "http://exsync-no-such-host.invalid"):  # refused, DNS failure
        dead = PremiumClient(url, DEFAULT_LOGIN, DEFAULT_KEY, timeout=2)
        with pytest.raises(ConnectionFailedError) as ei:
            dead.create_bid(2, "100", account2="x")  # nothing was sent: safe even for a create
        assert ei.value.retryable and DEFAULT_KEY not in str(ei.value) and ei.value.code == "connect_failed"
        dead.close()


def test_logging_never_shows_secrets(sandbox, caplog):
    app, c = sandbox()
    caplog.set_level(logging.DEBUG, logger="providers.premium")
    c.test()
    with pytest.raises(BidNotFoundError):
        c.bid_info(id=99)
    text = caplog.text
    assert "premium test" in text and "BidNotFoundError" in text and mask(DEFAULT_LOGIN) in text
    assert DEFAULT_KEY not in text and DEFAULT_LOGIN not in text
    assert DEFAULT_KEY not in repr(c) and DEFAULT_LOGIN not in repr(c)


def test_concurrent_use_from_a_thread_pool(sandbox):
    app, c = sandbox()
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


def test_iter_exchanges_plain_walk(sandbox):
    app, c = sandbox(seed=5)
    ids, start, end = _past_window(app, 1234)
    batches = list(c.iter_exchanges(start_time=start, end_time=end, page_size=200, overlap=20,
                                    status_history=True))
    got = [i.id for b in batches for i in b]
    assert sorted(got) == sorted(ids) and len(got) == len(set(got))
    assert all(i.statuses for b in batches for i in b)
    assert list(iter_exchanges(c, start_time=end + 10, end_time=end + 20)) == []


def test_iter_exchanges_bids_leaving_the_window_between_pages(sandbox, caplog):
    """Bids already read change (→ leave a past window) after every page: more than the overlap."""
    caplog.set_level(logging.DEBUG, logger="providers.premium")
    app, c = sandbox(seed=6)
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

    app2, c2 = sandbox(seed=7)
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


def test_iter_exchanges_concurrent_churn_and_new_bids(sandbox):
    """A thread changes bids (they leave the past window) while the walk runs."""
    app, c = sandbox(seed=8)
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


def test_iter_exchanges_window_open_to_the_future_new_bids_shift_down(sandbox):
    """New bids enter at the top mid-walk (pages shift down): no duplicates, nothing of the old set lost."""
    app, c = sandbox(seed=9)
    ids = app.engine.bulk_add(700, start_time=time.time() - 3000, spread_seconds=2900)
    start, end = int(time.time()) - 4000, int(time.time()) + 3600
    seen = []
    for batch in c.iter_exchanges(start_time=start, end_time=end, page_size=100, overlap=10):
        seen += [i.id for i in batch]
        for _ in range(30):
            app.engine.add_bid(direction_id=2, amount="20")
        app.engine.set_status(batch[0].id, "my7")  # changes stay inside this window
    assert len(seen) == len(set(seen)) and set(ids) <= set(seen)


def test_iter_exchanges_argument_checks(sandbox):
    _, c = sandbox()
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
