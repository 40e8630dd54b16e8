"""What each text option costs a request, on the ingress's CPU: the transforms (`measurements`,
`replace`, `profanity_filter`, `dictation`), `search` and the echoed labels (`extra`, `tag`) timed
on realistic transcripts, against the same request with none of them (the "off" row: what every
request pays for the options existing). No model runs: the transcripts are the manifest's
LJSpeech reading (3.8 minutes, 563 words) and that text repeated to an hour of speech, as words
timed the way pipeline/stitch.py estimates them.

    .venv/bin/python -m tools.bench.transforms            # prints the table, writes docs/benchmarks/transforms.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from serve_app.api.listen import echoed, listen_body, search_results
from serve_app.api.meta import RequestMeta
from serve_app.pipeline import transforms
from serve_app.pipeline.request import TranscriptionRequest
from serve_app.pipeline.transcript import Transcript, Word
from tools import ROOT

OUT = ROOT / "docs" / "benchmarks" / "transforms.json"
SOURCE = "ljspeech_LJ001-0001_to_0032.flac"
WORDS_PER_S = 2.5  # an hour of reading: 9000 words
# Each option as a request asks for it: realistic amounts (Deepgram's limits are 200 and 50).
CASES: dict[str, TranscriptionRequest] = {
    "off": TranscriptionRequest(),
    "measurements": TranscriptionRequest(measurements=True),
    "replace (10 pairs)": TranscriptionRequest(
        replace=tuple((f, r) for f, r in (("printing", "Printing"), ("the arts", "the Arts"), ("crafts", "Crafts")) * 3)
        + (("exhibition", "Exhibition"),)
    ),
    "replace (200 pairs)": TranscriptionRequest(replace=tuple((f"term{i}", f"T{i}") for i in range(199)) + (("art", "Art"),)),
    "profanity_filter": TranscriptionRequest(profanity_filter=True),
    "dictation": TranscriptionRequest(dictation=True),
    "search (3 terms)": TranscriptionRequest(search=("printing", "exhibition", "gothic type")),
    "search (50 terms)": TranscriptionRequest(search=tuple(f"word{i} of art" for i in range(50))),
    "extra + tag": TranscriptionRequest(extra=(("team", "gtm"), ("purpose", "legal")), tags=("prod", "web")),
}


def transcript(seconds: float | None = None) -> Transcript:
    """The reading's text as timed words; repeated to `seconds` of speech when given."""
    manifest = [json.loads(line) for line in (ROOT / "tests" / "data" / "manifest.jsonl").read_text().splitlines()]
    text = next(m["text"] for m in manifest if m["path"] == SOURCE)
    tokens = text.split()
    if seconds is not None:
        tokens = (tokens * (int(seconds * WORDS_PER_S) // len(tokens) + 1))[: int(seconds * WORDS_PER_S)]
    words, at = [], 0.0
    for token in tokens:
        span = 0.08 * len(token) + 0.05
        core = re.sub(r"^[^\w']+|[^\w']+$", "", token).lower() or token
        words.append(Word(core, token, round(at, 3), round(at + span, 3), 0.9))
        at += span + 0.1
    return Transcript(" ".join(tokens), words, 0.9, round(at, 3), "en")


def per_call(fn: Callable[[], Any], budget_s: float) -> float:
    """Median CPU seconds of one call (this process's: other work on the machine does not count) over
    at least 5 runs filling about `budget_s`."""
    started = time.process_time()
    fn()
    once = max(time.process_time() - started, 1e-7)
    runs = max(5, min(2000, int(budget_s / once)))
    times = []
    for _ in range(runs):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return statistics.median(times)


def stage(name: str, request: TranscriptionRequest) -> Callable[[Transcript], Any]:
    """The work the option adds to a request: the transforms it enables, or the answer data it adds."""
    if name.startswith("search"):
        return lambda t: search_results(t.words, request.search)
    if name.startswith("extra"):
        return lambda t: echoed(request)
    return lambda t: transforms.apply(t, request)  # "off": every transform's check, none enabled


SCALE = "(for scale: Deepgram's answer built)"


def measure(transcripts: dict[str, Transcript], budget_s: float) -> list[dict[str, Any]]:
    """One row per option: its median CPU ms per request on each transcript."""
    meta = RequestMeta("bench", "0" * 64, "whisper", datetime.now(timezone.utc))
    calls = {name: stage(name, request) for name, request in CASES.items()}
    calls[SCALE] = lambda t: listen_body(t, meta, TranscriptionRequest())
    rows = []
    for name, fn in calls.items():
        row: dict[str, Any] = {"option": name}
        for label, t in transcripts.items():
            gc.collect()
            ms = per_call(lambda t=t, fn=fn: fn(t), budget_s) * 1000
            row[label] = {"words": len(t.words), "ms_per_request": round(ms, 4)}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=1.0, help="CPU time spent on each measurement")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    transcripts = {"3.8 min": transcript(), "1 h": transcript(3600)}
    rows = measure(transcripts, args.budget_s)
    print(f"{'option':<40}" + "".join(f"{label + ' (ms)':>14}" for label in transcripts))
    for row in rows:
        print(f"{row['option']:<40}" + "".join(f"{row[k]['ms_per_request']:>14.4f}" for k in transcripts))
    summary = {
        "what": "median CPU ms per request of the work each option adds (the transforms it enables, its search hits, "
        "its echoed labels); 'off' is transforms.apply with no option asked for, what every request pays",
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "date": datetime.now(timezone.utc).date().isoformat(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
