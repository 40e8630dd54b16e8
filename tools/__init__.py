"""The project's own tools, run from the repository root as `python -m tools.<module>`: benchmarks
(`tools.bench`), local Ray clusters under faults and load (`tools.cluster`), model preparation
(`tools.models`), transcript accuracy (`tools.accuracy`) and the KubeRay manifest generator
(`tools.kuberay`). Tests import them like any package; nothing here is part of the service."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: configs/, models/, tests/data/, docs/
