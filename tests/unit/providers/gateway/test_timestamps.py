"""X-Timestamp is always the current second, never ahead of the clock (issue 6, item 7).

Everything runs against the real gateway sandbox over HTTP with replay protection on: it refuses a
signature it has seen within its window, so identical requests in one second cannot all be signed
alike. The sandbox's clock is ``time.time()`` plus its ``clock_skew`` knob (left at 0 here), and it runs
in this process, so freezegun moves the client's and the gateway's clocks together: "within [now-1, now]
of the sandbox's clock" is checked on the very clock the gateway verifies with, at each request's arrival.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

from providers import RetryableError
from providers.gateway import GatewayClient, GatewayRail
from providers.gateway.sandbox import DEFAULT_API_KEY, DEFAULT_SECRET

UTC = timezone.utc
CARD = "4111111111111111"


def next_second() -> datetime:
    """The start of a second a little ahead: a frozen clock there never goes back behind real requests."""
    return datetime.fromtimestamp(int(time.time()) + 2, UTC)


def assert_current(seen) -> None:
    """Every X-Timestamp the gateway received is this second or the one before by its own clock."""
    assert seen
    for ts, now, _status in seen:
        assert int(now) - 1 <= ts <= now, (ts, now)


@pytest.mark.parametrize("clock", ["frozen", "real"])
def test_a_thousand_identical_reads_within_a_second(timestamped_gateway, clock):
    app, c, seen = timestamped_gateway
    c.create_payout("ord-1", "10", "RUB", CARD)
    seen.clear()
    ticking = clock == "real"
    with nullcontext() if ticking else freeze_time(next_second()):
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda _: c.get_payout("ord-1"), range(1000)))
    assert len(got) == 1000 and {p.status for p in got} == {"created"} and {p.external_id for p in got} == {"ord-1"}
    assert_current(seen)
    assert {status for _, _, status in seen} == {200}  # no replay refusal, no window refusal
    stamps = [ts for ts, _, _ in seen]
    assert len(stamps) == len(set(stamps))  # one call per second: the rest shared its answer
    if not ticking:
        assert len(stamps) == 1  # one frozen second: exactly one request reached the gateway


def test_a_lookup_every_half_second_for_ten_simulated_minutes(timestamped_gateway):
    app, c, seen = timestamped_gateway
    rail = GatewayRail(c)
    c.create_payout("ord-1", "10", "RUB", CARD)
    seen.clear()
    states = []
    with freeze_time(next_second()) as frozen:
        start = time.time()
        for i in range(1200):  # 600 simulated seconds
            if i == 700:
                app.engine.set_status("ord-1", "processing")
                changed_at = time.time()
            if i == 1100:
                app.engine.set_status("ord-1", "success")
            result = rail.find("ord-1")
            assert result is not None
            states.append((time.time(), result.code))
            frozen.tick(0.5)
        end = time.time()
    assert end - start == 600
    assert_current(seen)
    assert {status for _, _, status in seen} == {200}
    assert len(seen) == 600 and len({ts for ts, _, _ in seen}) == 600  # one request per simulated second
    assert max(ts for ts, _, _ in seen) <= end
    # A change is seen within the second it happened: a half-second repeat shares that second's answer.
    first_processing = next(t for t, code in states if code == "processing")
    assert first_processing - changed_at <= 0.5
    assert states[-1][1] == "success"
    assert len(c._seconds) <= 1  # only the current second's signatures are remembered


def test_identical_writes_in_one_second_each_get_a_second_of_their_own(timestamped_gateway):
    """The second identical create waits for the next second and is signed with it (the clock runs)."""
    app, c, seen = timestamped_gateway
    with freeze_time(next_second(), tick=True):
        _, created1 = c.create_payout("ord-1", "10", "RUB", CARD)
        _, created2 = c.create_payout("ord-1", "10", "RUB", CARD)
    assert (created1, created2) == (True, False) and app.engine.executed("ord-1") == 1
    assert_current(seen)
    (t1, _, s1), (t2, _, s2) = seen
    assert (s1, s2) == (201, 200) and t2 == t1 + 1


def test_a_burst_of_identical_writes_gives_up_without_sending(timestamped_gateway):
    """With the clock held still no second of its own ever comes: a retryable error, nothing sent."""
    app, _, seen = timestamped_gateway
    c = GatewayClient(app.url, DEFAULT_API_KEY, DEFAULT_SECRET, timeout=5, max_sign_wait=0.3)
    with freeze_time(next_second()):
        c.create_payout("ord-1", "10", "RUB", CARD)
        with pytest.raises(RetryableError) as ei:
            c.create_payout("ord-1", "10", "RUB", CARD)
    assert ei.value.code == "signature_busy" and "nothing was sent" in ei.value.message
    assert app.engine.requests_served["POST"] == 1 and app.engine.executed("ord-1") == 1
    c.close()


def test_a_write_through_the_client_ends_sharing_of_earlier_reads(timestamped_gateway):
    app, c, seen = timestamped_gateway
    with freeze_time(next_second(), tick=True):
        before = c.balance().available
        c.create_payout("ord-1", "10", "RUB", CARD)
        after = c.balance().available  # the identical read, same second: not answered from before the write
    assert after == before - Decimal("10")
    assert_current(seen)
    balance_stamps = [ts for ts, _, status in seen if status == 200]
    assert len(balance_stamps) == 2 and balance_stamps[1] == balance_stamps[0] + 1


def test_a_failed_read_is_not_given_to_a_later_caller(timestamped_gateway):
    app, c, seen = timestamped_gateway
    c.create_payout("ord-1", "10", "RUB", CARD)
    seen.clear()
    with freeze_time(next_second(), tick=True):
        app.engine.knobs.error_rate = 1.0
        with pytest.raises(RetryableError):
            c.get_payout("ord-1")
        app.engine.knobs.error_rate = 0.0
        assert c.get_payout("ord-1").status == "created"  # asked again (next second), not the 500 again
    assert_current(seen)
    (t1, _, s1), (t2, _, s2) = seen
    assert (s1, s2) == (500, 200) and t2 == t1 + 1
