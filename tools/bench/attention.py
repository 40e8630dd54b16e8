"""The encoder's self-attention on CPU: PyTorch's fused kernel (vLLM's own) against `HeadwiseAttention`
(serve_app/engine/cpu_attention.py), the engine's `encoder_attention` setting.

Two measurements, in one run:
- the kernel alone, on the shapes Whisper's encoder gives it (tiny.en: 6 heads, base: 8, of 64; 50
  frames a second of window, batches of chunks of one window), bfloat16, every core: median
  milliseconds of 30 calls, and each output's mean distance from a float32 reference;
- the whole model, offline: the English clips of 3-15 s through vLLM (one `generate()` of all of
  them, greedy, fitted windows as configs/cpu.yaml), timed three times per setting, each setting in its
  own process, alternating.

  .venv/bin/python -m tools.bench.attention [--model models/whisper-tiny.en] [--out docs/benchmarks/attention.json]

Prints both tables and writes them to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from serve_app.engine.cpu_attention import HeadwiseAttention
from serve_app.engine.precision import cpu_has_native_bf16
from tools import ROOT
from tools.bench.common import DEFAULT_MANIFEST, config_window, load_clips, median_ms

SHAPES = [(6, 1, 600), (6, 1, 750), (6, 4, 750), (6, 8, 600), (6, 1, 1500), (8, 1, 750), (8, 4, 1500)]
HEAD_SIZE = 64
SETTINGS = ("fused", "headwise")
MARK = "seconds per round: "


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """vLLM's encoder attention on CPU: (batch, frames, heads x 64) in and out."""
    batch, frames, _ = q.shape
    split = [t.view(batch, frames, heads, HEAD_SIZE).transpose(1, 2) for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*split, scale=HEAD_SIZE**-0.5)
    return out.transpose(1, 2).reshape(batch, frames, -1)


def kernels() -> list[dict]:
    rows = []
    for heads, batch, frames in SHAPES:
        generator = torch.Generator().manual_seed(frames)
        fused_qkv = torch.randn(batch, frames, 3 * heads * HEAD_SIZE, generator=generator).to(torch.bfloat16)
        q, k, v = fused_qkv.split(heads * HEAD_SIZE, dim=-1)
        headwise = HeadwiseAttention(heads, HEAD_SIZE, HEAD_SIZE**-0.5)
        exact = fused_attention(q.float(), k.float(), v.float(), heads)
        fused_ms = median_ms(partial(fused_attention, q, k, v, heads), 30, warmup=3)
        headwise_ms = median_ms(partial(headwise, q, k, v), 30, warmup=3)
        rows.append(
            {
                "heads": heads,
                "batch": batch,
                "frames": frames,
                "fused_ms": round(fused_ms, 2),
                "headwise_ms": round(headwise_ms, 2),
                "speedup": round(fused_ms / headwise_ms, 2),
                "fused_error": round((fused_attention(q, k, v, heads).float() - exact).abs().mean().item(), 5),
                "headwise_error": round((headwise(q, k, v).float() - exact).abs().mean().item(), 5),
            }
        )
    return rows


def offline_rounds(model: Path, setting: str, rounds: int) -> list[float]:
    """Seconds per `generate()` of every clip, in a process of its own (vLLM's workers are spawned)."""
    out = subprocess.run(
        [sys.executable, "-m", "tools.bench.attention", "--model", str(model), "--one", setting, "--rounds", str(rounds)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith(MARK))[len(MARK) :])


def _one(model: Path, setting: str, rounds: int) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    from vllm import LLM, SamplingParams

    from serve_app.engine.prompts import WhisperVocabulary
    from serve_app.engine.windows import hf_overrides
    from serve_app.pipeline.decode import decode
    from serve_app.types import SAMPLE_RATE

    clips = load_clips(DEFAULT_MANIFEST, 3, 15, None)
    vocab = WhisperVocabulary.from_model_dir(model)
    window = config_window(ROOT / "configs/cpu.yaml")
    llm = LLM(
        str(model),
        max_model_len=448,
        enforce_eager=True,
        limit_mm_per_prompt={"audio": 1},
        dtype="bfloat16",
        hf_overrides=hf_overrides(window, setting),
    )
    prompts = [
        {
            "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (decode(Path(c.path).read_bytes(), 30), SAMPLE_RATE)}},
            "decoder_prompt": {"prompt_token_ids": vocab.prompt("en")},
        }
        for c in clips
    ]
    greedy = SamplingParams(temperature=0.0, max_tokens=224)
    llm.generate(prompts[:4], greedy, use_tqdm=False)  # warm-up
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        llm.generate(prompts, greedy, use_tqdm=False)  # type: ignore[arg-type]
        seconds.append(round(time.perf_counter() - started, 2))
    print(MARK + json.dumps(seconds), flush=True)  # vLLM writes to stdout too


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "whisper-tiny.en")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--starts", type=int, default=2, help="processes per setting, alternating")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "attention.json")
    p.add_argument("--one", choices=SETTINGS, help=argparse.SUPPRESS)  # the child process of offline_rounds
    args = p.parse_args()
    if args.one:
        _one(args.model, args.one, args.rounds)
        return

    if not cpu_has_native_bf16():
        print("note: this CPU emulates bfloat16: the engine runs float32 here (dtype auto), in vLLM's fused attention")
    torch.set_num_threads(os.cpu_count() or 1)
    rows = kernels()
    print(f"Encoder self-attention, bfloat16, {torch.get_num_threads()} threads: median ms of 30 calls\n")
    print("| heads | batch | frames | fused ms | headwise ms | fused / headwise | mean error fused / headwise |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['heads']} | {r['batch']} | {r['frames']} | {r['fused_ms']} | {r['headwise_ms']} | {r['speedup']}x "
            f"| {r['fused_error']} / {r['headwise_error']} |"
        )

    clips = load_clips(DEFAULT_MANIFEST, 3, 15, None)
    offline: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for _ in range(args.starts):
        for setting in SETTINGS:
            offline[setting] += offline_rounds(args.model, setting, args.rounds)
    audio_s = sum(c.duration_s for c in clips)
    print(f"\n{args.model.name} offline, {len(clips)} clips of 3-15 s ({audio_s:.0f} s) per generate():\n")
    print("| encoder_attention | seconds per round | median x real time |")
    print("|---|---|---|")
    for setting, seconds in offline.items():
        print(f"| {setting} | {' / '.join(map(str, seconds))} | {audio_s / statistics.median(seconds):.1f}x |")
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs",
        "command": "python -m tools.bench.attention " + " ".join(sys.argv[1:]),
        "kernels": rows,
        "offline": {"model": args.model.name, "clips": len(clips), "audio_s": round(audio_s, 1), "seconds": offline},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
