"""How a secret may be written on its way into a log line, and whether a text still carries it."""
from __future__ import annotations

import base64
import random
from urllib.parse import unquote, unquote_plus


def pct(byte: int, case: str = "upper", rnd: random.Random | None = None) -> str:
    """``%XX`` for one byte; ``case``: upper, lower or mixed (each hex digit's case drawn from ``rnd``)."""
    digits = f"{byte:02X}"
    if case == "lower":
        digits = digits.lower()
    elif case == "mixed":
        digits = "".join(d.lower() if rnd.random() < 0.5 else d for d in digits)
    return "%" + digits


def carries(text: str, secret: str) -> bool:
    """Whether decoding ``text`` (percent-encoding up to three times, '+' as space) shows ``secret``,
    or its base64 appears in it (independent of the redactor's own search)."""
    views = [text]
    for _ in range(3):
        views.append(unquote(views[-1]))
    views.append(unquote_plus(text))
    b64 = {base64.b64encode(bytes(k) + secret.encode())[4:-4].decode() for k in range(3)}
    return any(secret in v or any(b in v for b in b64) for v in views)
