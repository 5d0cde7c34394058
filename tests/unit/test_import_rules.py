"""Dependencies point one way (README "Layout"): cli → devtools → webhooks → worker → core → providers,
models. Every import counts, the lazy ones inside functions too."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.support import ROOT

PROJECT = {"cli", "devtools", "webhooks", "worker", "core", "models", "providers", "migrations", "bench", "tests"}
# package -> the project packages it may import (itself always)
ALLOWED = {
    "providers": set(),
    "models": set(),
    "core": {"models", "providers"},
    "worker": {"core", "models", "providers"},
    "webhooks": {"worker", "core", "models", "providers"},
    "devtools": {"webhooks", "worker", "core", "models", "providers"},
    "migrations": {"models"},
    "bench": {"devtools", "webhooks", "worker", "core", "models", "providers"},
    "cli": {"devtools", "webhooks", "worker", "core", "models", "providers"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def violations() -> list[str]:
    found = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, module in imports_of(path):
                top = module.split(".")[0]
                if top in PROJECT and top != package and top not in allowed:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def test_dependencies_point_one_way():
    assert violations() == []


def test_the_rule_sees_a_violation(tmp_path, monkeypatch):
    # The checker itself: a providers module importing the worker is caught.
    fake = tmp_path / "providers"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from worker import tasks\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "ALLOWED", {"providers": set()})
    assert violations() == ["providers/bad.py:2 imports worker"]


def test_no_test_module_imports_another():
    # Tests share code through tests.support (plain helpers) and fixtures through the conftest files, never by
    # importing a test module or a conftest.
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} relative import")
        for line, module in imports_of(path):
            parts = module.split(".")
            if parts[0] == "tests" and parts[1:2] != ["support"] or parts[-1] == "conftest" or \
                    parts[-1].startswith("test_"):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert found == []
