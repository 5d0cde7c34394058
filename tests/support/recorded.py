"""Recorded provider answers: one JSON file per answer, in one format for every provider.

``tests/unit/providers/<provider>/recorded/<call>__<case>.json``::

    {"call": "bid_info", "status": 200, "headers": {"Content-Type": "application/json"}, "body": {...}}

- ``call``: the API call the answer came to, named as the client names it; ``any`` when the provider gives
  the same answer to every call (a refused key, an outage page).
- ``status``: the HTTP status.
- ``headers``: the answer's headers that matter to exsync, always its ``Content-Type``.
- ``body``: the JSON document when the Content-Type is JSON, otherwise the text exactly as sent.

``answer(provider, name)`` reads one (``name`` with or without ``.json``): ``.body`` has numbers with a
fraction as ``Decimal``, as exsync's clients read them; ``.content`` is the body's bytes as the provider
sent them (numbers written exactly as recorded), for the code under test to decode itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

PROVIDERS = Path(__file__).resolve().parent.parent / "unit" / "providers"
FIELDS = {"call", "status", "headers", "body"}


@dataclass(frozen=True)
class Answer:
    name: str
    call: str
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def is_json(self) -> bool:
        return self.headers["Content-Type"].split(";")[0].strip().endswith("json")

    @property
    def content(self) -> bytes:
        return (_dumps(self.body) if self.is_json else self.body).encode("utf-8")


def folder(provider: str) -> Path:
    return PROVIDERS / provider / "recorded"


def answer_names(provider: str) -> list[str]:
    """The provider's recorded answers, by file name without ``.json``, sorted."""
    return sorted(p.stem for p in folder(provider).glob("*.json"))


def answer(provider: str, name: str) -> Answer:
    stem = name.removesuffix(".json")
    data = json.loads((folder(provider) / f"{stem}.json").read_text(encoding="utf-8"), parse_float=Decimal)
    if set(data) != FIELDS:
        raise ValueError(f"{provider}/{stem}: a recorded answer has exactly {sorted(FIELDS)}, not {sorted(data)}")
    if not isinstance(data["status"], int) or "Content-Type" not in data["headers"]:
        raise ValueError(f"{provider}/{stem}: needs an integer status and a Content-Type header")
    found = Answer(stem, data["call"], data["status"], data["headers"], data["body"])
    if not found.is_json and not isinstance(found.body, str):
        raise ValueError(f"{provider}/{stem}: a body that is not JSON is recorded as its text")
    return found


def _dumps(value: Any) -> str:
    """JSON with every Decimal written as its own text (json.dumps would need floats and lose '0.10')."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)
