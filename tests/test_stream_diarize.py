"""Live diarization (`diarize=true` on WS /v1/listen), fast: the stream's speaker numbers across finals
(stream/speakers.py) with fake diarizers that tell voices apart by a mark in the audio, and whole
streams through the ingress. The real diarizer streams in test_stream_e2e.py."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from serve_app.stream import speakers
from serve_app.stream.speakers import Speakers
from serve_app.types import SAMPLE_RATE, Turn

from .support import AUTH, JFK_LINEAR, FakeEngine, received

HOP = 160  # 10 ms


def _runs(speech: np.ndarray, bridge: int) -> list[tuple[int, int]]:
    """Runs of True frames, joined across gaps shorter than `bridge` frames."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], speech.astype(int), [0]))))
    runs: list[tuple[int, int]] = []
    for a, b in zip(edges[::2], edges[1::2]):
        if runs and a - runs[-1][1] < bridge:
            runs[-1] = (runs[-1][0], int(b))
        else:
            runs.append((int(a), int(b)))
    return runs


def fake_turns(audio: np.ndarray, threshold: float, voice_of: Any) -> list[Turn]:
    """A diarizer's answer: loud runs (10 ms frames), each run's voice by `voice_of`, voices numbered
    in the order they first speak in this audio (as the engine's diarizer numbers them)."""
    frames = audio[: audio.size // HOP * HOP].reshape(-1, HOP)
    order: dict[Any, int] = {}
    out = []
    for a, b in _runs(np.sqrt((frames**2).mean(1)) > threshold, bridge=30):
        voice = voice_of(audio[a * HOP : b * HOP])
        out.append(Turn(a / 100, b / 100, order.setdefault(voice, len(order))))
    return out


def pitch(segment: np.ndarray) -> int:
    """A tone's frequency, to 10 Hz."""
    spectrum = np.abs(np.fft.rfft(segment))
    return int(round(np.argmax(spectrum) * SAMPLE_RATE / segment.size, -1))


def tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def said(*voices: float) -> np.ndarray:
    """Tones one after another (each a 'speaker'), 0.4 s of silence between them."""
    gap = np.zeros(int(0.4 * SAMPLE_RATE), np.float32)
    return np.concatenate([piece for hz in voices for piece in (tone(hz), gap)])


class ToneDiarizer:
    def __init__(self, delays: dict[int, float] | None = None) -> None:
        self.heard: list[int] = []  # samples per call
        self.delays = delays or {}

    async def __call__(self, audio: np.ndarray) -> list[Turn]:
        self.heard.append(audio.size)
        await asyncio.sleep(self.delays.get(len(self.heard), 0.0))
        return fake_turns(audio, 0.05, pitch)


def labels(turns: list[Turn]) -> list[int]:
    return [t.speaker for t in turns]


def test_speakers_keep_their_numbers_across_finals() -> None:
    book = Speakers(ToneDiarizer())

    async def go() -> list[list[Turn]]:
        return [
            await book.turns(said(*voices), 10.0 * k) for k, voices in enumerate([(200, 400), (600, 400), (400,), (200, 600)])
        ]

    finals = asyncio.run(go())
    # The diarizer numbers each piece afresh (the voices in front of the third final come in the
    # order last heard: 200, 600, 400, so it calls 400 "2"); the stream keeps 200=0, 400=1, 600=2.
    assert [labels(f) for f in finals] == [[0, 1], [2, 1], [1], [0, 2]]
    assert [(t.start, t.end) for t in finals[1]] == [(10.0, 11.0), (11.4, 12.4)]  # in stream seconds, the voices left out


def test_finals_are_numbered_in_the_order_they_came_whatever_order_they_finish() -> None:
    book = Speakers(ToneDiarizer(delays={1: 0.2}))  # the first final is diarized slowest

    async def go() -> tuple[list[Turn], list[Turn]]:
        first = asyncio.ensure_future(book.turns(said(200), 0.0))
        second = asyncio.ensure_future(book.turns(said(400), 5.0))
        return await first, await second

    first, second = asyncio.run(go())
    assert labels(first) == [0] and labels(second) == [1]


def test_voices_are_bounded_and_a_forgotten_speaker_is_new_again() -> None:
    diarizer = ToneDiarizer()
    book = Speakers(diarizer)
    hz = [200, 300, 400, 500, 600, 700]

    async def go() -> list[list[Turn]]:
        return [await book.turns(said(h), float(k)) for k, h in enumerate([*hz, 700, 200])]

    finals = asyncio.run(go())
    assert [labels(f) for f in finals] == [[0], [1], [2], [3], [4], [5], [5], [6]]  # 200's voice was dropped
    voice = SAMPLE_RATE + int(speakers.GAP_S * SAMPLE_RATE)  # each 1 s tone kept whole, silence after it
    assert max(diarizer.heard) == speakers.MAX_VOICES * voice + said(200).size  # the voices of five speakers at most


def test_a_final_the_diarizer_hears_nothing_in_is_the_last_speaker_s() -> None:
    calls: list[int] = []

    async def deaf(audio: np.ndarray) -> list[Turn]:  # hears the first final only
        calls.append(audio.size)
        return fake_turns(audio, 0.05, pitch) if len(calls) == 1 else []

    book = Speakers(deaf)

    async def go() -> list[list[Turn]]:
        return [await book.turns(said(200, 400), 0.0), await book.turns(said(400), 5.0)]

    first, second = asyncio.run(go())
    assert labels(first) == [0, 1] and labels(second) == [1]


# --- whole streams through the ingress -------------------------------------------------------------

MARK_HZ = 7000  # speaker B's voice carries a faint 7 kHz whistle; speaker A's does not


def marked(segment: np.ndarray) -> bool:
    t = np.arange(segment.size) / SAMPLE_RATE
    return abs(np.mean(segment * np.exp(-2j * np.pi * MARK_HZ * t))) > 0.003


class MarkDiarizer(FakeEngine):
    """Diarizes by the whistle: JFK's loud speech (frames over 0.08 RMS) is one voice or the other."""

    async def _diarize(self, audio: np.ndarray, num_speakers: int | None = None) -> list[Turn]:
        self.diarized.append((audio.size, num_speakers))
        return fake_turns(audio, 0.08, marked)


def pcm(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2")


def with_mark(audio: np.ndarray) -> np.ndarray:
    return audio + 0.02 * np.sin(2 * np.pi * MARK_HZ * np.arange(audio.size) / SAMPLE_RATE).astype(np.float32)


PAUSE = np.zeros(int(1.6 * SAMPLE_RATE), np.float32)  # longer than the merge pause: finals never span speakers
A, B = JFK_LINEAR, with_mark(JFK_LINEAR)


@pytest.fixture
def engine() -> MarkDiarizer:
    return MarkDiarizer()


def streamed(client: TestClient, url: str, data: bytes) -> list[dict]:
    with client.websocket_connect(url, headers=AUTH) as ws:
        for at in range(0, len(data), 6400):
            ws.send_bytes(data[at : at + 6400])
        ws.send_text('{"type": "CloseStream"}')
        messages, code = received(ws)
    assert code == 1000
    return messages


def words_of(message: dict) -> list[dict]:
    return message["channel"]["alternatives"][0]["words"]


def test_a_stream_s_finals_carry_speakers_numbered_across_them(client: TestClient, engine: MarkDiarizer) -> None:
    url = "/v1/listen?encoding=linear16&sample_rate=16000&diarize=true&interim_results=true"
    messages = streamed(client, url, pcm(np.concatenate((A, PAUSE, B, PAUSE, A))).tobytes())
    results = [m for m in messages if m["type"] == "Results" and words_of(m)]
    finals = [m for m in results if m["is_final"]]
    assert len(engine.diarized) == len(finals) >= 9  # one diarization per final, none per interim
    assert all("speaker" not in w for m in results if not m["is_final"] for w in words_of(m))
    clip = len(JFK_LINEAR) / SAMPLE_RATE + len(PAUSE) / SAMPLE_RATE

    def part(m: dict) -> int:
        return int(m["start"] // clip)  # which of A, B, A the final is in

    spoken = {(part(m), w["speaker"]) for m in finals for w in words_of(m)}
    assert spoken == {(0, 0), (1, 1), (2, 0)}  # A is 0 again after B (the diarizer alone numbers every final from 0)
    assert all(set(w) >= {"word", "speaker"} and "speaker_confidence" not in w for m in finals for w in words_of(m))


def test_multichannel_streams_number_speakers_per_channel(client: TestClient) -> None:
    url = "/v1/listen?encoding=linear16&sample_rate=16000&channels=2&multichannel=true&diarize=true"
    left, right = pcm(np.concatenate((A, PAUSE, B))), pcm(np.concatenate((B, PAUSE, PAUSE, A)))
    n = max(left.size, right.size)
    stereo = np.stack([np.concatenate((c, np.zeros(n - c.size, "<i2"))) for c in (left, right)], axis=1)
    messages = streamed(client, url, stereo.tobytes())
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"] and words_of(m)]
    for channel in (0, 1):  # each channel numbers its own speakers, from 0: B is 1 on the left, 0 on the right
        heard = [w["speaker"] for m in finals if m["channel_index"] == [channel, 2] for w in words_of(m)]
        assert heard[0] == 0 and heard[-1] == 1 and sorted(heard) == heard, heard
