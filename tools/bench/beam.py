"""What beam search would cost through vLLM's Whisper path: vLLM's own beam search (`LLM.beam_search`)
against greedy decoding of the same clips, on the served tiny.en checkpoint, in one process.

vLLM implements beam search above the engine: each step of each beam is a new one-token request whose
prompt is the audio and the beam's tokens so far. An encoder-decoder model has no prefix cache, so
every step encodes the audio again and prefills the decoder from the start: the cost grows with
(tokens x beams) encoder passes, where greedy decoding encodes once.

  .venv/bin/python -m tools.bench.beam [--clips 4] [--beams 2]

Prints a table and writes docs/benchmarks/beam.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tools import ROOT
from tools.bench.common import DEFAULT_MANIFEST, normalize

MODEL = ROOT / "models" / "whisper-tiny.en-15s"
MAX_TOKENS = 100


def _prompts(clips: list[dict], sot: int, no_timestamps: int) -> list[dict]:
    from serve_app.pipeline.decode import decode

    return [
        {
            "encoder_prompt": {
                "prompt": "",
                "multi_modal_data": {"audio": (decode((DEFAULT_MANIFEST.parent / c["path"]).read_bytes(), 30), 16000)},
            },
            "decoder_prompt": {"prompt_token_ids": [sot, no_timestamps]},
        }
        for c in clips
    ]


def measure(clips: list[dict], beams: int) -> dict:
    """Seconds to decode `clips` one at a time, greedy and with `beams` beams, and both texts."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import BeamSearchParams

    llm = LLM(str(MODEL), max_model_len=448, enforce_eager=True, limit_mm_per_prompt={"audio": 1})
    tokenizer = llm.get_tokenizer()
    prompts = _prompts(clips, *tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"]))
    greedy = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    llm.generate(prompts[:1], greedy, use_tqdm=False)  # warm-up
    started = time.perf_counter()
    greedy_texts = [llm.generate([p], greedy, use_tqdm=False)[0].outputs[0].text for p in prompts]
    greedy_s = time.perf_counter() - started
    started = time.perf_counter()
    beam_out = llm.beam_search(prompts, BeamSearchParams(beam_width=beams, max_tokens=MAX_TOKENS))  # type: ignore[arg-type]
    beam_s = time.perf_counter() - started
    beam_texts = [tokenizer.decode(o.sequences[0].tokens, skip_special_tokens=True) for o in beam_out]
    return {
        "clips": [c["path"] for c in clips],
        "audio_s": round(sum(c["duration_s"] for c in clips), 1),
        "beams": beams,
        "greedy_s": round(greedy_s, 2),
        "beam_s": round(beam_s, 2),
        "beam_vs_greedy": round(beam_s / greedy_s, 1),
        "same_words": sum(normalize(a) == normalize(b) for a, b in zip(greedy_texts, beam_texts)),
        "greedy": greedy_texts,
        "beam": beam_texts,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--beams", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "beam.json")
    args = p.parse_args()
    rows = [json.loads(line) for line in DEFAULT_MANIFEST.read_text().splitlines() if line.strip()]
    clips = [r for r in rows if r["set"] == "librivox" and r["duration_s"] < 14][: args.clips]
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(), **measure(clips, args.beams)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| clips | audio s | greedy s | beam s | beams | beam / greedy | same words |")
    print("|---|---|---|---|---|---|---|")
    r = result
    print(
        f"| {len(clips)} | {r['audio_s']} | {r['greedy_s']} | {r['beam_s']} | {r['beams']} | {r['beam_vs_greedy']}x | {r['same_words']} of {len(clips)} |"
    )


if __name__ == "__main__":
    main()
