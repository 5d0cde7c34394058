"""Configuration: every value that can be wrong stops start-up with a ConfigError naming its key."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core.config import DEFAULT_LADDER, ConfigError, Settings, load_settings

LOGIN = "A" * 16 + "b" * 8 + "12345678"
KEY = "K" * 24 + "87654321"
TOKEN = "webhook-token_0123456789"
API_TOKEN = "api-token-0123456789abcdef"

EXCHANGER = """
[exchangers.main]
base_url = "https://exchanger.example"
api_login = "{login}"
"""


def write(tmp_path: Path, body: str, *, exchanger: bool = True) -> Path:
    path = tmp_path / "exsync.toml"
    path.write_text(textwrap.dedent(body) + (EXCHANGER.format(login=LOGIN) if exchanger else ""))
    return path


def env_for(path: Path | None, **more: str) -> dict[str, str]:
    env = {
        "EXSYNC_EXCHANGER_MAIN_API_KEY": KEY,
        "EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN": TOKEN,
    }
    if path is not None:
        env["EXSYNC_CONFIG"] = str(path)
    env.update(more)
    return env


def error_for(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return info.value


def assert_names(err: ConfigError, key: str) -> None:
    assert err.key == key
    assert str(err).startswith(f"{key}: "), str(err)


# -- the file -----------------------------------------------------------------------------------------


def test_bad_toml_names_the_config_variable(tmp_path):
    path = tmp_path / "exsync.toml"
    path.write_text("[settings\nsweep_interval = ")
    assert_names(error_for(env_for(path)), "EXSYNC_CONFIG")


def test_missing_file_names_the_config_variable(tmp_path):
    err = error_for(env_for(tmp_path / "nope.toml"))
    assert_names(err, "EXSYNC_CONFIG")
    assert "nope.toml" in err.problem


def test_unknown_section(tmp_path):
    assert_names(error_for(env_for(write(tmp_path, "[exchanger]\nx = 1\n", exchanger=False))), "exchanger")


def test_unknown_setting(tmp_path):
    assert_names(error_for(env_for(write(tmp_path, "[settings]\nsweep_intervall = 5\n"))),
                 "settings.sweep_intervall")


def test_settings_must_be_a_table(tmp_path):
    assert_names(error_for(env_for(write(tmp_path, "settings = 5\n"))), "settings")


def test_exchangers_must_be_a_table(tmp_path):
    assert_names(error_for(env_for(write(tmp_path, "exchangers = 5\n", exchanger=False))), "exchangers")


# -- one exchanger ---------------------------------------------------------------------------------------


def exchanger_error(tmp_path: Path, table: str, **env: str) -> ConfigError:
    path = tmp_path / "exsync.toml"
    path.write_text(textwrap.dedent(table))
    return error_for(env_for(path, **env))


def table(**values: str) -> str:
    fields = {"base_url": '"https://exchanger.example"', "api_login": f'"{LOGIN}"'}
    fields.update(values)
    return "[exchangers.main]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)


@pytest.mark.parametrize("url", ['"ftp://exchanger.example"', '"exchanger.example"', '"https://"',
                                 '"https://exchanger.example/api/userapi/v1"', '"https://x.example:99999"', "5"])
def test_bad_base_url(tmp_path, url):
    assert_names(exchanger_error(tmp_path, table(base_url=url)), "exchangers.main.base_url")


def test_base_url_is_required(tmp_path):
    assert_names(exchanger_error(tmp_path, table(base_url=None)), "exchangers.main.base_url")


@pytest.mark.parametrize("login", ['"short"', f'"{LOGIN}x"', '"' + "a" * 31 + '!"', '""'])
def test_login_must_be_32_letters_or_digits(tmp_path, login):
    assert_names(exchanger_error(tmp_path, table(api_login=login)), "exchangers.main.api_login")


def test_login_is_required(tmp_path):
    assert_names(exchanger_error(tmp_path, table(api_login=None)), "exchangers.main.api_login")


def test_unknown_exchanger_key(tmp_path):
    assert_names(exchanger_error(tmp_path, table(api_key='"inline secrets are refused"')), "exchangers.main.api_key")


def test_bad_exchanger_name(tmp_path):
    path = tmp_path / "exsync.toml"
    path.write_text(table().replace("[exchangers.main]", '[exchangers."Main Site"]'))
    assert_names(error_for(env_for(path)), "exchangers.Main Site")


def test_missing_api_key_names_the_variable(tmp_path):
    path = tmp_path / "exsync.toml"
    path.write_text(table())
    env = env_for(path)
    del env["EXSYNC_EXCHANGER_MAIN_API_KEY"]
    err = error_for(env)
    assert_names(err, "EXSYNC_EXCHANGER_MAIN_API_KEY")
    assert "exchangers.main" in err.problem


def test_missing_secret_in_a_custom_variable(tmp_path):
    err = exchanger_error(tmp_path, table(webhook_token_env='"MAIN_HOOK"'))
    assert_names(err, "MAIN_HOOK")


def test_custom_secret_variables_are_read(tmp_path):
    path = tmp_path / "exsync.toml"
    path.write_text(table(api_key_env='"MAIN_KEY"', webhook_token_env='"MAIN_HOOK"'))
    s = load_settings({"EXSYNC_CONFIG": str(path), "MAIN_KEY": KEY, "MAIN_HOOK": TOKEN})
    assert s.exchanger("main").api_key == KEY
    assert s.exchanger("main").webhook_token == TOKEN


def test_secret_variable_names_follow_the_exchanger_name(tmp_path):
    path = tmp_path / "exsync.toml"
    path.write_text(table().replace("[exchangers.main]", "[exchangers.my-site]"))
    err = error_for({"EXSYNC_CONFIG": str(path)})
    assert_names(err, "EXSYNC_EXCHANGER_MY_SITE_API_KEY")


def test_api_key_must_look_like_the_engines(tmp_path):
    err = exchanger_error(tmp_path, table(), EXSYNC_EXCHANGER_MAIN_API_KEY="not-a-key")
    assert_names(err, "EXSYNC_EXCHANGER_MAIN_API_KEY")
    assert "not-a-key" not in str(err)  # a secret, even a wrong one, is never echoed


@pytest.mark.parametrize("token", ["short", "has spaces in it 0123", "slash/in/the/token/0123"])
def test_webhook_token_must_be_long_and_url_safe(tmp_path, token):
    err = exchanger_error(tmp_path, table(), EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN=token)
    assert_names(err, "EXSYNC_EXCHANGER_MAIN_WEBHOOK_TOKEN")
    assert token not in str(err)


def test_bad_ip_in_allow_list_names_its_index(tmp_path):
    err = exchanger_error(tmp_path, table(allowed_ips='["203.0.113.7", "203.0.113.300"]'))
    assert_names(err, "exchangers.main.allowed_ips[1]")


def test_allow_list_must_be_a_list(tmp_path):
    assert_names(exchanger_error(tmp_path, table(allowed_ips='"203.0.113.7"')), "exchangers.main.allowed_ips")


def test_allow_list_accepts_addresses_and_networks(tmp_path):
    path = tmp_path / "exsync.toml"
    path.write_text(table(allowed_ips='["203.0.113.7", "198.51.100.0/24", "2001:db8::/32"]'))
    ex = load_settings(env_for(path)).exchanger("main")
    assert ex.ip_allowed("203.0.113.7") and ex.ip_allowed("198.51.100.99") and ex.ip_allowed("2001:db8::1")
    assert not ex.ip_allowed("203.0.113.8") and not ex.ip_allowed(None) and not ex.ip_allowed("garbage")


@pytest.mark.parametrize("key,value", [("timeout", "0"), ("timeout", '"soon"'), ("rate_limit", "-1"),
                                       ("rate_limit", "true")])
def test_bad_numbers_of_an_exchanger(tmp_path, key, value):
    assert_names(exchanger_error(tmp_path, table(**{key: value})), f"exchangers.main.{key}")


@pytest.mark.parametrize("value", ['"maybe"', "2"])
def test_bad_bool(tmp_path, value):
    assert_names(exchanger_error(tmp_path, table(enabled=value)), "exchangers.main.enabled")


@pytest.mark.parametrize("value", ['"english"', '"en"', "1"])
def test_bad_lang(tmp_path, value):
    assert_names(exchanger_error(tmp_path, table(lang=value)), "exchangers.main.lang")


def test_unknown_exchanger_lookup_names_it():
    with pytest.raises(ConfigError) as info:
        Settings().exchanger("nope")
    assert_names(info.value, "exchangers.nope")


# -- [settings] ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("line,key", [
    ('sweep_interval = "soon"', "settings.sweep_interval"),
    ("sweep_interval = 0", "settings.sweep_interval"),
    ("sweep_interval = true", "settings.sweep_interval"),
    ("sweep_interval = 1.5", "settings.sweep_interval"),
    ("sweep_overlap = -1", "settings.sweep_overlap"),
    ("sweep_page_size = 501", "settings.sweep_page_size"),
    ("poll_batch = 0", "settings.poll_batch"),
    ("poll_give_up_after = 10", "settings.poll_give_up_after"),
    ("inbox_max_attempts = 0", "settings.inbox_max_attempts"),
    ("webhook_max_body = 10", "settings.webhook_max_body"),
    ('public_url = "exsync.example.com"', "settings.public_url"),
    ('public_url = "https://exsync.example.com/hooks"', "settings.public_url"),
])
def test_bad_setting(tmp_path, line, key):
    assert_names(error_for(env_for(write(tmp_path, f"[settings]\n{line}\n"))), key)


@pytest.mark.parametrize("ladder,key", [
    ("poll_ladder = 5", "settings.poll_ladder"),
    ("[settings.poll_ladder]\nnew = []", "settings.poll_ladder.new"),
    ("[settings.poll_ladder]\nnew = 30", "settings.poll_ladder.new"),
    ('[settings.poll_ladder]\nnew = [30, "soon"]', "settings.poll_ladder.new[1]"),
    ("[settings.poll_ladder]\npayed = [0]", "settings.poll_ladder.payed[0]"),
])
def test_bad_ladder(tmp_path, ladder, key):
    assert_names(error_for(env_for(write(tmp_path, f"[settings]\n{ladder}\n"))), key)


def test_ladder_overrides_merge_with_the_defaults(tmp_path):
    s = load_settings(env_for(write(tmp_path, "[settings.poll_ladder]\nnew = [5, 10]\nmy1 = [60]\n")))
    assert s.poll_ladder["new"] == (5, 10)
    assert s.poll_ladder["my1"] == (60,)
    assert s.poll_ladder["default"] == DEFAULT_LADDER["default"]


# -- the environment ----------------------------------------------------------------------------------


@pytest.mark.parametrize("var,value", [
    ("EXSYNC_DATABASE_URL", "mysql://u:p@db/exsync"),
    ("EXSYNC_DATABASE_URL", "localhost:5432"),
    ("EXSYNC_REDIS_URL", "http://redis:6379"),
    ("EXSYNC_REDIS_URL", "redis-host:6379"),
    ("EXSYNC_LOG_LEVEL", "LOUD"),
    ("EXSYNC_WEB_BIND", "8000"),
    ("EXSYNC_WEB_BIND", "0.0.0.0:http"),
    ("EXSYNC_WEB_BIND", "0.0.0.0:70000"),
    ("EXSYNC_API_TOKEN", "short"),
    ("EXSYNC_SWEEP_INTERVAL", "often"),
    ("EXSYNC_WEB_WORKERS", "0"),
    ("EXSYNC_WORKER_CONCURRENCY", "many"),
    ("EXSYNC_PUBLIC_URL", "ftp://exsync.example"),
])
def test_bad_environment_value(var, value):
    err = error_for({var: value})
    assert_names(err, var)
    if var == "EXSYNC_API_TOKEN":
        assert value not in str(err)


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, """
        [settings]
        sweep_interval = 60
        public_url = "https://file.example"
    """)
    s = load_settings(env_for(path, EXSYNC_SWEEP_INTERVAL="15", EXSYNC_PUBLIC_URL="https://env.example"))
    assert s.sweep_interval == 15
    assert s.public_url == "https://env.example"
    assert load_settings(env_for(path)).sweep_interval == 60


def test_environment_value_is_checked_even_when_the_file_is_right(tmp_path):
    path = write(tmp_path, "[settings]\nsweep_interval = 60\n")
    assert_names(error_for(env_for(path, EXSYNC_SWEEP_INTERVAL="0")), "EXSYNC_SWEEP_INTERVAL")


def test_defaults_without_any_configuration():
    s = load_settings({})
    assert s.database_url is None and s.redis_url is None  # exsync run: embedded services
    assert s.data_dir == Path(".exsync-data")
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.web_bind == "127.0.0.1:8000"
    assert s.log_level == "INFO"
    assert s.api_token is None
    assert s.exchangers == {}
    assert s.sweep_interval == Settings.sweep_interval
    assert s.poll_ladder == DEFAULT_LADDER
    assert s.secrets() == []


def test_values_from_the_environment_are_parsed():
    s = load_settings({
        "EXSYNC_DATABASE_URL": "postgresql://u:pw@db:5432/exsync",
        "EXSYNC_REDIS_URL": "redis://redis:6379/0",
        "EXSYNC_DATA_DIR": "/var/lib/exsync",
        "EXSYNC_LOG_LEVEL": "debug",
        "EXSYNC_WEB_BIND": "0.0.0.0:9000",
        "EXSYNC_WEB_WORKERS": "4",
        "EXSYNC_WORKER_CONCURRENCY": "16",
        "EXSYNC_API_TOKEN": API_TOKEN,
    })
    assert s.database_url == "postgresql+psycopg2://u:pw@db:5432/exsync"  # the driver is pinned
    assert s.redis_url == "redis://redis:6379/0"
    assert s.data_dir == Path("/var/lib/exsync")
    assert s.log_level == "DEBUG"
    assert (s.web_bind, s.web_workers, s.worker_concurrency) == ("0.0.0.0:9000", 4, 16)
    assert s.api_token == API_TOKEN


def test_a_full_exchanger(tmp_path):
    path = write(tmp_path, """
        [settings]
        public_url = "https://exsync.example.com"
    """, exchanger=False)
    path.write_text(path.read_text() + table(lang='"ru_RU"', timeout="7.5", rate_limit="3", enabled="false"))
    s = load_settings(env_for(path, EXSYNC_API_TOKEN=API_TOKEN))
    ex = s.exchanger("main")
    assert (ex.base_url, ex.api_login, ex.lang, ex.timeout, ex.rate_limit, ex.enabled) == (
        "https://exchanger.example", LOGIN, "ru_RU", 7.5, 3.0, False)
    assert s.callback_url("main") == f"https://exsync.example.com/webhooks/premium/main/{TOKEN}"
    assert set(s.secrets()) == {KEY, TOKEN, API_TOKEN}
    # Secrets stay out of reprs (they end up in logs and tracebacks).
    for secret in (KEY, TOKEN, API_TOKEN):
        assert secret not in repr(s)


# -- one loader, one typed Settings (issue 7) ---------------------------------------------------------

PAYOUT_SECTIONS = """
[payouts]
max_attempts = 3

