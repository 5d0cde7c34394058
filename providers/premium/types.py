"""Typed results of the Premium Exchanger user API v1.

Every result is a frozen dataclass holding the fields we use plus ``raw``: the payload exactly as
decoded (unknown fields are kept there and never break parsing). The engine sends numbers as
strings: amounts become ``Decimal`` (never float), ids ``int``, unix times aware UTC ``datetime``.
Both flavours of the engine are accepted (docs/providers/premium-exchanger.md): the generic one and
AlwaysMoney (``xml_value``/``fiat``/``is_need_memo`` on currencies, ``hash_from``/``hash_to``/``statuses``
on bids).

(Over 500 lines: one small dataclass per result of the 16 API methods, and ``PARSERS`` mapping each method to
its parser; split up they would only import each other.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from providers.values import to_bool, to_decimal, to_dict, to_int, to_text, to_time

__all__ = [
    "TestInfo", "Currency", "DirectionCurrencies", "DirectionSummary", "Field", "Direction", "Calc",
    "ApiActions", "Bid", "StatusEntry", "ExchangeItem", "PartnerCurrency", "PartnerInfo", "PartnerLink",
    "PartnerExchange", "PartnerPayout", "PAYOUT_STATUSES",
    "to_decimal", "to_int", "to_bool", "to_time", "parse_result", "PARSERS",
]


# Scalars are read by the converters every provider shares (providers.values: one decision on commas,
# non-finite numbers and time bounds); re-exported here for the callers that import them from this module.


def _items(v: Any) -> list:
    """A list of records from a list, a dict keyed by id, ``{"items": …}`` or an empty ``[]``/``""``."""
    if isinstance(v, dict) and "items" in v and not isinstance(v.get("items"), (str, int)):
        v = v["items"]
    if isinstance(v, dict):
        return [x for x in v.values() if isinstance(x, dict)]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, dict)]
    return []


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TestInfo:
    __test__ = False  # not a pytest test class

    ip: str | None
    user_id: int | None
    locale: str | None
    partner_id: int | None
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "TestInfo":
        d = to_dict(d)
        return cls(ip=to_text(d.get("ip")), user_id=to_int(d.get("user_id")), locale=to_text(d.get("locale")),
                   partner_id=to_int(d.get("partner_id")), raw=d)


@dataclass(frozen=True)
class Currency:
    id: int | None
    title: str | None
    logo: str | None
    xml_value: str | None = None      # AlwaysMoney: rate-export code
    fiat: bool | None = None          # AlwaysMoney
    is_need_memo: bool | None = None  # AlwaysMoney
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Currency":
        d = to_dict(d)
        return cls(id=to_int(d.get("id")), title=to_text(d.get("title")), logo=to_text(d.get("logo")),
                   xml_value=to_text(d.get("xml_value")), fiat=to_bool(d.get("fiat")),
                   is_need_memo=to_bool(d.get("is_need_memo")), raw=d)


@dataclass(frozen=True)
class DirectionCurrencies:
    give: list[Currency]
    get: list[Currency]
    raw: Any = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "DirectionCurrencies":
        dd = to_dict(d)
        return cls(give=[Currency.from_raw(x) for x in _items(dd.get("give"))],
                   get=[Currency.from_raw(x) for x in _items(dd.get("get"))], raw=d)


@dataclass(frozen=True)
class DirectionSummary:
    direction_id: int | None
    currency_give_id: int | None
    currency_give_title: str | None
    currency_give_logo: str | None
    currency_get_id: int | None
    currency_get_title: str | None
    currency_get_logo: str | None
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "DirectionSummary":
        d = to_dict(d)
        return cls(
            direction_id=to_int(d.get("direction_id", d.get("id"))),
            currency_give_id=to_int(d.get("currency_give_id")),
            currency_give_title=to_text(d.get("currency_give_title")),
            currency_give_logo=to_text(d.get("currency_give_logo")), currency_get_id=to_int(d.get("currency_get_id")),
            currency_get_title=to_text(d.get("currency_get_title")),
            currency_get_logo=to_text(d.get("currency_get_logo")),
            raw=d)

    @staticmethod
    def list_from_raw(d: Any) -> "list[DirectionSummary]":
        return [DirectionSummary.from_raw(x) for x in _items(d)]


@dataclass(frozen=True)
class Field:
    """One form field of a direction (``give_fields``/``get_fields``/``dir_fields``)."""

    name: str | None
    type: str | None
    label: str | None
    req: bool
    tooltip: str | None
    options: Any           # as sent: list or dict for ``select`` fields, else None
    cd: bool               # belongs in get_calc's ``cd`` parameter
    raw: Any = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any, name: str | None = None) -> "Field":
        if not isinstance(d, dict):
            return cls(name=name, type=None, label=to_text(d), req=False, tooltip=None, options=None, cd=False, raw=d)
        opts = d.get("options")
        return cls(name=to_text(d.get("name")) or name, type=to_text(d.get("type")), label=to_text(d.get("label")),
                   req=bool(to_bool(d.get("req"))), tooltip=to_text(d.get("tooltip")),
                   options=opts if isinstance(opts, (list, dict)) and opts else None,
                   cd=bool(to_bool(d.get("cd"))), raw=d)

    @staticmethod
    def list_from_raw(v: Any) -> "list[Field]":
        """A list of fields from a list or from a dict keyed by field name (both are sent)."""
        if isinstance(v, dict):
            return [Field.from_raw(x, name=str(k)) for k, x in v.items()]
        if isinstance(v, list):
            return [Field.from_raw(x) for x in v]
        return []


_LIMITS = ("min_give", "max_give", "min_get", "max_get")
_SUMS = ("reserve", "course_give", "course_get", "sum_give", "sum_give_com", "sum_get", "sum_get_com")


@dataclass(frozen=True)
class Calc:
    currency_code_give: str | None
    currency_code_get: str | None
    reserve: Decimal | None
    course_give: Decimal | None
    course_get: Decimal | None
    sum_give: Decimal | None
    sum_give_com: Decimal | None
    sum_get: Decimal | None
    sum_get_com: Decimal | None
    com_give: str | None
    com_get: str | None
    min_give: Decimal | None  # None: no limit ("no")
    max_give: Decimal | None
    min_get: Decimal | None
    max_get: Decimal | None
    changed: bool
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Calc":
        d = to_dict(d)
        return cls(currency_code_give=to_text(d.get("currency_code_give")),
                   currency_code_get=to_text(d.get("currency_code_get")),
                   **{k: to_decimal(d.get(k)) for k in _SUMS + _LIMITS},
                   com_give=to_text(d.get("com_give")), com_get=to_text(d.get("com_get")),
                   changed=bool(to_bool(d.get("changed"))), raw=d)


@dataclass(frozen=True)
class Direction:
    id: int | None
    url: str | None
    currency_code_give: str | None
    currency_code_get: str | None
    reserve: Decimal | None
    course_give: Decimal | None
    course_get: Decimal | None
    sum_give: Decimal | None
    sum_give_com: Decimal | None
    sum_get: Decimal | None
    sum_get_com: Decimal | None
    com_give: str | None
    com_get: str | None
    min_give: Decimal | None  # None: no limit ("no")
    max_give: Decimal | None
    min_get: Decimal | None
    max_get: Decimal | None
    timeline_text: str | None
    frozen_text: str | None
    before_button_text: str | None
    give_fields: list[Field]
    get_fields: list[Field]
    dir_fields: list[Field]
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Direction":
        d = to_dict(d)
        info = to_dict(d.get("info"))

        def text(k: str) -> str | None:
            return to_text(info.get(k, d.get(k)))

        return cls(id=to_int(d.get("id", d.get("direction_id"))), url=to_text(d.get("url")),
                   currency_code_give=to_text(d.get("currency_code_give")),
                   currency_code_get=to_text(d.get("currency_code_get")),
                   **{k: to_decimal(d.get(k)) for k in _SUMS + _LIMITS},
                   com_give=to_text(d.get("com_give")), com_get=to_text(d.get("com_get")),
                   timeline_text=text("timeline_text"), frozen_text=text("frozen_text"),
                   before_button_text=text("before_button_text"),
                   give_fields=Field.list_from_raw(d.get("give_fields")),
                   get_fields=Field.list_from_raw(d.get("get_fields")),
                   dir_fields=Field.list_from_raw(d.get("dir_fields")), raw=d)

    @property
    def fields(self) -> list[Field]:
        return [*self.give_fields, *self.get_fields, *self.dir_fields]


@dataclass(frozen=True)
class ApiActions:
    """How a bid may be paid/cancelled. ``cancel``/``pay``: ``"api"``, ``"disabled"`` or a URL."""

    type: str | None  # default | finished | form | mypaid | myaction | coupon | address | link
    cancel: str | None
    pay: str | None
    instruction: str | None
    pay_amount: Decimal | None
    address: str | None
    dest_tag: str | None
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "ApiActions":
        d = to_dict(d)
        return cls(type=to_text(d.get("type")), cancel=to_text(d.get("cancel")), pay=to_text(d.get("pay")),
                   instruction=to_text(d.get("instruction")), pay_amount=to_decimal(d.get("pay_amount")),
                   address=to_text(d.get("address")), dest_tag=to_text(d.get("dest_tag")), raw=d)

    @property
    def can_cancel(self) -> bool:
        return self.cancel == "api"

    @property
    def can_pay(self) -> bool:
        return self.pay == "api"

    @property
    def finished(self) -> bool:
        return self.type == "finished"


def _statuses_map(v: Any) -> dict[str, str] | None:
    """AlwaysMoney's ``statuses`` (all possible statuses) → {status: title}, whatever shape is sent."""
    if v is None or v == "":
        return None
    if isinstance(v, dict):
        return {str(k): (to_text(x) if not isinstance(x, dict) else to_text(x.get("title")) or "") or ""
                for k, x in v.items()}
    if isinstance(v, list):
        out: dict[str, str] = {}
        for x in v:
            if isinstance(x, dict):
                key = to_text(x.get("status", x.get("name", x.get("code", x.get("id")))))
                if key:
                    out[key] = to_text(x.get("title", x.get("label"))) or ""
            elif x is not None:
                out[str(x)] = ""
        return out
    return None


