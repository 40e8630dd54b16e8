"""Live streams' raw and coded encodings, fast: G.711 (mulaw, alaw) expanded by table, linear32,
FLAC and AMR-NB streams decoded by FFmpeg under a named demuxer, each the JFK clip encoded here and
streamed through the ingress with a fake engine; Deepgram's other encodings refused by name."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import av
import jiwer
import numpy as np
import pytest
import websockets.exceptions
import websockets.sync.client
from starlette.testclient import TestClient, WebSocketDenialResponse

from serve_app.api.live import Deepgram
from serve_app.api.pulse_live import Smallest
from serve_app.errors import InvalidRequest, UnsupportedFormat
from serve_app.stream.audio_in import ALAW, MULAW, PIECE_S, REFUSED, open_input
from serve_app.types import SAMPLE_RATE

from .conftest import Server
from .helpers import manifest, normalize
from .support import (
    AUTH,
    JFK_AUDIO,
    JFK_PCM,
    FakeEngine,
    drained,
    encoded,
    g711,
    opus,
    received,
    resampled,
)
from .support import JFK_LINEAR as JFK  # the clip as linear16 streams carry it

# --- the clip in each encoding: what a phone platform or a client library would send (encoders in support.py)

MULAW_8K = g711(resampled(JFK, 8000), MULAW)
ALAW_8K = g711(resampled(JFK, 8000), ALAW)
FLOAT_44K = resampled(JFK, 44100).astype("<f4").tobytes()
FLAC = encoded("flac", "flac", SAMPLE_RATE)
AMR_NB = encoded("amr", "libopencore_amrnb", 8000)

# encoding -> (query, bytes): the clip as each accepted encoding carries it
CLIPS = {
    "linear16": ("encoding=linear16&sample_rate=16000", JFK_PCM),
    "mulaw": ("encoding=mulaw&sample_rate=8000", MULAW_8K),
    "alaw": ("encoding=alaw&sample_rate=8000", ALAW_8K),
    "linear32": ("encoding=linear32&sample_rate=44100", FLOAT_44K),
    "flac": ("encoding=flac", FLAC),
    "amr-nb": ("encoding=amr-nb&sample_rate=8000", AMR_NB),
    "amr-nb headerless": ("encoding=amr-nb", AMR_NB[len(b"#!AMR\n") :]),
    "opus": ("encoding=opus", opus("ogg")),
}


def correlation(audio: np.ndarray, reference: np.ndarray = JFK, max_lag: int = 1600) -> float:
    """The correlation at the best shift within `max_lag` samples (a codec's or resampler's delay, a
    chunk cut a VAD frame earlier or later), the shift found by FFT cross-correlation."""
    size = 1 << int(np.ceil(np.log2(audio.size + reference.size)))
    cross = np.fft.irfft(np.fft.rfft(audio, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(cross[lags])])
    a, b = audio[max(lag, 0) :], reference[max(-lag, 0) :]
    n = min(a.size, b.size)
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def drain(encoding: str, data: bytes, sample_rate: int, piece: int = 333, channels: int = 1) -> list[Any]:
    """What the stream input hands out for `data` sent in `piece`-byte frames (odd: samples split)."""
    return drained(
        lambda: open_input(encoding, sample_rate, channels), [data[at : at + piece] for at in range(0, len(data), piece)]
    )


def audio_of(items: list[Any]) -> np.ndarray:
    assert not [i for i in items if isinstance(i, Exception)], items
    return np.concatenate(items)


# --- the G.711 tables ----------------------------------------------------------------------------


def test_g711_tables_give_the_standards_values() -> None:
    # mu-law: byte inverted; sign, 3-bit exponent, 4-bit mantissa; ((m << 3) + 132) << e, less 132
    assert MULAW[0xFF] == 0 and MULAW[0x7F] == 0 and MULAW[0x00] == -32124 and MULAW[0x80] == 32124
    assert MULAW[0xF0] == (((0x0F << 3) + 132) << 0) - 132 == 120
    # A-law: even bits inverted (xor 0x55); segment 0 is linear, each later one doubles the step
    assert ALAW[0xD5] == 8 and ALAW[0x55] == -8 and ALAW[0xAA] == 32256 and ALAW[0x2A] == -32256
    assert ALAW[0xD4] == 24 and ALAW[0xC5] == 0x108 == 264  # 0xC5 ^ 0x55 = 0x90: segment 1, mantissa 0
    for table in (MULAW, ALAW):  # each byte's twin of the other sign
        assert sorted(table.tolist()) == sorted((-table).tolist())


@pytest.mark.parametrize(("codec", "table"), [("pcm_mulaw", MULAW), ("pcm_alaw", ALAW)])
def test_g711_tables_match_ffmpegs_decoders(codec: str, table: np.ndarray) -> None:
    context: Any = av.CodecContext.create(codec, "r")
    context.sample_rate, context.layout = 8000, "mono"
    frames = context.decode(av.Packet(bytes(range(256))))
    assert np.array_equal(np.concatenate([f.to_ndarray().reshape(-1) for f in frames]), table)


# --- the stream input ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mulaw", "alaw", "linear32", "flac", "amr-nb", "amr-nb headerless"])
def test_each_encoding_becomes_the_clip_at_16k(name: str) -> None:
    query, data = CLIPS[name]
    rate = int(query.split("sample_rate=")[1]) if "sample_rate" in query else SAMPLE_RATE
    audio = audio_of(drain(name.split()[0], data, rate))
    assert abs(audio.size - JFK.size) < 400  # 11 s, give or take a codec frame
    floor = {"flac": 0.9999, "linear32": 0.999, "amr-nb": 0.8}.get(name.split()[0], 0.98)
    assert correlation(audio) > floor  # AMR at 4.75 kbit/s (FFmpeg's default mode) is lossy


def test_g711_at_8k_is_as_good_as_linear16_at_8k() -> None:
    """A-law and mu-law lose little beyond the 8 kHz band itself."""
    at_8k = (resampled(JFK, 8000) * 32767).astype("<i2").tobytes()
    linear = correlation(audio_of(drain("linear16", at_8k, 8000)))
    for encoding, data in (("mulaw", MULAW_8K), ("alaw", ALAW_8K)):
        assert correlation(audio_of(drain(encoding, data, 8000))) > linear - 0.01


def test_g711_stereo_is_mixed_down() -> None:
    mono = np.frombuffer(MULAW_8K, np.uint8)
    stereo = np.stack((mono, mono), axis=1).tobytes()  # interleaved L R
    audio = audio_of(drain("mulaw", stereo, 8000, channels=2))
    assert abs(audio.size - JFK.size) < 400 and correlation(audio) > 0.95


def test_linear32_is_float_and_bad_floats_are_clipped() -> None:
    data = np.array([0.5, -0.25, np.nan, np.inf, -np.inf, 7.0], "<f4").tobytes()
    (audio,) = drain("linear32", data, SAMPLE_RATE)
    assert audio.tolist() == [0.5, -0.25, 0.0, 1.0, -1.0, 1.0]


def test_a_big_raw_frame_is_converted_in_pieces() -> None:
    items = drain("mulaw", MULAW_8K, 8000, piece=len(MULAW_8K))  # 11 s in one frame
    assert len(items) > 10 and max(a.size for a in items) <= PIECE_S * SAMPLE_RATE + 100


def test_coded_streams_are_held_to_their_encoding() -> None:
    """FFmpeg opens only the demuxer and codec the encoding names, whatever the bytes claim."""
    for encoding, data in (
        ("flac", opus("ogg")),  # another container
        ("flac", FLAC[4:]),  # no fLaC header: FFmpeg is not left to guess
        ("amr-nb", b"#!AMR-WB\n" + AMR_NB[6:]),  # AMR-WB's header
        ("opus", FLAC),
    ):
        items = drain(encoding, data, SAMPLE_RATE)
        assert len(items) == 1 and isinstance(items[0], UnsupportedFormat), (encoding, items)


def test_garbage_in_coded_streams_is_an_error() -> None:
    for encoding, data in (("flac", b"fLaC" + bytes(300_000)), ("amr-nb", b"#!AMR\n" + b"\xff" * 300_000)):
        items = drain(encoding, data, SAMPLE_RATE, piece=4096)
        assert len(items) == 1 and isinstance(items[0], UnsupportedFormat)


# --- handshakes ----------------------------------------------------------------------------------


def test_handshake_audio_formats() -> None:
    for protocol in (Deepgram(), Smallest()):
        for query, expected in (
            ({"encoding": "mulaw", "sample_rate": "8000"}, ("mulaw", 8000)),
            ({"encoding": "alaw", "sample_rate": "8000"}, ("alaw", 8000)),
            ({"encoding": "linear32", "sample_rate": "48000"}, ("linear32", 48000)),
            ({"encoding": "linear16"}, ("linear16", 16000)),  # linear16 keeps its default
            ({"encoding": "amr-nb"}, ("amr-nb", 8000)),  # the codec's rate
            ({"encoding": "amr-nb", "sample_rate": "8000"}, ("amr-nb", 8000)),
            ({"encoding": "flac"}, ("flac", 16000)),  # the stream's header has it
        ):
            options = protocol.parse(query, 0.3)
            assert (options.encoding, options.sample_rate) == expected


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"encoding": "mulaw"}, "sample_rate"),  # Deepgram: raw audio needs its sample rate
        ({"encoding": "alaw"}, "sample_rate"),
        ({"encoding": "linear32"}, "sample_rate"),
        ({"encoding": "amr-nb", "sample_rate": "16000"}, "sample_rate"),
        ({"encoding": "amr-wb"}, "encoding"),
        ({"encoding": "speex"}, "encoding"),
        ({"encoding": "g729"}, "encoding"),
        ({"encoding": "mp3"}, "encoding"),
    ],
)
def test_handshake_refusals_name_the_parameter(query: dict[str, str], parameter: str) -> None:
    for protocol in (Deepgram(), Smallest()):
        with pytest.raises(InvalidRequest) as raised:
            protocol.parse(query, 0.3)
        assert raised.value.extra["parameter"] == parameter
        if query["encoding"] in REFUSED:  # refused by name, with the reason
            assert raised.value.body()["error"].startswith(f"{query['encoding']} is not supported: ")


# --- whole sessions through the ingress ----------------------------------------------------------


class RecordingEngine(FakeEngine):
    """Keeps the audio of every chunk it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[np.ndarray] = []

    async def _transcribe(self, audio: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        self.audio.append(audio.copy())
        return await super()._transcribe(audio, *args, **kwargs)


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


def stream(client: TestClient, url: str, data: bytes, piece: int = 1000) -> tuple[list[dict], int]:
    with client.websocket_connect(url, headers=AUTH) as ws:
        for at in range(0, len(data), piece):
            ws.send_bytes(data[at : at + piece])
        ws.send_text('{"type": "CloseStream"}')
        return received(ws)


@pytest.mark.parametrize("name", [n for n in CLIPS if n != "linear16"])
def test_each_encoding_transcribes_the_clip_as_linear16_does(client: TestClient, engine: RecordingEngine, name: str) -> None:
    heard = {}
    for each in ("linear16", name):
        engine.audio.clear()
        messages, code = stream(client, "/v1/listen?" + CLIPS[each][0], CLIPS[each][1])
        assert code == 1000 and messages[-1]["type"] == "Metadata"
        assert messages[-1]["duration"] == pytest.approx(JFK_AUDIO.size / SAMPLE_RATE, abs=0.05)
        finals = [m for m in messages if m["type"] == "Results" and m["is_final"] and m["duration"] > 0.5]
        heard[each] = ([round(m["start"], 1) for m in finals], list(engine.audio))
    starts, chunks = heard[name]
    assert len(chunks) == len(heard["linear16"][1]) >= 3  # the same utterances reached the engine ...
    assert starts == pytest.approx(heard["linear16"][0], abs=0.15)
    for chunk, reference in zip(chunks, heard["linear16"][1]):  # ... as the same audio
        assert abs(chunk.size - reference.size) < 0.1 * SAMPLE_RATE
        assert correlation(chunk, reference) > (0.75 if name.startswith("amr") else 0.95)


def test_pulse_stream_takes_mulaw(client: TestClient, engine: RecordingEngine) -> None:
    messages, code = stream(client, "/waves/v1/stt/live?encoding=mulaw&sample_rate=8000", MULAW_8K)
    assert code == 1000 and len(engine.audio) >= 3
    assert sum(a.size for a in engine.audio) > 0.7 * JFK.size


@pytest.mark.parametrize("encoding", ["amr-wb", "speex", "g729"])
def test_refused_encodings_are_400s_naming_them(client: TestClient, encoding: str) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(f"/v1/listen?encoding={encoding}&sample_rate=16000", headers=AUTH):
            pass
    body = denied.value.json()
    assert denied.value.status_code == 400 and body["parameter"] == "encoding"
    assert body["error"] == f"{encoding} is not supported: {REFUSED[encoding]}"


def test_mulaw_without_sample_rate_is_a_400(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect("/v1/listen?encoding=mulaw", headers=AUTH):
            pass
    assert denied.value.status_code == 400 and denied.value.json()["parameter"] == "sample_rate"


# --- end to end: the real model hears each encoding of the clip


def _stream_to(server: Server, query: str, data: bytes) -> str:
    """`data` over WS /v1/listen in 4 KiB messages (the server segments on audio time, so no pacing),
    then CloseStream: the finals' text."""
    url = f"{server.url.replace('http', 'ws', 1)}/v1/listen?{query}"
    with websockets.sync.client.connect(url, additional_headers={"Authorization": f"Token {server.key}"}) as ws:
        for start in range(0, len(data), 4096):
            ws.send(data[start : start + 4096])
        ws.send('{"type": "CloseStream"}')
        messages = []
        with contextlib.suppress(websockets.exceptions.ConnectionClosedOK):
            while True:
                messages.append(json.loads(ws.recv(timeout=30)))
    return " ".join(m["channel"]["alternatives"][0]["transcript"] for m in messages if m.get("is_final"))


@pytest.mark.e2e
def test_each_encoding_transcribes_the_clip_with_the_real_model(server: Server) -> None:
    """Every accepted encoding of the JFK clip gives the clip's reference words; 8 kHz telephone
    encodings included. AMR-NB (12.2 kbit/s) is scored, not required to be exact: the codec itself
    loses words' detail."""
    reference = normalize(manifest()["whisper_jfk.flac"]["text"])
    heard = {name: normalize(_stream_to(server, query, data)) for name, (query, data) in CLIPS.items()}
    exact = {name: text for name, text in heard.items() if not name.startswith("amr-nb")}
    assert exact == dict.fromkeys(exact, reference)
    for name in ("amr-nb", "amr-nb headerless"):
        assert jiwer.wer(reference, heard[name]) <= 0.15, (name, heard[name])
