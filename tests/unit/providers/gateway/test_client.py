"""GatewayClient and GatewayRail over real HTTP against the gateway sandbox: every call, validation, auth,
faults after commit, the rail, signed callbacks, the control API, no secret anywhere."""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests
from freezegun import freeze_time
from werkzeug.wrappers import Request, Response

from providers import (
    ConnectionFailedError,
    InsufficientFundsError,
    NotFoundError,
    ProviderError,
    RetryableError,
    UnknownOutcomeError,
    ValidationError,
)
from providers.gateway import (
    Balance,
    CurrencyMismatchError,
    ForbiddenError,
    GatewayClient,
    GatewayRail,
    IdempotencyConflictError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    InvalidSignatureError,
    MissingApiKeyError,
    PayIn,
    PayInNotFoundError,
    Payout,
    PayoutNotFoundError,
    ReplayCache,
    ReplayError,
    SignatureError,
    TimestampWindowError,
    parse_callback,
    path_with_query_from_environ,
)
from providers.gateway.sandbox import (
    DEFAULT_API_KEY,
    DEFAULT_SECRET,
    FAILURE_REASONS,
    describe,
    serve,
)
from providers.gateway.signing import sign_headers
from providers.payouts import FAILED, PENDING, SUCCEEDED, PayoutRequest
from tests.support.net import refused_url
from tests.support.sandboxes import record_timestamps

UTC = timezone.utc

class Receiver:
    """A tiny callback receiver: verifies every request with parse_callback, answers 500 for the first
    ``fail_first`` ones, 401 for a bad signature, 200 otherwise."""

    def __init__(self, secret=DEFAULT_SECRET, *, fail_first=0, replay=True):
        self.secret, self.fail_first = secret, fail_first
        self.cache = ReplayCache() if replay else None
        self.got: list[Payout] = []
        self.refused: list[str] = []
        self.hits = 0
        self.lock = threading.Lock()
        self.srv = serve(self.app)
        self.url = self.srv.url + "/hooks/gateway?src=test"

    def app(self, environ, start_response):
        req = Request(environ)
        body = req.get_data()  # raw bytes, before any JSON parsing
        with self.lock:
            self.hits += 1
            if self.hits <= self.fail_first:
                return Response("busy", status=500)(environ, start_response)
        try:
            payout = parse_callback(req.headers, req.method, path_with_query_from_environ(environ), body,
                                    secret=self.secret, window=300, replay_cache=self.cache,
                                    api_key=DEFAULT_API_KEY)
        except SignatureError as e:
            with self.lock:
                self.refused.append(e.message)
            return Response(json.dumps(e.body()), status=401, mimetype="application/json")(environ, start_response)
        with self.lock:
            self.got.append(payout)
        return Response('{"ok":true}', mimetype="application/json")(environ, start_response)

    def close(self):
        self.srv.shutdown()


@pytest.fixture
def receiver():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_every_call(gateway_clients):
    app, c = gateway_clients()
    e = app.engine
    p, created = c.create_payout("ord-1", Decimal("5000"), "RUB", "4111111111111111",
                                 callback_url="https://exsync.example/hooks/gateway", description="bid 1350")
    assert created is True and isinstance(p, Payout)
    assert (p.external_id, p.status, p.amount, p.currency) == ("ord-1", "created", Decimal("5000.00"), "RUB")
    assert p.card_number == "411111******1111" and p.created_at.tzinfo is not None
    assert e.ops["payout"]["ord-1"].extra == {"description": "bid 1350"}
    again, created = c.create_payout("ord-1", "5000.00", "RUB", "4111111111111111",
                                     callback_url="https://exsync.example/hooks/gateway")
    assert created is False and again == p  # 200: the same object, nothing new
    assert e.executed("ord-1") == 1 and e.balance == Decimal("995000.00")
    assert [x["type"] for x in e.ledger] == ["debit"]
    assert c.get_payout("ord-1") == p
    assert c.balance() == Balance(Decimal("995000.00"), "RUB", "main", raw={})

    i, created = c.create_payin("in-1", 250, "RUB")
    assert created and isinstance(i, PayIn) and i.status == "created" and i.payment_url.startswith(app.url)
    assert c.create_payin("in-1", "250", "RUB")[1] is False
    assert c.get_payin("in-1").amount == Decimal("250.00")

    # generic signed calls from the site root, with a query and with a body
    raw = c.request("GET", "/api/v1/payouts/ord-1", params={"shop_code": "main"})
    assert raw["external_id"] == "ord-1" and raw["amount"] == "5000.00"
    made = c.request("POST", "/api/v1/payouts", json={"external_id": "ord-2", "amount": Decimal("1.5"),
                                                      "currency": "RUB", "card_number": "2200700012345678"})
    assert made["amount"] == "1.50" and e.executed("ord-2") == 1

    assert e.process_all() == 3
    assert c.get_payout("ord-1").status == "success" and c.get_payin("in-1").status == "success"
    assert c.balance().available == Decimal("1000000") - Decimal("5000") - Decimal("1.5") + Decimal("250")
    assert [x["type"] for x in e.ledger] == ["debit", "debit", "payin"]


