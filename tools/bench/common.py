"""What every engine in the benchmark shares: the clips, the request schedule, the statistics.

Each engine (the service over HTTP, bare vLLM, faster-whisper) runs the same schedule: at
concurrency level L, `max(L, min_requests)` requests over the same clips in the same order, at most
L in flight at a time. Audio decoding is part of every engine's work (each gets the file's bytes).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from serve_app.settings import WindowPolicy
from tools import ROOT

SHARED_MANIFEST = ROOT.parent / "shared" / "audio" / "manifest.jsonl"
DEFAULT_MANIFEST = SHARED_MANIFEST if SHARED_MANIFEST.exists() else ROOT / "tests" / "data" / "manifest.jsonl"


def config_window(config: Path) -> WindowPolicy:
    """The encoder windows a Serve config's engine serves (its `engine.window`): what a tool decodes
    with, or says it measured, read from the config instead of written out again beside it."""
    (app,) = yaml.safe_load(config.read_text())["applications"]
    return WindowPolicy.model_validate(app["args"]["engine"]["window"])


@dataclass(frozen=True)
class Clip:
    path: str
    duration_s: float
    text: str


def load_clips(manifest: Path, min_s: float, max_s: float, limit: int | None, sets: set[str] | None = None) -> list[Clip]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    clips = [
        Clip(str(manifest.parent / r["path"]), r["duration_s"], r["text"])
        for r in rows
        if r.get("language", "en") == "en" and min_s <= r["duration_s"] <= max_s and (sets is None or r.get("set") in sets)
    ]
    return clips[:limit] if limit else clips


def schedule(clips: list[Clip], level: int, min_requests: int) -> list[Clip]:
    n = max(level, min_requests)
    return [clips[i % len(clips)] for i in range(n)]


def normalize(text: str) -> str:
    text = re.sub(r"[^\w\s']", " ", text.lower()).replace("'", "")
    return " ".join(text.split())


@dataclass
class LevelResult:
    engine: str
    level: int
    requests: int
    wall_s: float
    audio_s: float
    latencies_s: list[float] = field(repr=False)
    statuses: dict[str, int]
    hypotheses: list[str] = field(repr=False)
    references: list[str] = field(repr=False)
    rss_peak_mb: float = 0.0

    def summary(self) -> dict:
        import jiwer

        lat = sorted(self.latencies_s)
        pct = lambda q: lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))] if lat else None  # noqa: E731
        pairs = [(normalize(r), normalize(h)) for r, h in zip(self.references, self.hypotheses) if h is not None]
        wer = jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]) if pairs else None
        return {
            "engine": self.engine,
            "level": self.level,
            "requests": self.requests,
            "wall_s": round(self.wall_s, 3),
            "audio_s": round(self.audio_s, 2),
            "throughput_x": round(self.audio_s / self.wall_s, 2) if self.wall_s else None,
            "p50_s": pct(0.5),
            "p95_s": pct(0.95),
            "p99_s": pct(0.99),
            "mean_s": round(statistics.fmean(lat), 4) if lat else None,
            "statuses": self.statuses,
            "wer": round(wer, 4) if wer is not None else None,
            "rss_peak_mb": round(self.rss_peak_mb, 1),
        }


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Ray workers, vLLM engine processes)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


# Markers found in a process's command line, and the role shown for them: most are their own name.
_ROLES = {
    marker: marker
    for marker in (
        "ServeReplica:stt:Ingress",
        "ServeReplica:stt:WhisperEngine",
        "ProxyActor",
        "ServeController",
        "VLLM::EngineCore",
        "VLLM::Worker",
        "raylet",
        "gcs_server",
        "dashboard",
        "serve run",
        "DashboardAgent",
        "RuntimeEnvAgent",
    )
} | {"tools.bench.peers": "bare vLLM's process"}  # feature extraction, scheduling, detokenizing


def _label(proc: psutil.Process) -> str:
    """A readable role for a process of the service's tree (Ray names its workers by actor)."""
    name = " ".join(proc.cmdline()[:1]) or proc.name()
    for marker, role in _ROLES.items():
        if marker in name or marker in " ".join(proc.cmdline()):
            return role
    return proc.name()


def _by_role(pid: int, measure) -> dict[str, float]:  # type: ignore[no-untyped-def]
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    totals: dict[str, float] = {}
    for p in procs:
        try:
            totals[_label(p)] = totals.get(_label(p), 0.0) + measure(p)
        except psutil.NoSuchProcess:
            pass
    return totals


def cpu_seconds_by_role(pid: int) -> dict[str, float]:
    """User+system CPU seconds so far of every process in the tree, summed by role."""
    return _by_role(pid, lambda p: sum(p.cpu_times()[:2]))


def cpu_seconds_since(pid: int, before: dict[str, float]) -> dict[str, float]:
    """CPU seconds by role spent since `before` (an earlier `cpu_seconds_by_role` of the same tree)."""
    return {k: round(v - before.get(k, 0.0), 2) for k, v in cpu_seconds_by_role(pid).items()}


def rss_mb_by_role(pid: int) -> dict[str, float]:
    return {k: round(v, 1) for k, v in _by_role(pid, lambda p: p.memory_info().rss / 2**20).items()}


class RssSampler:
    """Samples a process tree's RSS in a background thread; `peak` is the largest seen."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        import threading

        self.pid, self.every_s, self.peak = pid, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def result_json(result: LevelResult) -> dict:
    return {**result.summary(), "latencies_s": [round(x, 4) for x in result.latencies_s]}


def median_ms(call: Callable[[], object], calls: int, warmup: int = 1) -> float:
    """Median wall time of `calls` calls of `call`, in milliseconds, after `warmup` unmeasured ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
