"""Live streaming, fast: the segmenter with a fake VAD, the audio inputs, and whole WebSocket
sessions through the ingress with a fake engine (real Silero VAD, real decoding of the JFK clip).
The real engine streams in test_stream_e2e.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from ray.serve.exceptions import BackPressureError
from starlette.testclient import TestClient

from serve_app.api.live import Deepgram
from serve_app.api.pulse_live import Smallest
from serve_app.errors import InvalidRequest, UnsupportedFormat
from serve_app.pipeline import engine_client
from serve_app.pipeline.decode import decode
from serve_app.pipeline.prompt import FILLER_STYLE
from serve_app.stream.audio_in import END, MATROSKA, ContainerInput, PcmInput
from serve_app.stream.protocol import CLOSE, FINALIZE, KEEP_ALIVE, control
from serve_app.stream.segment import FRAME, Segmenter, SpeechStarted, Utterance, UtteranceEnd
from serve_app.types import SAMPLE_RATE

from .helpers import JFK_FLAC
from .support import AUTH, ISSUER, JFK_PCM, KEY, FakeEngine, drained, make_ingress, opus, received, settled_usage, whole_stream

JFK = decode(JFK_FLAC.read_bytes(), 60)
DG = "/v1/listen?encoding=linear16&sample_rate=16000"


class EnergyVad:
    """Speech wherever the frame is loud: lets the segmenter be tested on exact boundaries."""

    def __call__(self, frame: np.ndarray) -> float:
        return 1.0 if float(np.sqrt(np.mean(frame**2))) > 0.01 else 0.0


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def run(segmenter: Segmenter, audio: np.ndarray, piece: int = 1600) -> list[Any]:
    events: list[Any] = []
    for at in range(0, audio.size, piece):
        events += segmenter.push(audio[at : at + piece])
    return events


# --- segmenter -----------------------------------------------------------------------------------


def test_each_pause_ends_an_utterance_with_its_speech_whole() -> None:
    audio = np.concatenate((quiet(0.5), tone(1.0), quiet(0.6), tone(1.5), quiet(0.6)))
    events = run(Segmenter(EnergyVad(), endpoint_s=0.3, max_s=15), audio)
    assert [type(e) for e in events] == [SpeechStarted, Utterance, SpeechStarted, Utterance]
    first, second = events[1], events[3]
    assert first.speech_final and second.speech_final and not first.from_finalize
    assert events[0].at == pytest.approx(0.5, abs=FRAME / SAMPLE_RATE)
    # each tone lies inside its utterance (with pre-roll before and a tail after), and they do not overlap
    assert first.start <= 0.5 and first.end >= 1.5 and second.start <= 2.1 and second.end >= 3.6
    assert first.end <= second.start


def test_without_endpointing_the_client_decides() -> None:
    segmenter = Segmenter(EnergyVad(), endpoint_s=None, max_s=15)
    events = run(segmenter, np.concatenate((quiet(0.5), tone(1.0), quiet(0.6), tone(1.0), quiet(0.2))))
    assert [type(e) for e in events] == [SpeechStarted]  # no final: the pause did not end anything
    final = segmenter.finalize()
    assert final is not None and final.from_finalize and final.start == pytest.approx(0.2, abs=0.04)
    assert final.end == pytest.approx(3.3, abs=1e-6) and segmenter.finalize() is None


def test_speech_longer_than_the_window_is_cut_without_losing_audio() -> None:
    speech = np.concatenate([np.concatenate((tone(2.9), quiet(0.1))) for _ in range(14)])  # 42 s, short dips
    segmenter = Segmenter(EnergyVad(), endpoint_s=0.5, max_s=15)
    finals = [e for e in run(segmenter, speech) if isinstance(e, Utterance)]
    last = segmenter.finalize()
    assert last is not None
    finals.append(last)
    assert len(finals) >= 3 and all(u.end - u.start <= 15 for u in finals)
    assert not any(u.speech_final for u in finals[:-1])  # cut for length, not a pause
    for a, b in zip(finals, finals[1:]):
        assert a.end == pytest.approx(b.start, abs=1e-9)  # contiguous: nothing lost, nothing twice
    assert sum(u.audio.size for u in finals) == speech.size


def test_utterance_end_after_a_long_pause() -> None:
    events = run(Segmenter(EnergyVad(), endpoint_s=0.3, max_s=15, utterance_end_s=1.0), np.concatenate((tone(1.0), quiet(1.5))))
    assert [type(e) for e in events] == [SpeechStarted, Utterance, UtteranceEnd]
    assert events[2].last_speech_end == pytest.approx(1.0, abs=FRAME / SAMPLE_RATE)


def test_piece_sizes_do_not_change_the_utterances() -> None:
    audio = np.concatenate((quiet(0.3), tone(0.8), quiet(0.5), tone(0.7), quiet(0.5)))

    def shape(events: list[Any]) -> list[tuple]:
        return [(type(e).__name__, getattr(e, "start", None), getattr(e, "end", None)) for e in events]

    whole = run(Segmenter(EnergyVad(), 0.3, 15), audio, piece=audio.size)
    assert shape(run(Segmenter(EnergyVad(), 0.3, 15), audio, piece=37)) == shape(whole) and len(whole) == 4


# --- audio inputs --------------------------------------------------------------------------------


def test_pcm_at_another_rate_and_two_channels_becomes_16k_mono() -> None:
    at_8k = JFK[::2]
    stereo = np.stack((at_8k, at_8k), axis=1)  # interleaved L R
    data = (stereo * 32767).astype("<i2").tobytes()
    pieces = [data[i : i + 333] for i in range(0, len(data), 333)]  # odd sizes split samples
    items = drained(lambda: PcmInput(8000, 2), pieces)
    audio = np.concatenate(items)
    assert abs(audio.size - JFK.size) < 200
    assert np.corrcoef(audio[2000:150000], JFK[2000:150000])[0, 1] > 0.9


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_container_streams_decode_as_they_arrive_with_markers_in_place(container: str) -> None:
    data = opus(container)
    pieces = [data[i : i + 800] for i in range(0, len(data), 800)]
    items = drained(ContainerInput, pieces, mark_after=len(pieces) // 2)
    marker = next(i for i, item in enumerate(items) if item is FINALIZE)
    before = sum(a.size for a in items[:marker])
    after = sum(a.size for a in items[marker + 1 :])
    assert abs(before + after - JFK.size) < 400
    assert 0.3 < before / (before + after) < 0.7  # the marker sits where it was sent, not at the end


def test_garbage_in_a_container_stream_is_an_error() -> None:
    items = drained(ContainerInput, [b"\x00not audio at all" * 200])
    assert isinstance(items[-1], UnsupportedFormat)


# FFmpeg, left to guess, would open the file these name (ffconcat did: the JFK clip came out)
PLAYLISTS = {
    "ffconcat": b"ffconcat version 1.0\nfile tests/data/whisper_jfk.flac\n",
    "m3u8": b"#EXTM3U\n#EXT-X-TARGETDURATION:11\n#EXTINF:11.0,\ntests/data/whisper_jfk.flac\n#EXT-X-ENDLIST\n",
}


@pytest.mark.parametrize("name", PLAYLISTS)
def test_playlists_are_refused_not_followed(name: str, monkeypatch: Any) -> None:
    monkeypatch.chdir(JFK_FLAC.parents[2])  # where the relative path names a real file
    items = drained(ContainerInput, [PLAYLISTS[name]])
    assert len(items) == 1 and isinstance(items[0], UnsupportedFormat)  # not one sample of the file


def test_the_first_bytes_name_the_container_within_what_encoding_allows() -> None:
    items = drained(lambda: ContainerInput((MATROSKA,)), [opus("ogg")])  # encoding=webm, Ogg sent
    assert len(items) == 1 and isinstance(items[0], UnsupportedFormat) and items[0].extra["parameter"] == "encoding"
    webm = opus("webm")
    assert sum(a.size for a in drained(lambda: ContainerInput((MATROSKA,)), [webm])) == pytest.approx(JFK.size, abs=400)


def test_a_container_read_on_without_audio_is_refused() -> None:
    data = opus("ogg", comment="x" * 300_000)  # a header tag bigger than the bound: FFmpeg would hold it all
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    items = drained(lambda: ContainerInput(max_bytes=64 * 1024), pieces)
    assert len(items) == 1 and isinstance(items[0], UnsupportedFormat)
    assert sum(a.size for a in drained(ContainerInput, pieces)) == pytest.approx(JFK.size, abs=400)  # within the default


def test_a_fast_sender_waits_instead_of_growing_the_buffer() -> None:
    """Ten frames of 11 s sent at once through a one-second buffer: `feed` waits (so the receiver
    stops reading the socket) and what waits for the segmenter never passes the bound."""
    bound, frame = SAMPLE_RATE, (JFK[::2] * 32767).astype("<i2").tobytes()  # 8 kHz: 4x its bytes once decoded

    async def go() -> tuple[list[int], int, int]:
        source, fed = PcmInput(8000, 1, max_samples=bound), []

        async def produce() -> None:
            for _ in range(10):
                await source.feed(frame)
                fed.append(len(frame))
            await source.close()

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.2)  # nobody reads: not even the first frame is taken in whole
        before, peak, total = list(fed), 0, 0
        while (item := await source.get()) is not END:
            peak = max(peak, source.buffer.samples + item.size)  # buffered just before this item left
            total += item.size
            await asyncio.sleep(0.001)  # a segmenter slower than the sender
        await producer
        return before, peak, total

    before, peak, total = asyncio.run(go())
    assert before == [] and bound / 2 < peak <= bound
    assert total == pytest.approx(10 * JFK.size, abs=100)  # all 110 s came through, none of it lost


def test_a_container_stream_holds_at_most_its_byte_bound() -> None:
    data, bound = opus("ogg"), 16 * 1024

    async def go() -> tuple[bool, int, int, int]:
        source, peak = ContainerInput(max_samples=SAMPLE_RATE, max_bytes=bound), 0
        producer = asyncio.create_task(_feed_then_close(source, [data[i : i + 1000] for i in range(0, len(data), 1000)]))
        for _ in range(30):  # nobody reads: the decoder fills its one second, then the pipe fills
            await asyncio.sleep(0.01)
            peak = max(peak, source.buffered_bytes)
        held, samples, total = not producer.done(), source.buffer.samples, 0
        while (item := await asyncio.wait_for(source.get(), 10)) is not END:
            peak, total = max(peak, source.buffered_bytes), total + item.size
        await producer
        return held, peak, samples, total

    held, peak, samples, total = asyncio.run(go())
    assert held and bound / 2 < peak <= bound and samples <= SAMPLE_RATE
    assert total == pytest.approx(JFK.size, abs=400)


async def _feed_then_close(source: ContainerInput, pieces: list[bytes]) -> None:
    for piece in pieces:
        await source.feed(piece)
    await source.close()


def test_control_messages() -> None:
    assert control('{"type": "KeepAlive"}') == KEEP_ALIVE
    assert control('{"type": "Finalize"}') == control('{"type": "finalize"}') == FINALIZE
    assert control('{"type": "CloseStream"}') == control('{"type": "close_stream"}') == CLOSE
    for bad in ("hello", "[]", '{"type": "Dance"}', '{"type": 3}', "[" * 100_000):
        with pytest.raises(InvalidRequest):
            control(bad)


CANARY = "c4n4ry<b>x</b>"  # sent as a value: an error must never say it back


def test_errors_name_the_parameter_not_the_value_sent() -> None:
    for text in (f'{{"type": "{CANARY}"}}', f"not json {CANARY}", f'["{CANARY}"]'):
        with pytest.raises(InvalidRequest) as raised:
            control(text)
        assert "c4n4ry" not in json.dumps(raised.value.body())
    deepgram = (
        "encoding",
        "sample_rate",
        "channels",
        "language",
        "endpointing",
        "utterance_end_ms",
        "interim_results",
        "vad_events",
    )
    smallest = ("encoding", "sample_rate", "channels", "language", "eou_timeout_ms", "word_timestamps", "full_transcript")
    for protocol, names in ((Deepgram(), deepgram), (Smallest(), smallest)):
        for name in names:
            with pytest.raises(InvalidRequest) as raised:
                protocol.parse({name: CANARY, "interim_results": "true"} if name == "utterance_end_ms" else {name: CANARY}, 0.3)
            body = json.dumps(raised.value.body())
            assert "c4n4ry" not in body and raised.value.extra["parameter"] == name, body


def test_handshake_options() -> None:
    options = Deepgram().parse(
        {"encoding": "linear16", "sample_rate": "8000", "endpointing": "10", "interim_results": "true"}, 0.3
    )
    assert options.sample_rate == 8000 and options.endpoint_s == 0.1 and options.interim_results  # raised to the floor
    assert Deepgram().parse({"endpointing": "false"}, 0.3).endpoint_s is None
    assert Deepgram().parse({}, 0.3).encoding is None  # a container
    for bad in (
        {"encoding": "mp3"},
        {"sample_rate": "fast"},
        {"sample_rate": "100"},
        {"channels": "9"},
        {"language": "multi"},
        {"endpointing": "-5"},
        {"utterance_end_ms": "1000"},
        {"multichannel": "true"},
        {"interim_results": "perhaps"},
    ):
        with pytest.raises(InvalidRequest):
            Deepgram().parse(bad, 0.3)


# --- sessions through the ingress ----------------------------------------------------------------


# Every endpointing pause ends an utterance: the mechanics tested here need JFK's four phrases as
# four finals (by default the short ones are merged: test_short_utterances_are_merged_until_a_long_pause).
PER_PAUSE = {"min_final_speech_s": 0}


@pytest.fixture
def client(engine: FakeEngine, tmp_path: Any) -> Iterator[TestClient]:
    ingress = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 2, **PER_PAUSE}})
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        yield c


def _stream(ws: Any, data: bytes, piece: int = 3200) -> None:
    for at in range(0, len(data), piece):
        ws.send_bytes(data[at : at + piece])


def _metered(client: TestClient, auth: dict) -> float:
    """The key's audio seconds today, once its stream is settled."""
    return settled_usage(client, auth)["audio_seconds_today"]