def test_external_id_is_encoded_and_shop_code_scopes(gateway_clients):
    app, _ = gateway_clients()
    c = GatewayClient(app.url, DEFAULT_API_KEY, DEFAULT_SECRET, shop_code="main", timeout=5)
    odd = "ord 1/ü?&#"
    c.create_payout(odd, "10", "RUB", "4111111111111111")
    assert c.get_payout(odd).external_id == odd and app.engine.executed(odd) == 1
    other = GatewayClient(app.url, DEFAULT_API_KEY, DEFAULT_SECRET, shop_code="other-shop", timeout=5)
    with pytest.raises(ForbiddenError) as ei:
        other.get_payout(odd)
    assert ei.value.http_status == 403 and ei.value.code == "forbidden"
    with pytest.raises(ForbiddenError):
        other.create_payout("ord-x", "10", "RUB", "4111111111111111")
    c.close()
    other.close()


def test_repeat_with_different_parameters_is_refused(gateway_clients):
    app, c = gateway_clients()
    c.create_payout("ord-1", "100.00", "RUB", "4111111111111111")
    for kw, field in (({"amount": "100.01"}, "amount"), ({"card_number": "4000000000000002"}, "card_number"),
                      ({"callback_url": "https://x.example/cb"}, "callback_url")):
        args = {"amount": "100.00", "currency": "RUB", "card_number": "4111111111111111", **kw}
        with pytest.raises(IdempotencyConflictError) as ei:
            c.create_payout("ord-1", **args)
        assert ei.value.http_status == 422 and field in ei.value.message and not ei.value.retryable
    assert app.engine.executed("ord-1") == 1 and app.engine.get("ord-1")["amount"] == "100.00"
    assert c.create_payout("ord-1", Decimal("100"), "rub", "4111111111111111")[1] is False  # same values


VALIDATION_CASES = [
    ({"amount": "10", "currency": "RUB", "card_number": "4111"}, {"external_id": "external_id is required"}),
    ({"external_id": "  ", "amount": "10", "currency": "RUB", "card_number": "4111"},
     {"external_id": "external_id is required"}),
    ({"external_id": "v", "amount": 10, "currency": "RUB", "card_number": "4111"},
     {"amount": "amount must be a positive decimal string"}),  # a JSON number, not a string
    ({"external_id": "v", "amount": "-1", "currency": "RUB", "card_number": "4111"},
     {"amount": "amount must be a positive decimal string"}),
    ({"external_id": "v", "amount": "0.00", "currency": "RUB", "card_number": "4111"},
     {"amount": "amount must be a positive decimal string"}),
    ({"external_id": "v", "amount": "ten", "currency": "RUB", "card_number": "4111"},
     {"amount": "amount must be a positive decimal string"}),
    ({"external_id": "v", "currency": "RUB", "card_number": "4111"},
     {"amount": "amount must be a positive decimal string"}),
    ({"external_id": "v", "amount": "10", "card_number": "4111"}, {"currency": "currency is required"}),
    ({"external_id": "v", "amount": "10", "currency": "RUB"}, {"card_number": "card_number is required"}),
    ({"external_id": "v", "amount": "10", "currency": "RUB", "card_number": "4111", "callback_url": "not a url"},
     {"callback_url": "callback_url must be a valid URL"}),
    ({"external_id": "v", "amount": "10", "currency": "RUB", "card_number": "4111", "callback_url": "ftp://h/x"},
     {"callback_url": "callback_url must be a valid URL"}),
    ({"amount": "x", "callback_url": ""},
     {"external_id": "external_id is required", "amount": "amount must be a positive decimal string",
      "currency": "currency is required", "card_number": "card_number is required",
      "callback_url": "callback_url must be a valid URL"}),
]


