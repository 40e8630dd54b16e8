"""What every transcript option costs a request, on the ingress's CPU: the work each option adds to a
finished transcript (the transforms it enables, serve_app/pipeline/transforms.py; its search hits;
its echoed labels), asked for as a client sends it, against the same request asking for none (the
"off" row: what every request pays for the options existing). "off" runs first and records which
optional number libraries (text2num, num2words) are imported by then: none. No model runs.

Transcripts, as words 0.4 s apart (2.5 words a second, as pipeline/stitch.py spreads them):
- reading: the manifest's LJSpeech reading (3.8 minutes, 563 words, numbers as the book wrote them);
- call: a support call in spoken form, as Whisper leaves it: a card number, CVV, SSN, phone number,
  email, name, prices, a date, times, a web address, a ZIP code (1.4 minutes, 210 words);
- 1 h: the two in turn to an hour of speech (9,000 words).

`first_ms` is the option's first request in this process, on the reading (with the import of its
library when no row before it loaded it); the others are median CPU ms per request.

    .venv/bin/python -m tools.bench.transforms     # prints the table, writes docs/benchmarks/transforms.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from serve_app.api import params
from serve_app.api.listen import OPTIONS as LISTEN_OPTIONS
from serve_app.api.listen import echoed, listen_body, search_results
from serve_app.api.meta import RequestMeta
from serve_app.pipeline import transforms
from serve_app.pipeline.request import TranscriptionRequest
from serve_app.pipeline.transcript import Transcript, Word
from tools import ROOT

OUT = ROOT / "docs" / "benchmarks" / "transforms.json"
READING = "ljspeech_LJ001-0001_to_0032.flac"
WORD_S = 0.4  # seconds from one word's start to the next's
LIBRARIES = ("text_to_num", "num2words")  # imported by the first request that formats or spells numbers
CALL = (
    "Thank you for calling, how can I help you today? Hi, my name is Maria Lopez and I'd like to update the card "
    "on my account. Sure, can I have the new card number? Yes, it's four one one one one one one one one one one one "
    "one one one one, it expires twelve twenty seven and the CVV is one two three. Thank you. And to verify your "
    "identity, your social security number? It's one two three, four five, six seven eight nine. What's the best "
    "number to reach you? Five five five, one two three, four five six seven. And your email? It's maria dot lopez "
    "at gmail dot com. Thank you. I see a charge of forty two dollars and fifty cents on March third twenty twenty "
    "four, that's about twenty five percent more than last month. The refund of twelve dollars should arrive by the "
    "fifteenth of April. You can also visit w w w dot example dot com slash billing, and our office is open from nine "
    "a m to five p m. My zip code changed to nine oh two one oh, by the way. I'll update it. Please call again at "
    "three thirty p m if you need anything. Thank you, goodbye."
)
REPLACE = [f"{find}:{find.title()}" for find in ("printing", "the arts", "crafts", "card", "account")] * 2
SEARCH = ["printing", "card number", "gothic type"]
LABELS = {"extra": ["team:gtm", "purpose:legal"], "tag": ["prod", "web"]}
# Each option as a client sends it (query parameters), in realistic amounts (Deepgram's limits: 200
# replacements, 50 search terms). "all at once" is every one that combines (numerals=false and
# Pulse's redact_pii are refused beside smart_format and redact).
OPTIONS: dict[str, dict[str, Any]] = {
    "off": {},
    "smart_format": {"smart_format": "true"},
    "numerals=true": {"numerals": "true"},
    "numerals=false": {"numerals": "false"},
    "redact=pci": {"redact": "pci"},
    "redact=pii": {"redact": "pii"},
    "redact=numbers": {"redact": "numbers"},
    "redact_pii (Pulse)": {"redact_pii": "true"},
    "measurements": {"measurements": "true"},
    "replace (10 pairs)": {"replace": REPLACE},
    "profanity_filter": {"profanity_filter": "true"},
    "dictation": {"dictation": "true"},
    "search (3 terms)": {"search": SEARCH},
    "search (50 terms)": {"search": [f"term{i} of art" for i in range(50)]},
    "extra + tag": LABELS,
    "all at once": {
        "smart_format": "true",
        "redact": ["pci", "pii", "numbers"],
        "measurements": "true",
        "replace": REPLACE,
        "profanity_filter": "true",
        "dictation": "true",
        "search": SEARCH,
        **LABELS,
    },
}
SCALE = "(for scale: Deepgram's answer built)"
META = RequestMeta("bench", "0" * 64, "whisper", datetime(2026, 1, 1, tzinfo=timezone.utc))


def timed(tokens: list[str]) -> Transcript:
    """Tokens as a transcript's words, `WORD_S` apart."""
    words = [
        Word(token.strip(".,?!\"'();:").lower() or token, token, round(k * WORD_S, 3), round(k * WORD_S + 0.3, 3), 0.9)
        for k, token in enumerate(tokens)
    ]
    return Transcript(" ".join(tokens), words, 0.9, round(len(tokens) * WORD_S, 3), "en")