def test_deepgram_stream_interims_finals_events_and_metadata(client: TestClient, engine: FakeEngine) -> None:
    url = DG + "&interim_results=true&vad_events=true&utterance_end_ms=1000"
    messages, code = whole_stream(client, url)
    assert code == 1000
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "SpeechStarted" and kinds[-1] == "Metadata" and "UtteranceEnd" in kinds
    results = [m for m in messages if m["type"] == "Results"]
    finals = [r for r in results if r["is_final"]]
    assert any(not r["is_final"] for r in results) and len(finals) >= 3
    assert all(r["speech_final"] for r in finals[:3])
    for r in finals:
        assert r["channel_index"] == [0, 1] and r["metadata"]["request_id"] == messages[-1]["request_id"]
    for a, b in zip(finals, finals[1:]):  # in stream order, not overlapping
        assert a["start"] + a["duration"] <= b["start"] + 1e-6
    words = finals[0]["channel"]["alternatives"][0]["words"]
    assert [w["punctuated_word"] for w in words] == ["Hello", "world."] and words[0]["start"] >= finals[0]["start"]
    assert messages[-1]["duration"] == pytest.approx(11.0, abs=0.01)
    assert messages[-1]["sha256"] == hashlib.sha256(JFK_PCM).hexdigest()


def test_short_utterances_are_merged_until_a_long_pause(engine: FakeEngine, tmp_path: Any) -> None:
    with TestClient(make_ingress(engine, tmp_path).__serve_build_asgi_app__()) as client:
        messages, code = whole_stream(client, DG)
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"]]
    # JFK's phrases have 1.9, 0.9, 2.2 and 2.4 s of speech between pauses of 1.1, 1.0 and 0.6 s: the
    # first three go on together (under 3 s of speech, pauses under 1.5 s), the last ends the stream.
    assert code == 1000 and [f["speech_final"] for f in finals] == [True, False]
    assert [f["start"] for f in finals] == pytest.approx([0.05, 7.95], abs=0.05)


