"""Engine helpers that need no model: worker priority, and the repetition-loop test."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from serve_app.engine.deployment import yield_cpu


def test_only_worker_children_are_niced(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep
    worker, other = tmp_path / "VLLM-Worker", tmp_path / "other-proc"  # the process name is the file name
    shutil.copy(sleep, worker)
    shutil.copy(sleep, other)
    procs = [subprocess.Popen([str(worker), "30"]), subprocess.Popen([str(other), "30"])]
    try:
        time.sleep(0.2)
        before = os.getpriority(os.PRIO_PROCESS, procs[1].pid)
        yield_cpu(19)
        assert os.getpriority(os.PRIO_PROCESS, procs[0].pid) == 19
        assert os.getpriority(os.PRIO_PROCESS, procs[1].pid) == before
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_repetition_loops_compress_too_well() -> None:
    from serve_app.engine.guards import MAX_COMPRESSION_RATIO, compression_ratio

    assert compression_ratio("Hello. " * 100) > MAX_COMPRESSION_RATIO
    speech = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    assert compression_ratio(speech) < MAX_COMPRESSION_RATIO and compression_ratio("") == 0.0


@pytest.mark.parametrize(
    ("no_speech_prob", "logprobs", "dropped"),
    [
        # tiny.en on 5 s of white noise at -40 dBFS: " you", 0.862 no speech, mean -1.77 with <|endoftext|>
        (0.862, [-3.2, -0.34], True),
        (0.95, [-0.6, -0.38], False),  # no speech likely, but the text confident: kept, as Whisper does
        (0.3, [-2.5, -1.9], False),  # unsure text of likely speech: kept (the temperature fallback's case)
        (0.61, [-1.01], True),
        (0.6, [-3.0], False),  # the thresholds themselves are not over them
        (0.9, [], False),  # nothing decoded: nothing to drop
    ],
)
def test_text_of_likely_no_speech_is_dropped_unless_confident(no_speech_prob: float, logprobs: list, dropped: bool) -> None:
    from serve_app.engine.guards import no_speech

    assert no_speech(no_speech_prob, logprobs) is dropped


def test_the_no_speech_probability_is_read_after_the_start_of_transcript() -> None:
    """Where the prompt has previous text, <|startoftranscript|> is not first: the position moves with it."""
    from types import SimpleNamespace

    from vllm.logprobs import Logprob

    from serve_app.engine.deployment import WhisperEngine
    from serve_app.engine.prompts import WhisperVocabulary
    from serve_app.settings import ROOT

    vocab = WhisperVocabulary.from_model_dir(ROOT / "models/whisper-base")
    engine = SimpleNamespace(vocab=vocab)
    likely = {vocab.no_speech: Logprob(math.log(0.9), 1, "<|nocaptions|>")}
    plain = vocab.prompt("de")
    with_text = vocab.prompt("de", [1000, 1001, 1002])

    def read(prompt_ids: list[int], logprobs: list | None) -> float:
        return WhisperEngine._no_speech_prob(engine, prompt_ids, SimpleNamespace(prompt_logprobs=logprobs))

    # one position per prompt token (the first has none): the one after <|startoftranscript|> counts
    assert read(plain, [None, likely, {}, {}]) == pytest.approx(0.9)
    assert read(with_text, [None, {}, {}, {}, {}, likely, {}, {}]) == pytest.approx(0.9)
    assert read(with_text, [None, likely, {}, {}, {}, {}, {}, {}]) == 0.0  # inside the previous text: not it
    # <|nocaptions|> not the likeliest token there: under 0.5, so 0 for the rule; or no log-probabilities asked
    assert read(plain, [None, {vocab.languages["de"]: Logprob(-0.1, 1, "<|de|>")}, {}, {}]) == 0.0
    assert read(plain, None) == 0.0


def test_only_inaudible_audio_counts_as_silence() -> None:
    from serve_app.engine.guards import is_silent

    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(16000, np.float32)) and is_silent(np.zeros(0, np.float32))
    assert is_silent(np.full(16000, 2 / 32768, np.float32))  # two steps of 16-bit audio: dither
    assert not is_silent(rng.normal(0, 0.001, 16000).astype(np.float32))  # quiet hiss: the model judges it
    quiet = np.zeros(16000, np.float32)
    quiet[8000] = 0.01  # one click in a second of silence is something to hear
    assert not is_silent(quiet)


def test_vocabularies_name_their_no_speech_token() -> None:
    from serve_app.engine.prompts import WhisperVocabulary
    from serve_app.settings import ROOT

    for model in ("whisper-tiny.en-15s", "whisper-base"):
        added = json.loads((ROOT / "models" / model / "tokenizer.json").read_text())["added_tokens"]
        by_name = {t["content"]: t["id"] for t in added}
        # tiny.en and base predate the rename to <|nospeech|>
        assert WhisperVocabulary.from_model_dir(ROOT / "models" / model).no_speech == by_name["<|nocaptions|>"]


def test_prompts_carry_the_previous_text_bounded() -> None:
    from serve_app.engine.prompts import MAX_PREVIOUS_TOKENS, WhisperVocabulary
    from serve_app.settings import ROOT

    english = WhisperVocabulary.from_model_dir(ROOT / "models/whisper-tiny.en-15s")
    assert english.prompt(None) == [english.sot, english.no_timestamps]
    assert english.previous is not None and english.prompt(None, []) == english.prompt(None)
    long = list(range(1000, 1000 + 300))
    prompt = english.prompt(None, long)
    # <|startofprev|>, the last 223 tokens of the text before, then the usual prompt
    assert prompt == [english.previous, *long[-MAX_PREVIOUS_TOKENS:], english.sot, english.no_timestamps]
    multilingual = WhisperVocabulary.from_model_dir(ROOT / "models/whisper-base")
    assert multilingual.prompt("de", [5, 6])[:3] == [multilingual.previous, 5, 6]
    assert multilingual.prompt("de", [5, 6])[3:] == multilingual.prompt("de")
    ids = json.loads((ROOT / "models/whisper-base/tokenizer.json").read_text())["added_tokens"]
    by_name = {t["content"]: t["id"] for t in ids}
    translate = [by_name[name] for name in ("<|startoftranscript|>", "<|de|>", "<|translate|>", "<|notimestamps|>")]
    assert multilingual.prompt("de", translate=True) == translate
    assert english.translate is None  # English-only checkpoints have no translate task


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # A Harvard list cut at 14 s: the window's last sentence written again over its trailing silence.
        (
            "She saw a cat in the neighbor's house. A pink shell was found on the sandy beach. A pink shell was found on the sandy beach.",
            "She saw a cat in the neighbor's house. A pink shell was found on the sandy beach.",
        ),
        # The same window written three times (tiny.en, both attention kernels): every extra copy goes.
        (
            "A pink shell was found on the sandy beach. A pink shell was found on the sandy beach. "
            "A pink shell was found on the sandy beach.",
            "A pink shell was found on the sandy beach.",
        ),
        ("Go on. Go on now. Go on now. Go on now.", "Go on. Go on now."),
        # A window that is only the repeat.
        ("Thank you very much. Thank you very much.", "Thank you very much."),
        # Not a whole sentence repeated: speech, kept.
        ("I think, I think, I think that's right.", "I think, I think, I think that's right."),
        ("It was very, very, very good. Very good.", "It was very, very, very good. Very good."),
        ("No. No.", "No. No."),  # shorter than MIN_REPEAT_TOKENS
        ("Ask what you can do for your country.", "Ask what you can do for your country."),
    ],
)
def test_a_sentence_repeated_at_the_window_end_is_dropped(text: str, kept: str) -> None:
    from tokenizers import Tokenizer

    from serve_app.engine.guards import trailing_repeat
    from serve_app.settings import ROOT

    tokenizer = Tokenizer.from_file(str(ROOT / "models/whisper-tiny.en-15s/tokenizer.json"))
    ids = tokenizer.encode(" " + text, add_special_tokens=False).ids
    texts = [tokenizer.decode([i]) for i in ids]
    n = trailing_repeat(ids, texts)
    assert tokenizer.decode(ids[: len(ids) - n]).strip() == kept
