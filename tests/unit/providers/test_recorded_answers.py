"""The recorded provider answers are all in the one format of tests.support.recorded, and each file's name
agrees with what it holds (the call for Premium and ZaleyCash, the status for the gateway and Paysera)."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.support.recorded import answer, answer_names, folder

PROVIDERS = ["premium", "zaleycash", "gateway", "paysera"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_recorded_answer_is_in_the_one_format(provider):
    names = answer_names(provider)
    assert len(names) >= 20
    assert sorted(p.name for p in folder(provider).iterdir()) == sorted(f"{n}.json" for n in names)
    for name in names:
        found = answer(provider, name)  # refuses any other shape
        assert found.call.isidentifier() and 100 <= found.status < 600, name
        if found.is_json:  # the bytes as sent read back as the recorded body
            assert json.loads(found.content, parse_float=Decimal) == found.body, name
        else:
            assert found.content == found.body.encode(), name


@pytest.mark.parametrize("provider", ["premium", "zaleycash"])
def test_the_file_name_starts_with_the_call(provider):
    for name in answer_names(provider):
        assert name.split("__")[0] == answer(provider, name).call, name


def test_the_file_name_carries_the_status():
    for name in answer_names("gateway"):
        assert int(name.split("__")[0]) == answer("gateway", name).status, name
    for name in answer_names("paysera"):
        if name.startswith("error__"):
            assert int(name.split("__")[1].split("_")[0]) == answer("paysera", name).status, name


def test_numbers_go_out_as_recorded():
    # a Decimal goes back out as its own text: 100.0 stays 100.0 (a float would do too, '0.10' would not)
    rec = answer("zaleycash", "balance__ok")
    assert b'"creditLimit": 100.0' in rec.content and b'"balance": 15234.57' in rec.content
