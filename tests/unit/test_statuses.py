from datetime import datetime, timedelta, timezone

import pytest

from core.config import DEFAULT_LADDER
from models import statuses as rules

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def obs(status, seconds, remote=None):
    return rules.Observation(status, T0 + timedelta(seconds=seconds),
                             None if remote is None else T0 + timedelta(seconds=remote))


@pytest.mark.parametrize("status", sorted(rules.KNOWN) + ["my1", "my42"])
def test_engine_statuses_and_custom_ones_are_valid(status):
    assert rules.is_valid(status)


@pytest.mark.parametrize("status", ["", "auto", "My1", "my", "myx", "success ", "payed;drop"])
def test_garbage_statuses_are_refused(status):
    assert not rules.is_valid(status)


def test_first_observation_always_applies():
    assert rules.should_apply(None, obs("new", 0))


def test_newer_observation_wins_and_older_is_ignored():
    assert rules.should_apply(obs("new", 10), obs("payed", 11))
    assert not rules.should_apply(obs("payed", 11), obs("new", 10))


def test_remote_change_time_cannot_go_backwards_even_on_a_later_read():
    # read later, but the engine says this state is older than what we stored
    assert not rules.should_apply(obs("realpay", 10, remote=9), obs("payed", 20, remote=5))
    assert rules.should_apply(obs("realpay", 10, remote=9), obs("success", 20, remote=15))


def test_terminal_status_is_left_only_on_a_strictly_newer_observation():
    assert not rules.should_apply(obs("success", 10), obs("payed", 10))
    assert rules.should_apply(obs("success", 10), obs("payed", 11))  # an admin set it by hand
    assert rules.should_apply(obs("success", 10), obs("success", 10))


def test_ladder_steps_and_repeat_of_last_step():
    ladder = {"default": (10, 20, 40)}
    steps = [rules.next_poll("new", i, T0, T0, ladder, 10**6)[1] - T0 for i in range(5)]
    assert [s.total_seconds() for s in steps] == [10, 20, 40, 40, 40]


def test_ladder_per_status_overrides_default():
    state, at = rules.next_poll("payed", 0, T0, T0, DEFAULT_LADDER, 10**6)
    assert state == "active" and (at - T0).total_seconds() == DEFAULT_LADDER["payed"][0]


def test_terminal_statuses_stop_polling_and_custom_ones_keep_it():
    assert rules.next_poll("success", 0, T0, T0, DEFAULT_LADDER, 100) == ("done", None)
    assert rules.next_poll("archived", 0, T0, T0, DEFAULT_LADDER, 100) == ("done", None)
    assert rules.next_poll("my3", 0, T0, T0, DEFAULT_LADDER, 100)[0] == "active"


def test_polling_gives_up_after_the_configured_age():
    first_seen = T0 - timedelta(seconds=100)
    assert rules.next_poll("new", 3, T0, first_seen, DEFAULT_LADDER, 100) == ("gave_up", None)
    assert rules.next_poll("new", 3, T0, first_seen, DEFAULT_LADDER, 101)[0] == "active"