def transcripts(hour_s: float = 3600) -> dict[str, Transcript]:
    """The reading, the call, and both in turn to `hour_s` seconds of speech."""
    manifest = [json.loads(line) for line in (ROOT / "tests" / "data" / "manifest.jsonl").read_text().splitlines()]
    reading = next(m["text"] for m in manifest if m["path"] == READING).split()
    call = CALL.split()
    n = int(hour_s / WORD_S)
    both = (reading + call) * (n // (len(reading) + len(call)) + 1)
    return {"reading": timed(reading), "call": timed(call), "1 h": timed(both[:n])}


def work(request: TranscriptionRequest) -> Callable[[Transcript], object]:
    """What the request adds to an answer: the transforms it enables, its search hits, its echoed labels."""

    def run(t: Transcript) -> object:
        out = transforms.apply(t, request)
        return search_results(out.words, request.search) if request.search else None, echoed(request)

    return run


def cpu_ms(fn: Callable[[], object], budget_s: float) -> Iterator[float]:
    """CPU ms of one call (this process's: other work on the machine does not count), the first
    call then at least 5 more filling about `budget_s`."""
    started = time.process_time()
    fn()
    once = time.process_time() - started
    yield once * 1000
    for _ in range(max(5, min(2000, int(budget_s / max(once, 1e-7))))):
        started = time.process_time()
        fn()
        yield (time.process_time() - started) * 1000


def measure(option: str, fn: Callable[[Transcript], object], texts: dict[str, Transcript], budget_s: float) -> dict[str, Any]:
    """One row: the option's first request, then its median ms per request on each transcript."""
    row: dict[str, Any] = {"option": option, "query": OPTIONS.get(option), "ms_per_request": {}}
    for label, t in texts.items():
        gc.collect()
        first, *rest = cpu_ms(partial(fn, t), budget_s)
        row.setdefault("first_ms", round(first, 3))
        row["ms_per_request"][label] = round(statistics.median(rest), 4)
    return row


def run(budget_s: float = 1.0, hour_s: float = 3600) -> dict[str, Any]:
    """Every option measured, "off" first; the report written to transforms.json."""
    texts = transcripts(hour_s)
    rows = [measure("off", work(TranscriptionRequest()), texts, budget_s)]
    loaded = [m for m in LIBRARIES if m in sys.modules]
    for option, query in OPTIONS.items():
        if option != "off":
            rows.append(measure(option, work(params.parse(LISTEN_OPTIONS, query)), texts, budget_s))
    rows.append(measure(SCALE, lambda t: listen_body(t, META, TranscriptionRequest()), texts, budget_s))
    return {
        "what": "CPU ms per request of the work each option adds (its transforms, search hits, echoed labels); "
        "'off' is a request asking for none, what every request pays; first_ms is the option's first request "
        "in the process (on the reading), the rest medians",
        "command": "python -m tools.bench.transforms",
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "date": datetime.now(timezone.utc).date().isoformat(),
        "transcripts": {label: {"words": len(t.words), "minutes": round(t.duration / 60, 1)} for label, t in texts.items()},
        "libraries_loaded_with_options_off": loaded,
        "rows": rows,
    }


def table(report: dict[str, Any]) -> str:
    labels = [f"{label} ({t['words']} w)" for label, t in report["transcripts"].items()]
    lines = [f"{'option':<38}{'first ms':>10}" + "".join(f"{label:>18}" for label in labels)]
    for row in report["rows"]:
        times = "".join(f"{ms:>18.4f}" for ms in row["ms_per_request"].values())
        lines.append(f"{row['option']:<38}{row['first_ms']:>10.3f}{times}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=1.0, help="CPU time spent on each measurement")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    report = run(args.budget_s)
    print(table(report))
    print(f"optional libraries imported with every option off: {report['libraries_loaded_with_options_off'] or 'none'}")
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
