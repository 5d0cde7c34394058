"""The payout sections of the config file: every bad value is a ConfigError naming its key.

Pure parsing (``load_payout_config`` on a dict, ``load_payout_config_from_env`` on a file); the
``exsync check-config`` side of it is in tests/integration/test_cli.py.
"""
from __future__ import annotations

import copy
import textwrap
from decimal import Decimal

import pytest

from core.config import ConfigError
from core.payout_config import PayoutConfig, load_payout_config, load_payout_config_from_env

ENV = {"ZC_SECRET": "zc-secret-value", "GW_KEY": "gw-key-value", "GW_SECRET": "gw-secret-value",
       "PS_KEY": "ps-mac-key-value"}

BASE = {
    "exchangers": {"main": {}},
    "payouts": {"max_attempts": 3, "retry_ladder": [5, 10]},
    "providers": {
        "zc": {"type": "zaleycash", "base_url": "https://zc.example", "secret_key_env": "ZC_SECRET"},
        "gw": {"type": "gateway", "base_url": "https://gw.example", "api_key_env": "GW_KEY", "secret_env": "GW_SECRET"},
        "ps": {"type": "paysera", "base_url": "https://wallet.example", "mac_id": "abc", "mac_key_env": "PS_KEY"},
    },
    "routes": {"main": {"trigger_statuses": ["realpay"], "auto_pay_ceiling": "500", "rules": [
        {"currency": "RUB", "psys_get": "ZaleyCash", "provider": "zc", "min_amount": "1", "max_amount": "1000"},
        {"currency": "RUB", "provider": "gw", "destination_field": "account2", "max_amount": "100000"},
    ]}},
}


def load(mutate=None, env=None) -> PayoutConfig:
    doc = copy.deepcopy(BASE)
    if mutate is not None:
        mutate(doc)
    return load_payout_config(doc, ENV if env is None else env)


def zc(d):
    return d["providers"]["zc"]


def gw(d):
    return d["providers"]["gw"]


def route(d):
    return d["routes"]["main"]


def rule(d, i=0):
    return d["routes"]["main"]["rules"][i]


def test_the_base_config_is_valid():
    cfg = load()
    assert set(cfg.providers) == {"zc", "gw", "ps"}
    r = cfg.routes["main"]
    assert r.trigger_statuses == ("realpay",) and r.auto_pay_ceiling == Decimal("500")
    assert [x.provider for x in r.rules] == ["zc", "gw"]
    assert r.rules[0].min_amount == Decimal("1") and r.rules[0].max_amount == Decimal("1000")
    assert cfg.settings.max_attempts == 3 and cfg.settings.retry_ladder == (5, 10)
    assert "zc-secret-value" not in repr(cfg)


def test_no_payout_sections_is_an_empty_config():
    cfg = load_payout_config({"exchangers": {"main": {}}}, {})
    assert cfg.providers == {} and cfg.routes == {}


