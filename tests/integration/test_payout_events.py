"""Event-driven payouts (worker/payouts/events.py, tasks.py): a reconcile that moves a bid into a payout
status hands it to a Celery task once its transaction commits; the task creates, sends and completes the
payout with the tick's own claims. No tick runs in these tests unless a test says so: the tick is only the
safety net for a lost hand-over. Real Postgres, real Redis, a real Celery worker, sandboxes over HTTP."""
from __future__ import annotations

import base64
import json
import threading

import pytest

from core.clock import now_utc
from models import InboxEvent
from providers.sandbox import serve
from tests.support.config import WEBHOOK_TOKEN
from tests.support.payouts import (
    CARD,
    ZC_USER,
    assert_invariant,
    attempts,
    install_payouts,
    later,
    mirror_bid,
    one,
    payout_toml,
    payouts,
)
from tests.support.wait import wait_for
from webhooks.app import create_app
from worker import inbox, poll, reconcile
from worker import sweep as sweep_mod
from worker.payouts import engine, events
from worker.payouts import tasks as payout_tasks

CALLBACK = f"/webhooks/premium/main/{WEBHOOK_TOKEN}"


def _payed_bid(runtime, premium_sandbox, **kw) -> int:
    """A bid mirrored in ``payed``, then moved to ``realpay`` on the exchanger only (no callback sent)."""
    rid = mirror_bid(runtime, premium_sandbox, status="payed", **kw)
    premium_sandbox.engine.set_status(rid, "realpay")
    return rid


def _store_callback(runtime, rid: int) -> int:
    """The engine's callback for ``rid`` as the receiver stores it (the queue message is not sent)."""
    with runtime.db.session() as s:
        ev = InboxEvent(provider="premium", endpoint="main", headers={}, received_at=now_utc(),
                        body=f"bid_id={rid}&status=realpay".encode(),
                        content_type="application/x-www-form-urlencoded", payload={"bid_id": rid, "status": "realpay"})
        s.add(ev)
        s.flush()
        return ev.id


def _queued(broker) -> list[tuple[str, list]]:
    """(task name, args) of every message waiting in the queue, oldest first."""
    out = []
    for raw in reversed(broker.lrange("exsync", 0, -1)):
        msg = json.loads(raw)
        args = json.loads(base64.b64decode(msg["body"]))[0]
        out.append((msg["headers"]["task"], args))
    return out


def _moved() -> reconcile.Outcome:
    """What apply_snapshot returns for a bid it just moved from payed to realpay."""
    return reconcile.Outcome(bid_id=0, changed=True, applied=True, from_status="payed", status="realpay")


def _completed(runtime) -> bool:
    ps = payouts(runtime)
    return bool(ps) and all(p.bid_completed_at is not None for p in ps)


def test_callback_to_realpay_is_paid_and_completed_without_a_tick(runtime, premium_sandbox, zc_sandbox,
                                                                   celery_worker):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = _payed_bid(runtime, premium_sandbox)
    web = create_app(runtime, env={}).test_client()
    resp = web.post(CALLBACK, data={"bid_id": str(rid), "status": "realpay"})
    assert resp.status_code == 202

    # Callback → inbox → worker → reconcile → hand-over → send → completion: nobody calls the engine here.
    wait_for(lambda: _completed(runtime), 30, "the payout to be sent and its bid completed")
    p = one(runtime)
    assert p.state == "succeeded" and zc_sandbox.engine.executed(p.idempotency_key) == 1
    assert [(a.kind, a.outcome) for a in attempts(runtime, p.id)] == [("submit", "succeeded"),
                                                                     ("complete", "succeeded")]
    assert premium_sandbox.engine.bid(rid)["status"] == "success"
    assert_invariant(runtime, zc_sandbox)