@pytest.mark.parametrize("body,fields", VALIDATION_CASES)
def test_every_validation_message(gateway_clients, body, fields):
    app, c = gateway_clients()
    with pytest.raises(ValidationError) as ei:
        c.request("POST", "/api/v1/payouts", json=body)
    err = ei.value
    assert type(err) is ValidationError and err.code == "validation_error" and err.http_status == 422
    assert err.fields == fields and err.message == next(iter(fields.values()))
    assert app.engine.ledger == [] and app.engine.ops["payout"] == {}


def test_validation_through_the_typed_methods(gateway_clients):
    app, c = gateway_clients()
    with pytest.raises(ValidationError, match="amount must be a positive decimal string"):
        c.create_payout("v-1", "-5", "RUB", "4111111111111111")
    with pytest.raises(ValidationError, match="card_number is required"):
        c.create_payout("v-1", "5", "RUB", "")
    with pytest.raises(ValidationError, match="callback_url must be a valid URL"):
        c.create_payin("v-2", "5", "RUB", callback_url="http//broken")
    with pytest.raises(TypeError):
        c.create_payout("v-1", 5.0, "RUB", "4111111111111111")  # floats never leave this machine
    with pytest.raises(ValidationError, match="Request body must be a JSON object"):
        c.request("POST", "/api/v1/payouts", json=["not", "an", "object"])
    assert app.engine.ops == {"payout": {}, "payin": {}}


def test_currency_mismatch_and_insufficient_balance(gateway_clients):
    app, c = gateway_clients(balance=Decimal("100.00"), shop_currency="RUB")
    with pytest.raises(CurrencyMismatchError) as ei:
        c.create_payout("ord-1", "10", "USD", "4111111111111111")
    assert ei.value.message == "Shop currency mismatch. Expected RUB." and ei.value.expected == "RUB"
    assert not ei.value.retryable
    with pytest.raises(InsufficientBalanceError) as ei:
        c.create_payout("ord-2", "100.01", "RUB", "4111111111111111")
    assert isinstance(ei.value, InsufficientFundsError) and ei.value.message.startswith("Insufficient balance")
    assert ei.value.code == "insufficient_balance"
    assert app.engine.ledger == [] and c.balance().available == Decimal("100.00")
    assert c.create_payout("ord-2", "100.00", "RUB", "4111111111111111")[1] is True  # exactly the balance
    assert c.balance().available == Decimal("0.00")
    with pytest.raises(CurrencyMismatchError):
        c.create_payin("in-1", "10", "EUR")


def test_not_found(gateway_clients):
    app, c = gateway_clients()
    with pytest.raises(PayoutNotFoundError) as ei:
        c.get_payout("nope")
    assert ei.value.message == "Payout not found" and ei.value.http_status == 404
    with pytest.raises(PayInNotFoundError) as ei:
        c.get_payin("nope")
    assert ei.value.message == "PayIn not found"
    c.create_payin("in-1", "5", "RUB")
    with pytest.raises(PayoutNotFoundError):
        c.get_payout("in-1")  # a pay-in is not a payout
    with pytest.raises(NotFoundError) as ei:
        c.request("GET", "/api/v1/no-such-thing")
    assert type(ei.value) is NotFoundError
    assert GatewayRail(c).find("nope") is None


def test_auth_failures_over_http(gateway_clients):
    app, c = gateway_clients()
    wrong_key = GatewayClient(app.url, "gw_wrong_key_00000000000000009", DEFAULT_SECRET, timeout=5)
    with pytest.raises(InvalidApiKeyError) as ei:
        wrong_key.get_payout("x")  # never "not found"
    assert ei.value.message == "Invalid API key" and ei.value.http_status == 401
    wrong_secret = GatewayClient(app.url, DEFAULT_API_KEY, "not-the-secret-000000000", timeout=5)
    with pytest.raises(InvalidSignatureError):
        wrong_secret.create_payout("ord-1", "10", "RUB", "4111111111111111")
    assert app.engine.ops["payout"] == {}
    app.engine.knobs.clock_skew = 900  # the gateway's clock is 15 minutes ahead of ours
    with pytest.raises(TimestampWindowError) as ei:
        c.balance()
    assert ei.value.message == "Timestamp window exceeded" and "check the clock" in str(ei.value)
    assert ei.value.skew is not None and abs(ei.value.skew - 900) <= 2
    app.engine.knobs.clock_skew = 0
    assert c.balance().currency == "RUB"
    for cl in (wrong_key, wrong_secret):
        cl.close()