BAD = [
    # providers
    ("unknown provider type", lambda d: zc(d).update(type="bank"), "providers.zc.type"),
    ("provider type missing", lambda d: zc(d).pop("type"), "providers.zc.type"),
    ("provider type not a string", lambda d: zc(d).update(type=3), "providers.zc.type"),
    ("missing base_url", lambda d: zc(d).pop("base_url"), "providers.zc.base_url"),
    ("base_url not http", lambda d: zc(d).update(base_url="ftp://zc.example"), "providers.zc.base_url"),
    ("base_url with a path", lambda d: gw(d).update(base_url="https://gw.example/api"), "providers.gw.base_url"),
    ("provider not a table", lambda d: d["providers"].update(zc="zaleycash"), "providers.zc"),
    ("bad provider name", lambda d: d["providers"].update({"Z C": dict(zc(d))}), "providers.Z C"),
    ("unknown provider key", lambda d: zc(d).update(colour="red"), "providers.zc.colour"),
    ("a gateway key on zaleycash", lambda d: zc(d).update(api_key_env="GW_KEY"), "providers.zc.api_key_env"),
    ("secret_key_env missing", lambda d: zc(d).pop("secret_key_env"), "providers.zc.secret_key_env"),
    ("secret_key_env not a variable name", lambda d: zc(d).update(secret_key_env="not a var"),
     "providers.zc.secret_key_env"),
    ("gateway secret_env missing", lambda d: gw(d).pop("secret_env"), "providers.gw.secret_env"),
    ("timeout zero", lambda d: zc(d).update(timeout=0), "providers.zc.timeout"),
    ("timeout not a number", lambda d: gw(d).update(timeout="soon"), "providers.gw.timeout"),
    ("status_path without a slash", lambda d: zc(d).update(status_path="status"), "providers.zc.status_path"),
    ("currency code not a number", lambda d: zc(d).update(currencies={"RUB": "one"}), "providers.zc.currencies.RUB"),
    ("gateway callback_url not a URL", lambda d: gw(d).update(callback_url="not a url"), "providers.gw.callback_url"),
    ("paysera mac_id missing", lambda d: d["providers"]["ps"].pop("mac_id"), "providers.ps.mac_id"),
    ("paysera beneficiary_type", lambda d: d["providers"]["ps"].update(beneficiary_type="iban"),
     "providers.ps.beneficiary_type"),
    ("paysera callback key inline and from a file", lambda d: d["providers"]["ps"].update(
        callback_public_key_pem="x", callback_public_key_file="/nope.pem"), "providers.ps.callback_public_key_file"),
    ("zaleycash currencies not a table", lambda d: zc(d).update(currencies="RUB"), "providers.zc.currencies"),
    ("gateway shop_code empty", lambda d: gw(d).update(shop_code=" "), "providers.gw.shop_code"),
    # routes
    ("route for an unknown exchanger", lambda d: d["routes"].update(other={}), "routes.other"),
    ("unknown route key", lambda d: route(d).update(speed=1), "routes.main.speed"),
    ("enabled not a boolean", lambda d: route(d).update(enabled="maybe"), "routes.main.enabled"),
    ("bad trigger status", lambda d: route(d).update(trigger_statuses=["paid!"]), "routes.main.trigger_statuses[0]"),
    ("unknown second trigger status", lambda d: route(d).update(trigger_statuses=["realpay", 7]),
     "routes.main.trigger_statuses[1]"),
    ("terminal trigger status", lambda d: route(d).update(trigger_statuses=["success"]),
     "routes.main.trigger_statuses[0]"),
    ("no trigger status", lambda d: route(d).update(trigger_statuses=[]), "routes.main.trigger_statuses"),
    ("trigger status not a list", lambda d: route(d).update(trigger_statuses="realpay"),
     "routes.main.trigger_statuses"),
    ("negative ceiling", lambda d: route(d).update(auto_pay_ceiling="-1"), "routes.main.auto_pay_ceiling"),
    ("ceiling not a number", lambda d: route(d).update(auto_pay_ceiling="lots"), "routes.main.auto_pay_ceiling"),
    ("rules not an array", lambda d: route(d).update(rules={"currency": "RUB"}), "routes.main.rules"),
    # four-eyes
    ("approval_above not a number", lambda d: route(d).update(approval_above="much"), "routes.main.approval_above"),
    ("approval_above zero", lambda d: route(d).update(approval_above="0"), "routes.main.approval_above"),
    ("approval_above a float", lambda d: route(d).update(approval_above=5000.5), "routes.main.approval_above"),
    ("approvers without approval_above", lambda d: route(d).update(approvers=2), "routes.main.approvers"),
    ("approvers zero", lambda d: route(d).update(approval_above="5000", approvers=0), "routes.main.approvers"),
    ("approvers too many", lambda d: route(d).update(approval_above="5000", approvers=11), "routes.main.approvers"),
    ("approvers a boolean", lambda d: route(d).update(approval_above="5000", approvers=True),
     "routes.main.approvers"),
    ("approvers not a number", lambda d: route(d).update(approval_above="5000", approvers="two"),
     "routes.main.approvers"),
    # rules
    ("rule naming an unknown provider", lambda d: rule(d).update(provider="nope"), "routes.main.rules[0].provider"),
    ("rule without a provider", lambda d: rule(d, 1).pop("provider"), "routes.main.rules[1].provider"),
    ("rule without a currency", lambda d: rule(d).pop("currency"), "routes.main.rules[0].currency"),
    ("rule currency not a code", lambda d: rule(d, 1).update(currency="R U B"), "routes.main.rules[1].currency"),
    ("zaleycash cannot pay that currency", lambda d: rule(d).update(currency="USDT"), "routes.main.rules[0].currency"),
    ("unknown rule key", lambda d: rule(d).update(colour="red"), "routes.main.rules[0].colour"),
    ("destination_field not a field name", lambda d: rule(d).update(destination_field="account 2"),
     "routes.main.rules[0].destination_field"),
    ("amount not a number", lambda d: rule(d).update(min_amount="abc"), "routes.main.rules[0].min_amount"),
    ("amount a float", lambda d: rule(d).update(min_amount=5.5), "routes.main.rules[0].min_amount"),
    ("amount a boolean", lambda d: rule(d, 1).update(max_amount=True), "routes.main.rules[1].max_amount"),
    ("negative amount", lambda d: rule(d).update(min_amount="-5"), "routes.main.rules[0].min_amount"),
    ("zero amount", lambda d: rule(d, 1).update(max_amount="0"), "routes.main.rules[1].max_amount"),
    ("infinite amount", lambda d: rule(d, 1).update(max_amount="Infinity"), "routes.main.rules[1].max_amount"),
    ("min above max", lambda d: rule(d).update(min_amount="2000", max_amount="1000"),
     "routes.main.rules[0].max_amount"),
    # [payouts]
    ("unknown payouts key", lambda d: d["payouts"].update(colour="red"), "payouts.colour"),
    ("lease too short", lambda d: d["payouts"].update(lease_seconds=1), "payouts.lease_seconds"),
    ("empty ladder", lambda d: d["payouts"].update(retry_ladder=[]), "payouts.retry_ladder"),
    ("ladder step zero", lambda d: d["payouts"].update(check_ladder=[5, 0]), "payouts.check_ladder[1]"),
    ("jitter out of range", lambda d: d["payouts"].update(jitter=1.5), "payouts.jitter"),
    ("max_attempts zero", lambda d: d["payouts"].update(max_attempts=0), "payouts.max_attempts"),
]