@dataclass(frozen=True)
class Bid:
    """A bid as ``create_bid`` and ``bid_info`` describe it."""

    id: int | None
    hash: str | None
    url: str | None
    status: str | None
    status_title: str | None
    psys_give: str | None
    psys_get: str | None
    currency_code_give: str | None
    currency_code_get: str | None
    amount_give: Decimal | None
    amount_get: Decimal | None
    api_actions: ApiActions
    hash_from: str | None = None               # AlwaysMoney: merchant txid
    hash_to: str | None = None                 # AlwaysMoney: payout txid
    statuses: dict[str, str] | None = None     # AlwaysMoney: all possible statuses
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "Bid":
        d = to_dict(d)
        return cls(id=to_int(d.get("id")), hash=to_text(d.get("hash")), url=to_text(d.get("url")),
                   status=to_text(d.get("status")),
                   status_title=to_text(d.get("status_title")), psys_give=to_text(d.get("psys_give")),
                   psys_get=to_text(d.get("psys_get")), currency_code_give=to_text(d.get("currency_code_give")),
                   currency_code_get=to_text(d.get("currency_code_get")), amount_give=to_decimal(d.get("amount_give")),
                   amount_get=to_decimal(d.get("amount_get")), api_actions=ApiActions.from_raw(d.get("api_actions")),
                   hash_from=to_text(d.get("hash_from")) or None, hash_to=to_text(d.get("hash_to")) or None,
                   statuses=_statuses_map(d.get("statuses")), raw=d)


