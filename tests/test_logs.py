"""One log format, and no secret in any log line: ours, Celery's, gunicorn's or werkzeug's."""
from __future__ import annotations

import io
import json
import logging

import pytest

from worker.config import ExchangerConfig, Settings
from worker.logs import GunicornLogger, setup_logging

KEY = "Kx" * 16
TOKEN = "hook_" + "t0k3n" * 4
API_TOKEN = "api-" + "s3cr3t" * 4


@pytest.fixture
def settings():
    ex = ExchangerConfig(name="main", base_url="https://exchanger.example", api_login="L" * 32,
                         api_key=KEY, webhook_token=TOKEN)
    return Settings(api_token=API_TOKEN, public_url="https://exsync.example", exchangers={"main": ex})


@pytest.fixture(autouse=True)
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def capture(settings, **kw) -> io.StringIO:
    """Install the real setup, then point its one root handler at a buffer."""
    setup_logging(settings, **kw)
    (handler,) = logging.getLogger().handlers
    buf = io.StringIO()
    handler.setStream(buf)
    return buf


def assert_clean(text: str) -> None:
    for secret in (KEY, TOKEN, API_TOKEN):
        assert secret not in text
    assert "***" in text


def test_secret_in_message_args_is_masked(settings):
    buf = capture(settings)
    logging.getLogger("exsync.test").info("calling with API-KEY %s and token %r", KEY, API_TOKEN)
    out = buf.getvalue()
    assert_clean(out)
    assert "calling with API-KEY *** and token '***'" in out


def test_callback_url_with_the_token_is_masked(settings):
    buf = capture(settings)
    logging.getLogger("exsync.test").warning("posting to " + settings.callback_url("main"))
    out = buf.getvalue()
    assert_clean(out)
    assert "https://exsync.example/webhooks/premium/main/***" in out


def test_secret_in_an_exception_is_masked(settings):
    buf = capture(settings)
    try:
        raise RuntimeError(f"request to {settings.callback_url('main')} failed with key {KEY}")
    except RuntimeError:
        logging.getLogger("exsync.test").exception("it broke")
    out = buf.getvalue()
    assert_clean(out)
    assert "Traceback" in out and "RuntimeError" in out


def test_library_loggers_go_through_the_same_filter(settings):
    buf = capture(settings)
    for name in ("celery.worker.strategy", "celery.app.trace", "werkzeug", "gunicorn.error", "kombu"):
        logging.getLogger(name).error("%s saw %s", name, settings.callback_url("main"))
    out = buf.getvalue()
    assert_clean(out)
    assert out.count("/webhooks/premium/main/***") == 5


def test_gunicorn_lines_reach_the_root_handler(settings):
    from gunicorn.config import Config

    buf = capture(settings)
    glog = GunicornLogger(Config())
    assert glog.error_log.propagate and not glog.error_log.handlers
    glog.error("worker saw POST /webhooks/premium/main/%s", TOKEN)
    out = buf.getvalue()
    assert_clean(out)
    assert "gunicorn.error" in out


def test_one_format_with_level_process_and_logger(settings):
    buf = capture(settings)
    logging.getLogger("exsync.test").info("hello %s", "world")
    line = buf.getvalue().strip()
    assert " INFO " in line and "exsync.test: hello world" in line
    assert line[:4].isdigit()  # starts with the time


def test_json_lines(settings):
    buf = capture(settings, json=True)
    try:
        raise ValueError(KEY)
    except ValueError:
        logging.getLogger("exsync.test").error("bad key %s", KEY, exc_info=True)
    record = json.loads(buf.getvalue())
    assert record["level"] == "ERROR" and record["logger"] == "exsync.test"
    assert record["message"] == "bad key ***"
    assert "ValueError: ***" in record["exception"]
    assert_clean(buf.getvalue())


def test_level_comes_from_the_settings(settings):
    from dataclasses import replace

    buf = capture(replace(settings, log_level="WARNING"))
    logging.getLogger("exsync.test").info("not shown")
    logging.getLogger("exsync.test").warning("shown")
    assert "not shown" not in buf.getvalue() and "shown" in buf.getvalue()


def test_without_secrets_lines_are_untouched():
    buf = capture(Settings())
    logging.getLogger("exsync.test").info("%d%% done, 100%% sure", 50)
    assert "50% done, 100% sure" in buf.getvalue()


def test_payout_provider_secrets_named_in_the_config_are_redacted_too(tmp_path):
    from worker.config import load_settings

    cfg = tmp_path / "exsync.toml"
    cfg.write_text('[providers.zc]\ntype = "zaleycash"\nbase_url = "https://zaleycash.example"\n'
                   'secret_key_env = "MY_ZC_SECRET"\n'
                   '[providers.gw]\ntype = "gateway"\napi_key_env = "MY_GW_KEY"\nsecret_env = "MY_GW_SECRET"\n')
    env = {"EXSYNC_CONFIG": str(cfg), "MY_ZC_SECRET": "zc-" + "q" * 20, "MY_GW_KEY": "gwkey-" + "w" * 20,
           "MY_GW_SECRET": "gwsec-" + "e" * 20}
    s = load_settings(env)
    buf = capture(s)
    logging.getLogger("exsync.payouts").warning("calling with %s / %s / %s", env["MY_ZC_SECRET"], env["MY_GW_KEY"],
                                                env["MY_GW_SECRET"])
    out = buf.getvalue()
    assert "calling with" in out
    for var in ("MY_ZC_SECRET", "MY_GW_KEY", "MY_GW_SECRET"):
        assert env[var] not in out
