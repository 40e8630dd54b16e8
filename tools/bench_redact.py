"""What redaction costs per request: the transforms (pipeline/transforms.py) timed on a realistic
transcript (a support call: ten minutes, about 1,600 words, with cards, an SSN, phone numbers, an
email and a name in it), with each `redact` setting and with none. Prints a table and writes
docs/benchmarks/redact.json. CPU only, no service needed:

    python -m tools.bench_redact [--words 1600] [--repeat 30]

`run()` returns the rows, for a shared transforms benchmark to fold in.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from serve_app.api import listen, params
from serve_app.pipeline import transforms
from serve_app.pipeline.transcript import Transcript, Word

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "redact.json"
# One turn of a support call; repeated (its numbers changing a little) to the length asked for.
CALL = (
    "Thank you for calling, how can I help you today? Hi, my name is Maria Lopez and I'd like to update "
    "the card on my account. Sure, I can help with that. Can I have the new card number? Yes, it's "
    "4111 1111 1111 1111, it expires 12/27 and the CVV is 123. Thank you. And to verify your identity, "
    "the last four of your social? My SSN is 123-45-6789. Great. What's the best number to reach you? "
    "Call me at (555) 123-4567 or four one five five five five one two one two. And your email? "
    "maria.lopez@example.com. Perfect, I've updated it. We spoke about 3 invoices from 2023, order "
    "A12345 and 2 others. Is there anything else I can help you with today? No, that's all, thank you "
    "so much for your help, have a good day. You too, goodbye."
)
SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("off", {}),
    ("redact=pci", {"redact": "pci"}),
    ("redact=ssn", {"redact": "ssn"}),
    ("redact=numbers", {"redact": "numbers"}),
    ("redact=pii", {"redact": "pii"}),
    ("redact=pci&redact=pii&redact=numbers", {"redact": ["pci", "pii", "numbers"]}),
    ("redact_pii&redact_pci (Pulse)", {"redact_pii": "true", "redact_pci": "true"}),
]


def transcript(n_words: int) -> Transcript:
    """A call of `n_words` words, 0.375 s each (160 words a minute)."""
    tokens = CALL.split()
    words = []
    for k in range(n_words):
        token = tokens[k % len(tokens)]
        words.append(Word(token.strip(".,?!").lower() or token, token, k * 0.375, k * 0.375 + 0.3, 0.9))
    return Transcript(" ".join(w.punctuated_word for w in words), words, 0.9, n_words * 0.375, "en")


def run(n_words: int = 1600, repeat: int = 30) -> list[dict[str, Any]]:
    t = transcript(n_words)
    rows = []
    for name, query in SETTINGS:
        request = params.parse(listen.OPTIONS, query)
        transforms.apply(t, request)  # warm
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            out = transforms.apply(t, request)
            times.append(time.perf_counter() - started)
        rows.append(
            {
                "setting": name,
                "words": n_words,
                "ms_per_request": round(min(times) * 1000, 4),  # the least: the others met other work on the CPU
                "ms_median": round(statistics.median(times) * 1000, 4),
                "us_per_word": round(min(times) * 1e6 / n_words, 2),
                "placeholders": sum(w.word.startswith("[") for w in out.words) if query else 0,
            }
        )
    return rows


def import_cost() -> int:
    """Bytes allocated importing the redaction module (and the little it imports) in a fresh interpreter."""
    code = "import tracemalloc; tracemalloc.start(); import serve_app.pipeline.redact; print(tracemalloc.get_traced_memory()[1])"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=1600)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = run(args.words, args.repeat)
    print(f"| setting | ms per request ({args.words} words), least / median | us per word | placeholders |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['ms_per_request']} / {r['ms_median']} | {r['us_per_word']} | {r['placeholders']} |")
    memory = import_cost()
    print(f"\nimporting the module (with serve_app.pipeline): {memory / 1024:.0f} KiB; no model, nothing loaded per request")
    result = {
        "what": "transforms.apply on one transcript, least and median of repeats; 'off' is what every request pays",
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "import_bytes": memory,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
