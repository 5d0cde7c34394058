"""What the fake exchanger offers and how it writes it: credentials, methods, bid statuses, currencies,
directions, and the engine's wire form of numbers and dates (facts: docs/providers/premium-exchanger.md)."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, overload

DEFAULT_LOGIN = "exsyncSandboxLogin00000000000001"  # 32 letters/digits, like the engine issues
DEFAULT_KEY = "exsyncSandboxKey0000000000000001"
API_PATH = "/api/userapi/v1/"

ALL_METHODS = (
    "test", "get_direction_currencies", "get_directions", "get_direction", "get_calc", "get_exchanges",
    "create_bid", "cancel_bid", "pay_bid", "success_bid", "bid_info", "get_partner_info",
    "get_partner_links", "get_partner_exchanges", "get_partner_payouts", "add_partner_payout",
)

# (status, English title, Russian title), in the engine's order.
_STATUS_TABLE = (
    ("coldnew", "Pending verification", "Ожидает проверки"),
    ("new", "New bid", "Новая заявка"),
    ("cancel", "Cancelled by user", "Отменена пользователем"),
    ("delete", "Deleted", "Удалена"),
    ("techpay", "Going to payment", "Переход к оплате"),
    ("payed", "Marked as paid by user", "Отмечена как оплаченная"),
    ("coldpay", "Waiting for merchant confirmation", "Ожидает подтверждения мерчанта"),
    ("partpay", "Partly paid", "Частично оплачена"),
    ("realpay", "Paid", "Оплачена"),
    ("verify", "Being verified", "На проверке"),
    ("amlwait", "AML check", "Проверка AML"),
    ("amlerror", "AML check failed", "Ошибка AML"),
    ("merchwait", "Waiting for merchant", "Ожидание мерчанта"),
    ("mercherror", "Merchant error", "Ошибка мерчанта"),
    ("error", "Error", "Ошибка"),
    ("payouterror", "Automatic payout error", "Ошибка автовыплаты"),
    ("scrpayerror", "Payout error at the payment system", "Ошибка выплаты в платёжной системе"),
    ("coldsuccess", "Waiting for payout confirmation", "Ожидает подтверждения выплаты"),
    ("partpayout", "Partly paid out", "Частично выплачена"),
    ("success", "Completed", "Выполнена"),
)
STATUSES = tuple(s for s, _, _ in _STATUS_TABLE)
_TITLES = {s: (en, ru) for s, en, ru in _STATUS_TABLE}
_CUSTOM_RE = re.compile(r"^my[0-9]{1,6}$")
_CANCEL_FROM = frozenset({"new", "techpay", "coldnew", "amlwait", "merchwait"})
_PAY_FROM = frozenset({"new", "techpay"})
_OPEN_ACTIONS = frozenset({"new", "techpay"})  # api_actions.type stays as set while in these

def _is_status(s: str) -> bool:
    return s in _TITLES or bool(_CUSTOM_RE.match(s or ""))


def _title(status: str, lang: str) -> str:
    ru = lang.startswith("ru")
    if status in _TITLES:
        return _TITLES[status][1 if ru else 0]
    n = status[2:]
    return f"Пользовательский статус {n}" if ru else f"Custom status {n}"


def _s(d: Decimal | int | None) -> str:
    """Decimal -> the engine's wire form: plain digits, no exponent, no trailing zeros."""
    if d is None:
        return "no"
    if isinstance(d, int):
        return str(d)
    return format(d.normalize(), "f")


def _date(t: float) -> str:
    return time.strftime("%d.%m.%Y %H:%M", time.gmtime(t))


def _dec(v: Any) -> Decimal | None:
    if v is None:
        return None
    try:
        d = Decimal(str(v).strip().replace(",", "."))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


@overload
def _int(v: Any, default: int) -> int: ...
@overload
def _int(v: Any, default: None = None) -> int | None: ...
def _int(v: Any, default: int | None = None) -> int | None:
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------------------------------
# Currencies and directions
# --------------------------------------------------------------------------------------------------