def test_finals_only_without_interim_results(client: TestClient, engine: FakeEngine) -> None:
    messages, _ = whole_stream(client, DG)
    results = [m for m in messages if m["type"] == "Results"]
    assert results and all(r["is_final"] for r in results)
    assert not any(m["type"] in ("SpeechStarted", "UtteranceEnd") for m in messages)
    decoded = [r for r in results if r["channel"]["alternatives"][0]["transcript"]]  # a blip is answered empty
    assert len(engine.calls) == len(decoded) >= 3  # one decode per final
    assert set(engine.previous) == {""}  # no context unless the operator asks for it
    assert set(engine.live) == {True}  # each a live utterance: decoded in the window policy's live_s


def test_with_context_each_final_gets_the_finals_before_it(engine: FakeEngine, tmp_path: Any) -> None:
    ingress = make_ingress(engine, tmp_path, {"condition_on_previous_text": True, "stream": PER_PAUSE})
    with TestClient(ingress.__serve_build_asgi_app__()) as client:
        messages, _ = whole_stream(client, DG)
    decoded = [m for m in messages if m["type"] == "Results" and m["channel"]["alternatives"][0]["transcript"]]
    # The fake answers "Hello world." each time.
    assert len(decoded) >= 3 and engine.previous == [" ".join(["Hello world."] * k) for k in range(len(decoded))]


