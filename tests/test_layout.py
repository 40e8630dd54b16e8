"""The layout's promises: the ingress side never loads the engine side (torch, vLLM, SciPy), and only
the app builder names the engine package."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from serve_app.settings import ROOT

HEAVY = ("torch", "vllm", "scipy", "transformers")
# The builder declares the engine deployment.
MAY_NAME_THE_ENGINE = {"app.py"}


@pytest.mark.parametrize("module", ["serve_app.ingress", "serve_app.app"])
def test_importing_the_ingress_side_loads_no_model_stack(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"{module} loads {loaded}"


def _imports(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.update({base, *(f"{base}.{a.name}" for a in node.names)})
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_only_the_builder_names_the_engine_package() -> None:
    offenders = []
    for path in (ROOT / "serve_app").rglob("*.py"):
        relative = path.relative_to(ROOT / "serve_app")
        if relative.parts[0] == "engine" or str(relative) in MAY_NAME_THE_ENGINE:
            continue
        if any(name.lstrip(".").startswith("engine") or "serve_app.engine" in name for name in _imports(path)):
            offenders.append(str(relative))
    assert offenders == []
