"""A stream's segmenters, one per channel it transcribes: one for a mono (or mixed-down) stream,
`channels` for a multichannel one (Deepgram's `multichannel=true`), each with its own VAD state, so
a pause on one channel ends its utterance and not another's. Events come out stamped with their
channel; within one piece of audio (at most 0.5 s: audio_in.PIECE_S) channel 0's come first, so
finals of different channels are in time order to within that piece."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .segment import Event, Segmenter, Utterance


class Channels:
    def __init__(self, lanes: list[Segmenter]) -> None:
        self.lanes = lanes

    @property
    def seconds(self) -> float:
        """Audio received so far, per channel (the stream's time)."""
        return self.lanes[0].seconds

    def push(self, audio: np.ndarray) -> list[Event]:
        """A piece of audio: one-dimensional for one channel, (channels, samples) for several."""
        if audio.ndim == 1:
            return self.lanes[0].push(audio)
        events: list[Event] = []
        for channel, lane in enumerate(self.lanes):
            events += [replace(e, channel=channel) for e in lane.push(audio[channel])]
        return events

    def open_s(self) -> list[float]:
        """Per channel, the length of its open utterance (0 when none is open)."""
        return [lane.open_s for lane in self.lanes]

    def current(self, channel: int = 0) -> Utterance | None:
        """A channel's open utterance so far, for an interim result."""
        current = self.lanes[channel].current()
        return replace(current, channel=channel) if current is not None else None

    def finalize(self) -> list[Utterance | None]:
        """Every channel's open utterance, closed now (None for a channel with none open)."""
        return [replace(u, channel=c) if u is not None else None for c, u in enumerate(lane.finalize() for lane in self.lanes)]

    def discard(self) -> bool:
        """Drop every channel's open utterance; whether one was open."""
        return any([lane.discard() for lane in self.lanes])  # a list: every lane discards
