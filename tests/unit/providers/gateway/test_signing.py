"""Gateway request signing and verification (pure): known vectors, the timestamp window, replays."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

from providers import (
    AuthError,
)
from providers.gateway import (
    CallbackError,
    GatewayClient,
    InvalidApiKeyError,
    InvalidSignatureError,
    InvalidTimestampError,
    MissingApiKeyError,
    MissingTimestampError,
    PayIn,
    ReplayCache,
    ReplayError,
    SignatureError,
    TimestampWindowError,
    parse_callback,
    parse_payin_callback,
    path_with_query_from_environ,
    sign,
    verify,
)
from providers.gateway.signing import sign_headers, string_to_sign

UTC = timezone.utc

# A vector computed once (cross-checked with `openssl dgst -sha256 -hmac s3cr3t`) and recorded here.
VEC_SECRET = "s3cr3t"
VEC_TS = 1717000200  # 2024-05-29 16:30:00 UTC
VEC_BODY = b'{"external_id":"ord-1","amount":"5000.00"}'
VEC_POST = "fe36288e5e0d320f2631990c103339b23f7ea1e66290e7447dfe12522e427d35"  # POST /api/v1/payouts + body
# GET /api/v1/payouts/ord%201?shop_code=main
VEC_GET = "ca5ee0fe57e5d1d34e7c05d7aba8f84807e3a3f4c749f99f8b1b2adcb2046abe"


def signed(method="POST", target="/api/v1/payouts", body=VEC_BODY, *, ts=VEC_TS, key="k-1", secret=VEC_SECRET):
    return {"X-API-Key": key, "X-Timestamp": str(ts), "X-Signature": sign(secret, ts, method, target, body)}


def test_known_vectors():
    assert string_to_sign(VEC_TS, "post", "/api/v1/payouts", VEC_BODY) == b"1717000200POST/api/v1/payouts" + VEC_BODY
    assert sign(VEC_SECRET, VEC_TS, "POST", "/api/v1/payouts", VEC_BODY) == VEC_POST
    assert sign(VEC_SECRET, str(VEC_TS), "post", "/api/v1/payouts", VEC_BODY.decode()) == VEC_POST
    assert sign(VEC_SECRET.encode(), VEC_TS, "GET", "/api/v1/payouts/ord%201?shop_code=main", b"") == VEC_GET
    assert sign(VEC_SECRET, VEC_TS, "GET", "/api/v1/payouts/ord%201?shop_code=main", None) == VEC_GET


def test_headers_use_the_current_unix_second():
    with freeze_time("2024-05-29 16:30:00"):
        h = sign_headers("k-1", VEC_SECRET, "POST", "/api/v1/payouts", VEC_BODY)
        assert h == {"X-API-Key": "k-1", "X-Timestamp": "1717000200", "X-Signature": VEC_POST}
        c = GatewayClient("http://gw.invalid", "k-1", VEC_SECRET)
        assert c.signed_headers("POST", "/api/v1/payouts", VEC_BODY) == h
        # never ahead of the clock: the same request in the same second has the same headers (the client
        # itself never sends one signature twice: see test_timestamps.py)
        assert c.signed_headers("POST", "/api/v1/payouts", VEC_BODY) == h
        verify(VEC_SECRET, h, "POST", "/api/v1/payouts", VEC_BODY)  # now defaults to the (frozen) clock
        c.close()


def test_verify_accepts_a_good_request_and_is_case_insensitive():
    verify(VEC_SECRET, signed(), "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS, api_key="k-1")
    lower = {k.lower(): v.upper() if k == "X-Signature" else v for k, v in signed().items()}
    verify(VEC_SECRET, lower, "post", "/api/v1/payouts", VEC_BODY, now=datetime(2024, 5, 29, 16, 34, tzinfo=UTC))
    verify(VEC_SECRET, list(signed().items()), "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS + 300)  # edge
    verify(lambda key: VEC_SECRET if key == "k-1" else None, signed(), "POST", "/api/v1/payouts", VEC_BODY,
           now=VEC_TS - 300)


@pytest.mark.parametrize("case,headers,method,target,body,now,cls", [
    ("wrong key", signed(key="k-2"), "POST", "/api/v1/payouts", VEC_BODY, VEC_TS, InvalidApiKeyError),
    ("wrong secret", signed(secret="other"), "POST", "/api/v1/payouts", VEC_BODY, VEC_TS, InvalidSignatureError),
    ("stale", signed(), "POST", "/api/v1/payouts", VEC_BODY, VEC_TS + 301, TimestampWindowError),
    ("future", signed(), "POST", "/api/v1/payouts", VEC_BODY, VEC_TS - 301, TimestampWindowError),
    ("body changed", signed(), "POST", "/api/v1/payouts", VEC_BODY.replace(b"5000", b"9000"), VEC_TS,
     InvalidSignatureError),
    ("body reformatted", signed(), "POST", "/api/v1/payouts", json.dumps(json.loads(VEC_BODY)).encode(), VEC_TS,
     InvalidSignatureError),
    ("path changed", signed(), "POST", "/api/v1/payins", VEC_BODY, VEC_TS, InvalidSignatureError),
    ("query added", signed(), "POST", "/api/v1/payouts?shop_code=x", VEC_BODY, VEC_TS, InvalidSignatureError),
    ("query changed", signed("GET", "/api/v1/payouts/ord%201?shop_code=main", b""), "GET",
     "/api/v1/payouts/ord%201?shop_code=other", b"", VEC_TS, InvalidSignatureError),
    ("method changed", signed(), "PUT", "/api/v1/payouts", VEC_BODY, VEC_TS, InvalidSignatureError),
    ("no key", {"X-Timestamp": str(VEC_TS), "X-Signature": VEC_POST}, "POST", "/api/v1/payouts", VEC_BODY, VEC_TS,
     MissingApiKeyError),
    ("empty key", {**signed(), "X-API-Key": " "}, "POST", "/api/v1/payouts", VEC_BODY, VEC_TS, MissingApiKeyError),
    ("no timestamp", {"X-API-Key": "k-1", "X-Signature": VEC_POST}, "POST", "/api/v1/payouts", VEC_BODY, VEC_TS,
     MissingTimestampError),
    ("no signature", {"X-API-Key": "k-1", "X-Timestamp": str(VEC_TS)}, "POST", "/api/v1/payouts", VEC_BODY, VEC_TS,
     InvalidSignatureError),
])
def test_verify_refuses(case, headers, method, target, body, now, cls):
    with pytest.raises(cls) as ei:
        verify(VEC_SECRET, headers, method, target, body, now=now, api_key="k-1")
    err = ei.value
    assert type(err) is cls and isinstance(err, SignatureError) and isinstance(err, AuthError)
    assert err.http_status == 401 and err.code == "unauthorized" and err.message == cls.default_message
    assert err.body() == {"message": err.message, "code": "unauthorized",
                          "error": {"code": "unauthorized", "message": err.message}}
    text = str(err) + repr(err) + json.dumps(err.body())
    assert VEC_SECRET not in text and VEC_POST not in text


@pytest.mark.parametrize("bad", ["abc", "1717000200.5", "-1717000200", "2024-05-29T16:30:00Z", " 1717000200", "1e9",
                                 "１７１７０００２００"])
def test_verify_refuses_bad_timestamp_formats(bad):
    h = {"X-API-Key": "k-1", "X-Timestamp": bad, "X-Signature": sign(VEC_SECRET, bad, "POST", "/p", b"")}
    with pytest.raises(InvalidTimestampError, match="Invalid timestamp format"):
        verify(VEC_SECRET, h, "POST", "/p", b"", now=VEC_TS)


def test_timestamp_window_error_says_check_the_clock():
    with pytest.raises(TimestampWindowError) as ei:
        verify(VEC_SECRET, signed(), "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS + 3600)
    e = ei.value
    assert e.message == "Timestamp window exceeded" and e.skew == 3600 and e.window == 300
    assert "check the clock" in str(e) and "3600 s behind" in str(e)
    with pytest.raises(TimestampWindowError):  # a custom window
        verify(VEC_SECRET, signed(), "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS + 61, window=60)


def test_replay_refused_within_the_window_and_only_valid_signatures_remembered():
    cache = ReplayCache()
    bad = {**signed(), "X-Signature": "0" * 64}
    with pytest.raises(InvalidSignatureError):
        verify(VEC_SECRET, bad, "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS, seen=cache)
    assert len(cache) == 0
    verify(VEC_SECRET, signed(), "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS, seen=cache)
    with pytest.raises(ReplayError) as ei:
        verify(VEC_SECRET, signed(), "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS + 200, seen=cache)
    assert ei.value.message == "Replay" and ei.value.http_status == 401
    upper = {**signed(), "X-Signature": VEC_POST.upper()}  # the same signature in other letters
    with pytest.raises(ReplayError):
        verify(VEC_SECRET, upper, "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS + 1, seen=cache)
    # another second (a legitimate re-send) is a different signature
    verify(VEC_SECRET, signed(ts=VEC_TS + 1), "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS + 1, seen=cache)
    # entries expire with their window
    assert cache.add("x", expires_at=VEC_TS + 10, now=VEC_TS) and not cache.add("x", VEC_TS + 10, now=VEC_TS + 5)
    assert cache.add("x", VEC_TS + 400, now=VEC_TS + 11)
    small = ReplayCache(max_entries=3)
    for i in range(10):
        assert small.add(f"s{i}", VEC_TS + 100 + i, now=VEC_TS)
    assert len(small) == 3


def test_replay_cache_is_atomic_under_threads():
    cache = ReplayCache()
    wins = []

    def go():
        try:
            verify(VEC_SECRET, signed(), "POST", "/api/v1/payouts", VEC_BODY, now=VEC_TS, seen=cache)
            wins.append(1)
        except ReplayError:
            pass

    with ThreadPoolExecutor(16) as pool:
        for _ in range(64):
            pool.submit(go)
    assert wins == [1]


def test_path_with_query_from_environ():
    raw = "/api/v1/payouts/a%2Fb?x=1&y=%20"
    assert path_with_query_from_environ({"RAW_URI": raw}) == raw
    assert path_with_query_from_environ({"REQUEST_URI": "http://h:1/cb?t=1"}) == "/cb?t=1"
    assert path_with_query_from_environ({"PATH_INFO": "/hooks/gw ü".encode().decode("latin-1"),
                                         "QUERY_STRING": "a=1"}) == "/hooks/gw%20%C3%BC?a=1"
    assert path_with_query_from_environ({"SCRIPT_NAME": "/app", "PATH_INFO": "/cb"}) == "/app/cb"


def test_parse_callback_rejects_non_json_and_parses_payins():
    body = b"not json"
    h = signed("POST", "/cb", body)
    with pytest.raises(CallbackError):
        parse_callback(h, "POST", "/cb", body, secret=VEC_SECRET, now=VEC_TS)
    body = b'{"external_id": "in-1", "status": "success", "amount": "5.00", "currency": "RUB"}'
    h = signed("POST", "/cb", body)
    p = parse_payin_callback(h, "POST", "/cb", body, secret=VEC_SECRET, now=VEC_TS, replay_cache=ReplayCache())
    assert isinstance(p, PayIn) and p.amount == Decimal("5.00")
    with pytest.raises(InvalidSignatureError):  # the receiver's path is part of the signature
        parse_callback(h, "POST", "/other", body, secret=VEC_SECRET, now=VEC_TS)
