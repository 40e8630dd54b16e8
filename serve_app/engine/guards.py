"""Guards against Whisper's three ways of writing text that is not in the audio.

- A repetition loop ("Hello. Hello. Hello." over a whole window): the decoded text compresses too
  well. Whisper's own threshold; the engine then decodes again (deployment.py `_decode`).
- A sentence said again at the end of a window: after the last words, in the window's trailing
  silence, the decoder often writes the sentence it has just written once more, or twice more (a
  Harvard list cut at 14 s came back with "A pink shell was found on the sandy beach." two and three
  times, the copies aligned to no audio). openai/whisper drops such text through its timestamp
  tokens; our windows are decoded without them, so the exact repeats are cut from the tokens instead.
- Words for audio with no speech: on silence, noise or hum Whisper writes "you" or a sentence of
  its own. openai/whisper and faster-whisper drop a window the model itself finds likely to hold no
  speech (its <|nospeech|> token) unless the text came out confidently; `no_speech` is that rule,
  with their thresholds. Digital silence (`is_silent`) never reaches the model.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

MAX_COMPRESSION_RATIO = 2.4  # Whisper's threshold: above it, a decode is taken to be a repetition loop
MIN_REPEAT_TOKENS = 4  # shorter repeats ("no, no", "very very") are speech far more often than not
SENTENCE_END = (".", "?", "!")
NO_SPEECH_THRESHOLD = 0.6  # openai/whisper's and faster-whisper's defaults: over this <|nospeech|>
LOGPROB_THRESHOLD = -1.0  # probability, and under this mean log-probability, the text is dropped
SILENT_PEAK = 1e-4  # -80 dBFS: under 4 steps of 16-bit audio, nothing anyone could hear


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def trailing_repeat(ids: list[int], texts: list[str]) -> int:
    """How many tokens at the end repeat, token for token, a whole sentence just before them (the
    repeats end a sentence, and the first copy starts one): every copy after the first, so that the
    sentence stays once; 0 if none. `texts`: each id's decoded text. The shortest repeating sentence
    is taken: "Go on now. Go on now. Go on now." keeps "Go on now."."""
    if not texts or not texts[-1].rstrip().endswith(SENTENCE_END):
        return 0
    for n in range(MIN_REPEAT_TOKENS, len(ids) // 2 + 1):
        copies = 1
        while len(ids) >= (copies + 1) * n and ids[-(copies + 1) * n : len(ids) - copies * n] == ids[-n:]:
            copies += 1
        before = texts[-copies * n - 1].rstrip() if len(ids) > copies * n else "."
        if copies > 1 and before.endswith(SENTENCE_END):
            return (copies - 1) * n
    return 0


def no_speech(no_speech_prob: float, logprobs: Sequence[float]) -> bool:
    """Whisper's rule: the model finds no speech likely and was not sure of the text it wrote.
    `logprobs`: each decoded token's, <|endoftext|> included (openai/whisper averages over n + 1)."""
    mean = sum(logprobs) / len(logprobs) if logprobs else 0.0
    return no_speech_prob > NO_SPEECH_THRESHOLD and mean < LOGPROB_THRESHOLD


def is_silent(audio: np.ndarray) -> bool:
    """No sample is audible: a muted microphone, a gap of zeros (Whisper writes "you" for them)."""
    return audio.size == 0 or max(float(audio.max()), -float(audio.min())) < SILENT_PEAK  # no |audio| copy