def test_raw_requests_missing_headers_replay_and_raw_bytes(gateway_clients):
    app, _ = gateway_clients()
    url = app.url + "/api/v1/payouts"
    body = b'{ "external_id": "raw-1", "amount": "7.00", "currency": "RUB", "card_number": "4111111111111111" }'

    def post(headers, data=body):
        r = requests.post(url, data=data, headers={"Content-Type": "application/json", **headers}, timeout=5)
        return r.status_code, r.json()

    ts = int(time.time())
    good = sign_headers(DEFAULT_API_KEY, DEFAULT_SECRET, "POST", "/api/v1/payouts", body, timestamp=ts)
    assert post({k: v for k, v in good.items() if k != "X-API-Key"}) == (401, MissingApiKeyError().body())
    assert post({k: v for k, v in good.items() if k != "X-Timestamp"})[1]["message"] == "Timestamp required"
    assert post({**good, "X-Timestamp": "yesterday"})[1]["message"] == "Invalid timestamp format"
    assert post({**good, "X-Timestamp": str(ts - 301)})[1]["message"] == "Timestamp window exceeded"
    assert post(good, body.replace(b"7.00", b"9.00"))[1]["message"] == "Invalid signature"
    status, obj = post(good)  # the raw bytes as sent (odd spacing and all) are what is signed
    assert status == 201 and obj["external_id"] == "raw-1"
    assert post(good) == (401, ReplayError().body())  # the same signature again
    r = requests.get(app.url + "/api/v1/payouts/raw-1?shop_code=main", timeout=5,
                     headers=sign_headers(DEFAULT_API_KEY, DEFAULT_SECRET, "GET", "/api/v1/payouts/raw-1", b""))
    assert r.status_code == 401 and r.json()["message"] == "Invalid signature"  # the query is signed too
    assert app.engine.executed("raw-1") == 1
    app.engine.knobs.replay_protection = False
    assert post(good)[0] == 200  # without replay protection it is the idempotent repeat


def test_client_recovers_from_a_replay_refusal(gateway_clients):
    """Two clients (two worker processes) send the identical request in the same second."""
    app, c1 = gateway_clients()
    c2 = GatewayClient(app.url, DEFAULT_API_KEY, DEFAULT_SECRET, timeout=5)
    c1.create_payout("ord-1", "10", "RUB", "4111111111111111")
    seen = record_timestamps(app)
    # At the start of a second, running at real speed: both sign that second, the second one is refused
    # as a replay, waits for the next second and is sent once more, signed with it.
    with freeze_time(datetime.fromtimestamp(int(time.time()) + 5, UTC), tick=True):
        a = c1.get_payout("ord-1")
        b = c2.get_payout("ord-1")
    assert a == b
    (t1, _, s1), (t2, _, s2), (t3, now3, s3) = seen
    assert t1 == t2 and (s1, s2, s3) == (200, 401, 200) and t3 == t1 + 1 == int(now3)
    assert app.engine.requests_served["GET"] == 3  # c1's GET, c2's refused GET, c2's re-signed GET
    c2.close()


def test_fail_after_commit_is_unknown_outcome_then_find(gateway_clients):
    app, c = gateway_clients(fail_after_commit_rate=1.0)
    rail = GatewayRail(c)
    req = PayoutRequest(key="ord-1", amount=Decimal("500.00"), currency="RUB", destination="4111111111111111")
    with pytest.raises(UnknownOutcomeError) as ei:
        rail.send(req)  # committed, then the proxy answered 502
    assert ei.value.http_status == 502 and not ei.value.retryable and "nginx" not in str(ei.value)
    found = rail.find("ord-1")
    assert found is not None and found.state == PENDING and found.code == "created"
    assert app.engine.executed("ord-1") == 1
    app.engine.knobs.fail_after_commit_rate = 0
    again = rail.send(req)  # the same key again: the existing payout, nothing paid twice
    assert again.state == PENDING and app.engine.executed("ord-1") == 1
    assert app.engine.balance == Decimal("1000000") - Decimal("500")


