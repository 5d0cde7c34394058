"""The `exsync` command line, through click's CliRunner, against the test Postgres and the sandbox."""
from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli import cli
from models import Bid, BidStatusChange, InboxEvent
from tests.support.config import API_TOKEN, WEBHOOK_TOKEN, make_env, write_config
from worker import reconcile

USDT_ADDRESS = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"


# Each command installs exsync's root log handler on the runner's stderr: pytest's is put back after.
pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def config_path(tmp_path, premium_sandbox):
    return write_config(tmp_path, premium_sandbox.url)


@pytest.fixture
def env(config_path, database_url, tmp_path):
    """No EXSYNC_REDIS_URL: nothing here should put messages into the shared test broker. A data folder of
    its own: the CLI would use the embedded Redis of an `exsync run` running in the current folder."""
    return make_env(config_path, database_url, None, EXSYNC_DATA_DIR=str(tmp_path / "data"))


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def secrets_of(env: dict[str, str]) -> list[str]:
    return [env["EXSYNC_EXCHANGER_MAIN_API_KEY"], WEBHOOK_TOKEN, API_TOKEN]


def assert_no_secret(result, env) -> None:
    for secret in secrets_of(env):
        assert secret not in result.output
        assert secret not in result.stderr


# -- check-config -----------------------------------------------------------------------------------


def test_check_config_prints_a_redacted_summary(env):
    result = invoke(["check-config"], env)
    assert result.exit_code == 0, result.output
    assert "config OK" in result.stdout
    assert "/webhooks/premium/main/***" in result.stdout
    assert "base_url" in result.stdout and "main" in result.stdout
    assert_no_secret(result, env)


def test_check_config_shows_every_web_setting_trusted_proxies_included(env):
    out = invoke(["check-config"], env).stdout
    assert "no trusted proxies (the source is the TCP peer; X-Forwarded-For ignored)" in out
    assert "after 20 failures from one source in 60s its failures are answered 429" in out
    result = invoke(["check-config"], dict(env, EXSYNC_TRUSTED_PROXIES="2"))
    assert result.exit_code == 0 and "2 trusted proxies" in result.stdout
    result = invoke(["check-config"], dict(env, EXSYNC_TRUSTED_PROXIES="yes"))
    assert result.exit_code == 2 and result.stderr.startswith("config error: EXSYNC_TRUSTED_PROXIES: ")


def test_check_config_hides_the_database_password(env):
    env = dict(env, EXSYNC_DATABASE_URL="postgresql://exsync:hunter2hunter2@db.example:5432/exsync")
    result = invoke(["check-config"], env)
    assert result.exit_code == 0
    assert "hunter2hunter2" not in result.output
    assert "db.example" in result.stdout


def test_check_config_bad_value_names_the_key(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(textwrap.dedent("""
        [exchangers.main]
        base_url = "https://exchanger.example"
        api_login = "too-short"
    """))
    result = invoke(["check-config"], dict(env, EXSYNC_CONFIG=str(bad)))
    assert result.exit_code == 2
    assert result.stderr.startswith("config error: exchangers.main.api_login: ")
    assert "Traceback" not in result.output
    assert_no_secret(result, env)


def test_bad_secret_is_named_but_not_printed(env):
    result = invoke(["check-config"], dict(env, EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN="tiny-token"))
    assert result.exit_code == 2
    assert "config error: EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN:" in result.stderr
    assert "tiny-token" not in result.output


def test_config_error_in_any_command_exits_2(env):
    result = invoke(["bids", "list"], dict(env, EXSYNC_LOG_LEVEL="LOUD"))
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("config error: EXSYNC_LOG_LEVEL: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["bids", "list"], ["inbox", "list"], ["migrate"], ["reconcile"],
                                  ["bids", "show", "main", "1"]])
def test_commands_needing_postgres_name_the_variable(env, args):
    env = dict(env)  # its EXSYNC_DATA_DIR holds no embedded Postgres
    del env["EXSYNC_DATABASE_URL"]
    result = invoke(args, env)
    assert result.exit_code == 2
    assert result.stderr.startswith("config error: EXSYNC_DATABASE_URL: is not set")


@pytest.mark.parametrize("args", [["worker"], ["beat"], ["web"]])
def test_process_commands_need_both_urls(env, args):
    result = invoke(args, env)  # no EXSYNC_REDIS_URL
    assert result.exit_code == 2
    assert "config error: EXSYNC_REDIS_URL: is not set" in result.stderr


