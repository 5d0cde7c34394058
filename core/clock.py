"""The one clock of exsync: aware UTC now (freezegun moves it in tests)."""
from __future__ import annotations

from datetime import datetime, timezone


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
