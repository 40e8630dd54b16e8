"""Word timing by cross-attention alignment: the vectorised DTW walks the same path as Whisper's
loop, and the real checkpoint places sentence starts of real speech where they are."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import WhisperTokenizerFast

from serve_app.engine.align import Aligner, dtw, token_times
from serve_app.pipeline.decode import decode
from serve_app.pipeline.stitch import snap_to_speech
from serve_app.settings import ROOT
from serve_app.types import SAMPLE_RATE

from .helpers import DATA, manifest

MODEL = ROOT / "models/whisper-tiny.en-15s"
LONG = DATA / "ljspeech_LJ001-0001_to_0032.flac"


def _dtw_loops(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whisper's `dtw_cpu`, written out with loops: the reference."""
    n, m = x.shape
    cost = np.full((n + 1, m + 1), np.inf)
    trace = -np.ones((n + 1, m + 1))
    cost[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            cost[i, j], trace[i, j] = x[i - 1, j - 1] + c, t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    steps = np.array(path[::-1])
    return steps[:, 0], steps[:, 1]


@pytest.mark.parametrize("shape", [(1, 1), (3, 40), (12, 300), (40, 41)])
def test_dtw_walks_whispers_path(shape: tuple[int, int]) -> None:
    x = np.random.default_rng(sum(shape)).normal(size=shape)
    rows, cols = dtw(x)
    ref_rows, ref_cols = _dtw_loops(x)
    assert np.array_equal(rows, ref_rows) and np.array_equal(cols, ref_cols)
    assert rows[0] == cols[0] == 0 and rows[-1] == shape[0] - 1 and cols[-1] == shape[1] - 1


def test_token_times_follow_the_attended_frames() -> None:
    # Three tokens attending frames [0, 10), [10, 30), [30, 50) in every head: starts at 0, 0.2, 0.6 s.
    attention = np.full((2, 3, 100), 1e-4)
    for row, (lo, hi) in enumerate([(0, 10), (10, 30), (30, 50)]):
        attention[:, row, lo:hi] = 1.0
    times = token_times(attention, n_frames=50)
    assert times[:3] == pytest.approx([0.0, 0.2, 0.6], abs=0.06)
    assert times[-1] == 1.0 and np.all(np.diff(times) >= 0)


@pytest.fixture(scope="module")
def aligner() -> Aligner:
    return Aligner(str(MODEL), device="cpu")


def test_sentence_starts_in_real_speech(aligner: Aligner) -> None:
    """The first 12 s of the LJSpeech file hold two sentences (0.0 s and 9.905 s): forced-aligning
    their reference text, kept off silence, puts each first word within 0.25 s of where it is."""
    segments = manifest()[LONG.name]["segments"][:2]
    audio = decode(LONG.read_bytes(), 300)[: 12 * SAMPLE_RATE]
    tokenizer = WhisperTokenizerFast.from_pretrained(MODEL)
    pieces = [tokenizer.encode(" " + s["text"], add_special_tokens=False) for s in segments]
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    prompt = [tokenizer.convert_tokens_to_ids(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]
    times = snap_to_speech(aligner.align(audio, prompt, pieces[0] + pieces[1], eot), audio)
    assert len(times) == len(pieces[0]) + len(pieces[1])
    starts = [start for start, _ in times]
    assert all(0 <= s <= e <= 12.0 for s, e in times) and starts == sorted(starts)
    assert starts[0] == pytest.approx(segments[0]["start"], abs=0.25)
    assert starts[len(pieces[0])] == pytest.approx(segments[1]["start"], abs=0.25)
    assert aligner.align(audio, prompt, [], eot) == []


def test_the_whole_checkpoint_cut_to_15_s_aligns_as_the_15_s_checkpoint(aligner: Aligner) -> None:
    """The CPU default serves the 30 s checkpoint and cuts files into chunks of 15 s at most: its
    aligner keeps the encoder's first 15 s (as tools/models/convert.py does), so a chunk's words get
    the times the 15 s checkpoint gives them, for half the encoder's frames of the whole window."""
    whole = ROOT / "models/whisper-tiny.en"
    if not (whole / "config.json").exists():
        pytest.skip("models/whisper-tiny.en not prepared (scripts/setup.sh --model all)")
    cut = Aligner(str(whole), device="cpu", window_s=15)
    assert cut.window_samples == aligner.window_samples == 15 * SAMPLE_RATE
    audio = decode(LONG.read_bytes(), 300)[: 12 * SAMPLE_RATE]
    tokenizer = WhisperTokenizerFast.from_pretrained(MODEL)
    text = tokenizer.encode(" " + manifest()[LONG.name]["segments"][0]["text"], add_special_tokens=False)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    prompt = [tokenizer.convert_tokens_to_ids(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]
    assert cut.align(audio, prompt, text, eot) == aligner.align(audio, prompt, text, eot)
    assert Aligner(str(whole), device="cpu").window_samples == 30 * SAMPLE_RATE  # no window given: the checkpoint's


def test_words_are_kept_off_silence() -> None:
    # 0.5 s tone, 0.5 s silence, 0.5 s tone. A span starting inside the first tone's fade and
    # reaching into the second starts where the second tone does; one ending in silence ends at it.
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    audio = np.concatenate([tone, np.zeros_like(tone), tone])
    spans = snap_to_speech([(0.0, 0.8), (0.4, 1.3), (0.6, 0.9)], audio)
    assert spans[0] == pytest.approx((0.0, 0.5))
    assert spans[1] == pytest.approx((1.0, 1.3))
    assert spans[2] == (0.6, 0.9)  # all silence: the model's span stands
