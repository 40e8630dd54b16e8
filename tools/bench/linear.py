"""Whisper's linear layers on this CPU: float32 against int8 (serve_app/engine/int8_linear.py), the
engine's `linear` setting.

On the shapes Whisper tiny.en gives them (width 384, feed-forward 1536, vocabulary 51864; the
decoder multiplies one row per sequence in the batch, the encoder 50 rows a second of window per
chunk), every core: median milliseconds of 20 calls, and the int8 product's distance from float32's
(norm of the difference over the norm of the product, on random weights and activations).

  .venv/bin/python -m tools.bench.linear [--out docs/benchmarks/linear.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from serve_app.engine.int8_linear import fbgemm_available, int8_linear
from serve_app.engine.precision import cpu_has_native_bf16
from tools import ROOT
from tools.bench.common import median_ms

# (where, rows, inputs, outputs)
SHAPES = [
    ("decoder step, vocabulary projection", 16, 384, 51864),
    ("decoder step, attention q/k/v", 16, 384, 1152),
    ("decoder step, feed-forward in", 16, 384, 1536),
    ("decoder step, feed-forward out", 16, 1536, 384),
    ("encoder, one 15 s chunk, feed-forward in", 750, 384, 1536),
    ("encoder, 16 chunks of 15 s, feed-forward in", 12000, 384, 1536),
    ("encoder, 16 chunks of 15 s, feed-forward out", 12000, 1536, 384),
]


def measure(rows: int, inputs: int, outputs: int) -> dict:
    torch.manual_seed(0)
    weight, bias, x = torch.randn(outputs, inputs) * 0.05, torch.randn(outputs) * 0.01, torch.randn(rows, inputs)
    quantized = int8_linear(weight)
    with torch.no_grad():
        want = torch.nn.functional.linear(x, weight, bias)
        error = float((quantized(x, weight, bias) - want).norm() / want.norm())
        float_ms = round(median_ms(lambda: torch.nn.functional.linear(x, weight, bias), 20), 3)
        int8_ms = round(median_ms(lambda: quantized(x, weight, bias), 20), 3)
    return {"float32_ms": float_ms, "int8_ms": int8_ms, "speedup": round(float_ms / int8_ms, 2), "error": round(error, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "linear.json")
    args = p.parse_args()
    if not fbgemm_available():
        raise SystemExit("this torch has no fbgemm: the engine keeps float linear layers here")
    if cpu_has_native_bf16():
        print("note: this CPU has native bfloat16: the engine computes in bfloat16 here and `auto` keeps float layers")
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"Linear layers, {torch.get_num_threads()} threads: median ms of 20 calls\n")
    print("| where | rows x inputs x outputs | float32 ms | int8 ms | float32 / int8 | int8 error |")
    print("|---|---|---|---|---|---|")
    results = []
    for where, rows, inputs, outputs in SHAPES:
        r = {"where": where, "rows": rows, "inputs": inputs, "outputs": outputs, **measure(rows, inputs, outputs)}
        results.append(r)
        print(
            f"| {where} | {rows} x {inputs} x {outputs} | {r['float32_ms']} | {r['int8_ms']} | {r['speedup']}x | {r['error']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": torch.get_num_threads(), "shapes": results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
