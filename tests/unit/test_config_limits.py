"""Configuration values that are never right: numbers past sane bounds, ladder statuses the engine does
not have, a secret pasted where a variable's name goes (refused without being repeated), notification
URLs (validated, redacted with their parts), and EXSYNC_* variables nothing reads."""
from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from core.config import ConfigError, load_settings, unknown_variables
from core.logs import redactor

LOGIN = "A" * 16 + "b" * 8 + "12345678"
KEY = "K" * 24 + "87654321"
TOKEN = "webhook-token_0123456789"
TG_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"  # the shape of a Telegram bot token
SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"


def env_for(tmp_path: Path, body: str = "", **more: str) -> dict[str, str]:
    path = tmp_path / "exsync.toml"
    path.write_text(textwrap.dedent(body) + textwrap.dedent(f"""
        [exchangers.main]
        base_url = "https://exchanger.example"
        api_login = "{LOGIN}"
    """))
    return {"EXSYNC_CONFIG": str(path), "EXSYNC_EXCHANGER_MAIN_API_KEY": KEY,
            "EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN": TOKEN, **more}


def error(env) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return info.value


@pytest.mark.parametrize("var, value", [
    ("EXSYNC_SWEEP_INTERVAL", "8640000"), ("EXSYNC_SWEEP_OVERLAP", "99999999"), ("EXSYNC_POLL_INTERVAL", "36000"),
    ("EXSYNC_POLL_GIVE_UP_AFTER", "99999999999"), ("EXSYNC_INBOX_RETRY_AFTER", "864000"),
    ("EXSYNC_INBOX_MAX_ATTEMPTS", "1000000"),
])
def test_numbers_have_upper_bounds(tmp_path, var, value):
    err = error(env_for(tmp_path, **{var: value}))
    assert err.key == var and "must be between" in err.problem


@pytest.mark.parametrize("line, problem", [
    ("timeout = 1e9", "at most 600"), ("timeout = inf", "greater than 0"), ("timeout = nan", "greater than 0"),
    ("rate_limit = 10000000", "at most 1e+06"),
])
def test_exchanger_numbers_are_finite_and_bounded(tmp_path, line, problem):
    env = env_for(tmp_path)
    path = Path(env["EXSYNC_CONFIG"])
    path.write_text(path.read_text() + line + "\n")
    err = error(env)
    assert err.key.startswith("exchangers.main.") and problem in err.problem


def test_poll_ladder_statuses_must_exist(tmp_path):
    err = error(env_for(tmp_path, """
        [settings.poll_ladder]
        payd = [10, 20]
    """))
    assert err.key == "settings.poll_ladder.payd" and "not a status of the engine" in err.problem
    ok = load_settings(env_for(tmp_path, """
        [settings.poll_ladder]
        payed = [10, 20]
        my7 = [60]
        default = [30]
    """))
    assert ok.poll_ladder["my7"] == (60,) and ok.poll_ladder["default"] == (30,)
    err = error(env_for(tmp_path, """
        [settings.poll_ladder]
        new = [10, 999999]
    """))
    assert err.key == "settings.poll_ladder.new[1]"


@pytest.mark.parametrize("pasted", [KEY.lower(), "k3y-" + "x" * 30, "sk_live_51HqLyjWDarjtT1zdp7dc"])
def test_a_secret_pasted_into_an_env_setting_is_never_repeated(tmp_path, pasted):
    env = env_for(tmp_path)
    path = Path(env["EXSYNC_CONFIG"])
    path.write_text(path.read_text() + f'api_key_env = "{pasted}"\n')
    err = error(env)
    assert err.key == "exchangers.main.api_key_env"
    assert pasted not in str(err) and "looks like a secret" in err.problem


def test_a_payout_secret_pasted_into_its_env_setting_is_not_repeated(tmp_path):
    err = error(env_for(tmp_path, """
        [providers.zc]
        type = "zaleycash"
        base_url = "https://zaleycash.example"
        secret_key_env = "a8f5f167f44f4964e6c998dee827110c"
    """))
    assert "a8f5f167f44f4964e6c998dee827110c" not in str(err) and err.key == "providers.zc.secret_key_env"


