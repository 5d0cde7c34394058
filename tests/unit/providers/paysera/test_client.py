"""PayseraClient and PayseraRail over real HTTP against the Paysera sandbox: tampered requests, the clock,
every call, faults, the rail (create, store, sign, find), callbacks, no MAC key anywhere."""
from __future__ import annotations

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
    InvalidStateError,
    PayseraClient,
    PayseraRail,
    TransferPage,
    WalletBalance,
    mac,
    verify_callback,
)
from providers.paysera.payout import key_token
from providers.paysera.sandbox import (
    DEFAULT_ACCOUNT,
    DEFAULT_MAC_ID,
    DEFAULT_MAC_KEY,
    DEFAULT_WALLET_ID,
    describe,
)

PAYSERA_BENEFICIARY = {"type": "paysera", "name": "Jane Doe", "paysera_account": {"account_number": "EVP2110003012345"}}


def raw_call(srv, method, path, *, body=None, key=DEFAULT_MAC_KEY, ts=None, nonce=None, signed_path=None,
             signed_body=None, header=None):
    """One request signed by hand (to tamper with what is sent versus what was signed)."""
    if header is None:
        header = mac.sign(method, srv.url + (signed_path or path), signed_body if signed_body is not None else body,
                          DEFAULT_MAC_ID, key, ts=int(time.time()) if ts is None else ts, nonce=nonce)
    r = requests.request(method, srv.url + path, data=body, headers={"Authorization": header,
                                                                      "Content-Type": "application/json"}, timeout=5)
    return r, header


def test_sandbox_refuses_tampered_requests(paysera_clients):
    app, srv, _ = paysera_clients()
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


def test_clock_offset_learned_from_a_skewed_server(paysera_clients):
    app, srv, c = paysera_clients(clock_skew=600)
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


def test_wrong_key_is_auth_error_without_endless_retries(paysera_clients):
    app, srv, _ = paysera_clients()
    bad = PayseraClient(srv.url, DEFAULT_MAC_ID, "wrong-key-wrong-key")
    with pytest.raises(AuthError) as ei:
        bad.get_transfer("1")
    assert ei.value.code == "unauthorized" and ei.value.http_status == 401
    assert [e["refused"] for e in app.engine.requests_log if e["refused"]] == ["bad_mac"]  # no retry: clock was fine
    bad.close()


def test_every_call_over_http(paysera_clients):
    app, srv, c = paysera_clients(client_kw={"project_id": 3, "location_id": 7})
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


def test_validation_errors_and_float_refusal(paysera_clients):
    app, srv, c = paysera_clients()
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


def test_faults_500_before_commit_and_unknown_outcome(paysera_clients):
    app, srv, c = paysera_clients(seed=1)
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


def test_payout_sequence_create_store_then_sign(paysera_clients):
    app, srv, c = paysera_clients()
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


def test_lost_create_answer_leaves_a_draft_that_find_locates(paysera_clients):
    app, srv, c = paysera_clients()
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


def test_lost_sign_answer_then_find_shows_one_execution(paysera_clients):
    app, srv, c = paysera_clients()
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


def test_sign_read_timeout_is_unknown_outcome_and_find_resolves_it(paysera_clients):
    app, srv, c = paysera_clients(client_kw={"timeout": 0.3})
    rail, store = rail_for(app, c)
    app.engine.knobs.update(hang_seconds=1.0, fault_match=r"/sign$")
    with pytest.raises(UnknownOutcomeError) as ei:
        rail.send(payout("p-4"))
    assert ei.value.code == "read_timeout"
    app.engine.knobs.hang_seconds = 0.0
    assert rail.find("p-4").state in (PENDING, SUCCEEDED)
    assert app.engine.executed(store.ids["p-4"]) == 1


def test_insufficient_funds_then_top_up(paysera_clients):
    wallet = {"account_number": DEFAULT_ACCOUNT, "balance": {"EUR": "5.00"}}
    app, srv, c = paysera_clients(wallets={DEFAULT_WALLET_ID: wallet})
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


def test_failed_transfer_is_failed_and_refunded(paysera_clients):
    app, srv, c = paysera_clients(processing_delay=3600)
    rail, store = rail_for(app, c)
    res = rail.send(payout("p-6"))
    assert res.state == PENDING and res.code == "processing"
    app.engine.set_status(res.provider_ref, "failed", failure_code="account_closed", failure_message="closed")
    f = rail.find("p-6")
    assert (f.state, f.code, f.message) == (FAILED, "account_closed", "closed")
    assert app.engine.paid_total("EUR") == 0 and app.engine.executed(res.provider_ref) == 1
    assert rail.send(payout("p-6")).state == FAILED  # never a new transfer under the same key
    assert len(transfers_with_key(app, "p-6")) == 1


def test_store_failure_never_signs(paysera_clients):
    app, srv, c = paysera_clients()
    rail, store = rail_for(app, c)
    store.fail = True
    with pytest.raises(RetryableError) as ei:
        rail.send(payout("p-7"))
    assert ei.value.code == "store_id_failed"
    [draft] = transfers_with_key(app, "p-7")
    assert draft.status == "new" and app.engine.paid_total() == 0


def test_unsigned_draft_expires_and_find_reports_unknown(paysera_clients):
    with freeze_time("2026-03-01 10:00:00") as clock:
        app, srv, c = paysera_clients(draft_ttl=600)
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


def test_rail_in_memory_store_and_bank_beneficiary(paysera_clients):
    app, srv, c = paysera_clients()
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


def test_callbacks_signed_verified_and_refused(paysera_clients, receiver):
    url, rec = receiver
    rec.answers[:] = [500]  # the first delivery fails: the sandbox retries
    app, srv, c = paysera_clients()
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

def test_no_mac_key_in_errors_logs_or_reprs(paysera_clients, caplog):
    caplog.set_level(logging.DEBUG)
    app, srv, c = paysera_clients(clock_skew=400)
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


def test_describe_and_control_api(paysera_clients):
    app, srv, c = paysera_clients()
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
