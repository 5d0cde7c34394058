"""Paysera: MAC authentication (published examples first), recorded answers fed to the pure parsers and the
error map, then the client, the payout rail and the callbacks over real HTTP against the Paysera sandbox
(providers.paysera.sandbox). Time by freezegun where it matters; no timing asserts."""
from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
import time
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from freezegun import freeze_time

from providers import (
    AuthError,
    InsufficientFundsError,
    NotFoundError,
    PermanentError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.payouts import FAILED, PENDING, SUCCEEDED, PayoutRequest
from providers.paysera import (
    CallbackSignatureError,
    CallbackVerifier,
    Configuration,
    InvalidStateError,
    PayseraClient,
    PayseraRail,
    Transfer,
    TransferPage,
    WalletBalance,
    error_for,
    is_clock_rejection,
    mac,
    verify_callback,
)
from providers.paysera.payout import key_token
from providers.paysera.sandbox import (
    DEFAULT_ACCOUNT,
    DEFAULT_MAC_ID,
    DEFAULT_MAC_KEY,
    DEFAULT_WALLET_ID,
    create_app,
    describe,
    serve,
)
from tests.support.recorded import answer

# Paysera's published example credentials (docs and seed 004).
EX_ID, EX_KEY = "wkVd93h2uS", "IrdTc8uQodU7PRpLzzLTW6wqZAO6tAMU"
EX_TS, EX_NONCE = 1343811600, "nQnNaSNyubfPErjRO55yaaEYo9YZfKHN"

PAYSERA_BENEFICIARY = {"type": "paysera", "name": "Jane Doe", "paysera_account": {"account_number": "EVP2110003012345"}}


def recorded(name: str):
    """The body of a recorded answer."""
    return answer("paysera", name).body


# =====================================================================================================
# 1. MAC: the published examples, then the variants
# =====================================================================================================

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


# =====================================================================================================
# 2. Recorded answers → parsing and the error map
# =====================================================================================================

ERROR_CASES = [
    ("error__400_invalid_request.json", ValidationError, False),
    ("error__400_invalid_parameters.json", ValidationError, False),
    ("error__409_invalid_state.json", InvalidStateError, False),
    ("error__401_unauthorized.json", AuthError, False),
    ("error__401_unauthorized_ts.json", AuthError, False),
    ("error__403_forbidden.json", AuthError, False),
    ("error__404_not_found.json", NotFoundError, False),
    ("error__406_not_acceptable.json", PermanentError, False),
    ("error__500_internal_server_error.json", RetryableError, True),
    ("error__400_not_enough_funds.json", InsufficientFundsError, False),
    ("error__409_insufficient_funds.json", InsufficientFundsError, False),
    ("error__422_transfer_limit_exceeded.json", ValidationError, False),  # unknown code: by status
    ("error__429_rate_limited.json", RetryableError, True),
    ("error__418_unknown.json", PermanentError, False),
    ("error__503_maintenance.json", RetryableError, True),
]


@pytest.mark.parametrize("name,cls,retryable", ERROR_CASES)
def test_error_mapping(name, cls, retryable):
    status = answer("paysera", name).status
    body = recorded(name)
    err = error_for(status, body)
    assert type(err) is cls and err.retryable is retryable
    assert (err.provider, err.code, err.http_status) == ("paysera", body["error"], status)
    assert err.message == body.get("error_description", f"error {body['error']}")


def test_error_details_and_money_moving_calls():
    inv = error_for(400, recorded("error__400_invalid_parameters.json"))
    assert inv.fields == {"amount.amount": "must be a decimal string with at most 2 decimals",
                          "beneficiary.name": "is required for a bank transfer"}
    st = error_for(409, recorded("error__409_invalid_state.json"))
    assert isinstance(st, PermanentError) and st.raw_body["error_uri"].startswith("https://")
    # create/sign: a 5xx may come after Paysera acted, 503 included (providers.http.SEMANTICS)
    err500 = error_for(500, recorded("error__500_internal_server_error.json"), call="sign_transfer")
    assert type(err500) is UnknownOutcomeError and err500.call == "sign_transfer"
    assert type(error_for(502, None, idempotent=False)) is UnknownOutcomeError
    assert type(error_for(503, recorded("error__503_maintenance.json"), idempotent=False)) is UnknownOutcomeError
    assert type(error_for(503, recorded("error__503_maintenance.json"), call="get_transfer")) is RetryableError
    assert type(error_for(502, "<html>bad gateway</html>")) is RetryableError
    assert error_for(429, {"error": "x"}, headers={"Retry-After": "7"}).retry_after == 7.0
    assert is_clock_rejection(error_for(401, recorded("error__401_unauthorized_ts.json")))
    assert not is_clock_rejection(error_for(401, recorded("error__401_unauthorized.json")))
    assert issubclass(InvalidStateError, PermanentError)


def test_parse_recorded_results():
    t = Transfer.from_raw(recorded("transfer__done.json"))
    assert (t.id, t.status, t.amount.amount, t.amount.currency) == ("1002437", "done", Decimal("100.00"), "EUR")
    assert t.out_commission.amount == Decimal("0.10") and t.performed_at.tzinfo is not None
    assert t.details.endswith(key_token("bid-1350-payout")) and t.is_final and not t.is_draft
    assert t.raw["field_not_in_docs"] == {"kept": True}
    n = Transfer.from_raw(recorded("transfer__new_minimal.json"))  # optional fields absent
    assert n.is_draft and n.payer == {} and n.purpose == {} and n.callback is None and n.performed_at is None
    assert n.failure_status is None and n.amount.currency == "EUR" and n.details is None
    f = Transfer.from_raw(recorded("transfer__failed.json"))
    assert f.failure_status.code == "beneficiary_bank_rejected" and f.amount.amount == Decimal("12.5")
    page = TransferPage.from_raw(recorded("transfers__page.json"))
    assert [x.id for x in page] == ["1002439", "1002438"] and page.total == 5 and page.has_next
    b = WalletBalance.from_raw(14471, recorded("wallet_balance.json"))
    assert b["EUR"].at_disposal == Decimal("12345.67") and b["eur"].reserved == Decimal("10.00")
    assert b.at_disposal("USD") == Decimal("0.50") and b.at_disposal("GBP") == 0  # cents when no decimal given
    assert Configuration.from_raw(recorded("configuration.json")).minimum_password_length == 8


# =====================================================================================================
# 3. Over real HTTP against the sandbox
# =====================================================================================================

@pytest.fixture
def sandbox():
    made = []

    def make(client_kw=None, **kw):
        app = create_app(**kw)
        srv = serve(app)
        client = PayseraClient(srv.url, DEFAULT_MAC_ID, DEFAULT_MAC_KEY, **(client_kw or {}))
        made.append((app, srv, client))
        return app, srv, client

    yield make
    for app, srv, client in made:
        client.close()
        srv.shutdown()
        app.engine.close()


def raw_call(srv, method, path, *, body=None, key=DEFAULT_MAC_KEY, ts=None, nonce=None, signed_path=None,
             signed_body=None, header=None):
    """One request signed by hand (to tamper with what is sent versus what was signed)."""
    if header is None:
        header = mac.sign(method, srv.url + (signed_path or path), signed_body if signed_body is not None else body,
                          DEFAULT_MAC_ID, key, ts=int(time.time()) if ts is None else ts, nonce=nonce)
    r = requests.request(method, srv.url + path, data=body, headers={"Authorization": header,
                                                                      "Content-Type": "application/json"}, timeout=5)
    return r, header


def test_sandbox_refuses_tampered_requests(sandbox):
    app, srv, _ = sandbox()
    body = json.dumps({"amount": {"amount": "1.00", "currency": "EUR"}, "beneficiary": PAYSERA_BENEFICIARY}).encode()
    ok, header = raw_call(srv, "GET", "/transfer/rest/v1/transfers?limit=5")
    assert ok.status_code == 200 and "items" in ok.json()
    cases = {
        "wrong key": raw_call(srv, "GET", "/rest/v1/wallet/14471/balance", key="not-the-key")[0],
        "stale ts": raw_call(srv, "GET", "/rest/v1/wallet/14471/balance", ts=int(time.time()) - 1000)[0],
        "replayed nonce": raw_call(srv, "GET", "/transfer/rest/v1/transfers?limit=5", header=header)[0],
        "changed body": raw_call(srv, "POST", "/transfer/rest/v1/transfers", body=body.replace(b"1.00", b"9.00"),
                                 signed_body=body)[0],
        "changed query": raw_call(srv, "GET", "/transfer/rest/v1/transfers?limit=6",
                                  signed_path="/transfer/rest/v1/transfers?limit=5")[0],
        "query left out of the MAC": raw_call(srv, "GET", "/transfer/rest/v1/transfers?limit=6",
                                              signed_path="/transfer/rest/v1/transfers")[0],
        "no header": requests.get(srv.url + "/rest/v1/wallet/14471/balance", timeout=5),
    }
    for what, r in cases.items():
        assert r.status_code == 401, what
        assert r.json()["error"] == "unauthorized", what
    reasons = [e["refused"] for e in app.engine.requests_log if e["refused"]]
    assert reasons == ["bad_mac", "stale_ts", "replayed_nonce", "body_hash", "bad_mac", "bad_mac", "missing"]
    assert "timestamp" in cases["stale ts"].json()["error_description"]
    assert app.engine.transfers == {}  # the tampered create did nothing
    good, _ = raw_call(srv, "POST", "/transfer/rest/v1/transfers", body=body)
    assert good.status_code == 200 and good.json()["status"] == "new"


def test_clock_offset_learned_from_a_skewed_server(sandbox):
    app, srv, c = sandbox(clock_skew=600)
    refused, _ = raw_call(srv, "GET", f"/rest/v1/wallet/{DEFAULT_WALLET_ID}/balance")  # our local ts
    assert refused.status_code == 401
    assert c.clock_offset is None
    assert c.wallet_balance(DEFAULT_WALLET_ID).at_disposal("EUR") == Decimal("100000.00")
    assert 598 <= c.clock_offset <= 602  # learned lazily before the first signed call
    # The server's clock jumps: the next call is refused for its ts, the client re-syncs and retries once.
    app.engine.knobs.clock_skew = -900
    t = c.create_transfer("1.00", "EUR", PAYSERA_BENEFICIARY)
    assert t.status == "new" and -902 <= c.clock_offset <= -898
    assert [e["refused"] for e in app.engine.requests_log if e["refused"]] == ["stale_ts", "stale_ts"]
    assert len(app.engine.transfers) == 1  # the refused create did nothing; the retry created one


def test_wrong_key_is_auth_error_without_endless_retries(sandbox):
    app, srv, _ = sandbox()
    bad = PayseraClient(srv.url, DEFAULT_MAC_ID, "wrong-key-wrong-key")
    with pytest.raises(AuthError) as ei:
        bad.get_transfer("1")
    assert ei.value.code == "unauthorized" and ei.value.http_status == 401
    assert [e["refused"] for e in app.engine.requests_log if e["refused"]] == ["bad_mac"]  # no retry: clock was fine
    bad.close()


def test_every_call_over_http(sandbox):
    app, srv, c = sandbox(client_kw={"project_id": 3, "location_id": 7})
    assert abs(c.server_time() - time.time()) < 5
    assert c.configuration().minimum_password_length == 8
    bal = c.wallet_balance(DEFAULT_WALLET_ID)
    assert isinstance(bal, WalletBalance) and bal["USD"].at_disposal == Decimal("50000.00")
    with pytest.raises(NotFoundError):
        c.wallet_balance(999)

    t = c.create_transfer(Decimal("25.5"), "eur", PAYSERA_BENEFICIARY, payer=DEFAULT_ACCOUNT, purpose="order 1",
                          callback="http://127.0.0.1:9/cb", urgency="standard")
    assert (t.status, t.amount.amount, t.amount.currency) == ("new", Decimal("25.50"), "EUR")
    assert t.payer == {"account_number": DEFAULT_ACCOUNT} and t.details == "order 1" and t.raw["urgency"] == "standard"
    assert t.callback == {"url": "http://127.0.0.1:9/cb"}
    assert c.register_transfer(t.id).status == "registered"
    r = c.reserve_transfer(t.id)
    assert r.status == "reserved" and c.wallet_balance(DEFAULT_WALLET_ID)["EUR"].reserved == Decimal("25.50")
    assert c.sign_transfer(t.id).status == "processing"
    assert app.engine.executed(t.id) == 1
    with pytest.raises(InvalidStateError):
        c.sign_transfer(t.id)
    with pytest.raises(InvalidStateError):
        c.reject_transfer(t.id)

    u = c.create_transfer("3", "EUR", PAYSERA_BENEFICIARY)
    assert c.reject_transfer(u.id).status == "rejected" and c.reject_transfer(u.id).status == "rejected"
    assert c.get_transfer(u.id).status == "rejected" and app.engine.executed(u.id) == 0
    with pytest.raises(NotFoundError):
        c.get_transfer("does-not-exist")

    page = c.list_transfers(statuses=["rejected", "new"], limit=10)
    assert isinstance(page, TransferPage) and [x.id for x in page] == [u.id] and page.total == 1
    everything = c.list_transfers(debit_account_number=DEFAULT_ACCOUNT, created_date_from=int(time.time()) - 60)
    assert {x.id for x in everything} == {t.id, u.id}
    for _ in range(5):
        c.create_transfer("1.00", "EUR", PAYSERA_BENEFICIARY)
    assert len(list(c.iter_transfers(page_size=2))) == 7
    raw = c.request("GET", "/transfer/rest/v1/transfers", params={"statuses": "new", "limit": 3})
    assert len(raw["items"]) == 3 and raw["_metadata"]["total"] == 5
    assert c.request("GET", "/rest/v1/server", auth=False)["time"] > 0
    # project_id and location_id travelled in ext of every signed call
    signed = [e for e in app.engine.requests_log if e.get("mac_id")]
    assert signed and all(e["ext"] == {"project_id": "3", "location_id": "7"} for e in signed)


def test_validation_errors_and_float_refusal(sandbox):
    app, srv, c = sandbox()
    with pytest.raises(ValidationError) as ei:
        c.create_transfer("1.001", "EUR", {"type": "bank", "bank_account": {"iban": "nope"}})
    assert ei.value.code == "invalid_parameters"
    assert set(ei.value.fields) == {"amount.amount", "beneficiary.bank_account.iban", "beneficiary.name"}
    with pytest.raises(ValidationError):
        c.create_transfer("1.00", "EUR", PAYSERA_BENEFICIARY, payer="EVP-not-ours")
    with pytest.raises(TypeError):
        c.create_transfer(1.5, "EUR", PAYSERA_BENEFICIARY)
    with pytest.raises(ValidationError) as ei:
        c.request("POST", "/transfer/rest/v1/transfers", json=[1, 2])
    assert ei.value.code == "invalid_request"
    assert app.engine.transfers == {}


def test_faults_500_before_commit_and_unknown_outcome(sandbox):
    app, srv, c = sandbox(seed=1)
    t = c.create_transfer("5.00", "EUR", PAYSERA_BENEFICIARY)
    app.engine.knobs.error_rate = 1.0
    with pytest.raises(RetryableError) as ei:
        c.get_transfer(t.id)
    assert ei.value.code == "internal_server_error" and type(ei.value) is RetryableError
    with pytest.raises(UnknownOutcomeError):  # a create: may have happened (here it did not)
        c.create_transfer("5.00", "EUR", PAYSERA_BENEFICIARY)
    with pytest.raises(UnknownOutcomeError):
        c.sign_transfer(t.id)
    app.engine.knobs.error_rate = 0.0
    assert len(app.engine.transfers) == 1 and app.engine.executed(t.id) == 0
    app.engine.knobs.update(fail_after_commit_rate=1.0, fault_match=r"/sign$")
    with pytest.raises(UnknownOutcomeError):
        c.sign_transfer(t.id)
    assert app.engine.executed(t.id) == 1  # the change happened, only the answer was lost
    assert c.get_transfer(t.id).status in ("processing", "done")  # GETs are not affected by that knob


# ---- the payout rail -----------------------------------------------------------------------------

class Store:
    """The payout engine's id column, with a record of when each store happened."""

    def __init__(self, engine=None):
        self.ids: dict[str, str] = {}
        self.calls: list[tuple[str, str, str | None, int | None]] = []
        self.engine = engine
        self.fail = False

    def store(self, key, transfer_id):
        if self.fail:
            raise OSError("database is down")
        seen = self.engine.transfer(transfer_id) if self.engine else None
        self.calls.append((key, transfer_id, seen and seen["status"], seen and seen["executed"]))
        self.ids[key] = transfer_id

    def load(self, key):
        return self.ids.get(key)


def rail_for(app, c, **kw):
    store = Store(app.engine)
    return PayseraRail(c, payer_account=DEFAULT_ACCOUNT, store_id=store.store, load_id=store.load, **kw), store


def payout(key, amount="40.00", **extra):
    return PayoutRequest(key=key, amount=Decimal(amount), currency="EUR", destination="EVP2110003012345",
                         description=f"bid {key}", extra=extra)


def transfers_with_key(app, key):
    return [t for t in list(app.engine.transfers.values()) + list(app.engine.deleted.values())
            if key_token(key) in ((t.purpose or {}).get("details") or "")]


def test_payout_sequence_create_store_then_sign(sandbox):
    app, srv, c = sandbox()
    rail, store = rail_for(app, c)
    res = rail.send(payout("p-1", beneficiary_name="Jane Doe"))
    assert res.state in (PENDING, SUCCEEDED) and res.code in ("processing", "done")
    # the id was stored while the transfer was still an unsigned draft that had moved no money
    assert store.calls == [("p-1", res.provider_ref, "new", 0)]
    assert app.engine.executed(res.provider_ref) == 1 and app.engine.paid_total("EUR") == Decimal("40.00")
    t = c.get_transfer(res.provider_ref)
    assert t.details == "bid p-1 " + key_token("p-1") and t.beneficiary["name"] == "Jane Doe"
    assert app.engine.flush_callbacks() is True
    app.engine.advance()
    assert rail.find("p-1").state == SUCCEEDED
    again = rail.send(payout("p-1"))  # same key: no second transfer
    assert again.state == SUCCEEDED and again.provider_ref == res.provider_ref
    assert len(transfers_with_key(app, "p-1")) == 1 and app.engine.paid_total("EUR") == Decimal("40.00")
    with pytest.raises(PermanentError) as ei:  # the key replayed with another amount: refused, nothing sent
        rail.send(payout("p-1", amount="41.00"))
    assert ei.value.code == "idempotency_key_reused" and len(transfers_with_key(app, "p-1")) == 1
    assert rail.find("never-sent") is None


def test_lost_create_answer_leaves_a_draft_that_find_locates(sandbox):
    app, srv, c = sandbox()
    rail, store = rail_for(app, c)
    app.engine.knobs.update(fail_after_commit_rate=1.0, fault_match=r"^POST ")
    with pytest.raises(UnknownOutcomeError):
        rail.send(payout("p-2"))
    app.engine.knobs.fail_after_commit_rate = 0.0
    assert store.ids == {}  # the id never reached us
    [draft] = transfers_with_key(app, "p-2")
    assert draft.status == "new" and app.engine.executed(draft.id) == 0 and app.engine.paid_total() == 0
    found = rail.find("p-2")
    assert (found.state, found.code, found.provider_ref) == (PENDING, "new", draft.id)
    assert "nothing was paid" in found.message and store.ids == {"p-2": draft.id}  # found by key, now stored
    res = rail.send(payout("p-2"))  # signs that draft rather than creating another
    assert res.provider_ref == draft.id and res.state in (PENDING, SUCCEEDED)
    assert len(transfers_with_key(app, "p-2")) == 1 and app.engine.executed(draft.id) == 1


def test_lost_sign_answer_then_find_shows_one_execution(sandbox):
    app, srv, c = sandbox()
    rail, store = rail_for(app, c)
    app.engine.knobs.update(fail_after_commit_rate=1.0, fault_match=r"/sign$")
    with pytest.raises(UnknownOutcomeError):
        rail.send(payout("p-3"))
    app.engine.knobs.fail_after_commit_rate = 0.0
    tid = store.ids["p-3"]
    found = rail.find("p-3")
    assert found.state in (PENDING, SUCCEEDED) and found.code in ("processing", "done")
    again = rail.send(payout("p-3"))  # nothing is signed twice
    assert again.provider_ref == tid and app.engine.executed(tid) == 1
    assert app.engine.paid_total("EUR") == Decimal("40.00") and len(transfers_with_key(app, "p-3")) == 1


def test_sign_read_timeout_is_unknown_outcome_and_find_resolves_it(sandbox):
    app, srv, c = sandbox(client_kw={"timeout": 0.3})
    rail, store = rail_for(app, c)
    app.engine.knobs.update(hang_seconds=1.0, fault_match=r"/sign$")
    with pytest.raises(UnknownOutcomeError) as ei:
        rail.send(payout("p-4"))
    assert ei.value.code == "read_timeout"
    app.engine.knobs.hang_seconds = 0.0
    assert rail.find("p-4").state in (PENDING, SUCCEEDED)
    assert app.engine.executed(store.ids["p-4"]) == 1


def test_insufficient_funds_then_top_up(sandbox):
    app, srv, c = sandbox(wallets={DEFAULT_WALLET_ID: {"account_number": DEFAULT_ACCOUNT, "balance": {"EUR": "5.00"}}})
    rail, store = rail_for(app, c)
    with pytest.raises(InsufficientFundsError) as ei:
        rail.send(payout("p-5", amount="10.00"))
    assert ei.value.code == "not_enough_funds" and not ei.value.retryable
    tid = store.ids["p-5"]
    assert app.engine.executed(tid) == 0 and app.engine.balance(DEFAULT_WALLET_ID, "EUR") == Decimal("5.00")
    assert rail.find("p-5").code == "new"  # a draft: nothing paid
    app.engine.set_balance(DEFAULT_WALLET_ID, "EUR", "100.00")
    res = rail.send(payout("p-5", amount="10.00"))
    assert res.provider_ref == tid and app.engine.executed(tid) == 1
    assert app.engine.balance(DEFAULT_WALLET_ID, "EUR") == Decimal("90.00")


def test_failed_transfer_is_failed_and_refunded(sandbox):
    app, srv, c = sandbox(processing_delay=3600)
    rail, store = rail_for(app, c)
    res = rail.send(payout("p-6"))
    assert res.state == PENDING and res.code == "processing"
    app.engine.set_status(res.provider_ref, "failed", failure_code="account_closed", failure_message="closed")
    f = rail.find("p-6")
    assert (f.state, f.code, f.message) == (FAILED, "account_closed", "closed")
    assert app.engine.paid_total("EUR") == 0 and app.engine.executed(res.provider_ref) == 1
    assert rail.send(payout("p-6")).state == FAILED  # never a new transfer under the same key
    assert len(transfers_with_key(app, "p-6")) == 1


def test_store_failure_never_signs(sandbox):
    app, srv, c = sandbox()
    rail, store = rail_for(app, c)
    store.fail = True
    with pytest.raises(RetryableError) as ei:
        rail.send(payout("p-7"))
    assert ei.value.code == "store_id_failed"
    [draft] = transfers_with_key(app, "p-7")
    assert draft.status == "new" and app.engine.paid_total() == 0


def test_unsigned_draft_expires_and_find_reports_unknown(sandbox):
    with freeze_time("2026-03-01 10:00:00") as clock:
        app, srv, c = sandbox(draft_ttl=600)
        rail, store = rail_for(app, c)
        app.engine.knobs.update(error_rate=1.0, fault_match=r"/sign$")  # the sign never happens
        with pytest.raises(UnknownOutcomeError):
            rail.send(payout("p-8"))
        app.engine.knobs.error_rate = 0.0
        tid = store.ids["p-8"]
        assert abs(c.clock_offset) < 2  # the client's default clock follows freezegun too
        assert rail.find("p-8").code == "new"
        clock.tick(601)
        with pytest.raises(NotFoundError):
            c.get_transfer(tid)
        assert app.engine.transfer(tid)["deleted"] is True
        assert rail.find("p-8") is None  # Paysera deletes only unsigned drafts: nothing was paid
        res = rail.send(payout("p-8"))  # so a new send is safe: a fresh transfer
        assert res.provider_ref != tid and app.engine.executed(res.provider_ref) == 1
        assert app.engine.paid_total("EUR") == Decimal("40.00")


def test_rail_in_memory_store_and_bank_beneficiary(sandbox):
    app, srv, c = sandbox()
    rail = PayseraRail(c, beneficiary_type="bank")
    req = PayoutRequest(key="b-1", amount=Decimal("7.00"), currency="EUR", destination="LT12 1000 0111 0100 1000",
                        extra={"beneficiary_name": "ACME UAB"})
    res = rail.send(req)
    t = c.get_transfer(res.provider_ref)
    assert t.beneficiary == {"type": "bank", "bank_account": {"iban": "LT121000011101001000"}, "name": "ACME UAB"}
    assert rail.find("b-1").provider_ref == res.provider_ref
    with pytest.raises(ValidationError):  # a bank transfer needs the beneficiary's name
        rail.send(PayoutRequest(key="b-2", amount=Decimal("7.00"), currency="EUR",
                                destination="LT121000011101001000"))


# ---- callbacks ---------------------------------------------------------------------------------------

class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list = []
    answers: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.got.append({k: v[0] for k, v in parse_qs(body).items()})
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def receiver():
    _Receiver.got, _Receiver.answers = [], []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_port}/hooks/paysera", _Receiver
    srv.shutdown()
    srv.server_close()


