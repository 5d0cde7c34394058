"""`exsync inbox replay` of a dead event: due at once, so beat's inbox sweep (every 30 s) enqueues it at its
next run even when the replay could not enqueue it itself — it used to wait for inbox_retry_after after the
event's receipt as well (~67 s measured in the demo where the docs promise 30 s)."""
from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time

from core.clock import now_utc
from models import InboxEvent
from tests.support.operators import add_operator
from worker import inbox
from worker.actions import inbox as actions


def test_a_replayed_event_is_due_at_the_next_sweep(runtime):
    olga = add_operator(runtime, "olga", "operator")
    start = now_utc()
    with freeze_time(start) as clock:
        with runtime.db.session() as s:
            ev = InboxEvent(provider="premium", endpoint="main", body=b"bid_id=1&status=new", state="dead",
                            attempts=10, last_error="malformed", received_at=start)
            s.add(ev)
            s.flush()
            event_id = ev.id
        clock.tick(timedelta(seconds=5))  # replayed a few seconds after it died
        assert actions.replay(runtime, olga, [event_id], "cause fixed") == [event_id]
        assert inbox.due_events(runtime, now_utc()) == [event_id]  # the very next sweep takes it
        assert inbox.due_events(runtime, now_utc()) == []  # leased: not enqueued twice
