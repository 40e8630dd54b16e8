"""The service's four live protocols as the streaming benchmark's client speaks them: one small
adapter each, so one paced loop (tools/bench/stream.py) drives them all.

An adapter says where a stream connects and with which headers, what it sends before the audio
and after it, how the 16 kHz audio goes on the wire (its encoding, its frame length, binary or
inside JSON) and what each server message means: an interim, a final (its text, and how far into
the stream's audio it reaches, so that the benchmark knows which utterances it answers), an error,
or the end of the answers. Adapters are made one per stream: Twilio's and OpenAI's keep state.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from serve_app.stream.audio_in import MULAW
from serve_app.types import SAMPLE_RATE

OPENAI_PREFIX_S = 0.3  # the server's pre-roll before speech: where an item starts (api/realtime.py's PREFIX_PADDING_MS)


@dataclass(frozen=True)
class Heard:
    """What one server message means to the benchmark."""

    final: str | None = None  # a final's text ("" for an empty final)
    until: float | None = None  # the stream second a final reaches (None: unknown, it covers nothing)
    interim: bool = False
    error: str | None = None
    last: bool = False  # every answer is in: the client closes now (for protocols whose server does not)


def resampled(audio: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz float audio at `rate`, by FFmpeg's resampler (the one the server uses the other way)."""
    if rate == SAMPLE_RATE:
        return audio
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frames = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def g711(audio: np.ndarray, table: np.ndarray) -> bytes:
    """G.711 bytes: each sample as the code whose expansion in `table` (the server's own, MULAW or
    ALAW of serve_app/stream/audio_in.py) is nearest: what a phone platform sends."""
    codes = np.argsort(table, kind="stable")
    values = table[codes].astype(np.float64)
    x = np.clip(audio.astype(np.float64) * 32768.0, -32768, 32767)
    hi = np.clip(np.searchsorted(values, x), 1, 255)
    nearer = np.where(np.abs(values[hi - 1] - x) <= np.abs(values[hi] - x), hi - 1, hi)
    return codes[nearer].astype(np.uint8).tobytes()


class Deepgram:
    """`WS /v1/listen`: binary linear16 frames, `Results` messages with the utterance's start and duration."""

    name = "deepgram"
    frame_s = 0.1

    def url(self, base: str, interims: bool) -> str:
        return f"{base}/v1/listen?encoding=linear16&sample_rate=16000&interim_results={str(interims).lower()}"

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Token {key}"}

    def encode(self, audio: np.ndarray) -> bytes:
        return pcm16(audio)

    def frame_bytes(self) -> int:
        return int(self.frame_s * SAMPLE_RATE) * 2

    def opening(self, key: str, interims: bool) -> list[str]:
        return []

    def frame(self, data: bytes) -> bytes | str:
        return data

    def closing(self) -> list[str]:
        return [json.dumps({"type": "CloseStream"})]

    def read(self, message: dict[str, Any]) -> Heard:
        if message.get("type") == "Error":
            return Heard(error=f"{message.get('code')}: {message.get('description')}")
        if message.get("type") != "Results":
            return Heard()
        if not message["is_final"]:
            return Heard(interim=True)
        return Heard(message["channel"]["alternatives"][0]["transcript"], message["start"] + message["duration"])


class Pulse(Deepgram):
    """`WS /waves/v1/stt/live`: binary linear16 frames, `transcription` messages, interims always. A
    message has no times of its own: a final reaches its last word's end (words share the
    utterance by length, so the last ends where the utterance does)."""

    name = "pulse"

    def url(self, base: str, interims: bool) -> str:
        return f"{base}/waves/v1/stt/live?language=en&encoding=linear16&sample_rate=16000"

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}  # as Smallest's SDK sends it

    def closing(self) -> list[str]:
        return [json.dumps({"type": "close_stream"})]

    def read(self, message: dict[str, Any]) -> Heard:
        if message.get("type") == "error":
            return Heard(error=f"{message.get('code')}: {message.get('message')}")
        if message.get("type") != "transcription":
            return Heard()
        if not message["is_final"]:
            return Heard(interim=True)
        words = message.get("words") or []
        return Heard(message["transcript"], words[-1]["end"] if words else None)


