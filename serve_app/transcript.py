"""Stitch per-chunk engine output into one transcript in file time.

Chunks never overlap (see audio/chunk.py), so stitching is concatenation in offset order: nothing
is deduplicated and nothing can be doubled. Word times are placed within each chunk in proportion
to the word's length; model-derived word timestamps are a later stage (issue 5).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .audio.chunk import Chunk
from .engine import ChunkTranscript, Token

_SPECIAL = re.compile(r"^<\|.*\|>$")
_PUNCT = re.compile(r"^[^\w']+|[^\w']+$")


@dataclass(frozen=True)
class Word:
    word: str  # normalised: lower case, no surrounding punctuation
    punctuated_word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: list[Word]
    confidence: float
    duration: float
    language: str


def _group_words(tokens: list[Token]) -> list[tuple[str, list[float]]]:
    """BPE tokens -> (word text, token log-probs); a leading space starts a new word."""
    words: list[tuple[str, list[float]]] = []
    for token in tokens:
        if _SPECIAL.match(token.text) or not token.text:
            continue
        if token.text.startswith(" ") or not words:
            words.append((token.text.strip(), [token.logprob]))
        else:
            text, logprobs = words[-1]
            words[-1] = (text + token.text, logprobs + [token.logprob])
    return [(text, lps) for text, lps in words if text]


def _chunk_words(chunk: Chunk, result: ChunkTranscript) -> list[Word]:
    grouped = _group_words(result.tokens)
    total_chars = sum(len(text) for text, _ in grouped) or 1
    t, words = chunk.offset_s, []
    for text, logprobs in grouped:
        span = chunk.duration_s * len(text) / total_chars
        confidence = math.exp(sum(logprobs) / len(logprobs))
        words.append(Word(_PUNCT.sub("", text).lower() or text, text, round(t, 3), round(t + span, 3), round(confidence, 4)))
        t += span
    return words


def stitch(chunks: list[Chunk], results: list[ChunkTranscript], language: str) -> Transcript:
    words = [w for chunk, result in zip(chunks, results) for w in _chunk_words(chunk, result)]
    text = " ".join(r.text.strip() for r in results if r.text.strip())
    logprobs = [t.logprob for r in results for t in r.tokens if not _SPECIAL.match(t.text)]
    confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0
    duration = sum(c.duration_s for c in chunks)
    return Transcript(text, words, round(confidence, 4), round(duration, 3), language)
