"""The beat's schedule is aligned on interval windows of the wall clock (worker/beat.py SlotSchedule), so
beats started at different moments send the same slots; freezegun moves the clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from celery.beat import BeatLazyFunc
from freezegun import freeze_time

from core.config import load_settings
from worker import periodic
from worker.beat import TASKS, SlotSchedule, intervals, schedule

T0 = datetime(2026, 12, 5, 12, 0, 0, tzinfo=timezone.utc)  # a multiple of every interval here


def test_slot_numbers():
    assert periodic.slot_of(5, 0) == 0 and periodic.slot_of(5, 4.999) == 0 and periodic.slot_of(5, 5) == 1
    assert periodic.slot_end(5, 1) == 10
    assert periodic.slot_of(60, T0.timestamp()) == int(T0.timestamp()) // 60


def test_due_once_per_window_whatever_the_phase_of_the_last_send():
    s = SlotSchedule(timedelta(seconds=10))
    early, late = T0 + timedelta(seconds=0.01), T0 + timedelta(seconds=9.9)  # two beats' last sends
    with freeze_time(T0 + timedelta(seconds=9.95)):
        for last in (early, late):
            due, nxt = s.is_due(last)
            assert not due and abs(nxt - 0.05) < 1e-6
    with freeze_time(T0 + timedelta(seconds=10)):
        assert all(s.is_due(last)[0] for last in (early, late))  # both beats send slot n+1 at its start
        assert s.is_due(T0 + timedelta(seconds=10))[1] == 10
    with freeze_time(T0 + timedelta(seconds=31)):  # a beat that was stopped for two windows sends once
        due, nxt = s.is_due(early)
        assert due and abs(nxt - 9) < 1e-6


def test_schedule_sends_each_job_with_its_slot_and_expires_within_its_interval():
    settings = load_settings({"EXSYNC_SWEEP_INTERVAL": "30", "EXSYNC_POLL_INTERVAL": "2"})
    entries = schedule(settings)
    assert set(entries) == set(TASKS) == set(intervals(settings))
    with freeze_time(T0 + timedelta(seconds=31)):
        for job, entry in entries.items():
            seconds = intervals(settings)[job]
            assert entry["task"] == TASKS[job]
            assert entry["schedule"].seconds == seconds == entry["options"]["expires"]
            slot = entry["kwargs"]["slot"]
            assert isinstance(slot, BeatLazyFunc) and slot() == int((T0.timestamp() + 31) // seconds)
            assert entry["kwargs"]["beat"]() == periodic.identity()
    assert intervals(settings)["sweep"] == 30 and intervals(settings)["poll-due"] == 2
