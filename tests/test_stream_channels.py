"""Live multichannel streams (`multichannel=true` on WS /v1/listen), fast: each channel segmented by its
own VAD and decoded on its own, results naming their channel, billed per channel; and Deepgram's
UtteranceEnd and endpointing rules. The fake engine; real Silero VAD on the JFK clip."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from serve_app.api.live import Deepgram
from serve_app.errors import InvalidRequest
from serve_app.stream.audio_in import PcmInput
from serve_app.stream.segment import Segmenter, Utterance, UtteranceEnd
from serve_app.types import SAMPLE_RATE, ChunkTranscript

from .support import AUTH, JFK_PCM, FakeEngine, drained, make_ingress, received, settled_usage

MC = "/v1/listen?encoding=linear16&sample_rate=16000&channels=2&multichannel=true"
JFK = np.frombuffer(JFK_PCM, "<i2")
PER_PAUSE = {"min_final_speech_s": 0}  # JFK's four phrases as four finals


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), "<i2")


def stereo(left: np.ndarray, right: np.ndarray) -> bytes:
    """Two int16 channels interleaved, the shorter padded with silence."""
    n = max(left.size, right.size)
    pad = [np.concatenate((c, np.zeros(n - c.size, "<i2"))) for c in (left, right)]
    return np.stack(pad, axis=1).astype("<i2").tobytes()


@pytest.fixture
def client(engine: FakeEngine, tmp_path: Any) -> Iterator[TestClient]:
    ingress = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 2, **PER_PAUSE}})
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        yield c


def streamed(client: TestClient, url: str, data: bytes, piece: int = 6400) -> tuple[list[dict], int]:
    with client.websocket_connect(url, headers=AUTH) as ws:
        for at in range(0, len(data), piece):
            ws.send_bytes(data[at : at + piece])
        ws.send_text('{"type": "CloseStream"}')
        return received(ws)


def finals(messages: list[dict], channel: int | None = None) -> list[dict]:
    """Final results with words, of one channel (or all)."""
    return [
        m
        for m in messages
        if m["type"] == "Results"
        and m["is_final"]
        and m["channel"]["alternatives"][0]["words"]
        and (channel is None or m["channel_index"][0] == channel)
    ]


def test_each_channel_is_segmented_on_its_own_and_results_name_it(client: TestClient, engine: FakeEngine) -> None:
    # The same speech on both channels, two seconds later on the right one.
    messages, code = streamed(client, MC + "&interim_results=true", stereo(JFK, np.concatenate((silence(2.0), JFK))))
    assert code == 1000 and messages[-1]["type"] == "Metadata" and messages[-1]["channels"] == 2
    left, right = finals(messages, 0), finals(messages, 1)
    assert len(left) == len(right) >= 3 and len(engine.calls) == len(left) + len(right) + engine_interims(messages)
    assert [r["start"] for r in right] == pytest.approx([r["start"] + 2.0 for r in left], abs=0.07)
    assert {tuple(m["channel_index"]) for m in messages if m["type"] == "Results"} == {(0, 2), (1, 2)}
    assert {m["channel_index"][0] for m in messages if m["type"] == "Results" and not m["is_final"]} == {0, 1}
    ends = [m["start"] + m["duration"] for m in finals(messages)]  # sent as they complete: in time order
    assert all(b >= a - 0.5 for a, b in zip(ends, ends[1:])), ends  # to within one 0.5 s piece of audio


def engine_interims(messages: list[dict]) -> int:
    """Interims the engine decoded (an interim of too little speech is answered without it)."""
    return sum(1 for m in messages if m["type"] == "Results" and not m["is_final"] and m["channel"]["alternatives"][0]["words"])


def test_speech_on_one_channel_gives_results_for_that_channel_only(client: TestClient) -> None:
    url = MC + "&interim_results=true&vad_events=true&utterance_end_ms=1000"
    messages, code = streamed(client, url, stereo(silence(JFK.size / SAMPLE_RATE), np.concatenate((JFK, silence(1.5)))))
    assert code == 1000 and len(finals(messages, 1)) >= 3 and finals(messages, 0) == []
    left = [m for m in messages if m["type"] == "Results" and m["channel_index"][0] == 0]
    assert [m["channel"]["alternatives"][0]["transcript"] for m in left] == [""]  # the close's empty final only
    events = [m for m in messages if m["type"] in ("SpeechStarted", "UtteranceEnd")]
    assert events and all(m["channel"] == [1, 2] for m in events)


def test_a_multichannel_stream_is_billed_per_channel(client: TestClient) -> None:
    messages, _ = streamed(client, MC, stereo(JFK, JFK))
    assert messages[-1]["duration"] == pytest.approx(11.0, abs=0.01)  # the stream's time
    assert settled_usage(client, AUTH)["audio_seconds_today"] == pytest.approx(22.0, abs=0.05)


def test_without_multichannel_channels_are_mixed_down(client: TestClient, engine: FakeEngine) -> None:
    messages, _ = streamed(client, "/v1/listen?encoding=linear16&sample_rate=16000&channels=2", stereo(JFK, JFK))
    assert {tuple(m["channel_index"]) for m in messages if m["type"] == "Results"} == {(0, 1)}
    assert messages[-1]["channels"] == 1 and len(finals(messages)) == len(engine.calls) >= 3


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("encoding=linear16&sample_rate=16000&multichannel=true", "multichannel"),  # channels=1
        ("encoding=linear16&sample_rate=16000&channels=1&multichannel=true", "multichannel"),
        ("encoding=linear16&sample_rate=16000&channels=9&multichannel=true", "channels"),  # over the cap
        ("channels=2&multichannel=true", "multichannel"),  # a webm/ogg container
        ("encoding=opus&channels=2&multichannel=true", "multichannel"),
        ("encoding=flac&channels=2&multichannel=true", "multichannel"),
        ("encoding=linear16&channels=2&multichannel=perhaps", "multichannel"),
    ],
)
def test_bad_multichannel_streams_are_400(client: TestClient, query: str, parameter: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(f"/v1/listen?{query}", headers=AUTH):
            pass
    body = denied.value.json()
    assert denied.value.status_code == 400 and body["code"] == "INVALID_REQUEST" and body["parameter"] == parameter


def test_twilio_streams_refuse_multichannel_and_diarize() -> None:
    from serve_app.api.twilio import Twilio

    for name in ("multichannel", "diarize"):
        with pytest.raises(InvalidRequest) as raised:
            Twilio().parse({name: "true"}, 0.3)
        assert raised.value.extra["parameter"] == name


def test_pcm_channels_kept_apart_are_resampled_each_on_its_own() -> None:
    t = np.arange(8000) / 8000
    left, right = (0.5 * np.sin(2 * np.pi * 200 * t)), np.zeros(8000)
    data = (np.stack((left, right), axis=1) * 32767).astype("<i2").tobytes()
    items = drained(
        lambda: PcmInput(8000, 2, encoding="linear16", separate=True), [data[i : i + 3000] for i in range(0, len(data), 3000)]
    )
    audio = np.concatenate(items, axis=1)
    assert audio.shape == (2, pytest.approx(SAMPLE_RATE, abs=64))  # one second at 16 kHz per channel
    assert np.abs(audio[1]).max() == 0.0 and np.sqrt(np.mean(audio[0] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


# --- Deepgram's UtteranceEnd and endpointing -----------------------------------------------------


class EnergyVad:
    def __call__(self, frame: np.ndarray) -> float:
        return 1.0 if float(np.sqrt(np.mean(frame**2))) > 0.01 else 0.0


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.mark.parametrize("endpoint_s, speech_final", [(None, False), (2.0, False), (0.3, True)])
def test_a_final_forced_by_utterance_end_is_speech_final_only_past_the_endpointing_pause(
    endpoint_s: float | None, speech_final: bool
) -> None:
    segmenter = Segmenter(EnergyVad(), endpoint_s=endpoint_s, max_s=15, utterance_end_s=1.0, min_speech_s=5.0, long_pause_s=3.0)
    events = segmenter.push(np.concatenate((tone(1.0), np.zeros(int(1.5 * SAMPLE_RATE), np.float32))))
    finals = [e for e in events if isinstance(e, Utterance)]
    assert len(finals) == 1 and finals[0].speech_final is speech_final  # the short one waits for no endpoint here
    assert isinstance(events[-1], UtteranceEnd) and events[-1].last_speech_end == pytest.approx(1.0, abs=0.04)


def test_utterance_end_needs_words_and_says_the_last_word_end(client: TestClient, engine: FakeEngine) -> None:
    url = "/v1/listen?encoding=linear16&sample_rate=16000&interim_results=true&utterance_end_ms=1000"
    mono = np.concatenate((JFK, silence(1.5))).astype("<i2").tobytes()
    messages, _ = streamed(client, url, mono)
    ends = [m for m in messages if m["type"] == "UtteranceEnd"]
    assert ends and all(m["channel"] == [0, 1] for m in ends)
    for end in ends:  # each follows a final with words, whose last word it names
        before = finals(messages[: messages.index(end)])
        assert end["last_word_end"] == before[-1]["channel"]["alternatives"][0]["words"][-1]["end"]

    engine.answer = lambda align: ChunkTranscript("", [], aligned=align)  # type: ignore[method-assign]  # no words heard
    messages, _ = streamed(client, url, mono)
    assert not any(m["type"] == "UtteranceEnd" for m in messages) and finals(messages) == []


def test_deepgram_parse_reads_multichannel_and_diarize() -> None:
    dialect = Deepgram()
    options = dialect.parse(
        {"encoding": "mulaw", "sample_rate": "8000", "channels": "2", "multichannel": "true", "diarize": "true"}, 0.3
    )
    assert options.multichannel and options.diarize and options.channels == 2 and dialect.channels == 2
    assert dialect.speech_started(1.0, 0, 1) == {"type": "SpeechStarted", "channel": [1, 2], "timestamp": 1.0}
    plain = Deepgram()
    options = plain.parse({"encoding": "linear16", "channels": "2"}, 0.3)
    assert not options.multichannel and not options.diarize and plain.channels == 1
