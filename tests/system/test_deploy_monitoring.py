"""deploy/: the Prometheus alert rules pass `promtool check rules` and their own `promtool test rules`, and
every exsync_* series a rule or a Grafana panel names is exported by the /metrics of a running exsync web."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "exsync-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "exsync-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "exsync-dashboard.json"
SERIES = re.compile(r"\bexsync_[a-z0-9_]+")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(not Path(PROMTOOL).exists(),
                                    reason="promtool missing: Debian's prometheus package (bash .ci/run installs it)")


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def panel_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


@needs_promtool
def test_promtool_checks_the_rules():
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out.stdout


@needs_promtool
def test_the_alerts_fire_when_they_should():
    out = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                         cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dashboard_is_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "exsync" and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert p["datasource"]["uid"] == "${datasource}"


def exported(url: str) -> set[str]:
    """The series names a scrape exposes; a counter family ``x`` exposes ``x_total``."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        names |= {s.name for s in family.samples}
    return names


def test_every_series_named_is_exported(live_web):
    names = exported(live_web.url)
    wanted = {name for expr in rule_exprs() + panel_exprs() for name in SERIES.findall(expr)}
    assert wanted, "no exsync series found in the rules and the dashboard"
    assert wanted - names == set()
    # And the payout series the issue asks for are among them.
    assert {"exsync_payouts", "exsync_payout_oldest_needs_review_age_seconds", "exsync_payout_attempts_recent",
            "exsync_provider_balance"} <= wanted