def test_unreachable_database_is_one_line(env):
    result = invoke(["bids", "list"], dict(env, EXSYNC_DATABASE_URL="postgresql://u:pw@127.0.0.1:9/none"))
    assert result.exit_code == 1
    assert "database unavailable (EXSYNC_DATABASE_URL)" in result.stderr
    assert "Traceback" not in result.output and "pw@" not in result.output


# -- bad arguments -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,needle", [
    (["bids", "show", "main", "not-a-number"], "REMOTE_ID"),
    (["bids", "show", "main"], "Missing argument"),
    (["bids", "list", "--limit", "0"], "--limit"),
    (["bids", "create", "--exchanger", "main", "--direction-id", "1"], "--amount"),
    (["bids", "create", "--exchanger", "main", "--direction-id", "1", "--amount", "lots"], "--amount"),
    (["bids", "create", "--exchanger", "main", "--direction-id", "1", "--amount", "-5"], "--amount"),
    (["bids", "create", "--exchanger", "main", "--direction-id", "1", "--amount", "1", "--field", "account2"],
     "NAME=VALUE"),
    (["inbox", "list", "--state", "lost"], "--state"),
    (["inbox", "replay", "--reason", "r"], "--all-failed"),
    (["inbox", "replay", "3", "--all-failed", "--reason", "r"], "--all-failed"),
    (["inbox", "replay", "3"], "--reason"),
    (["inbox", "dismiss", "0", "--reason", "r"], "EVENT_ID"),
    (["operators", "add", "ann"], "--role"),
    (["operators", "add", "ann", "--role", "king"], "--role"),
    (["operators", "disable", "ann"], "--reason"),
    (["operators", "totp", "ann"], "--on"),
    (["audit", "list", "--object", "3"], "--object-type"),
    (["audit", "list", "--since", "yesterday"], "--since"),
    (["audit", "list", "--action", "steal"], "--action"),
    (["sandbox", "zaleycashh", "--port", "0"], "PROVIDER"),
    (["sandbox", "premium"], "--port"),
    (["sandbox", "premium", "--port", "0", "--drop-rate", "2"], "--drop-rate"),
    (["run", "--for", "-1"], "--for"),
    (["no-such-command"], "No such command"),
])
def test_bad_arguments_are_usage_errors(env, args, needle):
    result = invoke(args, env)
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.stderr and needle in result.stderr
    assert "Traceback" not in result.output


# -- bids -------------------------------------------------------------------------------------------


def seed(settings, db):
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with db.session() as s:
        for rid in (101, 102, 103):
            reconcile.apply_snapshot(s, settings, "main", reconcile.Snapshot(
                rid, "new", t0, amount_give=Decimal("0.5"), currency_code_give="BTC",
                amount_get=Decimal("32125.25"), currency_code_get="USDT"), "sweep")
        reconcile.apply_snapshot(s, settings, "main", reconcile.Snapshot(102, "payed", t0 + timedelta(seconds=5)),
                                 "callback")
        reconcile.apply_snapshot(s, settings, "main", reconcile.Snapshot(102, "success", t0 + timedelta(seconds=9)),
                                 "poll")


