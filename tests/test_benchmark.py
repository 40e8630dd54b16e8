"""A quick smoke test of the benchmark: it drives the running service and writes all three outputs.
(Speed itself is shown by the benchmark's results, never asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serve_app.settings import ROOT

from .conftest import Server

pytestmark = pytest.mark.e2e


def test_benchmark_smoke(server: Server, tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench.benchmark",
            "--url",
            server.url,
            "--key",
            server.key,
            "--engines",
            "service",
            "--levels",
            "1,2",
            "--min-requests",
            "2",
            "--rounds",
            "2",
            "--clips",
            "2",
            "--manifest",
            ROOT / "tests/data/manifest.jsonl",
            "--min-s",
            "1",
            "--max-s",
            "15",
            "--out",
            tmp_path,
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=600,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["engines"]["service"]["levels"]
    assert [r["level"] for r in rows] == [1, 1, 2, 2]  # each level's two rounds in a row
    assert all(r["statuses"] == {"200": 2} and r["throughput_x"] > 0 and r["wer"] is not None for r in rows)
    # one table row per level: the faster round of two (the upper median), and both rounds listed
    faster = max(rows[2:], key=lambda r: r["throughput_x"])["throughput_x"]
    every = " / ".join(f"{r['throughput_x']:.1f}" for r in rows[2:])
    assert f"| service (HTTP + Ray Serve + vLLM) | 2 | 2 | {faster:.2f} | {every} |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