def test_hang_after_commit_is_read_timeout_then_find(gateway_clients):
    app, c = gateway_clients(fail_after_commit_rate=1.0, hang_seconds=1.5, client_kw={"timeout": 0.5})
    with pytest.raises(UnknownOutcomeError) as ei:
        c.create_payout("ord-1", "10", "RUB", "4111111111111111")
    assert ei.value.code == "read_timeout"
    app.engine.knobs.fail_after_commit_rate = 0
    assert c.get_payout("ord-1").status == "created" and app.engine.executed("ord-1") == 1


def test_server_errors_before_commit(gateway_clients):
    app, c = gateway_clients(error_rate=1.0)
    with pytest.raises(UnknownOutcomeError) as ei:  # a 5xx on a create: we cannot know it was not created
        c.create_payout("ord-1", "10", "RUB", "4111111111111111")
    assert ei.value.http_status == 500 and ei.value.message == "Internal server error"
    with pytest.raises(RetryableError) as ei:  # a read is simply retryable
        c.get_payout("ord-1")
    assert ei.value.http_status == 500 and ei.value.retryable
    app.engine.knobs.error_rate = 0
    assert GatewayRail(c).find("ord-1") is None and app.engine.executed("ord-1") == 0  # safe to send now


def test_connection_refused_is_connection_failed():
    c = GatewayClient(refused_url(), DEFAULT_API_KEY, DEFAULT_SECRET, timeout=2)
    with pytest.raises(ConnectionFailedError) as ei:
        c.create_payout("ord-1", "10", "RUB", "4111111111111111")  # nothing was sent: safe even for a create
    e = ei.value
    assert e.retryable and e.code == "connect_failed"
    assert DEFAULT_SECRET not in str(e) + repr(e) and DEFAULT_API_KEY not in str(e) + repr(e)
    c.close()


def test_concurrent_creates_of_one_key_pay_once(gateway_clients):
    """Identical creates at once: the gateway takes one signature per second, so they go out one per
    second (each signed with its own current second), and the money leaves once."""
    app, c = gateway_clients()
    seen = record_timestamps(app)
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: c.create_payout("ord-1", "10", "RUB", "4111111111111111"), range(3)))
    assert sum(created for _, created in results) == 1
    assert {p.external_id for p, _ in results} == {"ord-1"} and app.engine.executed("ord-1") == 1
    assert len({ts for ts, _, _ in seen}) == 3 and all(int(now) - 1 <= ts <= now for ts, now, _ in seen)


def test_rail_status_mapping(gateway_clients):
    app, c = gateway_clients()
    rail = GatewayRail(c, name="gw-main")
    assert rail.name == "gw-main"
    for key, status, state in (("a", "success", SUCCEEDED), ("b", "failed", FAILED), ("c", "cancelled", FAILED),
                               ("d", "processing", PENDING), ("e", "created", PENDING)):
        res = rail.send(PayoutRequest(key=key, amount=Decimal("1"), currency="RUB", destination="4111111111111111",
                                      description="bid 7"))
        assert res.state == PENDING and res.provider_ref and res.raw["external_id"] == key
        if status != "created":
            reason = "Recipient account closed" if status == "failed" else None
            app.engine.set_status(key, status, failure_reason=reason)
        found = rail.find(key)
        assert (found.state, found.code) == (state, status)
    assert rail.find("b").message == "Recipient account closed"
    assert app.engine.ops["payout"]["a"].extra == {"description": "bid 7"}
    # failed and cancelled payouts are refunded, once
    assert [x["type"] for x in app.engine.ledger].count("refund") == 2
    assert app.engine.balance == Decimal("1000000") - 3