@pytest.mark.parametrize("source", ["callback", "poll", "sweep"])
def test_each_reconcile_source_hands_the_move_over_once_committed(runtime, premium_sandbox, zc_sandbox, broker,
                                                                  source):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = _payed_bid(runtime, premium_sandbox)
    if source == "callback":
        assert inbox.process_event(runtime, _store_callback(runtime, rid)) == "payed -> realpay"
    elif source == "poll":
        assert poll.refresh(runtime, "main", rid).status == "realpay"
    else:
        assert sweep_mod.sweep_exchanger(runtime, "main").changed >= 1
    assert _queued(broker) == [("worker.payouts.tasks.pay_bids", ["main", [rid]])]
    # Seen again (unchanged): nothing more is handed over.
    poll.refresh(runtime, "main", rid)
    assert len(_queued(broker)) == 1


def test_moves_that_do_not_trigger_are_not_handed_over(runtime, premium_sandbox, zc_sandbox, broker):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = mirror_bid(runtime, premium_sandbox, status="new")
    premium_sandbox.engine.set_status(rid, "payed")  # not a payout status
    poll.refresh(runtime, "main", rid)
    install_payouts(runtime, payout_toml(zc_sandbox.url).replace("enabled = true", "enabled = false"))
    premium_sandbox.engine.set_status(rid, "realpay")  # a payout status, but the route is switched off
    poll.refresh(runtime, "main", rid)
    assert _queued(broker) == []


def test_a_rolled_back_reconcile_hands_nothing_over(runtime, premium_sandbox, zc_sandbox, broker):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = _payed_bid(runtime, premium_sandbox)
    with pytest.raises(RuntimeError):
        with runtime.db.session() as s:
            events.bid_moved(s, runtime, "main", rid, _moved())
            raise RuntimeError("the transaction fails after the move")
    assert _queued(broker) == []


def test_a_hand_over_inside_a_savepoint_waits_for_the_outer_commit(runtime, premium_sandbox, zc_sandbox, broker):
    """The inbox applies a callback inside a SAVEPOINT; releasing it is not the commit a task can see."""
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = _payed_bid(runtime, premium_sandbox)
    with runtime.db.session() as s:
        with s.begin_nested():
            events.bid_moved(s, runtime, "main", rid, _moved())
        assert _queued(broker) == []
    assert _queued(broker) == [("worker.payouts.tasks.pay_bids", ["main", [rid]])]


def test_a_lost_hand_over_is_paid_by_the_tick(runtime, premium_sandbox, zc_sandbox, broker):
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rid = _payed_bid(runtime, premium_sandbox)
    inbox.process_event(runtime, _store_callback(runtime, rid))
    assert [name for name, _ in _queued(broker)] == ["worker.payouts.tasks.pay_bids"]
    assert payouts(runtime) == [] and zc_sandbox.engine.ledger == {}  # nothing consumes: nothing sent
    broker.delete("exsync")  # the message is lost (Redis restarted without it)

    r = engine.tick(runtime)
    assert r["created"] == 1 and r["submitted"] == {"succeeded": 1} and r["completed"] == 1
    p = one(runtime)
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1
    assert premium_sandbox.engine.bid(rid)["status"] == "success"


def test_duplicate_hand_overs_of_one_move_send_once(runtime, premium_sandbox, zc_sandbox, celery_worker):
    """Callback, poll and sweep see the same move at once, the task is delivered again, and a tick runs
    beside them: one payout, one send, one success_bid."""
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    zc_sandbox.engine.knobs.latency = 0.2  # sends overlap with the duplicates
    rid = _payed_bid(runtime, premium_sandbox)
    event_id = _store_callback(runtime, rid)
    runs = [lambda: inbox.process_event(runtime, event_id), lambda: poll.refresh(runtime, "main", rid),
            lambda: sweep_mod.sweep_exchanger(runtime, "main"),
            lambda: payout_tasks.pay_bids.delay("main", [rid]), lambda: payout_tasks.pay_bids.delay("main", [rid]),
            lambda: payout_tasks.pay_bids("main", [rid]), lambda: engine.tick(runtime)]
    threads = [threading.Thread(target=f) for f in runs]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    wait_for(lambda: _completed(runtime), 30, "the payout to be completed")
    p = one(runtime)
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1
    kinds = [(a.kind, a.outcome) for a in attempts(runtime, p.id)]
    assert kinds.count(("submit", "succeeded")) == 1 and [k for k, _ in kinds].count("complete") == 1, kinds
    assert [s for _, s in premium_sandbox.engine.bid(rid)["history"]].count("success") == 1
    assert_invariant(runtime, zc_sandbox)