def test_bids_list(env, settings, db):
    seed(settings, db)
    result = invoke(["bids", "list"], env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["EXCHANGER", "REMOTE_ID", "STATUS"]
    assert [line.split()[1] for line in lines[1:]] == ["103", "102", "101"]  # newest first
    assert "0.5 BTC" in result.stdout and "32125.25 USDT" in result.stdout

    result = invoke(["bids", "list", "--status", "success"], env)
    assert [line.split()[1] for line in result.stdout.splitlines()[1:]] == ["102"]
    result = invoke(["bids", "list", "--limit", "1", "--exchanger", "main"], env)
    assert len(result.stdout.splitlines()) == 2
    result = invoke(["bids", "list", "--exchanger", "other"], env)
    assert result.stdout.strip() == "no bids"


def test_bids_list_json(env, settings, db):
    import json

    seed(settings, db)
    result = invoke(["bids", "list", "--json", "--status", "success"], env)
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    # A plain Decimal, without Numeric(38, 18)'s trailing zeros.
    assert (row["remote_id"], row["status"], row["amount_give"]) == (102, "success", "0.5")


def test_bids_show_with_history(env, settings, db):
    seed(settings, db)
    result = invoke(["bids", "show", "main", "102"], env)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "status" in out and "success" in out
    history = [line.split() for line in out.split("history:")[1].split("poll:")[0].splitlines()[2:] if line.strip()]
    # RECORDED is a date and a time: FROM, TO and SOURCE follow.
    assert [row[2:5] for row in history] == [["-", "new", "sweep"], ["new", "payed", "callback"],
                                            ["payed", "success", "poll"]]
    assert "poll:" in out


def test_bids_show_missing(env, db):
    result = invoke(["bids", "show", "main", "999"], env)
    assert result.exit_code == 1
    assert "no bid main/999 in the mirror" in result.stderr


def test_bids_create_through_exsync(env, db, premium_sandbox):
    args = ["bids", "create", "--exchanger", "main", "--direction-id", "1", "--amount", "0.1",
            "--api-id", "cli-test-1", "--field", f"account2={USDT_ADDRESS}", "--field", "cf6=a@example.com"]
    result = invoke(args, env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("created:")
    assert_no_secret(result, env)
    with db.session() as s:
        bid = s.execute(select(Bid).where(Bid.api_id == "cli-test-1")).scalar_one()
    truth = premium_sandbox.engine.bid(bid.remote_id)
    assert truth["api_id"] == "cli-test-1" and truth["fields"]["account2"] == USDT_ADDRESS
    assert truth["callback_url"].endswith(f"/webhooks/premium/main/{WEBHOOK_TOKEN}")

    again = invoke(args, env)  # same api_id: the same bid, not a second one
    assert again.exit_code == 0
    assert again.stdout.startswith("already existed")
    assert len(premium_sandbox.engine.truth()) == 1


def test_bids_create_shows_the_engines_field_errors(env, db, premium_sandbox):
    result = invoke(["bids", "create", "--exchanger", "main", "--direction-id", "1", "--amount", "0.1"], env)
    assert result.exit_code == 1
    assert "account2: field is required" in result.stderr
    assert "refused the bid" in result.stderr
    assert "Traceback" not in result.output
    assert premium_sandbox.engine.truth() == {}


def test_bids_create_unknown_exchanger(env, db):
    result = invoke(["bids", "create", "--exchanger", "nope", "--direction-id", "1", "--amount", "1"], env)
    assert result.exit_code == 2
    assert result.stderr.startswith("config error: exchangers.nope: ")


# -- reconcile -------------------------------------------------------------------------------------------


def test_reconcile_sweeps_the_sandbox(env, db, premium_sandbox):
    premium_sandbox.engine.bulk_add(37)
    result = invoke(["reconcile"], env)
    assert result.exit_code == 0, result.output
    assert "main: seen 37, inserted 37, changed 37" in result.stdout
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(Bid)).scalar_one() == 37
        assert s.execute(select(func.count()).select_from(BidStatusChange)).scalar_one() == 37

    result = invoke(["reconcile", "--exchanger", "main"], env)  # from the cursor: nothing new
    assert result.exit_code == 0, result.output
    assert "inserted 0, changed 0" in result.stdout


def test_reconcile_unknown_exchanger(env, db):
    result = invoke(["reconcile", "--exchanger", "nope"], env)
    assert result.exit_code == 2
    assert result.stderr.startswith("config error: exchangers.nope: ")


def test_reconcile_provider_down_is_one_line(env, db, premium_sandbox, tmp_path):
    path = write_config(tmp_path, "http://127.0.0.1:9")  # nothing listens there
    result = invoke(["reconcile"], dict(env, EXSYNC_CONFIG=str(path)))
    assert result.exit_code == 1
    assert "provider error" in result.stderr
    assert "Traceback" not in result.output


# -- inbox ------------------------------------------------------------------------------------------


def seed_inbox(db) -> list[int]:
    with db.session() as s:
        events = [
            InboxEvent(provider="premium", endpoint="main", body=b"bid_id=1&status=payed",
                       payload={"bid_id": 1, "status": "payed"}, state="failed", attempts=3,
                       last_error="ConnectionFailedError: sandbox down"),
            InboxEvent(provider="premium", endpoint="main", body=b"bid_id=2&status=cancel",
                       payload={"bid_id": 2, "status": "cancel"}, state="dead", attempts=10, last_error="gave up"),
            InboxEvent(provider="premium", endpoint="main", body=b"bid_id=3&status=new",
                       payload={"bid_id": 3, "status": "new"}, state="processed", attempts=1),
        ]
        s.add_all(events)
        s.flush()
        return [e.id for e in events]


def states(db) -> dict[int, tuple[str, int]]:
    with db.session() as s:
        return {e.id: (e.state, e.attempts) for e in s.execute(select(InboxEvent)).scalars()}


def test_inbox_list(env, db):
    failed, dead, processed = seed_inbox(db)
    result = invoke(["inbox", "list"], env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "RECEIVED"]
    assert [int(line.split()[0]) for line in lines[1:]] == [processed, dead, failed]
    assert "sandbox down" in result.stdout

    result = invoke(["inbox", "list", "--state", "dead"], env)
    assert [int(line.split()[0]) for line in result.stdout.splitlines()[1:]] == [dead]


REPLAY = ["--by", "olga", "--reason", "cause fixed"]


@pytest.fixture
def olga(runtime):
    from tests.support.operators import add_operator

    return add_operator(runtime, "olga", "operator")


def test_inbox_replay_by_id(env, db, olga):
    failed, dead, processed = seed_inbox(db)
    result = invoke(["inbox", "replay", str(failed), str(processed), *REPLAY], env)
    assert result.exit_code == 0, result.output
    assert "1 event(s) reset to received" in result.stdout
    assert f"skipped (unknown or already processed): {processed}" in result.stderr
    assert states(db) == {failed: ("received", 0), dead: ("dead", 10), processed: ("processed", 1)}


def test_inbox_replay_all_failed(env, db, olga):
    failed, dead, processed = seed_inbox(db)
    result = invoke(["inbox", "replay", "--all-failed", *REPLAY], env)
    assert result.exit_code == 0, result.output
    assert states(db) == {failed: ("received", 0), dead: ("received", 0), processed: ("processed", 1)}
    result = invoke(["inbox", "replay", "--all-failed", *REPLAY], env)
    assert "nothing to replay" in result.stdout


def test_inbox_dismiss_and_who_may_act(env, db, olga, runtime):
    from tests.support.operators import add_operator

    failed, dead, processed = seed_inbox(db)
    add_operator(runtime, "vera", "viewer")
    result = invoke(["inbox", "dismiss", str(dead), "--by", "vera", "--reason", "seen"], env)
    assert result.exit_code == 1 and "is a viewer" in result.output
    result = invoke(["inbox", "dismiss", str(processed), *REPLAY], env)
    assert result.exit_code == 1 and "only a failed or dead event can be dismissed" in result.output
    result = invoke(["inbox", "dismiss", str(dead), "--by", "olga"], env)
    assert result.exit_code == 2 and "--reason" in result.output
    result = invoke(["inbox", "dismiss", str(dead), "--by", "olga", "--reason", "bid deleted by hand"], env)
    assert result.exit_code == 0 and f"inbox event {dead}: dismissed by olga" in result.output
    assert states(db)[dead] == ("dismissed", 10)
    result = invoke(["audit", "list", "--action", "dismiss"], env)
    assert "olga" in result.output and "bid deleted by hand" in result.output
    assert "state: dead → dismissed" in result.output


def test_inbox_replay_enqueues_when_a_broker_is_configured(env, db, redis_url, olga):
    from core.redis_url import client

    failed, _, _ = seed_inbox(db)
    broker = client(redis_url)
    broker.delete("exsync")
    try:
        result = invoke(["inbox", "replay", str(failed), *REPLAY], dict(env, EXSYNC_REDIS_URL=redis_url))
        assert result.exit_code == 0, result.output
        assert f"replaying 1 event(s): {failed}" in result.stdout
        assert broker.llen("exsync") == 1  # one process_inbox_event message on the queue
    finally:
        broker.delete("exsync")  # no worker of a later test should run it


# -- every subcommand has help ------------------------------------------------------------------------


def test_every_command_has_help(env):
    def walk(group, prefix):
        for name, cmd in group.commands.items():
            yield prefix + [name]
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + [name])

    for path in walk(cli, []):
        result = invoke(path + ["--help"], env)
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: exsync " + " ".join(path) in result.stdout


