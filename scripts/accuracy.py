"""Measure transcript quality through the running service (real speech from the manifest):

  word timing   the long LJSpeech file with timestamps=true: error of each sentence's predicted start
  long-form     WER of the whole long file against WER of its sentences sent one by one
  languages     FLEURS de/es/fr/pt with the multilingual base model: detection accuracy and WER

  .venv/bin/python scripts/accuracy.py                  # starts configs/cpu.yaml, then the same with base
  .venv/bin/python scripts/accuracy.py --only timing,longform

Prints tables and writes docs/accuracy/results.{json,md}.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jiwer
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import DEFAULT_MANIFEST, ROOT, Clip, normalize  # noqa: E402
from benchmark import Service  # noqa: E402

LANGUAGES = ("de", "es", "fr", "pt")


def post(service: Service, path: Path, **params: str) -> dict:
    response = requests.post(
        f"{service.url}/v1/listen", params=params, data=path.read_bytes(),
        headers={"Authorization": f"Token {service.key}", "Content-Type": "application/octet-stream"}, timeout=900,
    )
    response.raise_for_status()
    return response.json()


def timing_and_longform(service: Service, rows: list[dict], base: Path) -> dict:
    long = next(r for r in rows if r["set"] == "long")
    body = post(service, base / long["path"], timestamps="true")
    words = body["words"]
    reference = normalize(long["text"]).split()
    predicted = [normalize(w["word"]) for w in words]
    to_predicted: dict[int, int] = {}
    for block in difflib.SequenceMatcher(None, reference, predicted, autojunk=False).get_matching_blocks():
        to_predicted.update({block.a + k: block.b + k for k in range(block.size)})
    errors, first = [], 0
    for segment in long["segments"]:
        if first in to_predicted:
            errors.append(round(words[to_predicted[first]]["start"] - segment["start"], 3))
        first += len(normalize(segment["text"]).split())
    # The same sentences one by one (the clips the long file was joined from).
    sentence_paths = [base.parent / s["from"] for s in long["segments"]]  # "audio/ljspeech/...", beside the manifest's folder
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda p: post(service, p)["text"], sentence_paths))
    sentence_refs = [normalize(s["text"]) for s in long["segments"]]
    wer_long = jiwer.wer(" ".join(reference), normalize(body["text"]))
    wer_sentences = jiwer.wer(" ".join(sentence_refs), " ".join(normalize(t) for t in texts))
    absolute = [abs(e) for e in errors]
    return {
        "timing": {
            "file": long["path"], "sentences": len(long["segments"]), "matched": len(errors),
            "median_abs_error_s": round(statistics.median(absolute), 3), "max_abs_error_s": round(max(absolute), 3),
            "mean_signed_error_s": round(statistics.mean(errors), 3), "errors_s": errors,
        },
        "longform": {"wer_whole_file": round(wer_long, 4), "wer_sentences_one_by_one": round(wer_sentences, 4),
                     "ratio": round(wer_long / wer_sentences, 3) if wer_sentences else None},
    }


def languages(service: Service, rows: list[dict], base: Path) -> dict:
    clips = [r for r in rows if r["set"] == "multilingual" and r["language"] in LANGUAGES and "fleurs" in r["path"]]

    def one(row: dict) -> dict:
        body = post(service, base / row["path"], detect_language="true")
        return {"path": row["path"], "language": row["language"], "detected": body["language"],
                "confidence": body.get("language_confidence"), "wer": jiwer.wer(normalize(row["text"]), normalize(body["text"]) or "-")}

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, clips))
    by_language = {
        lang: {
            "clips": len(rs := [r for r in results if r["language"] == lang]),
            "detected_correctly": round(sum(r["detected"] == lang for r in rs) / len(rs), 3),
            "wer": round(statistics.mean(r["wer"] for r in rs), 4),
        }
        for lang in LANGUAGES
    }
    overall = sum(r["detected"] == r["language"] for r in results) / len(results)
    return {"clips": len(results), "detected_correctly": round(overall, 3), "by_language": by_language, "results": results}


def started(workdir: Path, config: dict, name: str) -> Service:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    (workdir / name).mkdir()
    service = Service(workdir / name, path)
    cold = service.start(_first_clip())
    print(f"==> {name}: ready in {cold:.0f} s", flush=True)
    return service


def _first_clip() -> Clip:  # the benchmark's readiness probe
    return Clip(str(ROOT / "tests/data/whisper_jfk.flac"), 11.0, "")


def markdown(results: dict) -> str:
    lines = [f"Run {results['date']} on {results['machine']}.", ""]
    if "timing" in results:
        t = results["timing"]
        lines += ["| word timing (timestamps=true) | value |", "|---|---|",
                  f"| sentences with their first word found | {t['matched']} of {t['sentences']} |",
                  f"| median error of sentence starts | {t['median_abs_error_s']} s |",
                  f"| largest error | {t['max_abs_error_s']} s |",
                  f"| mean signed error (late > 0) | {t['mean_signed_error_s']} s |", ""]
        lf = results["longform"]
        lines += ["| long-form | WER |", "|---|---|",
                  f"| whole 3.8-minute file | {lf['wer_whole_file']} |",
                  f"| its 32 sentences one by one | {lf['wer_sentences_one_by_one']} |",
                  f"| ratio | {lf['ratio']}x |", ""]
    if "languages" in results:
        lang = results["languages"]
        lines += [f"Language detection (base model, `detect_language=true`): {lang['detected_correctly']:.1%} of {lang['clips']} FLEURS clips.", "",
                  "| language | clips | detected correctly | WER |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['clips']} | {v['detected_correctly']:.0%} | {v['wer']} |" for k, v in lang["by_language"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--only", default="timing,longform,languages")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy")
    args = p.parse_args()
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    only = set(args.only.split(","))
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{os.cpu_count()} CPUs"}
    config = yaml.safe_load((ROOT / "configs/cpu.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="stt-accuracy-") as tmp:
        if only & {"timing", "longform"}:
            service = started(Path(tmp), config, "tiny")
            try:
                results.update(timing_and_longform(service, rows, args.manifest.parent))
            finally:
                service.stop()
        if "languages" in only:
            config["applications"][0]["args"]["engine"]["model"] = "models/whisper-base"
            service = started(Path(tmp), config, "base")
            try:
                results["languages"] = languages(service, rows, args.manifest.parent)
            finally:
                service.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    md = markdown(results)
    (args.out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
