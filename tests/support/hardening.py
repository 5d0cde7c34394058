"""Figures the hardening tests measure (requests per surface, answers by status, restarts survived…).

``record(name, figures)`` merges them into the JSON file named by ``EXSYNC_HARDENING_RESULTS`` (nothing is
written without it), so ``EXSYNC_HARDENING_RESULTS=hardening.json make test`` leaves the numbers the
README's "Hardening" section quotes.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()


def record(name: str, figures: dict[str, Any]) -> None:
    path = os.environ.get("EXSYNC_HARDENING_RESULTS")
    if not path:
        return
    with _lock:
        target = Path(path)
        data = json.loads(target.read_text()) if target.exists() else {}
        data[name] = figures
        target.write_text(json.dumps(data, indent=2, sort_keys=True))
