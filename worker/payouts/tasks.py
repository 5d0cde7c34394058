"""The Celery tasks of event-driven payouts (handed over by worker/payouts/events.py).

Each one is idempotent and takes no global lock: it only claims what is due, with the engine's own claim
(SKIP LOCKED, lease, fencing token), so at-least-once delivery, a duplicate hand-over or a tick running
at the same moment never sends a payout twice. Whatever they miss, the payouts tick picks up.
"""
from __future__ import annotations

from core import runtime as runtime_mod
from worker.celery_app import app
from worker.payouts import engine, events, rules


def _send(ids: list[int]) -> dict:
    rt = runtime_mod.get()
    done = engine.submit_ids(rt, ids)
    events.completions([pid for pid, state in done if state == rules.SUCCEEDED])
    out: dict[str, int] = {}
    for _, state in done:
        out[state] = out.get(state, 0) + 1
    return out


@app.task(name="worker.payouts.tasks.pay_bids")
def pay_bids(exchanger: str, remote_ids: list[int]) -> dict:
    """Create the payouts of these bids (if they are eligible, decided from the mirror) and send them."""
    ids = engine.payouts_of_bids(runtime_mod.get(), exchanger, [int(r) for r in remote_ids])
    return _send(ids)


@app.task(name="worker.payouts.tasks.send_payouts")
def send_payouts(payout_ids: list[int]) -> dict:
    """Send or check these payouts now if they are due (a provider callback made them due)."""
    return _send([int(i) for i in payout_ids])


@app.task(name="worker.payouts.tasks.complete_payouts")
def complete_payouts(payout_ids: list[int]) -> int:
    """Mark the bids of these succeeded payouts ``success`` on the exchanger."""
    return engine.complete_ids(runtime_mod.get(), [int(i) for i in payout_ids])