def test_notification_urls_are_validated_without_being_shown(tmp_path):
    err = error(env_for(tmp_path, EXSYNC_NOTIFY_URLS=f"json://127.0.0.1/x nosuchscheme://{TG_TOKEN}@x"))
    assert err.key == "EXSYNC_NOTIFY_URLS[1]" and TG_TOKEN not in str(err)
    err = error(env_for(tmp_path, EXSYNC_NOTIFY_URLS=TG_TOKEN))
    assert err.key == "EXSYNC_NOTIFY_URLS[0]" and TG_TOKEN not in str(err)
    s = load_settings(env_for(tmp_path, EXSYNC_NOTIFY_URLS=f"tgram://{TG_TOKEN}/12345678\n{SLACK}"))
    assert len(s.notify.urls) == 2 and TG_TOKEN not in repr(s)
    red = redactor(s)
    for leak in [f"sending to tgram://{TG_TOKEN}/12345678", f"bot{TG_TOKEN}/sendMessage",
                 "POST https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"]:
        masked = red.redact(leak)
        assert TG_TOKEN not in masked and "TIiajkdnlazkcOXrIdevi7FQ" not in masked, masked


def test_notification_settings(tmp_path):
    body = """
        [providers.zc]
        type = "zaleycash"
        base_url = "https://zaleycash.example"
        secret_key_env = "EXSYNC_ZC_SECRET"

        [notifications]
        digest_hour = 9
        balance_check_interval = 600
        [notifications.balance_low.zc]
        rub = "1000.50"
    """
    s = load_settings(env_for(tmp_path, body, EXSYNC_ZC_SECRET="s" * 32))
    assert s.notify.digest_hour == 9 and s.notify.balance_low == {"zc": {"RUB": Decimal("1000.50")}}
    for bad, key in [("digest_hour = 24", "notifications.digest_hour"),
                     ("balance_check_interval = 5", "notifications.balance_check_interval"),
                     ("urls = 'json://x'", "notifications.urls")]:
        err = error(env_for(tmp_path, body.replace("digest_hour = 9", bad).replace(
            "balance_check_interval = 600", ""), EXSYNC_ZC_SECRET="s" * 32))
        assert err.key == key, str(err)
    err = error(env_for(tmp_path, body.replace("[notifications.balance_low.zc]", "[notifications.balance_low.gw]"),
                        EXSYNC_ZC_SECRET="s" * 32))
    assert err.key == "notifications.balance_low.gw"
    err = error(env_for(tmp_path, body.replace('"1000.50"', "1000.5"), EXSYNC_ZC_SECRET="s" * 32))
    assert err.key == "notifications.balance_low.zc.rub"  # a float would be a rounded guess


def test_unknown_variables(tmp_path):
    env = env_for(tmp_path, EXSYNC_DATABSE_URL="postgresql://x/y", EXSYNC_OLD_PROVIDER_KEY="z" * 32,
                  EXSYNC_SWEEP_INTERVAL="30", EXSYNC_LOG_JSON="1", EXSYNC_TEST_REDIS_URL="redis://x")
    assert unknown_variables(env) == ["EXSYNC_DATABSE_URL", "EXSYNC_OLD_PROVIDER_KEY"]
    assert unknown_variables(env_for(tmp_path)) == []


@pytest.mark.parametrize("line, key", [
    ("[payouts]\nlease_seconds = 360000", "payouts.lease_seconds"),
    ("[payouts]\nmax_attempts = 1000000", "payouts.max_attempts"),
    ("[payouts]\nretry_ladder = [30, 99999999]", "payouts.retry_ladder[1]"),
    ("[payouts]\nbatch = 1000000", "payouts.batch"),
    ('[providers.zc]\ntype = "zaleycash"\nbase_url = "https://zc.example"\nsecret_key_env = "EXSYNC_ZC_SECRET"\n'
     "timeout = 1e9", "providers.zc.timeout"),
])
def test_payout_numbers_have_upper_bounds(tmp_path, line, key):
    err = error(env_for(tmp_path, line + "\n", EXSYNC_ZC_SECRET="s" * 32))
    assert err.key == key, str(err)


def test_apprise_never_logs_a_url(tmp_path, caplog):
    """apprise logs "Unparseable Telegram URL tgram://<token>" at ERROR: its logger is silenced."""
    import logging

    with caplog.at_level(logging.DEBUG):
        error(env_for(tmp_path, EXSYNC_NOTIFY_URLS="tgram://SECRET0TOKEN0123456789"))
        error(env_for(tmp_path, EXSYNC_NOTIFY_URLS="mailto://user:pa55w0rdSECRET@"))
    assert "SECRET0TOKEN" not in caplog.text and "pa55w0rdSECRET" not in caplog.text
