"""What a new operator tripped over in the CLI: `payouts show` by bid number, amounts as plain Decimals
(text and --json), the reconcile progress line with log lines kept off it."""
from __future__ import annotations

import io
import json
import logging

import pytest
from click.testing import CliRunner

from cli import cli
from cli.output import Progress, _fmt, _json
from tests.support.config import make_env, write_config
from tests.support.payouts import install_payouts, mirror_bid, payout_env, payout_toml, payouts
from worker.payouts import engine

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def env(tmp_path, premium_sandbox, zc_sandbox, database_url):
    path = write_config(tmp_path, premium_sandbox.url, extra=payout_toml(zc_sandbox.url, ceiling="1000"))
    return make_env(path, database_url, None, **payout_env())


def invoke(args, env):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


@pytest.fixture
def review_payout(runtime, premium_sandbox, zc_sandbox):
    install_payouts(runtime, payout_toml(zc_sandbox.url, ceiling="1000"))
    mirror_bid(runtime, premium_sandbox, amount="1500.5")  # above the ceiling: needs_review
    engine.create_due_payouts(runtime)
    (p,) = payouts(runtime)
    return p


def test_payouts_show_by_bid_number(review_payout, env):
    by_id = invoke(["payouts", "show", str(review_payout.id)], env)
    by_bid = invoke(["payouts", "show", "--bid", str(review_payout.remote_id)], env)
    assert by_bid.exit_code == 0 and by_bid.output == by_id.output
    assert invoke(["payouts", "show", "--bid", str(review_payout.remote_id), "--exchanger", "main"],
                  env).output == by_id.output
    r = invoke(["payouts", "show", "--bid", "999999"], env)
    assert r.exit_code == 1 and "no payout for bid 999999" in r.output
    r = invoke(["payouts", "show", "--bid", str(review_payout.remote_id), "--exchanger", "other"], env)
    assert r.exit_code == 1 and "of other" in r.output
    for wrong in (["payouts", "show"], ["payouts", "show", "1", "--bid", "2"], ["payouts", "show", "1",
                                                                                  "--exchanger", "main"]):
        r = invoke(wrong, env)
        assert r.exit_code == 2, wrong


def test_amounts_print_without_trailing_zeros(review_payout, env):
    shown = invoke(["payouts", "show", str(review_payout.id)], env).output
    amount_line = next(line for line in shown.splitlines() if line.startswith("amount "))
    assert amount_line.split()[-1] == format(review_payout.amount.normalize(), "f")
    assert "000000000" not in shown
    listed = invoke(["payouts", "list"], env).output
    assert "000000000" not in listed
    row = json.loads(invoke(["payouts", "list", "--json"], env).output.splitlines()[0])
    assert row["amount"] == format(review_payout.amount.normalize(), "f") and "." not in row["amount"][-1:]
    bid = invoke(["bids", "list", "--json"], env).output
    assert "000000000" not in bid


def test_plain_decimals():
    from decimal import Decimal

    assert _fmt(Decimal("100.000000000000000000")) == "100"
    assert _fmt(Decimal("91.800000000000000000")) == "91.8"
    assert _fmt(Decimal("0E-18")) == "0"
    assert _json({"a": Decimal("1E+3")}) == '{"a": "1000"}'


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_advances_and_log_lines_go_above_it():
    stream = Terminal()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with Progress("sweeping main", "bids seen", stream) as bar:
            bar.update(500)
            logging.getLogger("exsync.sweep").warning("sweep main: refused item")
            bar.update(500)
    finally:
        root.removeHandler(handler)
    frames = stream.getvalue().split("\r\x1b[K")
    assert "sweeping main: 500 bids seen" in frames and "sweeping main: 1000 bids seen" in frames
    assert "sweep main: refused item\n" in frames  # the line was cleared before it: never written onto the counter
    assert frames[-1] == ""  # cleared at the end: the result line starts clean
    assert "emit" not in vars(handler)  # the handler is itself again


def test_progress_is_silent_without_a_terminal():
    stream = io.StringIO()
    with Progress("sweeping main", "bids seen", stream) as bar:
        bar.update(5)
    assert stream.getvalue() == ""
