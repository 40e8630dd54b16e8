"""What the decoder prompt buys (pipeline/prompt.py), measured on the recorded speech through the service:

  keyterms      every English clip whose reference names something (a capitalised word inside a
                sentence: "Dashwood", "Caxton"), transcribed without and with `keyterm=` those words;
                recall = the share of their occurrences the transcript spells right. Control: the
                same clips with another clip's terms, which must not appear (false insertions) nor
                raise the word error rate.
  filler words  the one spontaneous English recording with a transcript of its "um"s and "uh"s
                (a two-speaker phone call), without and with `filler_words=true`: filler recall, and
                the WER of the other words.
  cost          each request's latency, one at a time, without and with the option.

  .venv/bin/python -m tools.prompting                  # about 5 minutes on 2 CPUs
  .venv/bin/python -m tools.prompting --out /tmp/p     # elsewhere than docs/accuracy

Prints the tables and writes prompting.{json,md} to --out.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

import jiwer
import yaml

from tools import ROOT
from tools.accuracy_sets import code_version
from tools.bench.common import DEFAULT_MANIFEST, normalize

FILLERS = {"um", "uh", "uhm", "umm", "erm", "hmm", "mm"}
FILLER_CLIP = "diarization/mfa_michaelandsickmichael.wav"
TERM_SETS = {"arctic", "classic", "harvard", "librivox", "ljspeech", "long"}  # English, mixed case references
TITLES = {"I", "Mr", "Mrs", "Dr", "St", "Sir"}  # capitalised, but every model knows them
CAPITALISED = re.compile(r"^[A-Z][a-z]+$")


def proper_nouns(reference: str) -> list[str]:
    """Capitalised words that do not start a sentence: names and the like, once each."""
    words = reference.split()
    found = []
    for before, word in zip(["."] + words, words):
        bare = word.strip(".,;:!?\"'()")
        if CAPITALISED.match(bare) and bare not in TITLES and not before.endswith((".", "?", "!", '"')):
            found.append(bare)
    return list(dict.fromkeys(found))


def recall(terms: list[str], reference: str, hypothesis: str) -> tuple[int, int]:
    """(occurrences spelled right, occurrences): each term's count in the reference, capped at the transcript's."""
    ref, hyp = Counter(normalize(reference).split()), Counter(normalize(hypothesis).split())
    keys = [normalize(t) for t in terms]
    return sum(min(ref[k], hyp[k]) for k in keys), sum(ref[k] for k in keys)


def timed_post(service, path: Path, **params: str) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    from tools.accuracy import post

    started = time.perf_counter()
    text = post(service, path, language="en", **params)["text"]
    return text, time.perf_counter() - started


def keyterms(service, rows: list[dict], base: Path) -> dict:  # type: ignore[no-untyped-def]
    clips = [(r, proper_nouns(r["text"])) for r in rows if r["set"] in TERM_SETS]
    clips = [(r, terms) for r, terms in clips if terms]
    runs: dict[str, list] = {"without": [], "with": [], "distractors": []}
    for i, (row, terms) in enumerate(clips):
        other = clips[(i + len(clips) // 2) % len(clips)][1]  # another clip's names: not in this audio
        distractors = [t for t in other if normalize(t) not in normalize(row["text"]).split()]
        for name, given in (("without", []), ("with", terms), ("distractors", distractors)):
            text, seconds = timed_post(service, base / row["path"], **({"keyterm": given} if given else {}))  # type: ignore[arg-type]
            runs[name].append({"path": row["path"], "terms": given, "text": text, "seconds": round(seconds, 3)})
    references = [normalize(r["text"]) for r, _ in clips]
    result: dict = {"clips": len(clips), "terms": sum(len(t) for _, t in clips), "runs": runs}
    for name, texts in runs.items():
        result[f"wer_{name}"] = round(jiwer.wer(references, [normalize(t["text"]) for t in texts]), 4)
        result[f"seconds_{name}"] = round(sum(t["seconds"] for t in texts) / len(texts), 3)
    for name in ("without", "with"):
        hits = [recall(terms, r["text"], t["text"]) for (r, terms), t in zip(clips, runs[name])]
        result[f"recall_{name}"] = round(sum(h for h, _ in hits) / max(sum(n for _, n in hits), 1), 4)
    inserted = sum(recall(t["terms"], t["text"], t["text"])[1] for t in runs["distractors"])
    result["distractor_insertions"] = inserted
    result["distractor_terms"] = sum(len(t["terms"]) for t in runs["distractors"])
    return result


def fillers(service, rows: list[dict], base: Path) -> dict:  # type: ignore[no-untyped-def]
    row = next(r for r in rows if r["path"] == FILLER_CLIP)
    reference = normalize(row["text"]).split()
    result: dict = {
        "path": FILLER_CLIP,
        "duration_s": row["duration_s"],
        "reference_fillers": sum(w in FILLERS for w in reference),
    }
    for name, params in (("without", {}), ("with", {"filler_words": "true"})):
        text, seconds = timed_post(service, base / FILLER_CLIP, **params)
        hypothesis = normalize(text).split()
        written = sum(w in FILLERS for w in hypothesis)  # one class: an "uh" heard as "um" is still kept
        others = jiwer.wer(
            " ".join(w for w in reference if w not in FILLERS), " ".join(w for w in hypothesis if w not in FILLERS)
        )
        result[name] = {
            "text": text,
            "fillers": written,
            "filler_recall": round(min(written, result["reference_fillers"]) / result["reference_fillers"], 4),
            "wer_other_words": round(others, 4),
            "seconds": round(seconds, 3),
        }
    return result


def markdown(results: dict) -> str:
    k, f = results["keyterms"], results["fillers"]
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    return "\n".join(
        [
            "# Keyterms and filler words: what the decoder prompt buys",
            "",
            f"Run on {results['date']}, on {results['machine']}, the service's code at {results['code']}, "
            "configs/cpu.yaml (tiny.en, 15 s window):",
            "",
            "    .venv/bin/python -m tools.prompting",
            "",
            f"**Keyterms.** {k['clips']} English clips whose references name something ({k['terms']} capitalised words "
            "inside sentences, e.g. names), each transcribed three ways; recall is the share of those words' occurrences "
            "spelled right; distractors are another clip's names, absent from the audio.",
            "",
            "| run | keyterms sent | recall of the names | WER | mean latency |",
            "|---|---|---|---|---|",
            f"| without | none | {pct(k['recall_without'])} | {pct(k['wer_without'])} | {k['seconds_without']:.2f} s |",
            f"| with | the clip's names | {pct(k['recall_with'])} | {pct(k['wer_with'])} | {k['seconds_with']:.2f} s |",
            f"| distractors | another clip's names | – | {pct(k['wer_distractors'])} | {k['seconds_distractors']:.2f} s |",
            "",
            f"Distractor names written into transcripts: {k['distractor_insertions']} of {k['distractor_terms']} sent.",
            "",
            f"**Filler words.** `{f['path']}` ({f['duration_s']:.0f} s, two speakers on a phone line), whose transcript "
            f"has {f['reference_fillers']} fillers (um, uh):",
            "",
            "| run | fillers written | filler recall | WER of the other words | latency |",
            "|---|---|---|---|---|",
            *(
                f"| {name} | {f[name]['fillers']} | {pct(f[name]['filler_recall'])} | {pct(f[name]['wer_other_words'])} "
                f"| {f[name]['seconds']:.2f} s |"
                for name in ("without", "with")
            ),
            "",
            "One recording: the only spontaneous English speech in the collection with its fillers transcribed. "
            "Every transcript is in prompting.json.",
            "",
        ]
    )


def main() -> None:
    import platform

    from tools.accuracy import started

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy")
    args = p.parse_args()
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    base = args.manifest.parent
    with tempfile.TemporaryDirectory(prefix="stt-prompting-") as tmp:
        service = started(Path(tmp), yaml.safe_load((ROOT / "configs/cpu.yaml").read_text()), "english")
        try:
            results = {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
                "code": code_version(),
                "keyterms": keyterms(service, rows, base),
                "fillers": fillers(service, rows, base),
            }
        finally:
            service.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prompting.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    text = markdown(results)
    (args.out / "prompting.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
