"""A source that keeps failing webhook authentication gets 429 for the rest of the window; others don't."""
import dataclasses

from core import runtime as runtime_mod
from tests.support.config import WEBHOOK_TOKEN
from webhooks.app import create_app

GOOD = f"/webhooks/premium/main/{WEBHOOK_TOKEN}"
BAD = "/webhooks/premium/main/" + "x" * len(WEBHOOK_TOKEN)
FORM = {"data": b"bid_id=7&status=payed", "content_type": "application/x-www-form-urlencoded"}


def app_with(runtime, **settings):
    rt = runtime_mod.Runtime(dataclasses.replace(runtime.settings, **settings), _db=runtime.db)
    return create_app(rt).test_client()


def test_repeated_failures_from_one_source_are_refused_with_429(runtime, db, celery_app):
    client = app_with(runtime, webhook_fail_limit=3, webhook_fail_window=60)
    prober = {"REMOTE_ADDR": "203.0.113.66"}
    codes = [client.post(BAD, environ_base=prober, **FORM).status_code for _ in range(3)]
    assert codes == [403, 403, 403]
    resp = client.post(BAD, environ_base=prober, **FORM)
    assert resp.status_code == 429 and resp.json == {"error": "too_many_failures"}
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    # Another source is not affected.
    assert client.post(BAD, environ_base={"REMOTE_ADDR": "198.51.100.9"}, **FORM).status_code == 403


def test_a_valid_callback_is_never_refused_even_from_a_blocked_source(runtime, db, celery_app):
    # Behind a proxy with EXSYNC_TRUSTED_PROXIES=0 every sender shares one address: a stranger's failures
    # from it must not silence the engine, which never retries a callback.
    client = app_with(runtime, webhook_fail_limit=3, webhook_fail_window=60)
    shared = {"REMOTE_ADDR": "10.0.0.1"}
    for _ in range(20):
        client.post(BAD, environ_base=shared, **FORM)
    assert client.post(BAD, environ_base=shared, **FORM).status_code == 429
    ok = client.post(GOOD, environ_base=shared, **FORM)
    assert ok.status_code == 202
    assert db_event_states(db) == ["received"]


def test_probing_unknown_names_counts_as_failing(runtime, db, celery_app):
    client = app_with(runtime, webhook_fail_limit=2, webhook_fail_window=60)
    src = {"REMOTE_ADDR": "203.0.113.70"}
    assert client.post(f"/webhooks/premium/nope/{WEBHOOK_TOKEN}", environ_base=src, **FORM).status_code == 403
    assert client.post("/webhooks/gateway/nope", environ_base=src, **FORM).status_code == 401
    assert client.post("/webhooks/paysera/nope", environ_base=src,
                       data={"event": "{}", "sign": "AAAA"}).status_code == 429


def test_a_second_web_process_shares_the_count(runtime, db, celery_app):
    first, second = (app_with(runtime, webhook_fail_limit=3, webhook_fail_window=60) for _ in range(2))
    src = {"REMOTE_ADDR": "203.0.113.80"}
    for _ in range(3):
        first.post(BAD, environ_base=src, **FORM)
    assert second.post(BAD, environ_base=src, **FORM).status_code == 429  # counted in Redis, shared
    assert second.post(GOOD, environ_base=src, **FORM).status_code == 202


def db_event_states(db):
    from sqlalchemy import text

    with db.engine.connect() as conn:
        return list(conn.execute(text("SELECT state FROM inbox_events ORDER BY id")).scalars())


def test_redis_down_leaves_the_receiver_working_and_unthrottled(runtime, db):
    client = app_with(runtime, webhook_fail_limit=1, redis_url="redis://127.0.0.1:1/0")
    src = {"REMOTE_ADDR": "203.0.113.90"}
    assert [client.post(BAD, environ_base=src, **FORM).status_code for _ in range(3)] == [403, 403, 403]


def test_limits_are_validated_naming_the_key():
    import pytest

    from core.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="EXSYNC_WEBHOOK_FAIL_LIMIT"):
        load_settings({"EXSYNC_WEBHOOK_FAIL_LIMIT": "0"})
    with pytest.raises(ConfigError, match="EXSYNC_WEBHOOK_FAIL_WINDOW"):
        load_settings({"EXSYNC_WEBHOOK_FAIL_WINDOW": "soon"})
