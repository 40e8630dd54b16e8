"""Decoding variants of one checkpoint on the same clips, offline in one vLLM process: does decoding
with timestamp tokens (faster-whisper's default) or in float32 change the words? And with
--faster-whisper, the same question of faster-whisper int8 on the same weights: which of its
defaults (timestamp tokens, temperature fallback) make its words?

  .venv/bin/python -m tools.bench.decoding [--model models/whisper-tiny.en-15s] [--dtype auto] [--faster-whisper]
                                           [--window MIN_S,FILL[,MAX_S[,FULL_UNDER_S]]]

An English checkpoint decodes every English clip of the collection's read-speech sets, a multilingual
one every clip of the `multilingual` set in its own language; either way only clips that one window
of the checkpoint holds (0.5 s to spare). All in one `generate()` per variant, greedy, with the
checkpoint's suppressed tokens as the service decodes them. `--window 12,0.7` decodes in windows
fitted to each clip (the engine's `window` setting) instead of the checkpoint's whole window, and
`--window 12,0.7,15,4` caps them at 15 s (clips up to it) with the whole window under 4 s. Prints
errors per (set, language) and writes the texts to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from serve_app.engine.precision import cpu_dtype
from serve_app.engine.prompts import WhisperVocabulary, encoder_window_s
from serve_app.engine.windows import hf_overrides
from serve_app.pipeline.decode import decode
from serve_app.settings import WindowPolicy
from serve_app.types import SAMPLE_RATE
from tools import ROOT
from tools.accuracy_sets import score
from tools.bench.common import DEFAULT_MANIFEST, normalize

ENGLISH_SETS = {"arctic", "classic", "commonvoice", "harvard", "librivox", "ljspeech", "speechbrain_asr"}


def run(model: Path, dtype: str, clips: list[dict], window: WindowPolicy | None = None) -> dict:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    from vllm import LLM, SamplingParams  # after the CPU variables: vLLM reads them when imported

    from tools.bench.timestamp_rules import WhisperTimestampRules, request_args

    vocab = WhisperVocabulary.from_model_dir(model)
    window_s = encoder_window_s(json.loads((model / "config.json").read_text()))
    llm = LLM(
        str(model),
        max_model_len=448,
        enforce_eager=True,
        limit_mm_per_prompt={"audio": 1},
        dtype=dtype,  # type: ignore[arg-type]
        logits_processors=[WhisperTimestampRules],
        hf_overrides=hf_overrides(window),
    )
    tokenizer = llm.get_tokenizer()
    greedy = dict(temperature=0.0, max_tokens=224, logit_bias=dict.fromkeys(vocab.suppressed, -100.0) or None)
    plain = SamplingParams(**greedy)  # type: ignore[arg-type]
    ruled = SamplingParams(**greedy, extra_args=request_args(vocab.eot, vocab.no_timestamps, window_s))  # type: ignore[arg-type]
    audio = [decode((DEFAULT_MANIFEST.parent / c["path"]).read_bytes(), 30) for c in clips]
    # The service's prompt, and the same without <|notimestamps|>: the model then writes <|0.00|>-style
    # tokens around its segments (ids above <|endoftext|>, dropped with the other special tokens),
    # freely or under Whisper's timestamp rules.
    without = lambda language: [i for i in vocab.prompt(language) if i != vocab.no_timestamps]  # noqa: E731
    variants = {
        "no timestamps (the service)": (vocab.prompt, plain),
        "timestamps": (without, plain),
        "timestamps, with Whisper's timestamp rules": (without, ruled),
    }
    result: dict = {}
    for name, (prompt, params) in variants.items():
        prompts = [
            {
                "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (a, SAMPLE_RATE)}},
                "decoder_prompt": {"prompt_token_ids": prompt(c.get("language", "en"))},
            }
            for c, a in zip(clips, audio)
        ]
        started = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        texts = [tokenizer.decode([i for i in o.outputs[0].token_ids if i < vocab.eot]) for o in outputs]
        result[name] = tally(clips, texts, seconds)
    return result


# faster-whisper's variants: its defaults (as tools.accuracy_sets runs it), then without each of the
# two it has and the service's decoding has not.
FASTER_WHISPER_VARIANTS: dict[str, dict] = {
    "faster-whisper (its defaults)": {},
    "faster-whisper, no temperature fallback": {"temperature": 0.0},
    "faster-whisper, no timestamps": {"without_timestamps": True},
}


def run_faster_whisper(model: Path, clips: list[dict]) -> dict:
    """faster-whisper int8 on the original CTranslate2 checkpoint of `model`'s weights, one clip at a
    time, as tools.accuracy_sets runs it."""
    from tools.accuracy_sets import ct2_checkpoint, through_faster_whisper
    from tools.bench.peers import faster_whisper_model

    name = "base" if WhisperVocabulary.from_model_dir(model).multilingual else "tiny.en"
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        fw = faster_whisper_model(checkpoint=ct2_checkpoint(name, Path(tmp)))
        for variant, options in FASTER_WHISPER_VARIANTS.items():
            started = time.perf_counter()
            texts = through_faster_whisper(fw, clips, DEFAULT_MANIFEST.parent, **options)
            result[variant] = tally(clips, texts, time.perf_counter() - started)
    return result


def tally(clips: list[dict], texts: list[str], seconds: float) -> dict:
    per_set = {
        group: score(
            [c["text"] for c in clips if group_of(c) == group],
            [t for c, t in zip(clips, texts) if group_of(c) == group],
            group.rpartition("/")[2],
        ).errors
        for group in sorted({group_of(c) for c in clips})
    }
    return {"seconds": round(seconds, 2), "errors": sum(per_set.values()), "per_set": per_set, "texts": texts}


def group_of(clip: dict) -> str:
    return f"{clip['set']}/{clip.get('language', 'en')}"


def select(rows: list[dict], model: Path, window: WindowPolicy | None = None) -> list[dict]:
    """The clips this checkpoint is measured on (see the module's docstring)."""
    vocab = WhisperVocabulary.from_model_dir(model)
    checkpoint_s = encoder_window_s(json.loads((model / "config.json").read_text()))
    max_s = (window.longest_s(checkpoint_s) if window else checkpoint_s) - 0.5
    if vocab.multilingual:
        return [r for r in rows if r["set"] == "multilingual" and r["duration_s"] <= max_s]
    return [r for r in rows if r["set"] in ENGLISH_SETS and r.get("language", "en") == "en" and r["duration_s"] <= max_s]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "whisper-tiny.en-15s")
    p.add_argument("--dtype", default="auto", help="as the engine's setting: auto is bfloat16 where the CPU has it, else float32")
    p.add_argument("--faster-whisper", action="store_true", help="faster-whisper's variants instead of vLLM's")
    p.add_argument(
        "--window", help="MIN_S,FILL[,MAX_S[,FULL_UNDER_S]]: windows fitted to each clip, as the engine's `window` setting"
    )
    p.add_argument("--out", type=Path, default=Path("decoding.json"))
    args = p.parse_args()
    rows = [json.loads(line) for line in DEFAULT_MANIFEST.read_text().splitlines() if line.strip()]
    window = None
    if args.window:
        fields = dict(zip(["min_s", "fill", "max_s", "full_under_s"], args.window.split(",")))
        window = WindowPolicy.model_validate({k: float(v) if "." in v else int(v) for k, v in fields.items()})
    clips = select(rows, args.model, window)
    words = sum(len(normalize(c["text"]).split()) for c in clips)
    dtype = "int8 (faster-whisper, the original weights)" if args.faster_whisper else cpu_dtype(args.dtype)
    result = run_faster_whisper(args.model, clips) if args.faster_whisper else run(args.model, dtype, clips, window)
    args.out.write_text(
        json.dumps(
            {"model": args.model.name, "dtype": dtype, "window": args.window, "clips": [c["path"] for c in clips], **result},
            indent=1,
        )
        + "\n"
    )
    print(f"{args.model.name}, {dtype}: {len(clips)} clips, {words} words")
    groups = sorted({group_of(c) for c in clips})
    print("| decoding | errors | " + " | ".join(groups) + " | seconds |")
    print("|---|---|" + "---|" * len(groups) + "---|")
    for name, r in result.items():
        cells = " | ".join(str(r["per_set"][g]) for g in groups)
        print(f"| {name} | {r['errors']} | {cells} | {r['seconds']} |")


if __name__ == "__main__":
    main()