@pytest.mark.parametrize("what, mutate, key", BAD, ids=[b[0] for b in BAD])
def test_every_bad_value_names_its_key(what, mutate, key):
    with pytest.raises(ConfigError) as info:
        load(mutate)
    assert info.value.key == key, str(info.value)
    assert str(info.value).startswith(f"{key}: ") and info.value.problem


@pytest.mark.parametrize("var, provider_key", [("ZC_SECRET", "providers.zc.secret_key_env"),
                                               ("GW_KEY", "providers.gw.api_key_env"),
                                               ("GW_SECRET", "providers.gw.secret_env"),
                                               ("PS_KEY", "providers.ps.mac_key_env")])
def test_a_missing_secret_variable_is_named_with_the_key_that_wants_it(var, provider_key):
    env = {k: v for k, v in ENV.items() if k != var}
    with pytest.raises(ConfigError) as info:
        load(env=env)
    assert info.value.key == var and provider_key in info.value.problem
    blank = dict(ENV, **{var: "   "})
    with pytest.raises(ConfigError, match=var):
        load(env=blank)


def test_errors_never_show_a_secret():
    for _, mutate, _ in BAD:
        with pytest.raises(ConfigError) as info:
            load(mutate)
        for secret in ENV.values():
            assert secret not in str(info.value)


