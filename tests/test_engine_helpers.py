"""Engine helpers that need no model: worker priority, and the repetition-loop test."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from serve_app.engine.deployment import yield_cpu


def test_only_worker_children_are_niced(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep
    worker, other = tmp_path / "VLLM-Worker", tmp_path / "other-proc"  # the process name is the file name
    shutil.copy(sleep, worker)
    shutil.copy(sleep, other)
    procs = [subprocess.Popen([str(worker), "30"]), subprocess.Popen([str(other), "30"])]
    try:
        time.sleep(0.2)
        before = os.getpriority(os.PRIO_PROCESS, procs[1].pid)
        yield_cpu(19)
        assert os.getpriority(os.PRIO_PROCESS, procs[0].pid) == 19
        assert os.getpriority(os.PRIO_PROCESS, procs[1].pid) == before
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_repetition_loops_compress_too_well() -> None:
    from serve_app.engine.deployment import MAX_COMPRESSION_RATIO, compression_ratio

    assert compression_ratio("Hello. " * 100) > MAX_COMPRESSION_RATIO
    speech = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    assert compression_ratio(speech) < MAX_COMPRESSION_RATIO and compression_ratio("") == 0.0