def test_callbacks_signed_verified_and_refused(sandbox, receiver):
    url, rec = receiver
    rec.answers[:] = [500]  # the first delivery fails: the sandbox retries
    app, srv, c = sandbox()
    rail, store = rail_for(app, c)
    res = rail.send(payout("p-9", callback_url=url))
    deadline = time.monotonic() + 10
    while not rec.got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.engine.flush_callbacks()
    [form] = rec.got
    assert [e["outcome"] for e in app.engine.callback_log] == ["failed", "delivered"]

    event = CallbackVerifier(describe(app)["public_key_pem"]).verify_form(form)
    assert (event.type, event.object) == ("done", "transfer")
    assert event.transfer.id == res.provider_ref and event.transfer.amount.amount == Decimal("40.00")
    assert verify_callback(form["event"], form["sign"], public_key_pem=app.engine.public_key_pem).raw == form["event"]

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(CallbackSignatureError) as ei:
        CallbackVerifier(other).verify_form(form)
    assert ei.value.code == "bad_signature"
    changed = form["event"].replace('"40.00"', '"4000.00"')
    assert changed != form["event"]
    with pytest.raises(CallbackSignatureError) as ei:
        CallbackVerifier(app.engine.public_key_pem).verify(changed, form["sign"])
    assert ei.value.code == "bad_signature"
    with pytest.raises(CallbackSignatureError) as ei:
        CallbackVerifier(app.engine.public_key_pem).verify(form["event"], "%%%not base64%%%")
    assert ei.value.code == "bad_base64"
    with pytest.raises(CallbackSignatureError) as ei:
        CallbackVerifier(app.engine.public_key_pem).verify_form({"event": form["event"]})
    assert ei.value.code == "missing_field" and isinstance(ei.value, ProviderError)
    with pytest.raises(CallbackSignatureError) as ei:  # signed, but not an event object
        CallbackVerifier(app.engine.public_key_pem).verify("[1]", app.engine.sign_event("[1]"))
    assert ei.value.code == "bad_event"
    with pytest.raises(ValueError):
        CallbackVerifier("not a pem")
    assert requests.get(srv.url + "/publickey", timeout=5).text == app.engine.public_key_pem


