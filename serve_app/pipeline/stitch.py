"""Stitch per-chunk engine output into one transcript in file time (and channels, speakers into it).

Chunks never overlap (see chunk.py), so stitching is concatenation in offset order: nothing
is deduplicated and nothing can be doubled. When the request asked for timestamps, a word runs from
its first token's start to its last token's end, as aligned by the model and kept off silence
(engine/align.py, then `snap_to_speech` below); otherwise its chunk is shared out by word length. Both are shifted by the chunk's offset.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np

from ..types import SAMPLE_RATE, ChunkTranscript, Token, Turn
from .chunk import Chunk
from .transcript import Transcript, Word

_SPECIAL = re.compile(r"^<\|.*\|>$")
_PUNCT = re.compile(r"^[^\w']+|[^\w']+$")


def _group_words(tokens: list[Token]) -> list[list[Token]]:
    """BPE tokens -> words (lists of tokens); a leading space starts a new word, punctuation and
    word pieces join the word before them."""
    words: list[list[Token]] = []
    for token in tokens:
        if _SPECIAL.match(token.text) or not token.text:
            continue
        if token.text.startswith(" ") or not words:
            words.append([token])
        else:
            words[-1].append(token)
    return [w for w in words if "".join(t.text for t in w).strip()]


def _estimated_spans(chunk: Chunk, groups: list[list[Token]]) -> list[tuple[float, float]]:
    """Without alignment: the chunk shared out by word length (cheap, approximate)."""
    lengths = [len("".join(t.text for t in g).strip()) for g in groups]
    edges = np.concatenate(([0.0], np.cumsum(lengths))) * chunk.duration_s / max(sum(lengths), 1)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _chunk_words(chunk: Chunk, result: ChunkTranscript) -> list[Word]:
    groups = _group_words(result.tokens)
    if result.aligned:
        spans = snap_to_speech([(g[0].start or 0.0, g[-1].end or 0.0) for g in groups], chunk.audio)
    else:
        spans = _estimated_spans(chunk, groups)
    words = []
    for group, (start, end) in zip(groups, spans):
        text = "".join(t.text for t in group).strip()
        confidence = math.exp(sum(t.logprob for t in group) / len(group))
        t0, t1 = chunk.offset_s + start, chunk.offset_s + end
        words.append(Word(_PUNCT.sub("", text).lower() or text, text, round(t0, 3), round(t1, 3), round(confidence, 4)))
    return words


def stitch(
    chunks: list[Chunk], results: list[ChunkTranscript], language: str, language_confidence: float | None = None
) -> Transcript:
    words = [w for chunk, result in zip(chunks, results) for w in _chunk_words(chunk, result)]
    text = " ".join(r.text.strip() for r in results if r.text.strip())
    logprobs = [t.logprob for r in results for t in r.tokens if not _SPECIAL.match(t.text)]
    confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0
    duration = sum(c.duration_s for c in chunks)
    return Transcript(text, words, round(confidence, 4), round(duration, 3), language, language_confidence)


def merge_channels(channels: list[Transcript]) -> Transcript:
    """`multichannel=true`: every channel's words in time order, plus the channels themselves."""
    words = sorted((w for c in channels for w in c.words), key=lambda w: w.start)
    confidence = sum(c.confidence for c in channels) / len(channels)
    first = channels[0]
    return Transcript(
        " ".join(w.punctuated_word for w in words),
        words,
        round(confidence, 4),
        max(c.duration for c in channels),
        first.language,
        first.language_confidence,
        tuple(channels),
    )


def with_speakers(t: Transcript, turns: list[Turn]) -> Transcript:
    """Each word takes the speaker it overlaps most; a word in no turn (the VAD heard silence
    there) takes the nearest turn's speaker."""
    if not turns:
        return replace(t, words=[replace(w, speaker=0) for w in t.words])
    starts = np.array([u.start for u in turns])
    ends = np.array([u.end for u in turns])
    labels = np.array([u.speaker for u in turns])
    words = []
    for w in t.words:
        overlap = np.minimum(ends, w.end) - np.maximum(starts, w.start)
        if overlap.max() > 0:
            shares = np.bincount(labels, weights=np.clip(overlap, 0, None))
            speaker = int(shares.argmax())
        else:
            speaker = int(labels[np.argmin(np.maximum(starts - w.end, w.start - ends))])
        words.append(replace(w, speaker=speaker))
    return replace(t, words=words)


FRAMES_PER_S = 50  # the encoder's frames (20 ms): word times come at this resolution
SILENCE_DB = 40.0  # a 20 ms frame this far below the chunk's loudest is silence
PAUSE_FRAMES = 5  # a pause of 100 ms or more inside a word's span means the word starts after it


def snap_to_speech(spans: list[tuple[float, float]], audio: np.ndarray) -> list[tuple[float, float]]:
    """Keep word spans off silence. Attention alignment tends to start the word after a pause where
    the previous word fades out; the signal says where speech resumes. A word's start moves past
    leading silence and past any pause inside its span, its end back before trailing silence; a
    span that is all silence is left as the model put it."""
    hop = SAMPLE_RATE // FRAMES_PER_S
    n = audio.size // hop
    if n == 0:
        return spans
    energy = 10 * np.log10(np.square(audio[: n * hop].reshape(n, hop), dtype=np.float64).mean(axis=1) + 1e-12)
    voiced = energy > energy.max() - SILENCE_DB
    snapped = []
    for start, end in spans:
        lo, hi = int(start * FRAMES_PER_S), min(int(np.ceil(end * FRAMES_PER_S)), n)
        frames = np.flatnonzero(voiced[lo:hi]) + lo
        if frames.size == 0:
            snapped.append((start, end))
            continue
        gaps = np.flatnonzero(np.diff(frames) > PAUSE_FRAMES)  # voiced frames separated by a pause
        first = frames[gaps[-1] + 1] if gaps.size else frames[0]
        snapped.append((max(start, first / FRAMES_PER_S), min(end, (frames[-1] + 1) / FRAMES_PER_S)))
    return snapped
