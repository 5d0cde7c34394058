"""JSON on the wire for ZaleyCash, shared by the client and the sandbox.

Amounts are ``Decimal`` on our side and JSON *numbers* on the wire (``{"amount": 150.25}``), written
from the Decimal's own digits: never through a float, so ``Decimal("0.10")`` goes out as ``0.10``.
Numbers with a fraction are read back as ``Decimal``.
"""
from __future__ import annotations

import json as _json
import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "loads"]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; a finite Decimal becomes a plain JSON number with exactly its digits."""
    numbers: list[str] = []
    nonce = secrets.token_hex(6)

    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            if not o.is_finite():
                raise ValueError("not a finite number")
            numbers.append(format(o, "f"))
            return f"\x00{nonce}:{len(numbers) - 1}\x00"  # placeholder, swapped for the digits below
        if isinstance(o, datetime):
            return o.isoformat()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    text = _json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=default)
    for i, digits in enumerate(numbers):
        text = text.replace(_json.dumps(f"\x00{nonce}:{i}\x00"), digits, 1)
    return text.encode("utf-8")


def loads(content: bytes | str) -> Any:
    """Decode a body (a UTF-8 BOM tolerated); fractions become Decimal. Raises ValueError if not JSON."""
    if isinstance(content, bytes):
        content = content.lstrip(b"\xef\xbb\xbf").decode("utf-8")
    return _json.loads(content.strip(), parse_float=Decimal)
