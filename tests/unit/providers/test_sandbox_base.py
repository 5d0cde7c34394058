"""The sandboxes' shared base (providers/sandbox/): callback sender, fault draws, knobs, ledger, control routes.

Each provider's sandbox tests its own answers over HTTP; these pin what the four share, with a real
callback receiver where callbacks go out.
"""
from __future__ import annotations

import random
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from providers.sandbox import CallbackSender, Engine, Ledger, SandboxKnobs, draw_faults, serve
from providers.sandbox.web import sandbox_app


class Receiver:
    """Answers each POST with the next status of ``statuses`` (then 200) and records the paths in order."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def app(self, environ, start_response):
        with self.lock:
            self.paths.append(Request(environ).path)
            status = self.statuses.pop(0) if self.statuses else 200
        return Response("ok", status=status)(environ, start_response)


@pytest.fixture
def receiver():
    made = []

    def make(statuses=()):
        r = Receiver(statuses)
        made.append(r)
        return r

    yield make
    for r in made:
        r.server.shutdown()


def sender_for(log, **kw):
    import requests

    return CallbackSender(log, post=lambda item: requests.post(item["url"], timeout=5).status_code,
                          entry=lambda item, outcome, status: (item["url"].rsplit("/", 1)[1], item["attempt"],
                                                               outcome, status),
                          name="test-callbacks", **kw)


def test_dropped_duplicated_and_reordered_callbacks(receiver):
    r, log = receiver(), []
    s = sender_for(log)
    s.enqueue({"url": r.url + "/a"}, drop=True)
    s.enqueue({"url": r.url + "/b"}, reorder=True)     # held back until the next one is queued
    s.enqueue({"url": r.url + "/c"}, duplicate=True)   # out go c, its copy, then the held-back b
    assert s.flush(5)
    s.close()
    assert r.paths == ["/c", "/c", "/b"]
    assert sorted(log) == sorted([("a", 0, "dropped", None), ("c", 1, "delivered", 200),
                                  ("c", 1, "duplicated", 200), ("b", 1, "delivered", 200)])


def test_a_held_back_callback_goes_out_after_a_quiet_spell(receiver):
    r, log = receiver(), []
    s = sender_for(log)
    s.enqueue({"url": r.url + "/late"}, reorder=True)
    assert s.pending() == 1
    assert s.flush(5) and r.paths == ["/late"]
    s.close()


def test_retries_until_a_2xx_or_the_last_attempt(receiver):
    r, log = receiver([500, 502, 500, 500, 500]), []
    s = sender_for(log, attempts=lambda: 3, backoff=lambda n: 0.01, gave_up="gave_up")
    s.enqueue({"url": r.url + "/x"})
    assert s.flush(5)
    s.enqueue({"url": r.url + "/y"})
    assert s.flush(5)
    s.close()
    assert log == [("x", 1, "failed", 500), ("x", 2, "failed", 502), ("x", 3, "gave_up", 500),
                   ("y", 1, "failed", 500), ("y", 2, "failed", 500), ("y", 3, "delivered", 200)]


@pytest.mark.parametrize("in_order, expected", [(True, ["/old", "/old", "/new"]), (False, ["/old", "/new", "/old"])])
def test_in_order_holds_newer_callbacks_behind_a_retrying_one(receiver, in_order, expected):
    r, log = receiver([500]), []
    s = sender_for(log, attempts=lambda: 2, backoff=lambda n: 0.3, in_order=in_order)
    s.enqueue({"url": r.url + "/old"})
    time.sleep(0.1)  # the first try of /old has failed; its retry is 0.3 s away
    s.enqueue({"url": r.url + "/new"})
    assert s.flush(5)
    s.close()
    assert r.paths == expected


def test_fault_draws_do_not_depend_on_the_rates():
    knobs = {"callback_drop_rate": 0.0, "callback_duplicate_rate": 1.0}
    a, b = random.Random(5), random.Random(5)
    assert draw_faults(a, knobs, "drop", "duplicate") == {"drop": False, "duplicate": True}
    draw_faults(b, {"callback_drop_rate": 1.0, "callback_duplicate_rate": 0.0}, "drop", "duplicate")
    assert a.random() == b.random()  # both drew two numbers


class Knobs(SandboxKnobs):
    FIELDS = {"latency": 0.0, "error_rate": 0.0, "clock_skew": 0.0, "on": False, "tries": 3}
    FLAGS = frozenset({"on"})
    COUNTS = frozenset({"tries"})


def test_knobs_are_typed_and_checked():
    k = Knobs(on="Yes", tries="2", clock_skew=-5)
    assert (k.on, k.tries, k.clock_skew) == (True, 2, -5.0)
    k["on"] = "off"
    assert k.on is False
    for bad in ({"tries": 0}, {"error_rate": 1.5}, {"latency": -1}, {"nope": 1}):
        with pytest.raises((ValueError, AttributeError)):
            Knobs(**bad)


def test_ledger_counts_executions_of_one_operation():
    ledger = Ledger("ref", executes=lambda e: e["type"] == "debit")
    ledger.record(ref="a", type="debit", amount=5)
    ledger.record(ref="a", type="refund", amount=-5)
    ledger.record(ref="b", type="debit", amount=7)
    assert (ledger.executed("a"), ledger.executed("b"), ledger.executed("c")) == (1, 1, 0)
    assert ledger.rows(amount=str)[0] == {"ref": "a", "type": "debit", "amount": "5"}
    assert ledger == [{"ref": "a", "type": "debit", "amount": 5}, {"ref": "a", "type": "refund", "amount": -5},
                      {"ref": "b", "type": "debit", "amount": 7}]


class TinyEngine(Engine):
    def __init__(self, with_callbacks: bool):
        super().__init__(Knobs(), random.Random(1))
        if with_callbacks:
            self._sender = sender_for(self.callback_log)
        self.callback_log.extend({"n": i} for i in range(150))

    def state(self, query):
        return {"who": query.get("who"), "served": dict(self.requests_served)}


def test_control_routes(receiver):
    engine = TinyEngine(with_callbacks=True)
    c = sandbox_app("tiny", engine).test_client()
    assert c.get("/_sandbox/state?who=me").get_json() == {"who": "me", "served": {}}
    assert c.post("/_sandbox/knobs", json={"tries": 4, "on": 1}).get_json()["tries"] == 4
    assert c.post("/_sandbox/knobs", json={"tries": 0}).status_code == 400
    assert c.post("/_sandbox/knobs", json={"nope": 1}).get_json() == {"error": "unknown knob 'nope'"}
    assert [e["n"] for e in c.get("/_sandbox/callbacks?last=2").get_json()] == [148, 149]
    for last in ("", "0", "-3", "x"):
        assert len(c.get(f"/_sandbox/callbacks?last={last}").get_json()) == 100
    assert c.get("/_sandbox/ledger").status_code == 404 and c.get("/_sandbox/describe").status_code == 404
    bare = sandbox_app("bare", TinyEngine(with_callbacks=False)).test_client()
    assert bare.get("/_sandbox/callbacks").status_code == 404
    engine.close()


def test_serve_gives_a_url_and_the_engine_counts_requests():
    engine = TinyEngine(with_callbacks=False)
    engine.begin_request("x")
    engine.begin_request("x")
    with serve(sandbox_app("tiny", engine)) as srv:
        import requests

        assert requests.get(srv.url + "/_sandbox/state", timeout=5).json()["served"] == {"x": 2}
    assert engine.roll(0) is False and engine.roll(1) is True


def test_request_log_counts_per_second_and_in_sliding_windows():
    from freezegun import freeze_time

    from providers.sandbox.requestlog import RequestLog

    log = RequestLog()
    with freeze_time("2026-12-05 10:00:00.600") as clock:
        for _ in range(3):  # 3 late in one second and 3 early in the next: 6 within one sliding second
            log.record("bid_info", "10.0.0.1")
        clock.tick(0.7)
        for _ in range(3):
            log.record("bid_info", "10.0.0.2")
        log.record("test")
        clock.tick(2)
        log.record("bid_info", "10.0.0.1")
    s = log.summary("bid_info")
    assert s["total"] == 7 and s["max_in_window"] == 6 and [n for _, n in s["per_second"]] == [3, 3, 1]
    assert s["by_source"] == {"10.0.0.1": 4, "10.0.0.2": 3} and s["by_key"] == {"bid_info": 7}
    assert log.max_in_window(0.5, "bid_info") == 3 and log.summary()["total"] == 8
    assert log.summary(since=s["last"])["total"] == 1


def test_requests_route_reads_the_log_and_refuses_bad_numbers():
    engine = TinyEngine(with_callbacks=False)
    engine.begin_request("x", "127.0.0.9")
    engine.begin_request("y")
    c = sandbox_app("tiny", engine).test_client()
    got = c.get("/_sandbox/requests?key=x").get_json()
    assert (got["total"], got["by_source"], got["max_in_window"]) == (1, {"127.0.0.9": 1}, 1)
    assert c.get("/_sandbox/requests").get_json()["by_key"] == {"x": 1, "y": 1}
    assert c.get(f"/_sandbox/requests?since={time.time() + 60}").get_json()["total"] == 0
    for bad in ("since=soon", "window=0", "window=-1", "window=nan", "since=inf", "window=1e999"):
        r = c.get(f"/_sandbox/requests?{bad}")
        assert r.status_code == 400 and "error" in r.get_json(), bad


@settings(max_examples=200, deadline=None)
@given(since=st.text(max_size=30), window=st.text(max_size=30))
def test_requests_route_answers_any_query_with_200_or_400(since, window):
    c = sandbox_app("tiny", TinyEngine(with_callbacks=False)).test_client()
    r = c.get("/_sandbox/requests", query_string={"since": since, "window": window})
    assert r.status_code in (200, 400) and isinstance(r.get_json(), dict)
