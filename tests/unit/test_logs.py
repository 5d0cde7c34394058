"""One log format, and no secret in any log line: ours, Celery's, gunicorn's or werkzeug's — in any form
the secret travels in through a URL or a header (percent-encoded, base64), down to the DEBUG lines of a
real gunicorn (that one is tests/system/test_web_logs.py)."""
from __future__ import annotations

import base64
import io
import json
import logging
import random
from urllib.parse import quote, unquote, unquote_plus

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.config import ExchangerConfig, Settings
from core.logs import MASK, GunicornLogger, RedactSecrets, setup_logging
from tests.support.redaction import carries, pct

KEY = "Kx" * 16
TOKEN = "hook_" + "t0k3n" * 4
API_TOKEN = "api-" + "s3cr3t" * 4


@pytest.fixture
def settings():
    ex = ExchangerConfig(name="main", base_url="https://exchanger.example", api_login="L" * 32,
                         api_key=KEY, webhook_token=TOKEN)
    return Settings(api_token=API_TOKEN, public_url="https://exsync.example", exchangers={"main": ex})


pytestmark = pytest.mark.usefixtures("restore_root_logging")


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
    from core.config import load_settings

    cfg = tmp_path / "exsync.toml"
    cfg.write_text('[providers.zc]\ntype = "zaleycash"\nbase_url = "https://zaleycash.example"\n'
                   'secret_key_env = "MY_ZC_SECRET"\n'
                   '[providers.gw]\ntype = "gateway"\nbase_url = "https://gw.example"\n'
                   'api_key_env = "MY_GW_KEY"\nsecret_env = "MY_GW_SECRET"\n')
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


# -- every form a secret can travel in (issue 6, item 6) ------------------------------------------------

# How one character may be written, as a sender, a proxy or a form encoder would (choice -> text).
def encode_char(c: str, choice: int, rnd: random.Random) -> str:
    raw = c.encode("utf-8", "surrogatepass")
    if choice == 1:
        return "".join(pct(b) for b in raw)
    if choice == 2:
        return "".join(pct(b, "lower") for b in raw)
    if choice == 3:
        return "".join(pct(b, "mixed", rnd) for b in raw)
    if choice == 4:  # encoded, then the '%' encoded again by a proxy: %2577
        return "".join("%25" + pct(b, "mixed", rnd)[1:] for b in raw)
    if choice == 5:  # encoded twice by an encoder that escapes every character: %25%37%37
        return "".join("%25" + "".join(pct(ord(d)) for d in pct(b, "mixed", rnd)[1:]) for b in raw)
    if choice == 6:  # three times over: %252577
        return "".join("%2525" + pct(b)[1:] for b in raw)
    if choice == 7 and c == " ":
        return "+"  # form encoding
    if choice == 7 and c == "+":
        return "%2B"
    if choice == 8 and 0x80 <= ord(c) <= 0xFF:
        return pct(ord(c))  # a legacy Latin-1 encoder
    return c


SECRET_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=16, max_size=40)
ASCII_PUNCT = " /?=&:;,.!#()[]{}<>\"'|~^`$@\\\t"


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=SECRET_TEXT, data=st.data())
def test_a_secret_is_masked_however_its_characters_are_encoded(secret, data):
    rnd = random.Random(data.draw(st.integers(0, 2**32)))
    choices = data.draw(st.lists(st.integers(0, 8), min_size=len(secret), max_size=len(secret)))
    encoded = "".join(encode_char(c, k, rnd) for c, k in zip(secret, choices, strict=True))
    # Around it, only characters that cannot belong to it: the exact expected output is known.
    around = sorted(set(ASCII_PUNCT + "GETPOST") - set(secret) - set(encoded) - {"%", "+"})
    filler = st.text(st.sampled_from(around), max_size=20) if around else st.just("")
    prefix, suffix = data.draw(filler), data.draw(filler)
    text = prefix + encoded + suffix

    out = RedactSecrets([secret, "another-secret-0123456789"]).redact(text)

    assert out == prefix + MASK + suffix
    for decoded in (out, unquote(out), unquote(unquote(out)), unquote_plus(unquote_plus(out)),
                    unquote(out, encoding="latin-1")):
        assert secret not in decoded


