"""What the transcript transforms cost per request (serve_app/pipeline/transforms.py): each option
on a realistic transcript, and the same transcript with every option off. Prints a table and writes
docs/benchmarks/formatting.json.

    .venv/bin/python -m tools.bench_transforms [--repeat 200]

Transcripts: the service's own 566-word LJSpeech reading (docs/accuracy/sets.json, numbers already
as Whisper wrote them) and a 200-word phone call in spoken form (numbers, prices, a phone number, an
email, a date, times), as words the way pipeline/stitch.py makes them. `first_ms` is the first
request in the process (it imports the option's library), `per_request_ms` the median after."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from serve_app.pipeline.request import TranscriptionRequest
from serve_app.pipeline.stitch import _PUNCT
from serve_app.pipeline.transcript import Transcript, Word
from serve_app.pipeline.transforms import apply
from serve_app.settings import ROOT

OUT = ROOT / "docs" / "benchmarks" / "formatting.json"
CALL = (
    "Hi, thanks for calling. My name is Sarah. Can I get your account number? Sure, it's four five seven two nine. "
    "And the phone number on the account? It's five five five, one two three, four five six seven. Thank you. "
    "I see a charge of forty two dollars and fifty cents on March third twenty twenty four. "
    "That's about twenty five percent more than last month. Can you send the receipt to john dot smith at gmail dot com? "
    "Of course. Our office is open from nine a m to five p m, and you can also visit w w w dot example dot com slash billing. "
    "The refund of twelve dollars should arrive by the fifteenth of April. In twenty nineteen we had two hundred and fifty "
    "customers, now we have about ten thousand five hundred. Is there anything else? Yes, my zip code changed to nine oh "
    "two one oh. I'll update it. Please call again at three thirty p m if you need anything. Thank you, goodbye. "
) * 2
OPTIONS = {
    "off": TranscriptionRequest(),
    "smart_format": TranscriptionRequest(smart_format=True),
    "numerals=true": TranscriptionRequest(numerals=True),
    "numerals=false": TranscriptionRequest(numerals=False),
    "punctuate=false": TranscriptionRequest(punctuate=False),
}


def transcript(text: str) -> Transcript:
    tokens = text.split()
    words = [Word(_PUNCT.sub("", t).lower() or t, t, k * 0.4, k * 0.4 + 0.3, 0.9) for k, t in enumerate(tokens)]
    return Transcript(text, words, 0.9, len(tokens) * 0.4, "en")


def _reading() -> str:
    sets = json.loads((ROOT / "docs" / "accuracy" / "sets.json").read_text())
    return next(t["service"] for t in sets["transcripts"] if t["path"].startswith("long/"))


def measure(t: Transcript, request: TranscriptionRequest, repeat: int) -> dict[str, float]:
    started = time.perf_counter()
    apply(t, request)
    first = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        apply(t, request)
        times.append(time.perf_counter() - started)
    return {"first_ms": round(first * 1000, 3), "per_request_ms": round(statistics.median(times) * 1000, 4)}


def run(repeat: int = 200) -> dict[str, Any]:
    transcripts = {"reading (566 words, digits)": transcript(_reading()), "call (spoken forms)": transcript(CALL)}
    # "off" first: run as a command (a fresh process), it shows that no library is loaded without the options
    results: dict[str, Any] = {
        name: {"words": len(t.words), "off": measure(t, OPTIONS["off"], repeat)} for name, t in transcripts.items()
    }
    loaded_when_off = [m for m in ("text_to_num", "num2words") if m in sys.modules]
    for name, t in transcripts.items():
        results[name].update({option: measure(t, r, repeat) for option, r in OPTIONS.items() if option != "off"})
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "command": "python -m tools.bench_transforms",
        "repeat": repeat,
        "libraries_loaded_with_options_off": loaded_when_off,
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"{'transcript':30} {'option':16} {'first ms':>10} {'per request ms':>15}"]
    for name, result in report["results"].items():
        for option in OPTIONS:
            r = result[option]
            lines.append(f"{name:30} {option:16} {r['first_ms']:>10.3f} {r['per_request_ms']:>15.4f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    report = run(args.repeat)
    print(table(report))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