@dataclass(frozen=True)
class StatusEntry:
    time: datetime | None
    date: str | None
    status: str | None

    @classmethod
    def from_raw(cls, d: Any) -> "StatusEntry":
        d = to_dict(d)
        return cls(time=to_time(d.get("time")), date=to_text(d.get("date")), status=to_text(d.get("status")))

    @staticmethod
    def list_from_raw(v: Any) -> "list[StatusEntry]":
        return [StatusEntry.from_raw(x) for x in _items(v)]


@dataclass(frozen=True)
class ExchangeItem:
    """One bid from ``get_exchanges``. ``time`` is the bid's LAST CHANGE time (the filter's time)."""

    id: int | None
    api_id: str | None
    time: datetime | None
    date: str | None
    psys_give: str | None
    psys_get: str | None
    currency_code_give: str | None
    currency_code_get: str | None
    course_give: Decimal | None
    course_get: Decimal | None
    amount_give: Decimal | None
    amount_get: Decimal | None
    exchange_success: bool  # True only when status is "success" (the manual says the reverse)
    user_hash: str | None
    user_ip: str | None
    status: str | None
    hash: str | None
    statuses: list[StatusEntry]  # only with status_history=1
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "ExchangeItem":
        d = to_dict(d)
        return cls(id=to_int(d.get("id")), api_id=to_text(d.get("api_id")) or None, time=to_time(d.get("time")),
                   date=to_text(d.get("date")), psys_give=to_text(d.get("psys_give")),
                   psys_get=to_text(d.get("psys_get")),
                   currency_code_give=to_text(d.get("currency_code_give")),
                   currency_code_get=to_text(d.get("currency_code_get")),
                   course_give=to_decimal(d.get("course_give")), course_get=to_decimal(d.get("course_get")),
                   amount_give=to_decimal(d.get("amount_give")), amount_get=to_decimal(d.get("amount_get")),
                   exchange_success=bool(to_bool(d.get("exchange_success"))), user_hash=to_text(d.get("user_hash")),
                   user_ip=to_text(d.get("user_ip")), status=to_text(d.get("status")), hash=to_text(d.get("hash")),
                   statuses=StatusEntry.list_from_raw(d.get("statuses")), raw=d)

    @staticmethod
    def list_from_raw(v: Any) -> "list[ExchangeItem]":
        return [ExchangeItem.from_raw(x) for x in _items(v)]


