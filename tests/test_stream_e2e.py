"""Live streaming through the real application (Ray Serve's proxy, the ingress, vLLM with tiny.en),
driven by the real clients: `deepgram-sdk`'s live client, `smallestai`'s streaming helper and the
`openai` SDK's realtime client, each streaming the JFK clip in real time (100 ms frames, paced), and
a phone call as Twilio's Media Streams send it (8 kHz mu-law in 20 ms `media` messages, paced);
each gets finals whose words are the clip's reference transcript (tests/data/manifest.jsonl)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets.exceptions
import websockets.sync.client
from deepgram.listen.v1.types import ListenV1Metadata, ListenV1Results, ListenV1SpeechStarted, ListenV1UtteranceEnd
from smallestai.waves.helpers import stream_speech_to_text
from smallestai.waves.speech_to_text.types import CloseStream, FinalizeSignal

from serve_app.settings import ROOT

from .conftest import Server
from .helpers import manifest, normalize
from .ray_logs import all_log_text
from .support import (
    JFK_PCM,
    TWILIO_CONNECTED,
    TWILIO_STOP,
    deepgram_live,
    jfk_mulaw,
    jfk_pcm24,
    opus,
    paced,
    smallest_client,
    twilio_media,
    twilio_start,
)

pytestmark = pytest.mark.e2e

PAUSE = int(4.8 * 32000)  # bytes up to the pause after "ask not" (4.4 s to 5.4 s): where a voice agent's turn ends


JFK_TEXT = normalize(manifest()["whisper_jfk.flac"]["text"])  # the reference, not this server's own batch answer
READ_S = 8.0  # one read's wait: under the server's 10 s idle close, so a missing message fails here, by name


def messages_until_close(ws: websockets.sync.client.ClientConnection) -> list[str]:
    """Every message until the server closes normally; a read that waits READ_S fails the test."""
    messages: list[str] = []
    while True:
        try:
            messages.append(str(ws.recv(timeout=READ_S)))
        except TimeoutError:
            raise AssertionError(
                f"no message or close within {READ_S} s after {len(messages)} messages: {messages[-2:]}"
            ) from None
        except websockets.exceptions.ConnectionClosedOK:
            return messages


def test_deepgram_live_client(server: Server) -> None:
    messages = deepgram_live(server, interim_results="true", vad_events="true", utterance_end_ms="1000")
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    finals = [r for r in results if r.is_final]
    assert any(not r.is_final and r.channel.alternatives[0].transcript for r in results)  # interims came
    assert normalize(" ".join(r.channel.alternatives[0].transcript for r in finals)) == JFK_TEXT
    assert any(r.speech_final for r in finals)
    assert any(isinstance(m, ListenV1SpeechStarted) for m in messages)
    assert any(isinstance(m, ListenV1UtteranceEnd) for m in messages)
    assert isinstance(messages[-1], ListenV1Metadata) and messages[-1].duration == pytest.approx(11.0, abs=0.05)
    words = [w for r in finals for w in r.channel.alternatives[0].words]
    assert all(a.start <= b.start for a, b in zip(words, words[1:])) and words[-1].end <= 11.0


def test_smallestai_streaming_helper(server: Server) -> None:
    events: list[Any] = []
    with stream_speech_to_text(
        smallest_client(server), language="en", sample_rate=16000, word_timestamps=True, full_transcript=True
    ) as socket:
        reader = threading.Thread(target=lambda: events.extend(socket))
        reader.start()
        paced(socket.send_audio_chunk_out, JFK_PCM[:PAUSE])
        socket.send_finalize_signal(FinalizeSignal(type="finalize"))  # a turn boundary: the stream stays open
        paced(socket.send_audio_chunk_out, JFK_PCM[PAUSE:])
        socket.send_close_stream(CloseStream(type="close_stream"))
        reader.join(timeout=60)
        assert not reader.is_alive(), "the server did not close the stream within 60 s of CloseStream"
    finals = [e for e in events if e.is_final]
    assert any(not e.is_final and e.transcript for e in events)
    assert any(e.from_finalize for e in finals) and finals[-1].is_last and events[-1] is finals[-1]
    assert normalize(finals[-1].full_transcript) == JFK_TEXT
    assert all(w.start <= w.end for e in finals for w in e.words or [])


def test_browser_style_webm_stream_with_key_as_subprotocol(server: Server) -> None:
    """What a browser sends: MediaRecorder's webm/opus, the key as the `token` subprotocol."""
    url = server.url.replace("http", "ws") + "/v1/listen/stream?punctuate=false"
    before = streamed_seconds(server)
    with websockets.sync.client.connect(url, subprotocols=["token", server.key]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "token"
        paced(ws.send, opus("webm"))  # about 10 frames a second of compressed audio: faster than real time
        ws.send(json.dumps({"type": "CloseStream"}))
        messages = [json.loads(m) for m in messages_until_close(ws)]
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"]]
    assert normalize(" ".join(f["channel"]["alternatives"][0]["transcript"] for f in finals)) == JFK_TEXT
    assert messages[-1]["type"] == "Metadata"
    for _ in range(50):  # metered as the stream ends, on the key's usage like a file
        if streamed_seconds(server) - before > 10.9:
            break
        time.sleep(0.1)
    assert streamed_seconds(server) - before == pytest.approx(11.0, abs=0.1)
    for _ in range(100):  # replicas' log lines reach the driver's file a moment later
        log = server.log.read_text(errors="replace")
        if "stream request_id=" in log:
            break
        time.sleep(0.1)
    assert "stream request_id=" in log  # the replicas' lines reach this file
    files = {server.log: log, **all_log_text(str(server.log.parent / "usage.sqlite3"))}
    leaked = [str(path) for path, text in files.items() if server.key in text or server.key.split(".")[2] in text]
    assert not leaked, f"the key, sent as a subprotocol, is in {leaked}"


def test_twilio_media_stream(server: Server) -> None:
    """A phone call as Twilio streams it to `<Stream url="wss://.../v1/twilio">`: the key as the
    `<Parameter name="key">` (Twilio sends no headers), 20 ms of mu-law a message at the pace of the call."""
    url = server.url.replace("http", "ws") + "/v1/twilio"
    before = streamed_seconds(server)
    with websockets.sync.client.connect(url) as ws:
        ws.send(TWILIO_CONNECTED)
        ws.send(twilio_start({"key": server.key}))
        started = time.monotonic()
        for k, message in enumerate(twilio_media(jfk_mulaw())):
            time.sleep(max(0.0, started + k * 0.02 - time.monotonic()))
            ws.send(message)
        ws.send(TWILIO_STOP)
        messages = [json.loads(m) for m in messages_until_close(ws)]
    assert not [m for m in messages if m["event"] == "error"], messages
    finals = [m for m in messages if m["event"] == "transcript" and m["is_final"]]
    assert normalize(" ".join(f["text"] for f in finals)) == JFK_TEXT
    assert finals[-1]["is_last"] and all(m["streamSid"] == "MZ0001" for m in messages)
    assert messages[-1]["event"] == "metadata" and messages[-1]["duration"] == pytest.approx(11.0, abs=0.05)
    for _ in range(50):
        if streamed_seconds(server) - before > 10.9:
            break
        time.sleep(0.1)
    assert streamed_seconds(server) - before == pytest.approx(11.0, abs=0.1)


def test_openai_sdk_realtime_transcription(server: Server) -> None:
    """`openai`'s realtime client on this server's base URL: a transcription session (GA events), the
    clip appended as 24 kHz pcm16 at the pace of speech, server VAD committing at the pauses, a
    commit for the rest; then a session.update that changes nothing, answered after every item."""
    from openai import OpenAI

    client = OpenAI(api_key=server.key, base_url=server.url + "/v1")
    audio, events = jfk_pcm24(), []
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        assert connection.recv().type == "session.created"
        connection.session.update(
            session={
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "whisper-1", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    }
                },
            }
        )
        assert connection.recv().type == "session.updated"
        reader = threading.Thread(target=lambda: events.extend(_until_updated(connection)))
        reader.start()
        paced(lambda piece: connection.input_audio_buffer.append(audio=base64.b64encode(piece).decode()), audio, frame=4800)
        connection.input_audio_buffer.commit()
        connection.session.update(session={"type": "transcription"})
        reader.join(timeout=60)
        assert not reader.is_alive(), "no session.updated within 60 s of the commit"
    assert not [e for e in events if e.type == "error"], events
    completed = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert normalize(" ".join(e.transcript for e in completed)) == JFK_TEXT
    assert any(e.type == "input_audio_buffer.speech_started" for e in events)
    committed = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
    assert [e.item_id for e in completed] == committed  # every committed item is transcribed, in order


