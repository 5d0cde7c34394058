"""Payout setups the payout tests share: the routes and providers (ZaleyCash ``zc`` and gateway ``gw``) as
TOML, their secrets, a bid mirrored in realpay, and reading back payouts and attempts."""
from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from core.clock import now_utc
from core.payout_config import PayoutSettings, load_payout_config
from worker import reconcile

ZC_USER = "1001"  # an active child of the ZaleyCash sandbox's agent
CARD = "4111111111111111"
PS_ACCOUNT = "EVP0010000099999"  # the customer's Paysera account (the bid's account2)
SETTLED = {"succeeded", "failed", "needs_review", "parked"}
LEASE = PayoutSettings().lease_seconds  # the default: what production runs with


def payout_toml(zc_url: str, gw_url: str = "http://127.0.0.1:9", *, ceiling: str = "500000", extra: str = "",
                zc_status_path: bool = True, route: str = "") -> str:
    """``route``: more keys of ``[routes.main]`` (e.g. the four-eyes ``approval_above``/``approvers``)."""
    status = 'status_path = "/api/v2/money/transfer/status"' if zc_status_path else ""
    return f"""
[payouts]
lease_seconds = 30
max_attempts = 3
retry_ladder = [30, 120, 600]
check_ladder = [15, 60]
park_seconds = 3600
completion_ladder = [10, 60]

[providers.zc]
type = "zaleycash"
base_url = "{zc_url}"
secret_key_env = "EXSYNC_TEST_ZC_SECRET"
timeout = 1.5
{status}

[providers.gw]
type = "gateway"
base_url = "{gw_url}"
api_key_env = "EXSYNC_TEST_GW_KEY"
secret_env = "EXSYNC_TEST_GW_SECRET"
timeout = 1.5

[routes.main]
enabled = true
trigger_statuses = ["realpay"]
auto_pay_ceiling = "{ceiling}"
{route}

[[routes.main.rules]]
currency = "RUB"
psys_get = "ZaleyCash"
provider = "zc"
destination_field = "account2"
min_amount = "1"
max_amount = "100000"

[[routes.main.rules]]
currency = "RUB"
provider = "gw"
destination_field = "account2"
min_amount = "1"
max_amount = "100000"
""" + extra


def default_lease_toml(url: str, *, timeout: float | None = None) -> str:
    """``payout_toml`` with the default lease (``LEASE``) and, if given, another client timeout."""
    toml = payout_toml(url).replace("lease_seconds = 30\n", "")
    return toml.replace("timeout = 1.5", f"timeout = {timeout}") if timeout else toml


def payout_env() -> dict:
    """The secrets ``payout_toml`` names, as the sandboxes accept them."""
    from providers.gateway.sandbox import DEFAULT_API_KEY
    from providers.gateway.sandbox import DEFAULT_SECRET as GW_SECRET
    from providers.zaleycash.sandbox import DEFAULT_SECRET as ZC_SECRET

    return {"EXSYNC_TEST_ZC_SECRET": ZC_SECRET, "EXSYNC_TEST_GW_KEY": DEFAULT_API_KEY,
            "EXSYNC_TEST_GW_SECRET": GW_SECRET}


def install_payouts(runtime, toml_text: str, exchanger_url: str = "http://127.0.0.1:1") -> None:
    doc = tomllib.loads(f'[exchangers.main]\nbase_url = "{exchanger_url}"\n' + toml_text)
    runtime.payout_config = load_payout_config(doc, payout_env())
    runtime.forget_rails()


def mirror_bid(runtime, premium_sandbox, *, status: str = "realpay", direction_id: int = 3, amount: str = "100",
               fields: dict | None = None) -> int:
    """A bid on the Premium sandbox, mirrored as exsync's create_bid would (with its request fields)."""
    fields = {"account2": ZC_USER} if fields is None else fields
    rid = premium_sandbox.engine.add_bid(direction_id=direction_id, amount=Decimal(amount), status=status,
                                         fields=fields)
    observed = now_utc()
    bid = runtime.premium("main").bid_info(id=rid)
    snap = reconcile.Snapshot.from_provider(bid, observed)
    with runtime.db.session() as s:
        reconcile.apply_snapshot(s, runtime.settings, "main", snap, "create", request_fields=fields,
                                 created_via="exsync")
    return rid


def payouts(runtime) -> list:
    with runtime.db.session() as s:
        return s.execute(text("SELECT * FROM payouts ORDER BY id")).all()


def one(runtime):
    """The only payout there is."""
    (p,) = payouts(runtime)
    return p


def attempts(runtime, payout_id: int) -> list:
    with runtime.db.session() as s:
        return s.execute(text("SELECT * FROM payout_attempts WHERE payout_id = :id ORDER BY n"),
                         {"id": payout_id}).all()


def open_attempts(runtime) -> int:
    """Attempts still ``started``: a call in flight, or one a dead worker left behind."""
    with runtime.db.session() as s:
        return s.execute(text("SELECT count(*) FROM payout_attempts WHERE outcome = 'started'")).scalar()


def later(seconds: float) -> datetime:
    return now_utc() + timedelta(seconds=seconds)


def assert_invariant(runtime, *sandboxes) -> None:
    """Every payout settled (or waiting for a person), none executed twice by any sandbox, every success
    executed exactly once across them."""
    for p in payouts(runtime):
        assert p.state in SETTLED, (p.id, p.state, p.last_error)
        for sb in sandboxes:
            assert sb.engine.executed(p.idempotency_key) <= 1
        if p.state == "succeeded":
            assert sum(sb.engine.executed(p.idempotency_key) for sb in sandboxes) == 1
