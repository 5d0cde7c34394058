"""Partner money (worker.partner, `exsync partner …`) against the Premium sandbox over HTTP and real Postgres."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import text

from cli import cli
from providers.premium.sandbox import API_PATH, DEFAULT_KEY, DEFAULT_LOGIN
from tests.support.config import make_env, write_config
from worker import partner as partner_mod
from worker.beat import schedule
from worker.partner import PartnerRequestError, request_payout, sync_partner, validate_request

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def env(tmp_path, premium_sandbox, database_url):
    return make_env(write_config(tmp_path, premium_sandbox.url), database_url, None)


def invoke(args, env):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def referred_bid(srv, partner_id: int = 1) -> int:
    """A bid created through the engine's API with a partner id (what a referred customer does)."""
    r = requests.post(srv.url + API_PATH + "create_bid",
                      headers={"API-LOGIN": DEFAULT_LOGIN, "API-KEY": DEFAULT_KEY},
                      data={"direction_id": "1", "calc_amount": "0.01", "calc_action": "1", "account2": "TXabc",
                            "partner_id": str(partner_id)}, timeout=5).json()
    assert r["error"] == "0", r
    return int(r["data"]["id"])


def rows(runtime, sql, **params):
    with runtime.db.session() as s:
        return s.execute(text(sql), params).mappings().all()


def counts(runtime):
    return {t: rows(runtime, f"SELECT count(*) AS n FROM {t}")[0]["n"]
            for t in ("partner_accounts", "partner_exchanges", "partner_payouts")}


def test_sync_stores_info_exchanges_payouts_with_decimals(runtime, premium_sandbox):
    bid_id = referred_bid(premium_sandbox)
    referred_bid(premium_sandbox)
    r = sync_partner(runtime, "main")
    assert not r.skipped and r.balance == Decimal("152.35")
    assert (r.exchanges_inserted, r.payouts_inserted) == (2, 4)

    (acc,) = rows(runtime, "SELECT * FROM partner_accounts")
    assert acc["partner_id"] == 1 and acc["last_error"] is None and acc["synced_at"] is not None
    assert acc["balance"] == Decimal("152.35") and isinstance(acc["min_payout"], Decimal)
    assert [c["id"] for c in acc["currencies"]] == [1, 2]
    assert acc["currencies"][1] == {"id": 2, "title": "Visa/MasterCard RUB", "commission": "2",
                                    "amount": str((Decimal("152.35") * Decimal("92.15")).quantize(Decimal("0.01"),
                                                                                                  "ROUND_DOWN"))}

    ex = rows(runtime, "SELECT * FROM partner_exchanges WHERE remote_id = :id", id=bid_id)[0]
    assert isinstance(ex["partner_reward"], Decimal) and ex["status"] == "new" and ex["accrued"] is False
    assert ex["raw"]["id"] == str(bid_id)

    payouts = rows(runtime, "SELECT * FROM partner_payouts ORDER BY remote_id")
    assert [p["status"] for p in payouts] == [1, 2, 3, 1]
    assert [p["status_name"] for p in payouts][:3] == ["paid", "cancelled", "cancelled_by_user"]
    assert all(p["requested_via"] == "sync" and isinstance(p["pay_amount"], Decimal) for p in payouts)
    assert payouts[0]["original_amount"] == Decimal("55")