# ---- secrets -----------------------------------------------------------------------------------------

def test_no_mac_key_in_errors_logs_or_reprs(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    app, srv, c = sandbox(clock_skew=400)
    rail, store = rail_for(app, c)
    errors: list[BaseException] = []
    rail.send(payout("s-1"))
    for call in (lambda: c.get_transfer("nope"), lambda: c.sign_transfer("nope"),
                 lambda: c.create_transfer("1.001", "EUR", PAYSERA_BENEFICIARY)):
        with pytest.raises(ProviderError) as ei:
            call()
        errors.append(ei.value)
    bad = PayseraClient(srv.url, DEFAULT_MAC_ID, "another-secret-mac-key-123456789")
    with pytest.raises(AuthError) as ei:
        bad.list_transfers()
    errors.append(ei.value)
    app.engine.knobs.update(hang_seconds=1.0, fault_match="^POST ")
    slow = PayseraClient(srv.url, DEFAULT_MAC_ID, DEFAULT_MAC_KEY, timeout=0.2)
    with pytest.raises(UnknownOutcomeError) as ei:
        slow.create_transfer("1.00", "EUR", PAYSERA_BENEFICIARY)
    assert ei.value.code == "read_timeout"
    errors.append(ei.value)
    app.engine.knobs.hang_seconds = 0.0
    text = caplog.text + "".join(f"{e}{e!r}{e.message}" for e in errors) + repr(c) + repr(rail) + repr(bad)
    assert "paysera list_transfers GET /transfer/rest/v1/transfers" in caplog.text  # the log is there ...
    for secret in (DEFAULT_MAC_KEY, "another-secret-mac-key-123456789"):
        assert secret not in text  # ... and never shows a key
    assert DEFAULT_MAC_ID not in repr(c)
    bad.close()
    slow.close()


def test_describe_and_control_api(sandbox):
    app, srv, c = sandbox()
    d = describe(app)
    assert (d["mac_id"], d["mac_key"]) == (DEFAULT_MAC_ID, DEFAULT_MAC_KEY)
    assert d["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----") and d["wallets"] == {"14471": DEFAULT_ACCOUNT}
    r = requests.post(srv.url + "/_sandbox/knobs", json={"processing_delay": 3600}, timeout=5)
    assert r.status_code == 200 and app.engine.knobs.processing_delay == 3600
    assert requests.post(srv.url + "/_sandbox/knobs", json={"nope": 1}, timeout=5).status_code == 400
    t = c.create_transfer("2.00", "EUR", PAYSERA_BENEFICIARY)
    c.sign_transfer(t.id)
    r = requests.post(srv.url + f"/_sandbox/transfers/{t.id}/status", json={"status": "done"}, timeout=5)
    assert r.json()["status"] == "done" and c.get_transfer(t.id).status == "done"
    state = requests.get(srv.url + "/_sandbox/state", timeout=5).json()
    assert state["transfers"] == {"done": 1} and state["ledger"]["paid_total"] == {"EUR": "2.00"}
    assert requests.get(srv.url + "/_sandbox/transfers/nope", timeout=5).status_code == 404
    r = requests.post(srv.url + f"/_sandbox/wallets/{DEFAULT_WALLET_ID}/balance",
                      json={"currency": "GBP", "amount": "12.34"}, timeout=5)
    assert r.json()["GBP"]["at_disposal_decimal"] == "12.34"
    assert requests.get(srv.url + "/_sandbox/ledger", timeout=5).json()[0]["transfer_id"] == t.id