@dataclass
class _Currency:
    id: int
    title: str
    code: str
    psys: str
    xml_value: str
    fiat: int
    is_need_memo: int
    decimals: int
    reserve: Decimal
    logo: str


@dataclass
class _Direction:
    id: int
    give: int
    get: int
    course_give: Decimal
    course_get: Decimal
    com_give_pct: Decimal = Decimal(0)   # added to what the customer pays
    com_get_pct: Decimal = Decimal(0)    # taken from what the customer receives
    min_give: Decimal | None = None
    max_give: Decimal | None = None
    min_get: Decimal | None = None
    max_get: Decimal | None = None
    give_fields: Any = field(default_factory=list)
    get_fields: Any = field(default_factory=list)   # may be a dict: a trap the engine really has
    dir_fields: Any = field(default_factory=list)
    action_type: str = "default"
    cancel: str = "api"
    pay: str = "api"
    address: str | None = None
    enabled: bool = True


def _fld(name: str, label: str, req: int = 0, type_: str = "input", tooltip: str = "", cd: int = 0) -> dict:
    return {"name": name, "type": type_, "label": label, "req": str(req), "tooltip": tooltip,
            "options": [], "cd": str(cd)}


def _catalogue() -> tuple[dict[int, _Currency], dict[int, _Direction]]:
    D = Decimal
    cur = {
        1: _Currency(1, "Bitcoin BTC", "BTC", "Bitcoin", "BTC", 0, 0, 8, D("12.5"), "btc.png"),
        2: _Currency(2, "Tether TRC20 USDT", "USDT", "Tether TRC20", "USDTTRC20", 0, 0, 2, D("250000"), "usdt.png"),
        3: _Currency(3, "Visa/MasterCard RUB", "RUB", "Visa/MasterCard", "CARDRUB", 1, 0, 2, D("5000000"),
                     "card.png"),
        4: _Currency(4, "ZC RUB", "RUB", "ZaleyCash", "ZCRUB", 1, 0, 2, D("3000000"), "zc.png"),
    }
    acc2 = {
        1: _fld("account2", "USDT TRC20 address", 1, tooltip="Starts with T"),
        3: _fld("account2", "Card number", 1, tooltip="16-19 digits"),
        4: _fld("account2", "ZaleyCash account", 1),
    }
    dirs = {
        1: _Direction(1, 1, 2, D("1"), D("64250.5"), D("0"), D("0.5"), D("0.001"), D("5"), None, None,
                      give_fields=[_fld("account1", "Your BTC address")], get_fields=[acc2[1]],
                      dir_fields=[_fld("cf6", "E-mail"), _fld("cf11", "Telegram")]),
        2: _Direction(2, 2, 3, D("1"), D("92.15"), D("0"), D("1"), D("10"), D("10000"), None, None,
                      give_fields=[_fld("account1", "Your TRC20 address"),
                                   _fld("cfgive8", "Cardholder name")],
                      get_fields=[acc2[3]],
                      dir_fields=[_fld("cf1", "First name"), _fld("cf3", "Last name"), _fld("cf6", "E-mail")]),
        3: _Direction(3, 2, 4, D("1"), D("91.8"), D("0.5"), D("0"), D("5"), None, None, D("1000000"),
                      give_fields={"account1": _fld("account1", "Your TRC20 address")},
                      get_fields={"account2": acc2[4]},
                      dir_fields={"cf6": _fld("cf6", "E-mail")}),
        4: _Direction(4, 1, 4, D("1"), D("5900000"), D("0"), D("1.5"), D("0.0005"), D("2"), D("1000"), None,
                      get_fields=[acc2[4]], dir_fields=[_fld("cf6", "E-mail")],
                      action_type="address", pay="disabled",
                      address="bc1qsandbox0exsync0merchant0address0000xyz"),
    }
    return cur, dirs
