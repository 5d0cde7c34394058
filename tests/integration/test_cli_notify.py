"""`exsync notify test`: a test message to every target, which one failed, the URLs never printed."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import cli
from tests.support.config import make_env, write_config
from tests.support.endpoint import Endpoint

pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def hooks():
    good, bad = Endpoint(), Endpoint()
    bad.failing = True
    yield good, bad
    good.close()
    bad.close()


def test_notify_test_says_which_target_got_it(tmp_path, premium_sandbox, hooks):
    good, bad = hooks
    env = make_env(write_config(tmp_path, premium_sandbox.url), None, None,
                   EXSYNC_NOTIFY_URLS=f"{good.url} {bad.url}")
    result = CliRunner().invoke(cli, ["notify", "test"], env=env, catch_exceptions=False)
    assert result.exit_code == 1
    assert "target 1 (json://): sent" in result.stdout and "target 2 (json://): FAILED" in result.stdout
    assert "1 of 2 target(s) did not accept the message" in result.stderr
    assert good.received[0]["title"] == "exsync: test notification"
    assert "http://127.0.0.1:8000/console/" in good.received[0]["message"]
    assert good.url not in result.output and bad.url.split("//")[1] not in result.output


def test_notify_test_without_targets_is_a_config_error(tmp_path, premium_sandbox):
    env = make_env(write_config(tmp_path, premium_sandbox.url), None, None)
    result = CliRunner().invoke(cli, ["notify", "test"], env=env, catch_exceptions=False)
    assert result.exit_code == 2 and result.stderr.startswith("config error: EXSYNC_NOTIFY_URLS: is not set")
