"""Diarization stages on their own: windows, clustering, frame votes, turns; and the real encoder
and VAD on the two-speaker phone call (a few seconds on CPU, no service)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from serve_app.engine import diarize
from serve_app.engine.diarize import cluster, frame_speakers, speaker_similarity, turns, windows
from serve_app.types import Turn

DATA = Path(__file__).parent / "data"
WEIGHTS = Path(__file__).parent.parent / "models" / "speaker" / "resemblyzer.pt"


def test_windows_slide_over_speech_and_skip_what_is_too_short() -> None:
    spans = windows([(0, 30), (100, 250), (300, 500)])
    assert (0, 30) not in spans and (100, 250) in spans  # too short; exactly one window
    inside = [s for s in spans if s[0] >= 300]
    assert inside[0] == (300, 450) and inside[-1] == (350, 500)  # the last window ends at the region's end
    assert all(b - a == diarize.WINDOW_FRAMES for a, b in inside)


def test_windows_are_capped_on_long_speech_by_a_longer_step() -> None:
    two_hours = [(a, a + 1000) for a in range(0, 720_000, 1200)]  # 600 ten-second turns
    spans = windows(two_hours)
    assert len(spans) == diarize.MAX_WINDOWS and len(set(spans)) == len(spans)
    assert all(s % 1200 + diarize.WINDOW_FRAMES <= 1000 for s, _ in spans)  # inside speech
    assert {s // 1200 for s, _ in spans} == set(range(600))  # spread over every turn
    assert len(windows([(0, 1000)])) == 35  # short files keep the fine step: (1000-150)/25 + 1


def _voices(rng: np.random.Generator, centres: list[np.ndarray], per_voice: int, noise: float) -> np.ndarray:
    out = [c + noise * rng.standard_normal((per_voice, c.size)) for c in centres]
    return np.abs(np.concatenate(out))  # the encoder's ReLU: every embedding in the positive cone


def test_cluster_finds_how_many_voices_and_keeps_one_voice_whole() -> None:
    rng = np.random.default_rng(0)
    background = np.full(256, 0.5)
    voices = [background + rng.standard_normal(256) for _ in range(3)]
    starts = np.arange(0, 60 * 150, 150)[:60]  # no two windows share audio
    three = cluster(_voices(rng, voices, 20, 0.4), starts, background)
    assert sorted(np.bincount(three)) == [20, 20, 20] and len(set(three[:20])) == 1
    one = cluster(_voices(rng, voices[:1], 60, 0.4), starts, background)
    assert set(one) == {0}
    forced = cluster(_voices(rng, voices[:1], 60, 0.4), starts, background, num_speakers=2)
    assert set(forced) == {0, 1}


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_speaker_similarity_needs_windows_that_share_no_audio() -> None:
    touching = np.zeros((4, 4), dtype=bool)
    a = np.array([True, True, False, False])
    similarity, measured = speaker_similarity(np.eye(4), touching, a, ~a)
    assert np.isnan(similarity) and measured == 0
    x = _unit_rows(np.array([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.2, 1.0]]))
    apart = ~np.eye(4, dtype=bool)
    apart[2, 3] = apart[3, 2] = False  # the second group is one short turn: its windows overlap
    similarity, measured = speaker_similarity(x @ x.T, apart, a, ~a)
    assert measured == 1 and similarity == pytest.approx(float((x @ x.T)[:2, 2:].mean() / (x[0] @ x[1])))


def test_frames_vote_and_turns_are_numbered_by_first_appearance() -> None:
    spans = [(0, 100), (50, 150), (200, 300)]
    labels = np.array([1, 1, 0])
    frames = frame_speakers(spans, labels, [(0, 150), (160, 170), (200, 300)], 320)
    # 160-170 is speech too short for a window: it takes the speaker of the nearest voted frame (149)
    assert frames[10] == 1 and frames[165] == 1 and frames[250] == 0 and frames[155] == -1 and frames[310] == -1
    assert turns(frames) == [Turn(0.0, 1.5, 0), Turn(1.6, 1.7, 0), Turn(2.0, 3.0, 1)]


def test_frames_fill_two_hours_of_speech_from_the_nearest_vote() -> None:
    frames = 720_000
    spans = [(a, a + 150) for a in range(0, frames - 150, 3600)]  # sparse windows, as on a long file
    labels = np.arange(len(spans)) % 2
    out = frame_speakers(spans, labels, [(0, frames)], frames)
    assert (out >= 0).all()
    # windows 3600-3750 (label 1) and 7200-7350 (label 0): the label changes halfway, at 5475
    assert out[3675] == 1 and out[5450] == 1 and out[5500] == 0 and out[-1] == labels[-1]


@pytest.mark.skipif(not WEIGHTS.exists(), reason="tools/models/prepare.py extracts the speaker encoder")
def test_spectrogram_and_embeddings_in_blocks_match_all_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_app.pipeline.decode import decode

    encoder = diarize.SpeakerEncoder(WEIGHTS)
    audio = decode((DATA / "pyannote_sample.wav").read_bytes(), 600)
    whole = encoder.frames(audio)
    spans = windows([(0, len(whole))])
    embedded = encoder.embed(whole, spans)
    monkeypatch.setattr(diarize, "MEL_BLOCK_FRAMES", 777)
    monkeypatch.setattr(diarize, "EMBED_BATCH", 7)
    assert len(whole) == len(audio) // diarize.HOP + 1
    assert torch.allclose(encoder.frames(audio), whole, rtol=1e-5, atol=0)
    assert np.allclose(encoder.embed(whole, spans), embedded, atol=1e-5)


@pytest.mark.skipif(not WEIGHTS.exists(), reason="tools/models/prepare.py extracts the speaker encoder")
@pytest.mark.parametrize("max_windows", [diarize.MAX_WINDOWS, 30])
def test_phone_call_has_two_speakers_who_take_turns(max_windows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also with 30 of its 75 windows: as sparse as on 21 minutes of speech (2000 windows of 5000)."""
    from serve_app.pipeline.decode import decode

    monkeypatch.setattr(diarize, "MAX_WINDOWS", max_windows)
    audio = decode((DATA / "pyannote_sample.wav").read_bytes(), 600)
    found = diarize.Diarizer(WEIGHTS)(audio)
    assert {t.speaker for t in found} == {0, 1}

    # the reference (pyannote's RTTM): Sheila speaks alone 14.5-17.9 s and 21.8-27.8 s, Diane 18.6-21.5 s
    def at(second: float) -> int:
        return next(t.speaker for t in found if t.start <= second < t.end)

    assert at(16.0) == at(25.0) != at(20.0)


def test_diarization_error_rate_counts_miss_false_alarm_and_confusion() -> None:
    from tools.accuracy import diarization_error_rate

    reference = [(0.0, 1.0, "a"), (1.0, 2.0, "b")]
    # 0-1 right (x is a), 1-1.5 confused (x for b), 1.5-2 missed, 2-2.5 false alarm: 1.5 s of errors in 2 s
    hypothesis = [(0.0, 1.5, "x"), (2.0, 2.5, "y")]
    assert diarization_error_rate(reference, hypothesis) == pytest.approx(0.75)
    assert diarization_error_rate(reference, [(0.0, 1.0, "p"), (1.0, 2.0, "q")]) == 0.0  # labels are only names
    late = [(0.1, 1.0, "x")]  # starts 0.1 s late: a miss, unless the collar forgives the boundary
    assert diarization_error_rate(reference[:1], late) == pytest.approx(0.1)
    assert diarization_error_rate(reference[:1], late, collar=0.25) == 0.0