# -- sandbox --------------------------------------------------------------------------------------------


def test_sandbox_command_serves_and_prints_its_credentials(tmp_path):
    import signal
    import subprocess
    import sys

    from providers.premium import PremiumClient

    login, key = "L" * 16 + "0123456789abcdef", "K" * 16 + "fedcba9876543210"
    proc = subprocess.Popen([sys.executable, "-m", "cli", "sandbox", "premium", "--port", "0",
                             "--login", login, "--key", key, "--latency", "0.01"],
                            stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("premium sandbox listening on http://127.0.0.1:")
        assert lines[1].split() == ["API-LOGIN:", login] and lines[2].split() == ["API-KEY:", key]
        url = lines[0].rsplit(" ", 1)[1].strip()
        PremiumClient(url, login, key, timeout=5).test()  # it accepts exactly those credentials
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("provider", ["premium", "zaleycash", "gateway", "paysera"])
def test_every_sandbox_builds_and_says_what_it_accepts(provider):
    from devtools import sandboxes

    app = sandboxes.build(provider, latency=0.0, error_rate=0.0, fail_after_commit_rate=0.0, seed=1)
    try:
        lines = sandboxes.banner(provider, app, "http://127.0.0.1:9999")
    finally:
        sandboxes.close(app)
    assert lines and "127.0.0.1:9999" in lines[0]
    assert len(lines) >= 3  # at least where it listens plus the credentials it accepts


def test_sandbox_refuses_an_unknown_provider():
    result = CliRunner().invoke(cli, ["sandbox", "stripe", "--port", "0"])
    assert result.exit_code == 2 and "stripe" in result.output


# -- check-config: the payout sections ---------------------------------------------------------------

PAYOUT_SECRETS = {"EXSYNC_T_ZC_SECRET": "zc-secret-0123456789abcdef", "EXSYNC_T_GW_KEY": "gw-key-0123456789abcdef",
                  "EXSYNC_T_GW_SECRET": "gw-secret-0123456789abcdef"}
PAYOUT_TOML = """
[payouts]
max_attempts = 4
retry_ladder = [10, 60]

[providers.zc]
type = "zaleycash"
base_url = "https://zc.example"
secret_key_env = "EXSYNC_T_ZC_SECRET"

[providers.gw]
type = "gateway"
base_url = "https://gw.example"
api_key_env = "EXSYNC_T_GW_KEY"
secret_env = "EXSYNC_T_GW_SECRET"

[routes.main]
trigger_statuses = ["realpay"]
auto_pay_ceiling = "500"

[[routes.main.rules]]
currency = "RUB"
psys_get = "ZaleyCash"
provider = "zc"
min_amount = "1"
max_amount = "100000"

[[routes.main.rules]]
currency = "RUB"
provider = "gw"
"""


@pytest.fixture
def payout_env(tmp_path, premium_sandbox, database_url):
    path = write_config(tmp_path, premium_sandbox.url, extra=PAYOUT_TOML)
    return make_env(path, database_url, None, **PAYOUT_SECRETS)


def with_payout_toml(env: dict, tmp_path, toml: str) -> dict:
    path = tmp_path / "payout-variant.toml"
    path.write_text(Path(env["EXSYNC_CONFIG"]).read_text().replace(PAYOUT_TOML, toml))
    return dict(env, EXSYNC_CONFIG=str(path))


def test_check_config_summarises_providers_and_routes_without_secrets(payout_env):
    result = invoke(["check-config"], payout_env)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "config OK" in out
    assert "providers     2" in out and "zc (zaleycash)" in out and "gw (gateway)" in out
    assert "https://zc.example" in out and "secret_key ***" in out and "api_key ***, secret ***" in out
    assert "routes        1" in out and "main: on realpay; auto-pay up to 500; 2 rule(s)" in out
    assert "[0] RUB via ZaleyCash → zc to account2, amount 1..100000" in out
    assert "[1] RUB → gw to account2" in out
    assert "4 attempts (retry 10,60)" in out
    for secret in PAYOUT_SECRETS.values():
        assert secret not in result.output
    assert_no_secret(result, payout_env)


def test_check_config_without_payout_sections_says_none(env):
    result = invoke(["check-config"], env)
    assert result.exit_code == 0
    assert "providers     none" in result.stdout and "routes        none" in result.stdout


@pytest.mark.parametrize("old, new, key", [
    ('type = "zaleycash"', 'type = "bank"', "providers.zc.type"),
    ('base_url = "https://zc.example"\n', "", "providers.zc.base_url"),
    ('provider = "gw"', 'provider = "nope"', "routes.main.rules[1].provider"),
    ('max_amount = "100000"', 'max_amount = "lots"', "routes.main.rules[0].max_amount"),
    ('min_amount = "1"', 'min_amount = "200000"', "routes.main.rules[0].max_amount"),
    ('trigger_statuses = ["realpay"]', 'trigger_statuses = ["paid!"]', "routes.main.trigger_statuses[0]"),
    ('auto_pay_ceiling = "500"', 'auto_pay_ceiling = "500"\ncolour = "red"', "routes.main.colour"),
    ("max_attempts = 4", "max_attempts = 0", "payouts.max_attempts"),
])
def test_check_config_bad_payout_value_names_the_key(payout_env, tmp_path, old, new, key):
    assert old in PAYOUT_TOML
    result = invoke(["check-config"], with_payout_toml(payout_env, tmp_path, PAYOUT_TOML.replace(old, new, 1)))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"config error: {key}: "), result.stderr
    assert "Traceback" not in result.output and "config OK" not in result.stdout
    for secret in PAYOUT_SECRETS.values():
        assert secret not in result.output


