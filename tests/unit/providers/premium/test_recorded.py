"""PremiumClient's pure side against recorded answers: typed results, the error map, the envelope,
form values."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from providers import (
    AuthError,
    NotFoundError,
    PermanentError,
    RetryableError,
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
    StatusEntry,
    TestInfo,
    check_envelope,
    decode_body,
    error_for,
    parse_result,
)
from providers.premium.client import form_value, mask
from providers.premium.sandbox import DEFAULT_LOGIN
from tests.support.recorded import answer, answer_names

UTC = timezone.utc


def recorded(name: str):
    """(call, envelope) of a recorded answer: its body decoded from the bytes as sent."""
    found = answer("premium", name)
    return found.call, decode_body(found.content)


def parsed(name: str):
    method, env = recorded(name)
    return parse_result(method, check_envelope(200, env, call=method))


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