@pytest.mark.parametrize(
    "url, prompt",
    [
        (DG + "&keyterm=Kowloon&keyterm=Hong%20Kong", "Kowloon, Hong Kong."),
        (DG + "&keywords=Dashwood:2&filler_words=true", FILLER_STYLE + " Dashwood."),
        ("/waves/v1/stt/live?sample_rate=16000&encoding=linear16&keywords=Smallest,Atoms:2", "Smallest, Atoms."),
        ("/waves/v1/stt/live?sample_rate=16000&encoding=linear16&filler_words=true", FILLER_STYLE),
    ],
)
def test_live_keyterms_prompt_every_decode(engine: FakeEngine, tmp_path: Any, url: str, prompt: str) -> None:
    with TestClient(make_ingress(engine, tmp_path).__serve_build_asgi_app__()) as client:
        whole_stream(client, url)
    assert engine.previous and set(engine.previous) == {prompt}


def test_smallest_finalize_keeps_the_stream_and_close_is_last(client: TestClient) -> None:
    url = "/waves/v1/stt/live?language=en&sample_rate=16000&encoding=linear16&full_transcript=true&eou_timeout_ms=5000"
    with client.websocket_connect(url, headers={"Authorization": f"Bearer {KEY}"}) as ws:
        _stream(ws, JFK_PCM[: len(JFK_PCM) // 2])
        ws.send_text('{"type": "finalize"}')
        _stream(ws, JFK_PCM[len(JFK_PCM) // 2 :])
        ws.send_text('{"type": "close_stream"}')
        messages, code = received(ws)
    assert code == 1000 and all(m["type"] == "transcription" for m in messages)
    finals = [m for m in messages if m["is_final"]]
    assert finals[0]["from_finalize"] and not finals[0]["is_last"]
    assert finals[-1]["is_last"] and messages[-1] is finals[-1]
    assert finals[-1]["full_transcript"] == " ".join(f["transcript"] for f in finals if f["transcript"])
    assert any(not m["is_final"] for m in messages)  # Pulse always sends partials
    assert len({m["session_id"] for m in messages}) == 1


def test_a_finalize_after_silence_answers_an_empty_final(client: TestClient) -> None:
    with client.websocket_connect(DG, headers=AUTH) as ws:
        ws.send_bytes(bytes(32000))  # one second of silence
        ws.send_text('{"type": "Finalize"}')
        message = ws.receive_json()
        assert message["is_final"] and message["from_finalize"] and message["channel"]["alternatives"][0]["transcript"] == ""
        ws.send_text('{"type": "CloseStream"}')
        received(ws)


def test_container_stream_gives_the_same_finals_as_pcm(client: TestClient) -> None:
    results = {}
    for name, url, data in (("pcm", DG, JFK_PCM), ("ogg", "/v1/listen", opus("ogg"))):
        with client.websocket_connect(url, headers=AUTH) as ws:
            _stream(ws, data, piece=1000)
            ws.send_text('{"type": "CloseStream"}')
            messages, code = received(ws)
        assert code == 1000
        results[name] = [round(m["start"], 1) for m in messages if m["type"] == "Results" and m["duration"] > 0.5]
    assert results["ogg"] == results["pcm"]


def _refused(client: TestClient, url: str, headers: dict | None = None, subprotocols: list[str] | None = None) -> Any:
    from starlette.testclient import WebSocketDenialResponse

    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(url, headers=headers or {}, subprotocols=subprotocols or []):
            pass
    return denied.value


def test_handshake_refusals_are_http_errors_with_json(client: TestClient) -> None:
    denied = _refused(client, DG)
    assert denied.status_code == 401 and denied.json()["code"] == "INVALID_LICENSE"
    denied = _refused(client, DG, {"Authorization": f"Token {ISSUER.issue(days=-1)}"})
    assert denied.status_code == 403 and denied.json()["code"] == "LICENSE_EXPIRED" and denied.json()["expires_at"]
    denied = _refused(client, DG + "&encoding=mp3", AUTH)
    assert denied.status_code == 400 and denied.json()["parameter"] == "encoding"
    denied = _refused(client, DG + "&language=de", AUTH)  # the fake model is English-only
    assert denied.status_code == 400 and denied.json()["parameter"] == "language"


PULSE_LIVE = "/waves/v1/stt/live?sample_rate=16000&encoding=linear16"


@pytest.mark.parametrize(
    "url, parameter",
    [
        (DG + "&detect_language=true", "language"),  # streams need a language
        (PULSE_LIVE + "&detect_language=true", "language"),
        (DG + "&multichannel=true", "multichannel"),
        (PULSE_LIVE + "&multichannel=true", "multichannel"),
        (DG + "&translate=true", "translate"),
        (PULSE_LIVE + "&diarize=true", "diarize"),
    ],
)
def test_options_streams_cannot_honour_are_400(client: TestClient, url: str, parameter: str) -> None:
    denied = _refused(client, url, AUTH)
    assert denied.status_code == 400 and denied.json()["parameter"] == parameter


def test_browser_key_as_subprotocol(client: TestClient) -> None:
    with client.websocket_connect(DG, subprotocols=["token", KEY]) as ws:
        assert ws.accepted_subprotocol == "token"
        ws.send_text('{"type": "CloseStream"}')
        messages, code = received(ws)
    assert code == 1000 and messages[-1]["type"] == "Metadata"
    # A browser cannot read a refused handshake's status: the error comes as a message and a close.
    with client.websocket_connect(DG, subprotocols=["token", "not-a-key"]) as ws:
        messages, code = received(ws)
    assert code == 1008 and [m["code"] for m in messages] == ["INVALID_LICENSE"]
    assert _refused(client, DG, {"Authorization": "Token not-a-key"}).status_code == 401


def test_bad_messages_are_reported_and_the_stream_goes_on(client: TestClient) -> None:
    with client.websocket_connect(DG, headers=AUTH) as ws:
        ws.send_text("hello")
        error = ws.receive_json()
        assert error["type"] == "Error" and error["code"] == "INVALID_REQUEST" and error["description"]
        ws.send_text('{"type": "KeepAlive"}')
        _stream(ws, JFK_PCM[:64000])
        ws.send_text('{"type": "CloseStream"}')
        messages, code = received(ws)
    assert code == 1000 and any(m["type"] == "Results" for m in messages)


def test_stream_errors_do_not_echo_what_was_sent(client: TestClient) -> None:
    with client.websocket_connect(DG, headers=AUTH) as ws:
        ws.send_text(json.dumps({"type": CANARY}))
        error = ws.receive_json()
        ws.send_text('{"type": "CloseStream"}')
        received(ws)
    assert error["code"] == "INVALID_REQUEST" and error["parameter"] == "type" and "c4n4ry" not in json.dumps(error)
    for name in ("encoding", "sample_rate", "endpointing"):
        denied = _refused(client, f"{DG}&{name}={quote(CANARY)}", AUTH)
        assert denied.status_code == 400 and denied.json()["parameter"] == name and "c4n4ry" not in denied.text


@pytest.mark.parametrize("name", PLAYLISTS)
def test_a_playlist_stream_is_refused_without_a_transcript(
    name: str, client: TestClient, engine: FakeEngine, monkeypatch: Any
) -> None:
    monkeypatch.chdir(JFK_FLAC.parents[2])
    with client.websocket_connect("/v1/listen", headers=AUTH) as ws:
        ws.send_bytes(PLAYLISTS[name])
        ws.send_text('{"type": "CloseStream"}')
        messages, code = received(ws)
    assert code == 1008 and messages[-1]["code"] == "UNSUPPORTED_FORMAT"
    assert not any(m.get("type") == "Results" for m in messages) and not engine.calls


def test_an_oversized_frame_ends_the_stream_after_the_audio_before_it(client: TestClient) -> None:
    with client.websocket_connect(DG, headers=AUTH) as ws:
        _stream(ws, JFK_PCM[:64000])  # two seconds
        ws.send_bytes(bytes(2**20 + 2))  # just over the 1 MiB default
        messages, code = received(ws)
    assert code == 1009 and messages[-1]["code"] == "FILE_TOO_LARGE" and messages[-1]["max_frame_bytes"] == 2**20
    metadata = next(m for m in messages if m["type"] == "Metadata")  # the big frame was never taken in
    assert (
        metadata["duration"] == pytest.approx(2.0, abs=0.01) and metadata["sha256"] == hashlib.sha256(JFK_PCM[:64000]).hexdigest()
    )
    assert any(m["type"] == "Results" and m["is_final"] and m["channel"]["alternatives"][0]["transcript"] for m in messages)


def test_a_stream_past_its_length_limit_gets_its_finals_then_an_error(engine: FakeEngine, tmp_path: Any) -> None:
    ingress = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 5, "max_duration_s": 4}})
    with TestClient(ingress.__serve_build_asgi_app__()) as client:
        messages, code = whole_stream(client, DG)
        assert code == 1008 and messages[-1]["code"] == "FILE_TOO_LARGE" and messages[-1]["max_duration_s"] == 4
        assert any(m["type"] == "Results" and m["is_final"] and m["duration"] > 1 for m in messages)
        assert 4 <= next(m for m in messages if m["type"] == "Metadata")["duration"] < 5  # of the 11 s sent
        assert 4 <= _metered(client, AUTH) < 5
    ingress = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 5, "max_duration_s": 1}})
    with TestClient(ingress.__serve_build_asgi_app__()) as client:
        with client.websocket_connect(DG, headers=AUTH) as ws:  # in time too: the idle timeout is further off
            ws.send_text('{"type": "KeepAlive"}')
            started = time.monotonic()
            messages, code = received(ws)
    assert code == 1008 and messages[-1]["code"] == "FILE_TOO_LARGE" and time.monotonic() - started < 4


