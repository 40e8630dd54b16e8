"""Voice activity -> utterances. Audio is judged in 32 ms frames (Silero VAD's size at 16 kHz);
an utterance opens at the first speech frame (with a little audio before it, so its first word is
whole) and is final when the speaker has paused for `endpoint_s` (`speech_final`), when it reaches
the engine's window (cut at its quietest point, not `speech_final`), or when the client asks. An
utterance with under `min_speech_s` of speech is not final at an `endpoint_s` pause: it goes on with
what follows unless the pause reaches `long_pause_s` (Whisper decodes a few words alone much worse
than in their sentence: "And so am I fellow Americans" for JFK's first phrase on its own).

Everything here runs on audio time (samples pushed), not wall time: the same audio always gives
the same utterances, whatever the pace it arrives at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ..pipeline.chunk import split
from ..types import SAMPLE_RATE

FRAME = 512  # samples per VAD frame (32 ms)
START_PROB = 0.5  # a frame at least this likely to be speech opens or continues speech
STOP_PROB = 0.35  # below this a frame starts a pause (Silero's own hysteresis: threshold - 0.15)
PRE_ROLL_S = 0.3  # audio kept before the first speech frame
TAIL_S = 0.3  # audio kept after the last speech frame in an endpointed final


class Vad(Protocol):
    def __call__(self, frame: np.ndarray) -> float:
        """Probability that this 512-sample frame is speech (stateful: frames arrive in order)."""


class SileroVad:
    """Silero VAD (its model ships in the `silero-vad` package), one per stream: it keeps state
    from frame to frame. About 0.5 ms of one core per 32 ms frame."""

    def __init__(self) -> None:
        import torch
        from silero_vad import load_silero_vad

        torch.set_num_threads(1)  # frames are tiny: more threads only contend with the engine
        self._torch, self.model = torch, load_silero_vad()

    def __call__(self, frame: np.ndarray) -> float:
        with self._torch.no_grad():
            return float(self.model(self._torch.from_numpy(frame), SAMPLE_RATE))


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # seconds from the stream's start
    channel: int = 0  # of a multichannel stream (stream/channels.py)


@dataclass(frozen=True)
class Utterance:
    """Audio to decode: `start` in stream seconds. Final unless `interim`."""

    start: float
    audio: np.ndarray
    speech_final: bool = False  # the speaker paused (endpointing)
    from_finalize: bool = False  # the client asked (Finalize / close)
    speech_s: float = 0.0  # how much of it the VAD heard as speech
    channel: int = 0

    @property
    def end(self) -> float:
        return self.start + self.audio.size / SAMPLE_RATE

    def span(self) -> Span:
        return Span(self.start, self.end - self.start, self.speech_final, self.from_finalize, self.channel)


@dataclass(frozen=True)
class Span:
    """Where an utterance lies, without its audio: a result waiting to be sent holds only this."""

    start: float
    duration: float
    speech_final: bool
    from_finalize: bool
    channel: int = 0


@dataclass(frozen=True)
class UtteranceEnd:
    last_speech_end: float
    channel: int = 0


Event = SpeechStarted | Utterance | UtteranceEnd


class Segmenter:
    def __init__(
        self,
        vad: Vad,
        endpoint_s: float | None,
        max_s: float,
        utterance_end_s: float | None = None,
        min_speech_s: float = 0.0,
        long_pause_s: float = 0.0,
    ) -> None:
        self.vad, self.endpoint_s, self.max_s, self.utterance_end_s = vad, endpoint_s, max_s, utterance_end_s
        self.min_speech_s, self.long_pause_s = min_speech_s, long_pause_s
        self.position = 0  # samples judged so far
        self._pending = np.zeros(0, np.float32)  # samples short of a whole frame
        self._kept = np.zeros(0, np.float32)  # audio from `_kept_at` on (past `position` during a push)
        self._kept_at = 0
        self._taken = 0  # end of the last utterance taken: the next one never reaches back past it
        self._open: int | None = None  # sample where the open utterance starts
        self._speech_frames = 0  # in the open utterance
        self._speaking = False
        self._pause_at: int | None = None  # first sample of the current pause, while speaking
        self._speech_end: int | None = None  # end of the last speech frame
        self._said_end = True  # UtteranceEnd sent for the speech so far

    @property
    def seconds(self) -> float:
        """Audio received so far (judged or not)."""
        return (self.position + self._pending.size) / SAMPLE_RATE

    def push(self, audio: np.ndarray) -> list[Event]:
        samples = np.concatenate((self._pending, audio.astype(np.float32, copy=False)))
        whole = samples.size - samples.size % FRAME
        self._pending = samples[whole:]
        self._kept = np.concatenate((self._kept, samples[:whole]))  # once per push: frames are 32 ms
        events: list[Event] = []
        for at in range(0, whole, FRAME):
            events += self._frame(samples[at : at + FRAME])
        return events

    @property
    def open_s(self) -> float:
        """Length of the open utterance so far (0 when none is open)."""
        return 0.0 if self._open is None else (self.position - self._open) / SAMPLE_RATE

    def current(self) -> Utterance | None:
        """The open utterance so far, for an interim result."""
        if self._open is None:
            return None
        return Utterance(self._open / SAMPLE_RATE, self._kept[self._open - self._kept_at :].copy(), speech_s=self._speech_s)

    def finalize(self) -> Utterance | None:
        """Close the open utterance now (the client's Finalize, or the end of the stream)."""
        if self._open is None:
            return None
        # the samples short of a VAD frame belong to the utterance too
        self._kept, self.position, self._pending = (
            np.concatenate((self._kept, self._pending)),
            self.position + self._pending.size,
            self._pending[:0],
        )
        return replace(self._take(self.position), speech_final=not self._speaking, from_finalize=True)

    def discard(self) -> bool:
        """Drop the open utterance without a final (the client cleared it); whether one was open.
        Speech that goes on opens the next utterance, with its own SpeechStarted."""
        if self._open is None:
            return False
        self._taken = self.position
        self._open, self._speech_frames, self._speaking, self._pause_at = None, 0, False, None
        return True

    def _frame(self, frame: np.ndarray) -> list[Event]:
        start = self.position
        self.position += FRAME
        prob = self.vad(frame)
        events: list[Event] = []
        if prob >= START_PROB:
            if self._open is None:  # after a final taken mid-speech, the next one opens right here
                before = 0 if self._speaking else int(PRE_ROLL_S * SAMPLE_RATE)
                self._open = max(self._kept_at, self._taken, start - before)
                if not self._speaking:
                    events.append(SpeechStarted(start / SAMPLE_RATE))
            self._speaking, self._pause_at, self._said_end = True, None, False
            self._speech_end = self.position
            self._speech_frames += 1
        elif self._speaking and (self._pause_at is not None or prob < STOP_PROB):
            if self._pause_at is None:
                self._pause_at = start
            paused = (self.position - self._pause_at) / SAMPLE_RATE
            if self.endpoint_s is not None and paused >= max(self.endpoint_s, self._merge_until_s):
                self._speaking = False
                if self._open is not None:
                    end = min(self.position, self._pause_at + int(TAIL_S * SAMPLE_RATE))
                    events.append(replace(self._take(end), speech_final=True))
        if self._open is not None and self.position - self._open >= self.max_s * SAMPLE_RATE:
            events.append(self._cut())
        if self.utterance_end_s is not None and not self._said_end and self._speech_end is not None:
            paused = (self.position - self._speech_end) / SAMPLE_RATE
            if paused >= self.utterance_end_s:
                if self._open is not None:  # a pause this long ends the utterance whatever the endpointing,
                    # but only endpointing makes it speech_final (Deepgram: none with endpointing=false)
                    speech_final = self.endpoint_s is not None and paused >= self.endpoint_s
                    events.append(replace(self._take(self.position), speech_final=speech_final))
                self._speaking, self._said_end = False, True
                events.append(UtteranceEnd(self._speech_end / SAMPLE_RATE))
        self._trim()
        return events

    def _cut(self) -> Utterance:
        """An utterance as long as the engine's window: final up to its quietest late point; the
        rest opens the next one, so no audio is lost or decoded twice."""
        assert self._open is not None
        audio = self._kept[self._open - self._kept_at : self.position - self._kept_at]
        first = split(audio, max_s=self.max_s * 0.9)[0]  # under the window, or `split` would not cut
        utterance = self._take(self._open + first.audio.size)
        self._open = self._taken
        return utterance

    @property
    def _merge_until_s(self) -> float:
        """The pause that ends the open utterance: a short one waits for a long pause."""
        return self.long_pause_s if self._speech_s < self.min_speech_s else 0.0

    @property
    def _speech_s(self) -> float:
        return self._speech_frames * FRAME / SAMPLE_RATE

    def _take(self, end: int) -> Utterance:
        assert self._open is not None
        audio = self._kept[self._open - self._kept_at : end - self._kept_at].copy()
        utterance = Utterance(self._open / SAMPLE_RATE, audio, speech_s=self._speech_s)
        self._open, self._taken, self._speech_frames = None, end, 0
        return utterance

    def _trim(self) -> None:
        """Keep only what an utterance may still need: the open one, else the pre-roll."""
        keep_from = self._open if self._open is not None else self.position - int(PRE_ROLL_S * SAMPLE_RATE)
        if keep_from > self._kept_at:
            self._kept = self._kept[keep_from - self._kept_at :]
            self._kept_at = keep_from
