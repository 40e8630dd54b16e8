"""Speakers of a live stream (`diarize=true`), numbered across its finals.

The engine's diarizer takes one piece of audio and answers who spoke when, its speakers numbered
afresh for that piece; it does not hand out its voice embeddings. So each final is diarized with a
few seconds of every speaker heard so far in front of it (their `voices`, each apart from the next
by silence): the diarizer clusters the final's speech together with those voices, and a speaker of
the final that shares a cluster with a known voice takes that voice's number; one that shares none
is new and takes the next number. The final's own speech then renews its speakers' voices (a longer
turn replaces a shorter sample).

Bounded: at most MAX_VOICES voices of VOICE_S each (0.96 MB as 16 kHz float32), the most recently
heard kept; a speaker whose voice was dropped gets a new number when heard again. Finals of one
channel are diarized one at a time, in stream order, so numbers follow the order speakers are heard."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from ..types import SAMPLE_RATE, Turn

VOICE_S = 3.0  # of a speaker's speech kept as its voice: two of the diarizer's 1.5 s windows
MAX_VOICES = 5  # the diarizer splits a piece into at most 8 speakers: room for the final's own
MIN_VOICE_S = 0.5  # shorter speech is not embedded by the diarizer (its MIN_WINDOW_FRAMES): no use as a voice
GAP_S = 0.5  # silence between voices and before the final: the diarizer's VAD sees separate regions

Diarize = Callable[[np.ndarray], Awaitable[list[Turn]]]  # audio -> turns, speakers numbered for that audio


class Speakers:
    """One channel's speakers: `turns` diarizes a final and answers its turns in stream numbers."""

    def __init__(self, diarize: Diarize) -> None:
        self._diarize = diarize
        self._voices: dict[int, np.ndarray] = {}  # stream speaker -> a sample of its speech, latest heard last
        self._next = 0  # the number the next new speaker takes
        self._lock = asyncio.Lock()  # finals one at a time, in the order they asked

    async def turns(self, audio: np.ndarray, start: float) -> list[Turn]:
        """The final `audio` (at `start` in stream seconds): its turns, in stream seconds and numbers."""
        async with self._lock:
            lead, spans = self._lead()
            found = await self._diarize(np.concatenate((lead, audio)) if lead.size else audio)
            offset = lead.size / SAMPLE_RATE
            numbers = self._numbers(found, spans, offset)
            own = [Turn(max(t.start, offset) - offset, t.end - offset, numbers[t.speaker]) for t in found if t.end > offset]
            if not own:  # no speech the diarizer could hear: the speaker heard last said it
                own = [Turn(0.0, audio.size / SAMPLE_RATE, next(reversed(self._voices), 0))]
            else:
                self._learn(own, audio)
            return [Turn(round(t.start + start, 3), round(t.end + start, 3), t.speaker) for t in own]

    def _lead(self) -> tuple[np.ndarray, dict[int, tuple[float, float]]]:
        """The known voices one after another, silence after each: the audio and where each voice lies."""
        gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
        pieces, spans, at = [], {}, 0
        for speaker, voice in self._voices.items():
            spans[speaker] = (at / SAMPLE_RATE, (at + voice.size) / SAMPLE_RATE)
            pieces += [voice, gap]
            at += voice.size + gap.size
        return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), spans

    def _numbers(self, found: list[Turn], spans: dict[int, tuple[float, float]], offset: float) -> dict[int, int]:
        """The diarizer's speakers -> stream numbers: the known voice a speaker covers most, else a new
        number, given in the order the final's speakers first speak."""
        numbers: dict[int, int] = {}
        for label in dict.fromkeys(t.speaker for t in found):
            cover = {s: sum(_overlap(t, a, b) for t in found if t.speaker == label) for s, (a, b) in spans.items()}
            best = max(cover, key=lambda s: cover[s], default=None)
            if best is not None and cover[best] > 0:
                numbers[label] = best
        for t in found:
            if t.speaker not in numbers and t.end > offset:
                numbers[t.speaker], self._next = self._next, self._next + 1
        return numbers

    def _learn(self, own: list[Turn], audio: np.ndarray) -> None:
        """Each speaker of the final: its longest turn becomes its voice when longer than the one kept."""
        for turn in sorted(own, key=lambda t: t.end - t.start):  # the longest last: it is the one kept
            a, b = int(turn.start * SAMPLE_RATE), min(int(turn.end * SAMPLE_RATE), audio.size)
            sample = audio[a : min(b, a + int(VOICE_S * SAMPLE_RATE))]
            if sample.size < MIN_VOICE_S * SAMPLE_RATE:
                continue
            kept = self._voices.pop(turn.speaker, None)  # popped and put back: the latest heard is last
            self._voices[turn.speaker] = sample.copy() if kept is None or sample.size > kept.size else kept
        while len(self._voices) > MAX_VOICES:
            del self._voices[next(iter(self._voices))]  # the speaker heard longest ago


def _overlap(turn: Turn, a: float, b: float) -> float:
    return max(0.0, min(turn.end, b) - max(turn.start, a))
