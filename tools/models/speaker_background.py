"""Compute serve_app/engine/speaker_background.npy: the mean speaker embedding of many voices.

Diarization judges whether two groups of windows are different people after removing what every
voice shares (Resemblyzer embeddings all sit in one positive cone). The mean is taken over speakers
that no diarization measurement uses: the multilingual, Common Voice, ARCTIC, SpeechBrain and
LibriVox clips of ../shared/audio, one mean per clip so that long clips do not weigh more.

Usage: python -m tools.models.speaker_background [--audio ../shared/audio] [--weights models/speaker/resemblyzer.pt]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from serve_app.engine.diarize import BACKGROUND, Diarizer, windows
from serve_app.pipeline.decode import decode
from tools import ROOT

SETS = ("multilingual", "commonvoice", "arctic", "speechbrain_asr", "librivox")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=ROOT.parent / "shared" / "audio")
    parser.add_argument("--weights", type=Path, default=ROOT / "models" / "speaker" / "resemblyzer.pt")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.audio / "manifest.jsonl").read_text().splitlines()]
    diarizer = Diarizer(args.weights, background=np.zeros(256))  # only its VAD and encoder are used
    means = []
    for row in rows:
        if row["set"] not in SETS:
            continue
        audio = decode((args.audio / row["path"]).read_bytes(), 600)
        spans = windows(diarizer.speech(audio))
        if spans:
            means.append(diarizer.encoder.embed(diarizer.encoder.frames(audio), spans).mean(0))
    np.save(BACKGROUND, np.mean(means, axis=0).astype(np.float32))
    print(f"{BACKGROUND}: mean of {len(means)} clips")


if __name__ == "__main__":
    main()
