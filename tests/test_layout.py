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
    """The absolute names of the modules `path` imports from (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.update({module, *(f"{module}.{a.name}" for a in node.names)})
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _offenders(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    """Modules of `packages` (under serve_app/) that import from any of `forbidden`."""
    found = []
    for package in packages:
        for path in (
            sorted((ROOT / "serve_app" / package).rglob("*.py")) if package else sorted((ROOT / "serve_app").glob("*.py"))
        ):
            if any(name == f or name.startswith(f + ".") for name in _imports(path) for f in forbidden):
                found.append(str(path.relative_to(ROOT)))
    return found


def test_only_the_builder_names_the_engine_package() -> None:
    ingress_side = ("", "api", "pipeline", "stream", "licensing")
    offenders = [
        path for path in _offenders(ingress_side, ("serve_app.engine",)) if path != "serve_app/" + next(iter(MAY_NAME_THE_ENGINE))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "packages, forbidden",
    [
        (("pipeline", "stream", "licensing"), ("serve_app.api", "serve_app.ingress")),  # api -> pipeline, never back
        (("licensing",), ("serve_app.pipeline", "serve_app.stream")),
    ],
)
def test_imports_point_one_way(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    assert _offenders(packages, forbidden) == []


def test_the_check_sees_relative_imports() -> None:
    """The checks above resolve relative imports (`from ..types import SAMPLE_RATE` in pipeline/files.py)."""
    assert "serve_app.types.SAMPLE_RATE" in _imports(ROOT / "serve_app/pipeline/files.py")
    assert "serve_app.pipeline.engine_client" in _imports(ROOT / "serve_app/pipeline/files.py")
