"""Processes started by an armed parent die with it: a spawned child and the child's forked child
are gone soon after the parent is killed, without the parent running any cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from serve_app.settings import ROOT

PARENT = """
import multiprocessing, os, sys, time
from serve_app.engine import lifeline

def grandchild():
    time.sleep(600)

def child():
    ctx = multiprocessing.get_context("fork")
    ctx.Process(target=grandchild).start()
    time.sleep(600)

if __name__ == "__main__":
    if sys.argv[1] == "armed":
        lifeline.arm()
    multiprocessing.get_context("spawn").Process(target=child).start()  # as vLLM starts its EngineCore
    time.sleep(600)
"""


def _family(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, list[psutil.Process]]:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), mode], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    # The spawned child, its forked grandchild (and multiprocessing's resource tracker): until a grandchild runs.
    while True:
        descendants = psutil.Process(parent.pid).children(recursive=True)
        if any(p.ppid() != parent.pid for p in descendants):
            break
        assert time.monotonic() < deadline, "the child and grandchild did not start"
        time.sleep(0.2)
    time.sleep(1)  # let the grandchild's watch start
    return parent, descendants


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _kill_and_wait(parent: subprocess.Popen, family: list[psutil.Process], wait_s: float) -> list[psutil.Process]:
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + wait_s
    while _alive(family) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(family)


def test_an_armed_parents_children_die_with_it(tmp_path: Path) -> None:
    parent, family = _family(tmp_path, "armed")
    assert _kill_and_wait(parent, family, wait_s=20) == []


def test_without_it_they_are_orphaned(tmp_path: Path) -> None:
    """The control: the same family unarmed outlives its parent (then this test stops it)."""
    parent, family = _family(tmp_path, "plain")
    try:
        assert len(_kill_and_wait(parent, family, wait_s=3)) == len(family) >= 2
    finally:
        for process in _alive(family):
            process.kill()
