"""Split long audio into windows the engine can take (<= 30 s, or its shorter window), cutting at the
quietest point.

Whisper's encoder sees at most 30 s; vLLM silently drops the rest. Each cut is placed at the
quietest 100 ms inside the last `search_s` seconds of a window, so cuts fall in pauses rather than
inside words, and no audio is overlapped or skipped: every sample belongs to exactly one chunk.
Chunks carry their own offset, so times map back to the file without `index * 30` drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import SAMPLE_RATE

MAX_CHUNK_S = 30.0


@dataclass(frozen=True)
class Chunk:
    offset_s: float
    audio: np.ndarray

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE


def _quietest(audio: np.ndarray, lo: int, hi: int, frame: int) -> int:
    """Sample index at the centre of the lowest-energy `frame`-long window inside [lo, hi)."""
    segment = audio[lo:hi].astype(np.float64)
    energy = np.concatenate(([0.0], np.cumsum(segment * segment)))
    window = energy[frame:] - energy[:-frame]
    return lo + int(np.argmin(window)) + frame // 2


def split(audio: np.ndarray, max_s: float = MAX_CHUNK_S, search_s: float = 6.0, frame_s: float = 0.1) -> list[Chunk]:
    """Chunks of at most `max_s` (the engine's window), each cut in the last `search_s` of its window."""
    search_s = min(search_s, max_s / 2)
    max_len, search, frame = int(max_s * SAMPLE_RATE), int(search_s * SAMPLE_RATE), int(frame_s * SAMPLE_RATE)
    chunks: list[Chunk] = []
    start = 0
    while audio.size - start > max_len:
        cut = _quietest(audio, start + max_len - search, start + max_len, frame)
        chunks.append(Chunk(start / SAMPLE_RATE, audio[start:cut]))
        start = cut
    chunks.append(Chunk(start / SAMPLE_RATE, audio[start:]))
    return chunks