class Twilio(Deepgram):
    """`WS /v1/twilio`: Twilio's `connected` and `start` (the key and options in its
    `customParameters`, as TwiML's `<Parameter>` puts them: Twilio sends no headers), then a `media`
    message of base64 8 kHz mu-law every 20 ms, `stop` at the end; `transcript` events back."""

    name = "twilio"
    frame_s = 0.02  # Twilio's own cadence
    rate = 8000
    sid = "MZbench"

    def __init__(self) -> None:
        self._k = 0  # media messages sent: their chunk, sequence number and timestamp

    def url(self, base: str, interims: bool) -> str:
        return f"{base}/v1/twilio"

    def headers(self, key: str) -> dict[str, str]:
        return {}

    def encode(self, audio: np.ndarray) -> bytes:
        return g711(resampled(audio, self.rate), MULAW)

    def frame_bytes(self) -> int:
        return int(self.frame_s * self.rate)

    def opening(self, key: str, interims: bool) -> list[str]:
        start = {
            "accountSid": "ACbench",
            "streamSid": self.sid,
            "callSid": "CAbench",
            "tracks": ["inbound"],
            "customParameters": {"key": key, "language": "en", "interim_results": str(interims).lower()},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": self.rate, "channels": 1},
        }
        return [
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": self.sid}),
        ]

    def frame(self, data: bytes) -> bytes | str:
        self._k += 1
        media = {
            "track": "inbound",
            "chunk": str(self._k),
            "timestamp": str(round((self._k - 1) * self.frame_s * 1000)),
            "payload": base64.b64encode(data).decode(),
        }
        return json.dumps({"event": "media", "sequenceNumber": str(self._k + 1), "media": media, "streamSid": self.sid})

    def closing(self) -> list[str]:
        return [json.dumps({"event": "stop", "sequenceNumber": str(self._k + 2), "streamSid": self.sid, "stop": {}})]

    def read(self, message: dict[str, Any]) -> Heard:
        if message.get("event") == "error":
            return Heard(error=f"{message.get('code')}: {message.get('error')}")
        if message.get("event") != "transcript":
            return Heard()
        if not message["is_final"]:
            return Heard(interim=True)
        return Heard(message["text"], message["start"] + message["duration"])


class Realtime(Deepgram):
    """`WS /v1/realtime?intent=transcription`: `session.update` (24 kHz pcm16, server VAD at its
    default 500 ms of silence), base64 `input_audio_buffer.append` every 100 ms; no interims. An
    item committed at a pause is announced by `speech_stopped` with its end; another (the commit
    sent at the end, a cut at the engine's window) reaches its start plus its `usage` seconds. The
    server does not close a session: after the audio the client commits, then sends an update
    that changes nothing, whose `session.updated` comes after every item's answer (the barrier
    the README names), and closes on it."""

    name = "realtime"
    rate = 24000

    def __init__(self) -> None:
        self._started: dict[str, float] = {}  # item -> where its speech began (s)
        self._stopped: dict[str, float] = {}  # item -> where a pause committed it (s)
        self._barrier = False

    def url(self, base: str, interims: bool) -> str:
        return f"{base}/v1/realtime?intent=transcription"

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def encode(self, audio: np.ndarray) -> bytes:
        return pcm16(resampled(audio, self.rate))

    def frame_bytes(self) -> int:
        return int(self.frame_s * self.rate) * 2

    def opening(self, key: str, interims: bool) -> list[str]:
        audio_input = {
            "format": {"type": "audio/pcm", "rate": self.rate},
            "transcription": {"language": "en"},
            "turn_detection": {"type": "server_vad"},  # silence_duration_ms: OpenAI's default, 500
        }
        return [json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}})]

    def frame(self, data: bytes) -> bytes | str:
        return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})

    def closing(self) -> list[str]:
        self._barrier = True  # before it is sent: the session.updated it brings is the last message
        return [
            json.dumps({"type": "input_audio_buffer.commit"}),
            json.dumps({"type": "session.update", "session": {"type": "transcription"}}),
        ]

    def read(self, message: dict[str, Any]) -> Heard:
        kind = message.get("type")
        if kind == "error":
            error = message.get("error") or {}
            return Heard(error=f"{error.get('code')}: {error.get('message')}")
        if kind == "input_audio_buffer.speech_started":
            self._started[message["item_id"]] = message["audio_start_ms"] / 1000
        elif kind == "input_audio_buffer.speech_stopped":
            self._stopped[message["item_id"]] = message["audio_end_ms"] / 1000
        elif kind == "conversation.item.input_audio_transcription.completed":
            item = message["item_id"]
            until = self._stopped.get(item)
            if until is None and item in self._started:  # at most the pre-roll short of its end
                until = max(0.0, self._started[item] - OPENAI_PREFIX_S) + message["usage"]["seconds"]
            return Heard(message["transcript"], until)
        elif kind == "session.updated" and self._barrier:
            return Heard(last=True)
        return Heard()


ADAPTERS: dict[str, type[Deepgram]] = {a.name: a for a in (Deepgram, Pulse, Twilio, Realtime)}


def adapter(name: str) -> Deepgram:
    """A new adapter for one stream of protocol `name`."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown protocol {name!r}: one of {', '.join(ADAPTERS)}")
    return ADAPTERS[name]()


def covered(finals: list[tuple[float, float | None, str]], end: float, slack: float = 0.05) -> float | None:
    """The arrival time of the first final (arrival, until, text) that reaches `end`, the end of an
    utterance's speech; None if none does. `slack`: VAD's and the server's frame edges differ by a frame."""
    return next((arrival for arrival, until, _ in finals if until is not None and until >= end - slack), None)


def percentile(values: list[float], q: float) -> float | None:
    """As tools/bench/common.py's summaries take it: the value at rank q x (n - 1), rounded."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else None
