"""Log levels a person relies on: a failed poll is a WARNING; an idle sweep says nothing at INFO."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from freezegun import freeze_time

from worker import poll
from worker import sweep as sweep_mod
from worker.reconcile import Snapshot, apply_snapshot


def test_a_failed_poll_is_a_warning(runtime, premium_sandbox, caplog):
    start = datetime.now(timezone.utc)
    with freeze_time(start) as clock:
        rid = premium_sandbox.engine.add_bid(status="new")
        with runtime.db.session() as s:
            apply_snapshot(s, runtime.settings, "main", Snapshot(remote_id=rid, status="new", observed_at=start),
                           "sweep")
        premium_sandbox.engine.knobs.maintenance = True
        clock.tick(timedelta(hours=1))
        try:
            with caplog.at_level(logging.INFO, logger="exsync"):
                assert poll.poll_due(runtime).errors == 1
        finally:
            premium_sandbox.engine.knobs.maintenance = False
    [record] = [r for r in caplog.records if r.getMessage().startswith(f"poll of main/{rid} failed")]
    assert record.levelno == logging.WARNING


def test_a_sweep_that_finds_nothing_logs_below_info(runtime, premium_sandbox, caplog):
    with caplog.at_level(logging.DEBUG, logger="exsync"):
        first = sweep_mod.sweep_exchanger(runtime, "main")  # the sandbox's bids are new to the mirror
        again = sweep_mod.sweep_exchanger(runtime, "main")  # nothing changed since
    lines = [r for r in caplog.records if r.getMessage().startswith("sweep main:")]
    assert len(lines) == 2
    assert lines[0].levelno == (logging.INFO if first.inserted or first.changed else logging.DEBUG)
    assert again.inserted == 0 and again.changed == 0 and lines[1].levelno == logging.DEBUG