def test_an_event_send_that_loses_its_answer_is_settled_by_the_tick_once(runtime, premium_sandbox, zc_sandbox,
                                                                         celery_worker):
    """The provider commits the transfer and answers 502: the event path leaves the payout ``unknown``
    (no completion), and the tick asks the provider before anything else: still one execution."""
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=1.0, fail_after_commit_mode="502")
    rid = _payed_bid(runtime, premium_sandbox)
    poll.refresh(runtime, "main", rid)
    wait_for(lambda: [p.state for p in payouts(runtime)] == ["unknown"], 30, "the event's send to end unknown")
    p = one(runtime)
    assert zc_sandbox.engine.executed(p.idempotency_key) == 1 and p.maybe_sent and p.bid_completed_at is None
    zc_sandbox.engine.knobs.update(fail_after_commit_rate=0.0)

    r = engine.tick(runtime, later(40))  # past the unknown payout's check delay
    assert r["submitted"] == {"succeeded": 1} and r["completed"] == 1
    p = one(runtime)
    assert [(a.kind, a.outcome) for a in attempts(runtime, p.id)] == [
        ("submit", "unknown"), ("find", "succeeded"), ("complete", "succeeded")]
    assert premium_sandbox.engine.bid(rid)["status"] == "success"
    assert_invariant(runtime, zc_sandbox)


def test_provider_callback_checks_the_payout_and_completes_it_without_a_tick(runtime, premium_sandbox, gw_sandbox,
                                                                             celery_worker):
    srv = serve(create_app(runtime, env={}), port=0)
    try:
        toml = payout_toml("http://127.0.0.1:9", gw_sandbox.url).replace(
            'secret_env = "EXSYNC_TEST_GW_SECRET"',
            f'secret_env = "EXSYNC_TEST_GW_SECRET"\ncallback_url = "{srv.url}/webhooks/gateway/gw"')
        install_payouts(runtime, toml)
        rid = _payed_bid(runtime, premium_sandbox, direction_id=2, fields={"account2": CARD})
        poll.refresh(runtime, "main", rid)  # the move: created and sent by the worker, answered "pending"
        wait_for(lambda: [p.state for p in payouts(runtime)] == ["submitted"], 30, "the payout to be submitted")
        p = one(runtime)
        assert p.next_attempt_at > p.updated_at  # its own check waits on the ladder (15 s)

        gw_sandbox.engine.process_all()  # success, announced by the gateway's signed callback
        wait_for(lambda: _completed(runtime), 30, "the callback to settle and complete the payout")
        p = one(runtime)
        assert p.state == "succeeded" and gw_sandbox.engine.executed(p.idempotency_key) == 1
        assert [a.kind for a in attempts(runtime, p.id)] == ["submit", "find", "complete"]
        assert premium_sandbox.engine.bid(rid)["status"] == "success"
    finally:
        srv.shutdown()


def test_the_tick_completes_a_claim_of_several_bids(runtime, premium_sandbox, zc_sandbox):
    """complete_due runs a claim's bids side by side (bench/payout_latency measures what that gains)."""
    install_payouts(runtime, payout_toml(zc_sandbox.url))
    rids = [mirror_bid(runtime, premium_sandbox, fields={"account2": ZC_USER}) for _ in range(4)]
    assert engine.create_due_payouts(runtime) == 4
    assert engine.submit_due(runtime) == {"succeeded": 4}
    assert engine.complete_due(runtime) == 4
    assert engine.complete_due(runtime) == 0
    assert all(premium_sandbox.engine.bid(r)["status"] == "success" for r in rids)
    assert all(p.bid_completed_at is not None for p in payouts(runtime))