def test_callbacks_are_signed_and_verified(gateway_clients, receiver):
    r = receiver()
    app, c = gateway_clients()
    c.create_payout("ord-1", "10", "RUB", "4111111111111111", callback_url=r.url)
    c.create_payout("ord-2", "20", "RUB", "4111111111111111")  # no callback_url: nothing sent
    app.engine.process_all()
    assert app.engine.flush_callbacks(10)
    assert sorted((p.external_id, p.status) for p in r.got) == [("ord-1", "processing"), ("ord-1", "success")]
    final = next(p for p in r.got if p.status == "success")
    assert final.amount == Decimal("10.00") and final.card_number == "411111******1111"
    assert r.refused == []
    log = app.engine.callback_log
    assert [e["outcome"] for e in log] == ["delivered", "delivered"] and all(e["http_status"] == 200 for e in log)
    assert all("?" not in e["url"] for e in log)  # logged without its query string


def test_callbacks_are_retried_until_2xx(gateway_clients, receiver):
    r = receiver(fail_first=2)
    app, c = gateway_clients()
    c.create_payout("ord-1", "10", "RUB", "4111111111111111", callback_url=r.url)
    app.engine.set_status("ord-1", "cancelled", failure_reason="Cancelled by operator")
    assert app.engine.flush_callbacks(10)
    assert [(e["attempt"], e["outcome"], e["http_status"]) for e in app.engine.callback_log] == [
        (1, "failed", 500), (2, "failed", 500), (3, "delivered", 200)]
    assert [(p.status, p.failure_reason) for p in r.got] == [("cancelled", "Cancelled by operator")]
    assert GatewayRail(c).find("ord-1").state == FAILED and app.engine.balance == Decimal("1000000")


def test_callbacks_give_up_after_max_attempts_and_a_wrong_secret_is_refused(gateway_clients, receiver):
    r = receiver(secret="receiver-expects-another-secret")
    app, c = gateway_clients(callback_max_attempts=3)
    c.create_payout("ord-1", "10", "RUB", "4111111111111111", callback_url=r.url)
    app.engine.set_status("ord-1", "processing")
    assert app.engine.flush_callbacks(10)
    assert [e["outcome"] for e in app.engine.callback_log] == ["failed", "failed", "gave_up"]
    assert r.got == [] and r.refused == ["Invalid signature"] * 3


def test_callback_secret_of_its_own(gateway_clients, receiver):
    r = receiver(secret="cb-secret-000000000000")
    app, c = gateway_clients(callback_secret="cb-secret-000000000000")
    c.create_payin("in-1", "5", "RUB", callback_url=r.url)
    app.engine.process("in-1", kind="payin")
    assert app.engine.flush_callbacks(10)
    assert [p.status for p in r.got] == ["processing", "success"]


def test_automatic_processing_with_failures(gateway_clients, receiver):
    r = receiver()
    app, c = gateway_clients(process_delay=0.05, final_failure_rate=1.0)
    c.create_payout("ord-1", "10", "RUB", "4111111111111111", callback_url=r.url)
    deadline = time.monotonic() + 10
    while not c.get_payout("ord-1").is_final and time.monotonic() < deadline:
        time.sleep(0.02)
    p = c.get_payout("ord-1")
    assert p.status == "failed" and p.failure_reason in FAILURE_REASONS
    res = GatewayRail(c).find("ord-1")
    assert res.state == FAILED and res.message == p.failure_reason
    assert [x["type"] for x in app.engine.ledger] == ["debit", "refund"] and app.engine.executed("ord-1") == 1
    assert app.engine.flush_callbacks(10)
    assert [x.status for x in r.got] == ["processing", "failed"]


def test_callback_drop_and_duplicate_knobs(gateway_clients, receiver):
    r = receiver(replay=False)
    app, c = gateway_clients(callback_drop_rate=1.0)
    c.create_payout("ord-1", "10", "RUB", "4111111111111111", callback_url=r.url)
    app.engine.process("ord-1")
    assert app.engine.flush_callbacks(10)
    assert r.got == [] and [e["outcome"] for e in app.engine.callback_log] == ["dropped", "dropped"]
    app.engine.knobs.update(callback_drop_rate=0, callback_duplicate_rate=1.0)
    c.create_payout("ord-2", "10", "RUB", "4111111111111111", callback_url=r.url)
    app.engine.set_status("ord-2", "cancelled")
    assert app.engine.flush_callbacks(10)
    assert [p.external_id for p in r.got] == ["ord-2", "ord-2"]
    assert sorted(e["outcome"] for e in app.engine.callback_log[2:]) == ["delivered", "duplicated"]


