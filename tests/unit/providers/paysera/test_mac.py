"""Paysera MAC signing (pure): the published examples, then the variants, verification and replays."""
from __future__ import annotations

import base64
import time

import pytest
from freezegun import freeze_time

from providers.paysera import (
    mac,
)

# Paysera's published example credentials (docs and seed 004).
EX_ID, EX_KEY = "wkVd93h2uS", "IrdTc8uQodU7PRpLzzLTW6wqZAO6tAMU"
EX_TS, EX_NONCE = 1343811600, "nQnNaSNyubfPErjRO55yaaEYo9YZfKHN"


def test_published_mac_example():
    header = mac.sign("GET", "https://wallet.paysera.com/rest/v1/payment/10145", None, EX_ID, EX_KEY,
                      ts=EX_TS, nonce=EX_NONCE)
    assert header == ('MAC id="wkVd93h2uS", ts="1343811600", nonce="nQnNaSNyubfPErjRO55yaaEYo9YZfKHN", '
                      'mac="/qxTA8FOgT0Dd0MHh9k/sUQ3Q38ckx8+S0PBxpIuttY="')  # empty ext: no ext attribute
    normalized = mac.normalized_string(EX_TS, EX_NONCE, "GET", "/rest/v1/payment/10145", "wallet.paysera.com", 443, "")
    assert normalized == ("1343811600\nnQnNaSNyubfPErjRO55yaaEYo9YZfKHN\nGET\n/rest/v1/payment/10145\n"
                          "wallet.paysera.com\n443\n\n")
    assert mac.calculate_mac(EX_KEY, normalized) == "/qxTA8FOgT0Dd0MHh9k/sUQ3Q38ckx8+S0PBxpIuttY="


@pytest.mark.parametrize("path,params,expected", [
    ("/rest/v1/wallet/14471/balance", {"project_id": 3}, "EOhN6gBf49tR2KxMflaaiN7bBVGDhfG6co8gcSBLyiQ="),
    ("/rest/v1/server", None, "0SiVJuv1zLJzQaw3dtKkZ4++CUs9CwCHI54s/rAsSnQ="),
    ("/rest/v1/configuration", None, "gBv9XvvX/yhgpuwH7ooOmv1S5Un9G/QbJ/eetFbuGzc="),
])
def test_seed_mac_examples_including_project_id_in_ext(path, params, expected):
    header = mac.sign("GET", "https://wallet.paysera.com" + path, b"", EX_ID, EX_KEY, ts=EX_TS, nonce=EX_NONCE,
                      ext_params=params)
    h = mac.parse_header(header)
    assert h.mac == expected
    assert h.ext == ("project_id=3" if params else "") and ('ext="project_id=3"' in header) == bool(params)


def test_mac_body_hash_and_extra_parameters_in_ext():
    body = b'{"amount":{"amount":"100.00","currency":"EUR"}}'
    import hashlib
    want = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert mac.body_hash(body) == want
    ext = mac.build_ext(body, {"project_id": 3, "location_id": None})
    assert ext == "body_hash=" + want.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D") + "&project_id=3"
    assert mac.build_ext(b"", None) == "" and mac.build_ext(None, {"project_id": 3}) == "project_id=3"
    h = mac.parse_header(mac.sign("POST", "https://wallet.paysera.com/transfer/rest/v1/transfers", body, EX_ID,
                                  EX_KEY, ts=EX_TS, nonce=EX_NONCE, ext_params={"project_id": 3}))
    assert h.ext_params == {"body_hash": want, "project_id": "3"}
    normalized = mac.normalized_string(EX_TS, EX_NONCE, "POST", "/transfer/rest/v1/transfers", "wallet.paysera.com",
                                       443, ext)
    assert h.mac == mac.calculate_mac(EX_KEY, normalized)


def test_mac_query_string_is_part_of_the_uri():
    base = "https://wallet.paysera.com/transfer/rest/v1/transfers"
    with_q = mac.parse_header(mac.sign("GET", base + "?limit=5&statuses=new%2Cdone", None, EX_ID, EX_KEY,
                                       ts=EX_TS, nonce=EX_NONCE))
    without = mac.parse_header(mac.sign("GET", base, None, EX_ID, EX_KEY, ts=EX_TS, nonce=EX_NONCE))
    uri = "/transfer/rest/v1/transfers?limit=5&statuses=new%2Cdone"
    assert mac.request_uri(base + "?limit=5&statuses=new%2Cdone") == uri
    assert with_q.mac == mac.calculate_mac(EX_KEY, mac.normalized_string(EX_TS, EX_NONCE, "GET", uri,
                                                                         "wallet.paysera.com", 443, ""))
    assert with_q.mac != without.mac