def test_check_config_missing_payout_secret_is_named(payout_env):
    env = {k: v for k, v in payout_env.items() if k != "EXSYNC_T_GW_SECRET"}
    result = invoke(["check-config"], env)
    assert result.exit_code == 2
    assert result.stderr.startswith("config error: EXSYNC_T_GW_SECRET: is not set")
    assert "providers.gw.secret_env" in result.stderr


@pytest.mark.parametrize("args", [["run", "--for", "0"], ["worker"], ["beat"], ["web"], ["payouts", "list"]])
def test_process_commands_fail_fast_on_a_bad_payout_config(payout_env, tmp_path, redis_url, args):
    """The payout config is validated where every command loads its settings: nothing starts."""
    env = with_payout_toml(payout_env, tmp_path, PAYOUT_TOML.replace('provider = "gw"', 'provider = "nope"'))
    env["EXSYNC_REDIS_URL"] = redis_url
    result = invoke(args, env)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("config error: routes.main.rules[1].provider: ")
    assert "Traceback" not in result.output


# -- operators and the audit trail -----------------------------------------------------------------------


def test_operators_from_the_shell(env, db):
    from tests.support.operators import PASSWORD

    r = CliRunner().invoke(cli, ["operators", "add", "ann", "--role", "admin"], env=env, input=PASSWORD + "\n")
    assert r.exit_code == 0 and "operator ann added (admin)" in r.output
    r = CliRunner().invoke(cli, ["operators", "add", "bob", "--role", "viewer"], env=env, input="short\n")
    assert r.exit_code == 1 and "at least 10 characters" in r.output
    r = CliRunner().invoke(cli, ["operators", "add", "bob", "--role", "viewer"], env=env, input="")
    assert r.exit_code == 2 and "standard input" in r.output
    r = CliRunner().invoke(cli, ["operators", "add", "bob", "--role", "viewer", "--by", "nobody"], env=env,
                           input=PASSWORD + "\n")
    assert r.exit_code == 1 and "no operator 'nobody'" in r.output
    r = CliRunner().invoke(cli, ["operators", "add", "bob", "--role", "viewer", "--by", "ann"], env=env,
                           input=PASSWORD + "\n")
    assert r.exit_code == 0
    r = CliRunner().invoke(cli, ["operators", "passwd", "bob", "--by", "ann"], env=env, input="a new long password\n")
    assert r.exit_code == 0 and "password changed" in r.output
    r = invoke(["operators", "role", "bob", "approver", "--by", "ann", "--reason", "promoted"], env)
    assert r.exit_code == 0 and "bob is now approver" in r.output
    r = invoke(["operators", "totp", "bob", "--on", "--by", "ann"], env)
    assert r.exit_code == 0 and "otpauth://totp/exsync:bob" in r.output
    r = invoke(["operators", "disable", "bob", "--by", "ann", "--reason", "left"], env)
    assert r.exit_code == 0
    r = invoke(["operators", "disable", "ghost", "--reason", "x"], env)
    assert r.exit_code == 1 and "no operator 'ghost'" in r.output
    lines = invoke(["operators", "list"], env).stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "ROLE", "DISABLED", "TOTP"]
    assert lines[1].split()[:2] == ["ann", "admin"] and lines[2].split()[:4] == ["bob", "approver", "yes", "on"]
    r = invoke(["audit", "list", "--object-type", "operator", "--object", "bob", "--json"], env)
    import json

    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["action"] for x in rows] == ["operator_disable", "operator_totp", "operator_role",
                                           "operator_password", "operator_add"]
    assert {x["actor"] for x in rows} == {"ann"}
    assert PASSWORD not in r.stdout and "a new long password" not in r.stdout and "argon2" not in r.stdout
    assert "no audit rows" in invoke(["audit", "list", "--actor", "nobody"], env).stdout