TOKEN_TEXT = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     min_size=16, max_size=48)


@hsettings(max_examples=150, deadline=None)
@given(secret=TOKEN_TEXT, text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_text_without_a_secret_is_left_as_it_is(secret, text):
    assume(not carries(text, secret))
    assert RedactSecrets([secret]).redact(text) == text


@hsettings(max_examples=100, deadline=None)
@given(user=st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789._-"), max_size=12), secret=SECRET_TEXT,
       urlsafe=st.booleans(), in_url=st.booleans())
def test_a_secret_inside_a_basic_credential_is_masked(user, secret, urlsafe, in_url):
    """``Authorization: Basic base64(user:secret)`` (also URL-safe, also percent-encoded in a URL): at
    most one character at each end of the secret's share of the base64 stays visible."""
    raw = (user + ":").encode() + secret.encode("utf-8", "surrogatepass")
    value = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    sent = quote(value, safe="") if in_url else value
    out = RedactSecrets([secret]).redact("Authorization: Basic " + sent)
    assert out.startswith("Authorization: Basic ") and MASK in out
    masked_from = out.index(MASK) - len("Authorization: Basic ")
    visible_after = len(out) - out.index(MASK) - len(MASK)
    user_chars = -(-8 * len(user + ":") // 6)  # base64 characters that carry any bit of "user:"
    assert masked_from <= len(quote(value[:user_chars], safe="")) + 3  # at most one shared character
    assert visible_after <= 9  # the last character and the '=' padding, perhaps percent-encoded
    assert secret not in unquote(out)


def test_examples_of_every_form():
    r = RedactSecrets([TOKEN, API_TOKEN, KEY])
    token = TOKEN.encode()
    cases = [
        f"POST /webhooks/premium/main/{TOKEN}",
        "POST /webhooks/premium/main/" + "".join(pct(b) for b in token),
        "POST /webhooks/premium/main/" + "".join(pct(b, "lower") for b in token),
        "POST /webhooks/premium/main/%68ook_t%30k3n" + TOKEN[10:],
        "POST /webhooks/premium/main/%2568ook" + TOKEN[4:],
        "POST /webhooks/premium/main/%25%36%38ook" + TOKEN[4:],
        f"Authorization: Bearer {API_TOKEN}",
        "Authorization: Basic " + base64.b64encode(f"ops:{API_TOKEN}".encode()).decode(),
        f"X-Api-Key: {quote(API_TOKEN, safe='')}",
        f"GET /api/v1/bids?token={''.join(pct(b) for b in API_TOKEN.encode())}&limit=5",
    ]
    for line in cases:
        out = r.redact(line)
        assert MASK in out and not carries(out, TOKEN) and not carries(out, API_TOKEN), (line, out)
    assert r.redact("50% done, 100%% sure, a+b=c, %zz %4") == "50% done, 100%% sure, a+b=c, %zz %4"
    assert r.redact(f"{TOKEN}{API_TOKEN}") == MASK + MASK


def test_overlapping_secrets_are_masked_whole():
    a, b = "overlapping-secret-AAAA", "AAAA-second-secret-value"
    out = RedactSecrets([a, b]).redact(f"x {a[:-4]}AAAA{b[4:]} y")
    assert out == f"x {MASK} y"


def test_a_percent_sign_in_a_secret_is_masked_with_its_escape():
    # Found by hypothesis: a secret ending in '%' written as "%25" (or "%2525") left "25" visible, the
    # pattern having matched the '%' as itself first.
    secret = "abcdefghijklmnop%"
    redactor_ = RedactSecrets([secret])
    for written in ("%25", "%2525", "%25%32%35", "%"):
        assert redactor_.redact(f"GET /x/abcdefghijklmnop{written} 200") == f"GET /x/{MASK} 200"