def test_mac_default_ports_and_host_case():
    def m(url):
        return mac.parse_header(mac.sign("GET", url, None, EX_ID, EX_KEY, ts=EX_TS, nonce=EX_NONCE)).mac

    assert m("https://Wallet.Paysera.COM/rest/v1/payment/10145") == "/qxTA8FOgT0Dd0MHh9k/sUQ3Q38ckx8+S0PBxpIuttY="
    assert m("https://wallet.paysera.com:443/rest/v1/payment/10145") == "/qxTA8FOgT0Dd0MHh9k/sUQ3Q38ckx8+S0PBxpIuttY="
    assert m("http://wallet.paysera.com/x") == m("http://wallet.paysera.com:80/x") != m("https://wallet.paysera.com/x")
    assert m("https://wallet.paysera.com:8443/x") != m("https://wallet.paysera.com/x")
    assert mac.split_host_port("[::1]:8080", "http") == ("[::1]", 8080)
    assert mac.split_host_port("user:pw@Example.org", "https") == ("example.org", 443)


def test_nonce_alphabet_and_header_parsing_with_awkward_characters():
    n = mac.make_nonce()
    assert len(n) == 32 and all(0x20 <= ord(ch) <= 0x7E and ch not in '"\\' for ch in n)
    assert len(mac.NONCE_ALPHABET) == 93
    tricky = 'a, b="c" =d'.replace('"', "'")
    header = mac.sign("GET", "https://h.example/x", b"{}", "id1", "k", ts=1, nonce=tricky, ext_params={"project_id": 9})
    h = mac.parse_header(header)
    assert (h.id, h.ts, h.nonce) == ("id1", "1", tricky) and h.ext_params["project_id"] == "9"
    for bad in (None, "", "Bearer abc", 'MAC id="x", ts="1"', 'MAC id="x", ts="soon", nonce="n", mac="m"',
                'MAC id="x" ts="1" nonce="n" mac="m" junk'):
        with pytest.raises(mac.MacError):
            mac.parse_header(bad)


def test_verify_window_and_nonce_replay_with_frozen_time():
    nonces = mac.NonceCache()
    url, uri = "https://wallet.paysera.com/rest/v1/server", "/rest/v1/server"

    def check(header):
        return mac.verify(header, method="GET", uri=uri, host="wallet.paysera.com", port=443, body=b"",
                          key_for={EX_ID: EX_KEY}.get, window=300, nonces=nonces)

    with freeze_time("2026-01-01 12:00:00") as clock:
        now = int(time.time())
        header = mac.sign("GET", url, None, EX_ID, EX_KEY, ts=now, nonce="fixed-nonce")
        assert check(header).nonce == "fixed-nonce"
        with pytest.raises(mac.MacError) as ei:
            check(header)
        assert ei.value.reason == "replayed_nonce"
        for skew in (-301, 301):
            with pytest.raises(mac.MacError) as ei:
                check(mac.sign("GET", url, None, EX_ID, EX_KEY, ts=now + skew))
            assert ei.value.reason == "stale_ts" and "timestamp" in ei.value.message
        check(mac.sign("GET", url, None, EX_ID, EX_KEY, ts=now - 299))
        clock.tick(700)  # the old nonce can no longer pass the ts check: it may be used again
        assert check(mac.sign("GET", url, None, EX_ID, EX_KEY, ts=int(time.time()), nonce="fixed-nonce"))
        with pytest.raises(mac.MacError) as ei:
            check(mac.sign("GET", url, None, EX_ID, "wrong-key", ts=int(time.time())))
        assert ei.value.reason == "bad_mac" and "wrong-key" not in str(ei.value) and EX_KEY not in str(ei.value)
        with pytest.raises(mac.MacError) as ei:
            check(mac.sign("GET", url, None, "someone", EX_KEY, ts=int(time.time())))
        assert ei.value.reason == "unknown_id"
