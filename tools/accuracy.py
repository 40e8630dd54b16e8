"""Measure transcript quality through the running service (real speech from the manifest):

  word timing   the long LJSpeech file with timestamps=true: error of each sentence's predicted start
  long-form     WER of the whole long file against WER of its sentences sent one by one
  languages     FLEURS de/es/fr/pt with the multilingual base model: detection accuracy and WER
  diarization   diarization error rate and speaker count on the diarization set (RTTM or segment
                references), one-speaker clips counted as one, and the phone call's words attributed
                to the right speaker through the service (diarize=true)

  .venv/bin/python -m tools.accuracy                  # starts configs/cpu.yaml, then the same with base
  .venv/bin/python -m tools.accuracy --only timing,longform
  .venv/bin/python -m tools.accuracy --only diarization

Prints tables and writes docs/accuracy/results.{json,md}.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jiwer
import numpy as np
import requests
import yaml
from scipy.optimize import linear_sum_assignment

from serve_app.engine.diarize import Diarizer
from serve_app.pipeline.decode import decode
from tools import ROOT
from tools.bench.benchmark import Service
from tools.bench.common import DEFAULT_MANIFEST, Clip, normalize

LANGUAGES = ("de", "es", "fr", "pt")


def post(service: Service, path: Path, **params: str) -> dict:
    response = requests.post(
        f"{service.url}/v1/listen",
        params=params,
        data=path.read_bytes(),
        headers={"Authorization": f"Token {service.key}", "Content-Type": "application/octet-stream"},
        timeout=900,
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
            "file": long["path"],
            "sentences": len(long["segments"]),
            "matched": len(errors),
            "median_abs_error_s": round(statistics.median(absolute), 3),
            "max_abs_error_s": round(max(absolute), 3),
            "mean_signed_error_s": round(statistics.mean(errors), 3),
            "errors_s": errors,
        },
        "longform": {
            "wer_whole_file": round(wer_long, 4),
            "wer_sentences_one_by_one": round(wer_sentences, 4),
            "ratio": round(wer_long / wer_sentences, 3) if wer_sentences else None,
        },
    }


def languages(service: Service, rows: list[dict], base: Path) -> dict:
    clips = [r for r in rows if r["set"] == "multilingual" and r["language"] in LANGUAGES and "fleurs" in r["path"]]

    def one(row: dict) -> dict:
        body = post(service, base / row["path"], detect_language="true")
        return {
            "path": row["path"],
            "language": row["language"],
            "detected": body["language"],
            "confidence": body.get("language_confidence"),
            "wer": jiwer.wer(normalize(row["text"]), normalize(body["text"]) or "-"),
        }

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


Span = tuple[float, float, str]  # start, end, speaker


def diarization_error_rate(reference: list[Span], hypothesis: list[Span], collar: float = 0.0) -> float:
    """(missed + false alarm + confused speech) / reference speech, on 10 ms frames, with speakers
    paired one-to-one for the most overlap; `collar` seconds either side of each reference boundary
    are not scored (NIST's md-eval uses 0.25)."""
    frames = int(max(e for _, e, _ in reference + hypothesis) * 100) + 1

    def grid(spans: list[Span]) -> np.ndarray:
        names = sorted({s for *_, s in spans})
        out = np.zeros((max(len(names), 1), frames), dtype=bool)
        for a, b, s in spans:
            out[names.index(s), int(round(a * 100)) : int(round(b * 100))] = True
        return out

    ref, hyp = grid(reference), grid(hypothesis)
    scored = np.ones(frames, dtype=bool)
    for a, b, _ in reference if collar else []:
        for edge in (a, b):
            scored[max(0, int(round((edge - collar) * 100))) : int(round((edge + collar) * 100))] = False
    ref, hyp = ref[:, scored], hyp[:, scored]
    overlap = ref.astype(int) @ hyp.T.astype(int)
    rows, cols = linear_sum_assignment(-overlap)
    correct = overlap[rows, cols].sum()
    errors = np.maximum(ref.sum(0), hyp.sum(0)).sum() - correct
    return float(errors / max(ref.sum(), 1))


def _reference_turns(row: dict, base: Path) -> list[Span] | None:
    rttm = (base / row["path"]).with_suffix(".rttm")
    if rttm.exists():
        fields = [line.split() for line in rttm.read_text().splitlines() if line.startswith("SPEAKER")]
        return [(float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in fields]
    segments = row.get("segments") or []
    if segments and all("start" in s or "start_sec" in s for s in segments):
        return [
            (s.get("start", s.get("start_sec")), s.get("end", s.get("end_sec")), str(s.get("speaker", s.get("speaker_tag"))))
            for s in segments
        ]
    return None


def diarization(service: Service, rows: list[dict], base: Path) -> dict:
    diarizer = Diarizer(ROOT / "models" / "speaker" / "resemblyzer.pt")
    files = []
    for row in rows:
        reference = _reference_turns(row, base) if row["set"] == "diarization" and row.get("channels") == 1 else None
        if reference is None:
            continue
        audio = decode((base / row["path"]).read_bytes(), 600)
        started_at = time.perf_counter()
        turns = diarizer(audio)
        elapsed = time.perf_counter() - started_at
        hypothesis = [(t.start, t.end, str(t.speaker)) for t in turns]
        speakers = len({s for *_, s in reference})
        told = [(t.start, t.end, str(t.speaker)) for t in diarizer(audio, speakers)]
        files.append(
            {
                "path": row["path"],
                "duration_s": round(len(audio) / 16000, 1),
                "speakers": speakers,
                "found": len({t.speaker for t in turns}),
                "der": round(diarization_error_rate(reference, hypothesis), 3),
                "der_collar_0.25": round(diarization_error_rate(reference, hypothesis, 0.25), 3),
                "seconds": round(elapsed, 2),
                "der_told_num_speakers": round(diarization_error_rate(reference, told), 3),
            }
        )
    singles = [r for r in rows if r["set"] in ("ljspeech", "long") or r["path"].endswith("whisper_jfk.flac")]
    counts = [len({t.speaker for t in diarizer(decode((base / r["path"]).read_bytes(), 600))}) for r in singles]
    return {
        "files": files,
        "one_speaker": {
            "clips": len(singles),
            "found_one": sum(c == 1 for c in counts),
            "misses": [r["path"] for r, c in zip(singles, counts) if c != 1],
        },
        "phone_call_words": _attributed_words(service, next(r for r in rows if r["path"].endswith("pyannote_sample.wav")), base),
    }


def _attributed_words(service: Service, row: dict, base: Path) -> dict:
    """Words of the phone call through the service: the share whose speaker matches the reference
    segment they belong to (words matched to the reference text; speakers paired for the most agreement)."""
    body = post(service, base / row["path"], diarize="true")
    reference = [(w, s["speaker"]) for s in row["segments"] for w in normalize(s["text"]).split()]
    predicted = [(normalize(w["word"]), w["speaker"]) for w in body["words"]]
    pairs = []
    for block in difflib.SequenceMatcher(
        None, [w for w, _ in reference], [w for w, _ in predicted], autojunk=False
    ).get_matching_blocks():
        pairs += [(reference[block.a + k][1], predicted[block.b + k][1]) for k in range(block.size)]
    names, labels = sorted({r for r, _ in pairs}), sorted({p for _, p in pairs})
    agree = np.array([[sum(r == n and p == label for r, p in pairs) for label in labels] for n in names])
    rows_, cols = linear_sum_assignment(-agree)
    return {
        "words_matched": len(pairs),
        "reference_words": len(reference),
        "speakers_found": len({s for _, s in predicted}),
        "attributed_correctly": round(agree[rows_, cols].sum() / max(len(pairs), 1), 3),
    }


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
    dates = results.get("dates", {})
    lines = [
        f"On {results['machine']}; each part as of its last run: "
        + ", ".join(f"{part} {date}" for part, date in dates.items())
        + ".",
        "",
    ]
    if "timing" in results:
        t = results["timing"]
        lines += [
            "| word timing (timestamps=true) | value |",
            "|---|---|",
            f"| sentences with their first word found | {t['matched']} of {t['sentences']} |",
            f"| median error of sentence starts | {t['median_abs_error_s']} s |",
            f"| largest error | {t['max_abs_error_s']} s |",
            f"| mean signed error (late > 0) | {t['mean_signed_error_s']} s |",
            "",
        ]
        lf = results["longform"]
        lines += [
            "| long-form | WER |",
            "|---|---|",
            f"| whole 3.8-minute file | {lf['wer_whole_file']} |",
            f"| its 32 sentences one by one | {lf['wer_sentences_one_by_one']} |",
            f"| ratio | {lf['ratio']}x |",
            "",
        ]
    if "languages" in results:
        lang = results["languages"]
        lines += [
            f"Language detection (base model, `detect_language=true`): {lang['detected_correctly']:.1%} of {lang['clips']} FLEURS clips.",
            "",
            "| language | clips | detected correctly | WER |",
            "|---|---|---|---|",
        ]
        lines += [f"| {k} | {v['clips']} | {v['detected_correctly']:.0%} | {v['wer']} |" for k, v in lang["by_language"].items()]
        lines += [""]
    if "diarization" in results:
        d = results["diarization"]
        lines += [
            "| diarization | speakers | found | DER | DER, 0.25 s collar | DER given num_speakers | time |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {f['path']} ({f['duration_s']} s) | {f['speakers']} | {f['found']} | {f['der']:.1%} | {f['der_collar_0.25']:.1%} "
            f"| {f['der_told_num_speakers']:.1%} | {f['seconds']} s |"
            for f in d["files"]
        ]
        one, words = d["one_speaker"], d["phone_call_words"]
        lines += [
            "",
            f"One-speaker clips found to have one speaker: {one['found_one']} of {one['clips']} (not: {', '.join(one['misses']) or 'none'}).",
            f"Phone call through the service (`diarize=true`): {words['speakers_found']} speakers, "
            f"{words['attributed_correctly']:.1%} of {words['words_matched']} matched words attributed to the right speaker.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--only", default="timing,longform,languages,diarization")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy")
    args = p.parse_args()
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    only = set(args.only.split(","))
    # Parts not run this time keep their last results.
    saved = args.out / "results.json"
    results: dict = json.loads(saved.read_text()) if saved.exists() else {}
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results.setdefault("dates", {}).update({part: now for part in sorted(only)})
    results["machine"] = f"{os.cpu_count()} CPUs"
    config = yaml.safe_load((ROOT / "configs/cpu.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="stt-accuracy-") as tmp:
        if only & {"timing", "longform", "diarization"}:
            service = started(Path(tmp), config, "tiny")
            try:
                if only & {"timing", "longform"}:
                    results.update(timing_and_longform(service, rows, args.manifest.parent))
                if "diarization" in only:
                    results["diarization"] = diarization(service, rows, args.manifest.parent)
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
