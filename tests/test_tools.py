"""The tools' layout holds: scripts/ keeps only the entry points, the tools and tests import each other
as packages (no `sys.path` edits), and no test module imports another (shared fakes live in
tests/support.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tools import ROOT

ENTRY_POINTS = {"setup.sh", "run.sh", "test.sh", "bench.sh", "fuzz.sh"}
SOURCES = sorted([*(ROOT / "tools").rglob("*.py"), *(ROOT / "tests").glob("*.py")])


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_scripts_holds_only_the_entry_points() -> None:
    assert {p.name for p in (ROOT / "scripts").iterdir()} == ENTRY_POINTS


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_edits_the_import_path(path: Path) -> None:
    edits = [
        node.lineno
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id == "sys"
    ]
    assert edits == [], f"sys.path used at lines {edits}"


def _imported_modules(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "tests").glob("*.py")), ids=lambda p: p.name)
def test_no_test_module_imports_another(path: Path) -> None:
    others = [m for m in _imported_modules(_tree(path)) if m.split(".")[-1].startswith("test_")]
    assert others == [], f"import shared code from tests/support.py or tests/helpers.py instead: {others}"