@dataclass(frozen=True)
class PartnerCurrency:
    id: int | None
    title: str | None
    commission: Decimal | None
    amount: Decimal | None
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "PartnerCurrency":
        d = to_dict(d)
        com = d.get("commission")
        if isinstance(com, str):
            com = com.replace("%", "")
        return cls(id=to_int(d.get("id")), title=to_text(d.get("title")), commission=to_decimal(com),
                   amount=to_decimal(d.get("amount")), raw=d)


@dataclass(frozen=True)
class PartnerInfo:
    partner_id: int | None
    balance: Decimal | None
    min_payout: Decimal | None
    items: list[PartnerCurrency]
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "PartnerInfo":
        d = to_dict(d)
        return cls(partner_id=to_int(d.get("partner_id")), balance=to_decimal(d.get("balance")),
                   min_payout=to_decimal(d.get("min_payout")),
                   items=[PartnerCurrency.from_raw(x) for x in _items(d.get("items"))], raw=d)


@dataclass(frozen=True)
class PartnerLink:
    time: datetime | None
    date: str | None
    browser: str | None
    ip: str | None
    referrer: str | None
    user_hash: str | None
    query_string: str | None
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "PartnerLink":
        d = to_dict(d)
        return cls(time=to_time(d.get("time")), date=to_text(d.get("date")), browser=to_text(d.get("browser")),
                   ip=to_text(d.get("ip")), referrer=to_text(d.get("referrer")), user_hash=to_text(d.get("user_hash")),
                   query_string=to_text(d.get("query_string")), raw=d)

    @staticmethod
    def list_from_raw(v: Any) -> "list[PartnerLink]":
        return [PartnerLink.from_raw(x) for x in _items(v)]


