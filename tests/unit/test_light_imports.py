"""What the long-lived small processes import (bench/footprint): the ``exsync run`` supervisor and
gunicorn's master load the CLI, the settings and the supervisor, never SQLAlchemy, a provider's client,
Flask or Celery. Checked in a fresh interpreter: this test process has loaded everything already."""
from __future__ import annotations

import json
import subprocess
import sys

import models

HEAVY = ("sqlalchemy", "requests", "cryptography", "flask", "celery", "alembic")


def _loaded_after(code: str) -> list[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if '.' not in m)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_cli_the_settings_and_the_supervisor_load_nothing_heavy():
    loaded = _loaded_after("import cli, cli.processes, devtools.supervisor, worker.liveness\n"
                           "from core.config import load_settings\nload_settings({})")
    assert [m for m in HEAVY if m in loaded] == []


def test_a_model_still_loads_on_first_use():
    loaded = _loaded_after("from models import Bid\nassert Bid.__tablename__ == 'bids'")
    assert "sqlalchemy" in loaded


def test_models_exports_every_model_it_lazily_loads():
    assert sorted(models.__all__) == sorted(["Base", *(n for names in models.MODULES.values() for n in names)])
    models.load_all()
    assert {"bids", "payouts", "worker_liveness", "audit_events", "notifications"} <= set(models.Base.metadata.tables)
