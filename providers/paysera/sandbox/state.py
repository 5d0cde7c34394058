"""The fake Paysera's records and settings: credentials, wallets, transfers, the fault knobs
(facts: docs/providers/paysera.md)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from providers.sandbox import SandboxKnobs

DEFAULT_MAC_ID = "exsyncSbx1"  # 10 characters, like Paysera's MAC ids
DEFAULT_MAC_KEY = "exsyncSandboxMacKey0000000000001"  # 32 characters, like Paysera's MAC keys
DEFAULT_WALLET_ID = 14471
DEFAULT_ACCOUNT = "EVP0010000014471"

_STATUSES = ("new", "registered", "signed", "reserved", "processing", "waiting_funds", "waiting_registration",
             "waiting_password", "done", "rejected", "revoked", "failed")
_REJECTABLE = frozenset({"new", "registered", "reserved", "waiting_funds", "waiting_registration",
                         "waiting_password"})
_AMOUNT_RE = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,2})?$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_IBAN_RE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_CENT = Decimal("0.01")


class Knobs(SandboxKnobs):
    """Fault knobs, changeable at run time as attributes or items (``knobs.error_rate = 0.5``)."""

    FIELDS: dict[str, Any] = {
        "latency": 0.0, "error_rate": 0.0, "fail_after_commit_rate": 0.0, "hang_seconds": 0.0,
        "fault_match": "", "clock_skew": 0.0, "processing_delay": 0.0, "draft_ttl": 3600.0,
        "callback_attempts": 4, "callback_retry_delay": 0.1,
    }
    COUNTS = frozenset({"callback_attempts"})

    def _coerce(self, name: str, value: Any) -> Any:
        if name == "fault_match":
            value = "" if value is None else str(value)
            re.compile(value)  # raises re.error for a bad pattern
            return value
        return super()._coerce(name, value)


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------

@dataclass
class _Wallet:
    id: int
    account_number: str
    at_disposal: dict[str, Decimal] = field(default_factory=dict)
    reserved: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class _Transfer:
    id: str
    status: str
    amount: Decimal
    currency: str
    beneficiary: dict
    wallet_id: int
    purpose: dict | None
    callback: dict | None
    extra: dict
    created_at: int
    client_id: str
    performed_at: int | None = None
    due_at: float | None = None  # processing -> done
    failure: dict | None = None
    reserved: bool = False
    history: list = field(default_factory=list)

    def credit_account(self) -> str | None:
        acc = self.beneficiary.get("paysera_account") or {}
        bank = self.beneficiary.get("bank_account") or {}
        return acc.get("account_number") or bank.get("iban") or acc.get("email") or acc.get("phone")


class _ApiError(Exception):
    def __init__(self, status: int, code: str, description: str, properties: dict | None = None) -> None:
        super().__init__(description)
        self.status, self.code, self.description, self.properties = status, code, description, properties


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": format(amount.quantize(_CENT), "f"), "currency": currency}


def _wallets_from(spec: Mapping[Any, Any] | None) -> dict[int, _Wallet]:
    if spec is None:
        spec = {DEFAULT_WALLET_ID: {"account_number": DEFAULT_ACCOUNT,
                                    "balance": {"EUR": "100000.00", "USD": "50000.00"}}}
    out: dict[int, _Wallet] = {}
    for wid, w in spec.items():
        wid = int(wid)
        w = dict(w or {})
        balance = w.get("balance")
        if balance is None:  # shorthand: {"EUR": "10.00", "account_number": …}
            balance = {k: v for k, v in w.items() if _CURRENCY_RE.match(str(k))}
        out[wid] = _Wallet(wid, str(w.get("account_number") or f"EVP{wid:013d}"),
                           {str(c).upper(): Decimal(str(a)) for c, a in balance.items()})
    if not out:
        raise ValueError("at least one wallet is needed")
    return out
