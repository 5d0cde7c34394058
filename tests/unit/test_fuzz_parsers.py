"""Property-based fuzzing of every parser (hypothesis): text, whole numbers, amounts, times, JSON, a bid
create request. Whatever the input: a clean value within its bounds that round-trips, or a BadValue."""
from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from providers import values
from tests.support.strategies import any_text, dumps, hostile_numbers, json_value
from webhooks.inputs import decode_json
from worker import bids

PURE = settings(max_examples=500, deadline=None, database=None)


@PURE
@given(value=st.one_of(any_text, json_value), max_length=st.integers(1, 50))
def test_text_is_clean_bounded_and_unchanged(value, max_length):
    try:
        out = values.text(value, "f", max_length=max_length)
    except values.BadValue as bad:
        assert bad.field == "f" and bad.message
        return
    assert out == value and 0 < len(out) <= max_length
    out.encode("utf-8")  # no lone surrogate
    assert "\x00" not in out


@PURE
@given(value=st.one_of(any_text, hostile_numbers, st.integers(), st.decimals(), json_value))
def test_whole_number_is_ascii_digits_within_bounds(value):
    try:
        n = values.whole_number(value, "n", minimum=1, maximum=2**63 - 1)
    except values.BadValue:
        return
    assert isinstance(n, int) and 1 <= n <= 2**63 - 1
    if isinstance(value, str):
        assert value.isascii() and int(value) == n


@PURE
@given(value=st.one_of(any_text, hostile_numbers, st.integers(), st.decimals(), st.floats(), json_value,
                       st.from_regex(r"\A[+-]?[0-9]{1,25}(\.[0-9]{1,22})?\Z")))
def test_amounts_are_bounded_decimals_that_round_trip(value):
    try:
        d = values.amount(value, "a")
    except values.BadValue as bad:
        assert "decimal number" in bad.message
        return
    assert isinstance(d, Decimal) and d.is_finite() and d > 0
    assert d == Decimal(value.strip() if isinstance(value, str) else value)
    plain = format(d, "f")  # cheap: the digits are bounded
    whole, _, frac = plain.partition(".")
    assert len(whole.lstrip("0")) <= values.MAX_INT_DIGITS and len(frac.rstrip("0")) <= values.MAX_FRACTION_DIGITS


@PURE
@given(value=st.one_of(any_text, st.integers(), json_value, st.datetimes().map(lambda d: d.isoformat()),
                       st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}\Z")))
def test_times_are_in_range_and_aware(value):
    try:
        t = values.timestamp(value, "t")
    except values.BadValue:
        return
    assert t.tzinfo is not None and values.MIN_TIME <= t <= values.MAX_TIME
    t.isoformat()


@PURE
@given(raw=st.one_of(st.binary(max_size=200), json_value.map(dumps), hostile_numbers.map(str.encode)))
def test_json_decoding_refuses_what_jsonb_would(raw):
    try:
        value = decode_json(raw)
    except values.BadValue:
        return
    stored = json.dumps(value, default=str, ensure_ascii=False)
    stored.encode("utf-8")
    assert "\x00" not in stored and "\\u0000" not in json.dumps(value, default=str)


@PURE
@given(direction_id=st.one_of(st.integers(), json_value), calc_amount=st.one_of(json_value, hostile_numbers),
       calc_action=st.one_of(st.integers(-2, 6), json_value), api_id=st.one_of(st.none(), any_text),
       fields=st.one_of(st.none(), json_value, st.dictionaries(any_text, any_text, max_size=5)))
def test_create_requests_are_checked_completely(direction_id, calc_amount, calc_action, api_id, fields):
    try:
        d, amount, action, aid, clean = bids.check_request(direction_id=direction_id, calc_amount=calc_amount,
                                                           calc_action=calc_action, api_id=api_id, fields=fields)
    except bids.RequestError as exc:  # FieldError is one
        assert exc.fields
        json.dumps(exc.fields).encode("utf-8")  # the error itself can be answered
        return
    assert d == direction_id and action == calc_action and aid == api_id
    assert clean == (fields or {})
    for name, value in clean.items():
        assert bids.FIELD_NAME_RE.fullmatch(name) and values.first_unclean(value) is None