def test_garbage_audio_closes_with_a_clear_error(client: TestClient) -> None:
    with client.websocket_connect("/v1/listen", headers=AUTH) as ws:
        ws.send_bytes(b"\x00not audio at all" * 400)
        ws.send_text('{"type": "CloseStream"}')
        messages, code = received(ws)
    assert code == 1008 and messages[-1]["code"] == "UNSUPPORTED_FORMAT"


def test_an_idle_stream_is_closed_after_its_results(client: TestClient) -> None:
    with client.websocket_connect(DG, headers=AUTH) as ws:
        _stream(ws, JFK_PCM[:48000])  # 1.5 s of speech, then nothing
        messages, code = received(ws)
    assert code == 1011 and messages[-1]["code"] == "STREAM_IDLE_TIMEOUT"
    assert any(m["type"] == "Results" and m["is_final"] for m in messages)  # what was sent is answered


def test_streamed_audio_is_metered_and_quota_ends_a_stream(client: TestClient) -> None:
    whole_stream(client, DG)
    usage = settled_usage(client, AUTH)
    assert usage["audio_seconds_today"] == pytest.approx(11.0, abs=0.05) and usage["requests_today"] == 1

    small = ISSUER.issue(audio_hours_per_day=4 / 3600)  # four seconds
    messages, code = whole_stream(client, DG, {"Authorization": f"Token {small}"})
    assert code == 1008 and messages[-1]["code"] == "QUOTA_EXCEEDED"
    assert any(m["type"] == "Results" and m["is_final"] and m["duration"] > 1 for m in messages)
    assert 4 <= _metered(client, {"Authorization": f"Token {small}"}) < 5
    denied = _refused(client, DG, {"Authorization": f"Token {small}"})
    assert denied.status_code == 403 and denied.json()["code"] == "QUOTA_EXCEEDED"


