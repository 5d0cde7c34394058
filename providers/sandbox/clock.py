"""The real monotonic clock, for scheduling inside the sandboxes while a test freezes time.

freezegun patches ``time.monotonic`` and every module attribute that holds it, but not the contents of a
container: the function captured here at import keeps running, so callbacks and delayed steps are not
stalled by a frozen clock. Wall-clock times (``time.time()``) stay freezable on purpose.
"""
from __future__ import annotations

import time

_REAL = (time.monotonic,)


def monotonic() -> float:
    return _REAL[0]()
