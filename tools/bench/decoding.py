"""Decoding variants of one checkpoint on the same clips, offline in one vLLM process: does decoding
with timestamp tokens (faster-whisper's default) or in float32 change the words?

  .venv/bin/python -m tools.bench.decoding [--model models/whisper-tiny.en-15s] [--dtype bfloat16]

Every English clip of the collection's read-speech sets up to 14.5 s (so one window of the 15 s
checkpoint holds it), all in one `generate()` per variant, greedy, with the checkpoint's suppressed
tokens as the service decodes them. Prints errors per set and writes the texts to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from serve_app.engine.prompts import WhisperVocabulary
from serve_app.pipeline.decode import decode
from serve_app.types import SAMPLE_RATE
from tools import ROOT
from tools.accuracy_sets import score
from tools.bench.common import DEFAULT_MANIFEST, normalize

SETS = {"arctic", "classic", "commonvoice", "harvard", "librivox", "ljspeech", "speechbrain_asr"}
MAX_CLIP_S = 14.5


def run(model: Path, dtype: str, clips: list[dict]) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    from vllm import LLM, SamplingParams  # after the CPU variables: vLLM reads them when imported

    vocab = WhisperVocabulary.from_model_dir(model)
    llm = LLM(str(model), max_model_len=448, enforce_eager=True, limit_mm_per_prompt={"audio": 1}, dtype=dtype)  # type: ignore[arg-type]
    tokenizer = llm.get_tokenizer()
    params = SamplingParams(temperature=0.0, max_tokens=224, logit_bias=dict.fromkeys(vocab.suppressed, -100.0) or None)
    audio = [decode((DEFAULT_MANIFEST.parent / c["path"]).read_bytes(), 30) for c in clips]
    # The service's prompt, and the same without <|notimestamps|>: the model then writes <|0.00|>-style
    # tokens around its segments, ids above <|endoftext|> dropped with the other special tokens.
    service = vocab.prompt("en")
    variants = {"no timestamps (the service)": service, "timestamps": [i for i in service if i != vocab.no_timestamps]}
    result: dict = {}
    for name, decoder_ids in variants.items():
        prompts = [
            {
                "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (a, SAMPLE_RATE)}},
                "decoder_prompt": {"prompt_token_ids": decoder_ids},
            }
            for a in audio
        ]
        started = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        texts = [tokenizer.decode([i for i in o.outputs[0].token_ids if i < vocab.eot]) for o in outputs]
        per_set = {
            set_name: score(
                [c["text"] for c in clips if c["set"] == set_name],
                [t for c, t in zip(clips, texts) if c["set"] == set_name],
                "en",
            ).errors
            for set_name in sorted({c["set"] for c in clips})
        }
        result[name] = {"seconds": round(seconds, 2), "errors": sum(per_set.values()), "per_set": per_set, "texts": texts}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "whisper-tiny.en-15s")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--out", type=Path, default=Path("decoding.json"))
    args = p.parse_args()
    rows = [json.loads(line) for line in DEFAULT_MANIFEST.read_text().splitlines() if line.strip()]
    clips = [r for r in rows if r["set"] in SETS and r.get("language", "en") == "en" and r["duration_s"] <= MAX_CLIP_S]
    words = sum(len(normalize(c["text"]).split()) for c in clips)
    result = run(args.model, args.dtype, clips)
    args.out.write_text(
        json.dumps({"model": args.model.name, "dtype": args.dtype, "clips": [c["path"] for c in clips], **result}, indent=1)
        + "\n"
    )
    print(f"{args.model.name}, {args.dtype}: {len(clips)} clips, {words} words")
    print("| decoding | errors | " + " | ".join(sorted(SETS)) + " | seconds |")
    print("|---|---|" + "---|" * len(SETS) + "---|")
    for name, r in result.items():
        cells = " | ".join(str(r["per_set"].get(s, "–")) for s in sorted(SETS))
        print(f"| {name} | {r['errors']} | {cells} | {r['seconds']} |")


if __name__ == "__main__":
    main()
