"""Multichannel and diarized live streams through the real application (Ray Serve's proxy, the
ingress, vLLM with tiny.en, the engine's diarizer): a two-speaker phone call streamed with
`diarize=true`, and a stereo stream with a different clip on each channel."""

from __future__ import annotations

import json

import jiwer
import numpy as np
import pytest
import websockets.sync.client

from serve_app.pipeline.decode import decode

from .conftest import Server
from .helpers import DATA, JFK_FLAC, manifest, normalize

pytestmark = pytest.mark.e2e

CALL = "pyannote_sample.wav"  # Diane and Sheila on the phone, 30 s, one channel
OTHER = "sense_and_sensibility_01_austen_64kb-0870.wav"


def pcm(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2")


def live(server: Server, query: str, data: bytes) -> list[dict]:
    """`data` sent in 100 ms frames of 16 kHz linear16 (as many channels as the query says), then
    CloseStream: every message until the server closes the stream."""
    url = server.url.replace("http", "ws") + "/v1/listen?encoding=linear16&sample_rate=16000&" + query
    frame = 3200 * (2 if "channels=2" in query else 1)
    with websockets.sync.client.connect(url, additional_headers=server.auth) as ws:
        for at in range(0, len(data), frame):
            ws.send(data[at : at + frame])
        ws.send(json.dumps({"type": "CloseStream"}))
        messages = []
        for message in ws:  # until the server closes
            messages.append(json.loads(message))
    assert messages and messages[-1]["type"] == "Metadata", messages[-3:]
    return messages


def finals(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "Results" and m["is_final"] and m["channel"]["alternatives"][0]["words"]]


def test_a_diarized_phone_call_stream(server: Server) -> None:
    """The call streamed mono: the two women get different numbers, each kept across finals."""
    messages = live(server, "diarize=true&punctuate=false", pcm(decode((DATA / CALL).read_bytes(), 60)).tobytes())
    results = finals(messages)
    words = [w for r in results for w in r["channel"]["alternatives"][0]["words"]]
    assert {w["speaker"] for w in words} == {0, 1}
    said = [normalize(w["word"]) for w in words]

    def speaker_of(phrase: str) -> set[int]:
        n = len(phrase.split())
        at = next(i for i in range(len(said)) if said[i : i + n] == phrase.split())
        return {w["speaker"] for w in words[at : at + n]}

    diane, sheila = speaker_of("this is diane"), speaker_of("sheila")
    assert len(diane) == 1 and len(sheila) == 1 and diane != sheila
    per_final = [{w["speaker"] for w in r["channel"]["alternatives"][0]["words"]} for r in results]
    assert sum(1 for s in per_final if diane <= s) >= 2 and sum(1 for s in per_final if sheila <= s) >= 2  # kept across finals


def test_a_stereo_stream_gives_each_channel_its_own_clip(server: Server) -> None:
    left, right = pcm(decode(JFK_FLAC.read_bytes(), 60)), pcm(decode((DATA / OTHER).read_bytes(), 60))
    n = max(left.size, right.size)
    stereo = np.stack([np.concatenate((c, np.zeros(n - c.size, "<i2"))) for c in (left, right)], axis=1)
    messages = live(server, "channels=2&multichannel=true&interim_results=true", stereo.tobytes())
    assert messages[-1]["channels"] == 2 and messages[-1]["duration"] == pytest.approx(n / 16000, abs=0.05)
    texts = {
        c: normalize(
            " ".join(r["channel"]["alternatives"][0]["transcript"] for r in finals(messages) if r["channel_index"] == [c, 2])
        )
        for c in (0, 1)
    }
    assert texts[0] == normalize(manifest()["whisper_jfk.flac"]["text"])
    assert jiwer.wer(normalize(manifest()[OTHER]["text"]), texts[1]) <= 0.2, texts[1]