def test_a_full_engine_skips_interims_but_finals_wait(client: TestClient, engine: FakeEngine, monkeypatch: Any) -> None:
    monkeypatch.setattr(engine_client, "BUSY_RETRY_S", 0.01)
    answer, refusals = engine.transcribe.fn, iter(range(6))

    async def busy(*args: Any) -> Any:
        if next(refusals, None) is not None:
            raise BackPressureError(num_queued_requests=64, max_queued_requests=64)
        return await answer(*args)

    engine.transcribe.fn = busy
    messages, code = whole_stream(client, DG + "&interim_results=true")
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"] and m["duration"] > 0.5]
    assert code == 1000 and len(finals) >= 3
    assert all(f["channel"]["alternatives"][0]["transcript"] == "Hello world." for f in finals)


def test_a_client_that_leaves_is_metered_for_what_it_sent(client: TestClient) -> None:
    key = ISSUER.issue()
    auth = {"Authorization": f"Token {key}"}
    with client.websocket_connect(DG + "&interim_results=true", headers=auth) as ws:
        _stream(ws, JFK_PCM[: 3 * 32000])  # three seconds, then gone without CloseStream
        ws.send_text('{"type": "Finalize"}')
        while not ws.receive_json().get("from_finalize"):  # the server has taken in all three seconds
            pass
    assert _metered(client, auth) == pytest.approx(3.0, abs=0.05)
    with client.websocket_connect(DG, headers=auth) as ws:  # the server carries on
        ws.send_text('{"type": "CloseStream"}')
        assert received(ws)[1] == 1000