def test_from_env_reads_the_file_and_names_its_problems(tmp_path):
    path = tmp_path / "exsync.toml"
    path.write_text(textwrap.dedent("""
        [exchangers.main]
        base_url = "https://exchanger.example"

        [providers.zc]
        type = "zaleycash"
        base_url = "https://zc.example"
        secret_key_env = "ZC_SECRET"

        [routes.main]
        trigger_statuses = ["realpay"]

        [[routes.main.rules]]
        currency = "RUB"
        provider = "zc"
        min_amount = "10"
        max_amount = "5"
    """))
    with pytest.raises(ConfigError) as info:
        load_payout_config_from_env(dict(ENV, EXSYNC_CONFIG=str(path)))
    assert info.value.key == "routes.main.rules[0].max_amount"

    path.write_text(path.read_text().replace('max_amount = "5"', 'max_amount = "50"'))
    cfg = load_payout_config_from_env(dict(ENV, EXSYNC_CONFIG=str(path)))
    assert cfg.routes["main"].rules[0].max_amount == Decimal("50")

    assert load_payout_config_from_env({}) == PayoutConfig()
    with pytest.raises(ConfigError) as info:
        load_payout_config_from_env({"EXSYNC_CONFIG": str(tmp_path / "missing.toml")})
    assert info.value.key == "EXSYNC_CONFIG"
    (tmp_path / "broken.toml").write_text("[routes.main\n")
    with pytest.raises(ConfigError) as info:
        load_payout_config_from_env({"EXSYNC_CONFIG": str(tmp_path / "broken.toml")})
    assert info.value.key == "EXSYNC_CONFIG"


# -- each provider's table is read by its descriptor's schema (providers/<type>/descriptor.py) ----------


def test_provider_types_are_the_registrys():
    from providers import registry

    with pytest.raises(ConfigError) as info:
        load(lambda d: zc(d).update(type="bank"))
    assert registry.types() == ("zaleycash", "gateway", "paysera")
    assert all(t in info.value.problem for t in registry.types())


def test_options_and_secrets_follow_the_schema():
    cfg = load(lambda d: zc(d).update(currencies={"rub": 1, "Usdt": 9}))
    zc_cfg, gw_cfg, ps_cfg = (cfg.providers[n] for n in ("zc", "gw", "ps"))
    assert zc_cfg.options == {"currencies": {"RUB": 1, "USDT": 9}}
    assert zc_cfg.secrets == {"secret_key": ENV["ZC_SECRET"]}
    assert gw_cfg.options == {} and gw_cfg.secrets == {"api_key": ENV["GW_KEY"], "secret": ENV["GW_SECRET"]}
    assert ps_cfg.options == {"mac_id": "abc", "beneficiary_type": "paysera"}  # the schema's default
    assert ps_cfg.secrets == {"mac_key": ENV["PS_KEY"]}
    assert load().providers["zc"].options["currencies"] == {"RUB": 1, "USD": 2, "EUR": 3, "KZT": 4}


def test_a_rule_may_name_only_a_currency_its_provider_pays():
    load(lambda d: (zc(d).update(currencies={"USDT": 9}), rule(d).update(currency="USDT")))
    with pytest.raises(ConfigError) as info:
        load(lambda d: zc(d).update(currencies={"USD": 2}))
    assert info.value.key == "routes.main.rules[0].currency" and "'RUB'" in info.value.problem


def test_four_eyes_settings():
    r = load().routes["main"]
    assert r.approval_above is None  # off unless configured
    r = load(lambda d: route(d).update(approval_above="5000")).routes["main"]
    assert r.approval_above == Decimal("5000") and r.approvers == 2
    r = load(lambda d: route(d).update(approval_above="5000", approvers=3)).routes["main"]
    assert r.approvers == 3
