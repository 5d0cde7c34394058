"""`exsync check-config`: notification targets shown by scheme only, unknown EXSYNC_* variables refused."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import cli
from tests.support.config import make_env, write_config

pytestmark = pytest.mark.usefixtures("restore_root_logging")
TG_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
def env(tmp_path, premium_sandbox, database_url):
    return make_env(write_config(tmp_path, premium_sandbox.url), database_url, None)


def invoke(args, env):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def test_notification_targets_are_shown_redacted(env):
    result = invoke(["check-config"], dict(env, EXSYNC_NOTIFY_URLS=f"tgram://{TG_TOKEN}/12345678 json://127.0.0.1/h"))
    assert result.exit_code == 0, result.output
    assert "notify        2 target(s) from EXSYNC_NOTIFY_URLS: tgram://***, json://***" in result.stdout
    assert "links       http://127.0.0.1:8000/console/…" in result.stdout
    assert TG_TOKEN not in result.output and "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in result.output


def test_no_targets_says_nobody_is_told(env):
    result = invoke(["check-config"], env)
    assert "notify        no target(s) from EXSYNC_NOTIFY_URLS (nobody is told" in result.stdout


def test_a_bad_notification_url_is_named_not_shown(env):
    result = invoke(["check-config"], dict(env, EXSYNC_NOTIFY_URLS=f"bogus://{TG_TOKEN}"))
    assert result.exit_code == 2
    assert result.stderr.startswith("config error: EXSYNC_NOTIFY_URLS[0]: ")
    assert TG_TOKEN not in result.output


def test_unknown_variables_are_errors(env):
    result = invoke(["check-config"], dict(env, EXSYNC_DATABSE_URL="postgresql://x/y", EXSYNC_SWEP_INTERVAL="5"))
    assert result.exit_code == 2
    assert result.stderr.startswith("config error: EXSYNC_DATABSE_URL: is not a variable exsync reads")
    assert "also EXSYNC_SWEP_INTERVAL" in result.stderr
    assert "config OK" not in result.stdout