def test_second_sync_is_idempotent_and_picks_up_a_status_change(runtime, premium_sandbox):
    eng = premium_sandbox.engine
    referred_bid(premium_sandbox)
    sync_partner(runtime, "main")
    before = counts(runtime)

    again = sync_partner(runtime, "main")
    assert counts(runtime) == before
    assert (again.exchanges_inserted, again.exchanges_changed, again.payouts_inserted, again.payouts_changed) \
        == (0, 0, 0, 0)

    # A new payout, pending; then the site's admin pays it. The sandbox has no control-API route for
    # payouts, so the admin side is its engine's payout list (what the engine's admin page edits).
    pid = request_payout(runtime, "main", 1, "TXnewWallet0001")
    sync_partner(runtime, "main")
    assert rows(runtime, "SELECT status FROM partner_payouts WHERE remote_id = :id", id=pid)[0]["status"] == 0
    with eng.lock:
        next(p for p in eng.payouts if p["id"] == pid)["status"] = 1
    r = sync_partner(runtime, "main")
    assert (r.payouts_inserted, r.payouts_changed) == (0, 1)
    (row,) = rows(runtime, "SELECT * FROM partner_payouts WHERE remote_id = :id", id=pid)
    assert (row["status"], row["status_name"], row["requested_via"]) == (1, "paid", "exsync")
    assert row["status_changed_at"] is not None
    assert counts(runtime)["partner_payouts"] == before["partner_payouts"] + 1

    # A referred bid that changes status is updated too (accrued once it succeeds).
    bid_id = rows(runtime, "SELECT remote_id FROM partner_exchanges")[0]["remote_id"]
    eng.set_status(bid_id, "success")
    r = sync_partner(runtime, "main")
    assert r.exchanges_changed == 1
    ex = rows(runtime, "SELECT status, accrued FROM partner_exchanges WHERE remote_id = :id", id=bid_id)[0]
    assert (ex["status"], ex["accrued"]) == ("success", True)


def test_window_bisection_reads_more_than_one_page(runtime, premium_sandbox, monkeypatch):
    monkeypatch.setattr(partner_mod, "PAGE", 3)
    now = time.time()
    for i in range(7):
        premium_sandbox.engine.set_status(referred_bid(premium_sandbox), "payed", at=now - 100 * i - 1)
    r = sync_partner(runtime, "main")
    assert r.exchanges_seen == 7 and r.payouts_seen == 4 and not r.warnings
    assert counts(runtime)["partner_exchanges"] == 7
    assert rows(runtime, "SELECT exchanges_cursor FROM partner_accounts")[0]["exchanges_cursor"] is not None


def test_more_than_a_page_in_one_second_is_a_warning_and_keeps_the_cursor(runtime, premium_sandbox, monkeypatch):
    monkeypatch.setattr(partner_mod, "PAGE", 3)
    now = time.time()
    for _ in range(4):
        premium_sandbox.engine.set_status(referred_bid(premium_sandbox), "payed", at=now - 5)
    r = sync_partner(runtime, "main")
    assert r.warnings and "more than 3 items in second" in r.warnings[0]
    assert rows(runtime, "SELECT exchanges_cursor FROM partner_accounts")[0]["exchanges_cursor"] is None


def test_no_partner_program_is_skipped_with_last_error(runtime, premium_sandbox, env):
    sync_partner(runtime, "main")
    premium_sandbox.engine.knobs.partner_program = False
    r = sync_partner(runtime, "main")
    assert r.skipped and r.reason == "no active partner program"
    (acc,) = rows(runtime, "SELECT * FROM partner_accounts")
    assert acc["last_error"] == "no active partner program" and acc["last_error_at"] is not None
    assert acc["balance"] == Decimal("152.35")  # what was known stays

    out = invoke(["partner", "sync"], env)
    assert out.exit_code == 0 and "main: skipped: no active partner program" in out.output
    out = invoke(["partner", "show"], env)
    assert out.exit_code == 0 and "last error   no active partner program" in out.output

    out = invoke(["partner", "payout", "--exchanger", "main", "--method-id", "1", "--account", "TXw"], env)
    assert out.exit_code == 1 and "main: no active partner program" in out.output
    assert len(premium_sandbox.engine.payouts) == 4 * len(premium_sandbox.engine.users)

    premium_sandbox.engine.knobs.partner_program = True
    r = sync_partner(runtime, "main")
    assert not r.skipped and rows(runtime, "SELECT last_error FROM partner_accounts")[0]["last_error"] is None