@dataclass(frozen=True)
class PartnerExchange:
    id: int | None
    time: datetime | None
    date: str | None
    psys_give: str | None
    psys_get: str | None
    currency_code_give: str | None
    currency_code_get: str | None
    course_give: Decimal | None
    course_get: Decimal | None
    amount_give: Decimal | None
    amount_get: Decimal | None
    exchange_success: bool
    accrued: bool
    partner_reward: Decimal | None
    user_hash: str | None
    user_ip: str | None
    status: str | None
    statuses: list[StatusEntry]
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "PartnerExchange":
        d = to_dict(d)
        return cls(id=to_int(d.get("id")), time=to_time(d.get("time")), date=to_text(d.get("date")),
                   psys_give=to_text(d.get("psys_give")), psys_get=to_text(d.get("psys_get")),
                   currency_code_give=to_text(d.get("currency_code_give")),
                   currency_code_get=to_text(d.get("currency_code_get")),
                   course_give=to_decimal(d.get("course_give")), course_get=to_decimal(d.get("course_get")),
                   amount_give=to_decimal(d.get("amount_give")), amount_get=to_decimal(d.get("amount_get")),
                   exchange_success=bool(to_bool(d.get("exchange_success"))), accrued=bool(to_bool(d.get("accrued"))),
                   partner_reward=to_decimal(d.get("partner_reward")), user_hash=to_text(d.get("user_hash")),
                   user_ip=to_text(d.get("user_ip")), status=to_text(d.get("status")),
                   statuses=StatusEntry.list_from_raw(d.get("statuses")), raw=d)

    @staticmethod
    def list_from_raw(v: Any) -> "list[PartnerExchange]":
        return [PartnerExchange.from_raw(x) for x in _items(v)]


PAYOUT_STATUSES = {0: "pending", 1: "paid", 2: "cancelled", 3: "cancelled_by_user"}


@dataclass(frozen=True)
class PartnerPayout:
    id: int | None
    time: datetime | None
    date: str | None
    method_id: int | None
    account: str | None
    pay_amount: Decimal | None
    pay_currency_code: str | None
    original_amount: Decimal | None
    original_currency_code: str | None
    status: int | None  # 0 pending, 1 paid, 2 cancelled, 3 cancelled by the user
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, d: Any) -> "PartnerPayout":
        d = to_dict(d)
        return cls(id=to_int(d.get("id")), time=to_time(d.get("time")), date=to_text(d.get("date")),
                   method_id=to_int(d.get("method_id")), account=to_text(d.get("account")),
                   pay_amount=to_decimal(d.get("pay_amount")), pay_currency_code=to_text(d.get("pay_currency_code")),
                   original_amount=to_decimal(d.get("original_amount")),
                   original_currency_code=to_text(d.get("original_currency_code")), status=to_int(d.get("status")),
                   raw=d)

    @property
    def status_name(self) -> str:
        return PAYOUT_STATUSES.get(self.status if self.status is not None else -1, f"unknown:{self.status}")

    @staticmethod
    def list_from_raw(v: Any) -> "list[PartnerPayout]":
        return [PartnerPayout.from_raw(x) for x in _items(v)]


def _status_string(d: Any) -> str:
    """cancel/pay/success_bid answer the new status as ``data``; tolerate ``{"status": …}`` too."""
    if isinstance(d, dict):
        d = d.get("status", "")
    return "" if d is None else str(d)


def _payout_id(d: Any) -> int | None:
    return to_int(d.get("payout_id", d.get("id"))) if isinstance(d, dict) else to_int(d)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "test": TestInfo.from_raw,
    "get_direction_currencies": DirectionCurrencies.from_raw,
    "get_directions": DirectionSummary.list_from_raw,
    "get_direction": Direction.from_raw,
    "get_calc": Calc.from_raw,
    "get_exchanges": ExchangeItem.list_from_raw,
    "create_bid": Bid.from_raw,
    "bid_info": Bid.from_raw,
    "cancel_bid": _status_string,
    "pay_bid": _status_string,
    "success_bid": _status_string,
    "get_partner_info": PartnerInfo.from_raw,
    "get_partner_links": PartnerLink.list_from_raw,
    "get_partner_exchanges": PartnerExchange.list_from_raw,
    "get_partner_payouts": PartnerPayout.list_from_raw,
    "add_partner_payout": _payout_id,
}


def parse_result(method: str, data: Any) -> Any:
    """The typed result of ``method`` from the envelope's ``data`` (unknown methods: data unchanged)."""
    parser = PARSERS.get(method)
    return parser(data) if parser else data