[providers.zc]
type = "zaleycash"
base_url = "https://zc.example"
secret_key_env = "ZC_SECRET"

[routes.main]
trigger_statuses = ["realpay"]

[[routes.main.rules]]
currency = "RUB"
provider = "zc"
"""
ZC_SECRET = "zc-secret-value-0123456789"


def test_the_file_is_read_once_into_one_typed_settings(tmp_path, monkeypatch):
    import tomllib

    from core.config import PayoutConfig

    reads = []
    real_load = tomllib.load
    monkeypatch.setattr(tomllib, "load", lambda fh: reads.append(fh.name) or real_load(fh))
    path = write(tmp_path, PAYOUT_SECTIONS)
    s = load_settings(env_for(path, ZC_SECRET=ZC_SECRET))
    assert reads == [str(path)]
    assert isinstance(s.payouts, PayoutConfig) and s.payouts.settings.max_attempts == 3
    zc = s.payouts.providers["zc"]
    assert (zc.type, zc.base_url, zc.secrets) == ("zaleycash", "https://zc.example", {"secret_key": ZC_SECRET})
    assert s.payouts.routes["main"].rules[0].provider == "zc"
    assert ZC_SECRET in s.secrets() and ZC_SECRET not in repr(s)  # redacted everywhere, never printed


def test_a_bad_payout_section_stops_every_load(tmp_path):
    path = write(tmp_path, PAYOUT_SECTIONS.replace('provider = "zc"', 'provider = "nope"'))
    assert_names(error_for(env_for(path, ZC_SECRET=ZC_SECRET)), "routes.main.rules[0].provider")
    assert_names(error_for(env_for(write(tmp_path, PAYOUT_SECTIONS))), "ZC_SECRET")


def test_trusted_proxies_is_a_setting():
    assert load_settings({}).trusted_proxies == 0
    assert load_settings({"EXSYNC_TRUSTED_PROXIES": "2"}).trusted_proxies == 2
    assert load_settings({"EXSYNC_TRUSTED_PROXIES": " "}).trusted_proxies == 0


@pytest.mark.parametrize("value", ["yes", "11", "-1", "1.5", "²", "٣"])
def test_bad_trusted_proxies_names_the_key(value):
    assert_names(error_for({"EXSYNC_TRUSTED_PROXIES": value}), "EXSYNC_TRUSTED_PROXIES")