def test_an_interim_still_decoding_is_cancelled_by_its_final(client: TestClient, engine: FakeEngine) -> None:
    answer, cancelled = engine.transcribe.fn, []

    async def slow(*args: Any) -> Any:
        try:
            await asyncio.sleep(2)  # far longer than the segmenter takes to reach the first pause
        except asyncio.CancelledError:
            cancelled.append(args[0].size)
            raise
        return await answer(*args)

    engine.transcribe.fn = slow
    messages, code = whole_stream(client, DG + "&interim_results=true")
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"] and m["channel"]["alternatives"][0]["transcript"]]
    assert code == 1000 and len(finals) >= 3 and cancelled  # the engine was told to drop the interim
    assert not any(m["type"] == "Results" and not m["is_final"] and m["start"] == finals[0]["start"] for m in messages)


def test_interims_are_capped_across_streams(engine: FakeEngine, tmp_path: Any) -> None:
    ingress = make_ingress(engine, tmp_path, {"stream": {"interims_in_flight": 0, **PER_PAUSE}})
    with TestClient(ingress.__serve_build_asgi_app__()) as client:
        messages, code = whole_stream(client, DG + "&interim_results=true")
    results = [m for m in messages if m["type"] == "Results"]
    assert code == 1000 and len(results) >= 3 and all(r["is_final"] for r in results)