def test_cli_payout_creates_it_in_the_sandbox_and_postgres(runtime, premium_sandbox, env):
    eng = premium_sandbox.engine
    out = invoke(["partner", "payout", "--exchanger", "main", "--method-id", "2", "--account", "4111111111111111"], env)
    assert out.exit_code == 0, out.output
    pid = int(out.output.strip().rsplit(" ", 1)[1])
    made = next(p for p in eng.payouts if p["id"] == pid)
    assert (made["method_id"], made["account"], made["status"]) == (2, "4111111111111111", 0)
    (row,) = rows(runtime, "SELECT * FROM partner_payouts WHERE remote_id = :id", id=pid)
    assert (row["requested_via"], row["method_id"], row["account"], row["status"]) == (
        "exsync", 2, "4111111111111111", 0)
    assert row["pay_currency_code"] == "RUB" and isinstance(row["pay_amount"], Decimal)  # read back

    out = invoke(["partner", "show", "--exchanger", "main"], env)
    assert out.exit_code == 0
    assert "Visa/MasterCard RUB" in out.output and str(pid) in out.output and "4111…1111" in out.output
    assert "4111111111111111" not in out.output  # accounts are masked on screen

    # The engine's own refusal (balance now 0) is a clear exit 1, nothing stored.
    out = invoke(["partner", "payout", "--exchanger", "main", "--method-id", "1", "--account", "TXw"], env)
    assert out.exit_code == 1 and "balance is less than minimum payout" in out.output
    assert len(rows(runtime, "SELECT 1 FROM partner_payouts WHERE requested_via = 'exsync'")) == 1


@pytest.mark.parametrize("args, message", [
    (["--method-id", "7", "--account", "TXw"], "method id 7 is not a payout currency"),
    (["--method-id", "1", "--account", "   "], "account is empty"),
    (["--method-id", "1", "--account", "x" * 201], "longer than 200"),
    (["--method-id", "0", "--account", "TXw"], "--method-id"),
    (["--method-id", "abc", "--account", "TXw"], "--method-id"),
    (["--account", "TXw"], "Missing option '--method-id'"),
])
def test_cli_payout_bad_args_exit_2(runtime, premium_sandbox, env, args, message):
    out = invoke(["partner", "payout", "--exchanger", "main", *args], env)
    assert out.exit_code == 2 and message in out.output, out.output
    assert len(premium_sandbox.engine.payouts) == 4 * len(premium_sandbox.engine.users)  # nothing asked
    assert counts(runtime)["partner_payouts"] == 0


def test_unknown_exchanger_is_a_config_error(env):
    out = invoke(["partner", "payout", "--exchanger", "nope", "--method-id", "1", "--account", "TXw"], env)
    assert out.exit_code == 2 and "exchangers.nope" in out.output


def test_validate_request():
    cur = [{"id": 1, "title": "USDT"}, {"id": 2, "title": "RUB"}]
    assert validate_request("2", " TXw ", cur) == (2, "TXw")
    assert validate_request(9, "TXw", []) == (9, "TXw")  # currencies unknown: the engine decides
    with pytest.raises(PartnerRequestError, match="choose one of: 1 \\(USDT\\), 2 \\(RUB\\)"):
        validate_request(3, "TXw", cur)


def test_beat_entry_and_task_runs(runtime, premium_sandbox):
    entry = schedule(runtime.settings)["partner-sync"]
    assert entry["task"] == "worker.tasks.partner_sync"
    assert entry["schedule"].seconds == runtime.settings.sweep_interval * 5

    from worker.celery_app import app
    from worker.tasks import partner_sync

    assert "worker.tasks.partner_sync" in app.tasks
    out = partner_sync()
    assert out["main"]["skipped"] is False and out["main"]["payouts_inserted"] == 4
    premium_sandbox.engine.knobs.partner_program = False
    assert partner_sync("main")["main"] == {"skipped": True, "reason": "no active partner program",
                                            "exchanges_inserted": 0, "exchanges_changed": 0,
                                            "payouts_inserted": 0, "payouts_changed": 0}