def test_control_api_and_describe(gateway_clients):
    app, c = gateway_clients()
    c.create_payout("ord-1", "10", "RUB", "4111111111111111")
    st = requests.get(app.url + "/_sandbox/state", timeout=5).json()
    assert st["payouts"] == {"ord-1": "created"} and st["balance"] == "999990.00"
    k = requests.post(app.url + "/_sandbox/knobs", json={"latency": 0.01, "error_rate": 0}, timeout=5).json()
    assert k["latency"] == 0.01 and app.engine.knobs.latency == 0.01
    assert requests.post(app.url + "/_sandbox/knobs", json={"nope": 1}, timeout=5).status_code == 400
    assert requests.post(app.url + "/_sandbox/knobs", json={"error_rate": 2}, timeout=5).status_code == 400
    assert requests.post(app.url + "/_sandbox/process", json={}, timeout=5).json() == {"processed": 1}
    one = requests.get(app.url + "/_sandbox/payouts/ord-1", timeout=5).json()
    assert one["status"] == "success" and one["executed"] == 1
    assert requests.post(app.url + "/_sandbox/payouts/ord-1/status", json={"status": "failed"},
                         timeout=5).status_code == 400  # already final
    assert requests.post(app.url + "/_sandbox/balance", json={"balance": "5.00"}, timeout=5).json() == {
        "balance": "5.00"}
    assert requests.get(app.url + "/_sandbox/ledger", timeout=5).json()[0]["amount"] == "-10.00"
    d = requests.get(app.url + "/_sandbox/describe", timeout=5).json()
    assert d["api_key"] == DEFAULT_API_KEY and d["secret"] == DEFAULT_SECRET and d["shop_currency"] == "RUB"
    defaults = describe()
    assert defaults["paths"]["payout"] == "/api/v1/payouts/{external_id}" and defaults["window"] == 300
    assert defaults["headers"] == {"api_key": "X-API-Key", "timestamp": "X-Timestamp", "signature": "X-Signature"}


def test_custom_paths_and_window(gateway_clients):
    paths = {"payouts": "/v2/out", "payout": "/v2/out/{external_id}", "balance": "/v2/me/balance"}
    app, _ = gateway_clients(paths=paths, window=30)
    c = GatewayClient(app.url, DEFAULT_API_KEY, DEFAULT_SECRET, paths=paths, timeout=5)
    c.create_payout("p-1", "1", "RUB", "4111111111111111")
    assert c.get_payout("p-1").status == "created" and c.balance().available == Decimal("999999.00")
    app.engine.knobs.clock_skew = 31
    with pytest.raises(TimestampWindowError):
        c.create_payout("p-2", "1", "RUB", "4111111111111111")
    assert app.engine.get("p-2") is None
    with pytest.raises(ValueError):
        GatewayClient(app.url, DEFAULT_API_KEY, DEFAULT_SECRET, paths={"nope": "/x"})
    c.close()


def test_no_secret_in_errors_logs_or_repr(gateway_clients, receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="providers.gateway")
    r = receiver()
    app, c = gateway_clients()
    c.create_payout("ord-1", "10", "RUB", "4111111111111111", callback_url=r.url)
    app.engine.process_all()
    assert app.engine.flush_callbacks(10)
    texts = []
    for call in (lambda: c.get_payout("nope"), lambda: c.create_payout("ord-1", "11", "RUB", "4111111111111111"),
                 lambda: GatewayClient(app.url, DEFAULT_API_KEY, "wrong-secret-xyz", timeout=5).balance(),
                 lambda: GatewayClient(app.url, "some-other-key-123", DEFAULT_SECRET, timeout=5).balance()):
        with pytest.raises(ProviderError) as ei:
            call()
        texts.append(str(ei.value) + repr(ei.value) + json.dumps(ei.value.__dict__, default=str))
    text = caplog.text + "".join(texts) + repr(c) + repr(GatewayRail(c)) + json.dumps(app.engine.callback_log)
    assert "gateway get_payout" in caplog.text and "PayoutNotFoundError" in caplog.text
    assert "callback" in caplog.text
    for secret in (DEFAULT_SECRET, DEFAULT_API_KEY, "wrong-secret-xyz", "4111111111111111"):
        assert secret not in text