def _until_updated(connection: Any) -> list[Any]:
    events = []
    for event in connection:
        events.append(event)
        if event.type == "session.updated":
            break
    return events


def streamed_seconds(server: Server) -> float:
    return float(requests.get(server.url + "/v1/usage", headers=server.auth, timeout=10).json()["usage"]["audio_seconds_total"])


def test_stream_benchmark_smoke(server: Server, tmp_path: Path) -> None:
    """The benchmark runs and writes its results (latency itself is for the benchmark to show)."""
    out = tmp_path / "streaming.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench.stream",
            "--url",
            server.url,
            "--key",
            server.key,
            "--levels",
            "1,2",
            "--seconds",
            "12",
            "--warmup-s",
            "4",
            "--target-s",
            "60",
            "--manifest",
            ROOT / "tests/data/manifest.jsonl",
            "--out",
            out,
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=600,
    )
    protocols = json.loads(out.read_text())["protocols"]
    assert set(protocols) == {"deepgram", "pulse", "twilio", "realtime"}
    for name, result in protocols.items():
        assert [r["streams"] for r in result["levels"]] == [1, 2] and result["streams_held"] == 2
        for row in result["levels"]:
            assert row["utterances"] >= row["streams"] and row["missing_finals"] == 0 and row["errors"] == []
            assert 0 < row["p50_s"] < 60 and row["wer"] < 0.5 and row["p50_vs_deepgram"] is not None
            if name == "realtime":  # it sends none; elsewhere interims are best effort (skipped while the engine is busy)
                assert row["interims_per_stream_min"] == 0
