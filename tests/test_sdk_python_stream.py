"""The Python SDK's live streams (`Client.stream`, `AsyncClient.stream`, `stream_file`) against the
ingress served on 127.0.0.1 with the fake engine (real VAD, real WebSocket handshakes and refusals),
then against the real server (e2e)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import smallest
from smallest import AsyncClient, Client, LiveMetadata, LiveResult

from .conftest import Server
from .helpers import JFK_FLAC, manifest, normalize
from .support import ISSUER, JFK_PCM, KEY, FakeEngine, make_ingress, served

SDK_SRC = Path(__file__).parent.parent / "clients" / "python" / "src"
EXAMPLE = Path(__file__).parent.parent / "examples" / "python_stream.py"
PCM = {"encoding": "linear16", "sample_rate": 16000}
SECOND = 32000  # bytes of 16 kHz 16-bit mono


@pytest.fixture
def url(engine: FakeEngine, tmp_path: Path) -> Iterator[str]:
    # Every pause ends an utterance (JFK's four phrases, four finals); a stream silent for 2 s is closed.
    ingress = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 2, "min_final_speech_s": 0}})
    with served(ingress) as address:
        yield address


def _wav(pcm: bytes = JFK_PCM, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def _finals(messages: list[Any]) -> list[LiveResult]:
    return [m for m in messages if isinstance(m, LiveResult) and m.is_final]


def test_interims_finals_and_metadata_in_order(url: str) -> None:
    with Client(api_url=url, license_key=KEY) as client:
        stream = client.stream(**PCM, interim_results=True, utterance_end_ms=1000)
        stream.send(JFK_PCM)  # 352 kB: sent as several messages
        stream.finish()
        messages = list(stream)
        assert stream.close() == []  # everything was read by the loop
    finals = _finals(messages)
    assert any(isinstance(m, LiveResult) and not m.is_final for m in messages)
    assert any(isinstance(m, smallest.UtteranceEnd) for m in messages)
    assert len(finals) >= 3 and all(f.text == "Hello world." and f.speech_final for f in finals[:3])
    assert [w.punctuated_word for w in finals[0].words] == ["Hello", "world."] and finals[0].confidence > 0
    assert [f.start for f in finals] == sorted(f.start for f in finals)
    metadata = messages[-1]
    assert isinstance(metadata, LiveMetadata) and metadata is stream.metadata
    assert metadata.duration == pytest.approx(11.0, abs=0.01) and metadata.sha256 == hashlib.sha256(JFK_PCM).hexdigest()
    assert {f.request_id for f in finals} == {metadata.request_id} and stream.finals == finals
    assert stream.transcript == " ".join(f.text for f in finals if f.text)


def test_close_returns_every_final_nobody_read(url: str) -> None:
    with Client(api_url=url, license_key=KEY).stream(**PCM) as stream:
        for at in range(0, len(JFK_PCM), 3200):
            stream.send(JFK_PCM[at : at + 3200])
        owed = stream.close()
    assert len(owed) >= 3 and owed == stream.finals and all(r.is_final for r in owed)
    assert stream.metadata is not None and stream.metadata.duration == pytest.approx(11.0, abs=0.01)
    with pytest.raises(smallest.SmallestError, match="closing"):
        stream.send(b"\x00\x00")


def test_finalize_makes_what_was_sent_final_and_the_stream_goes_on(url: str) -> None:
    with Client(api_url=url, license_key=KEY).stream(**PCM, endpointing=False) as stream:
        stream.send(JFK_PCM[: 2 * SECOND])  # "And so my fellow Americans", no pause to end it
        stream.finalize()
        first = next(iter(stream))
        assert isinstance(first, LiveResult) and first.is_final and first.from_finalize and first.text == "Hello world."
        stream.send(JFK_PCM[2 * SECOND :])
        rest = stream.close()
    assert rest and rest[-1].is_final and not rest[-1].from_finalize  # the close made the last one final
    assert stream.finals == [first, *rest]


def test_keepalive_holds_a_silent_stream_open(url: str) -> None:
    client = Client(api_url=url, license_key=KEY)
    kept = client.stream(**PCM, keepalive=0.5)
    kept.send(JFK_PCM[:SECOND])
    time.sleep(3)  # past the server's 2 s idle timeout
    kept.send(JFK_PCM[SECOND : 2 * SECOND])
    kept.close()
    assert kept.metadata is not None and kept.metadata.duration == pytest.approx(2.0, abs=0.01)

    silent = client.stream(**PCM, keepalive=None)
    silent.send(JFK_PCM[:SECOND])
    time.sleep(3)
    with pytest.raises(smallest.APIError) as raised:
        list(silent)
    assert raised.value.code == "STREAM_IDLE_TIMEOUT" and silent.metadata is not None  # answered, then closed


def _metered(client: Client) -> dict[str, Any]:
    """The key's usage once the server has metered its stream (just after the stream closed)."""
    for _ in range(100):
        if (usage := client.usage()["usage"])["requests_today"]:  # counted when the stream is metered
            return usage
        time.sleep(0.05)
    raise AssertionError("the stream was not metered within 5 s")


def _file_error(url: str, key: str | None, **kwargs: Any) -> smallest.SmallestError:
    with pytest.raises(smallest.SmallestError) as raised:
        Client(api_url=url, license_key=key or "stt1.not-a-key", **kwargs).transcribe_file(JFK_FLAC)
    return raised.value


def _stream_error(url: str, key: str | None, **kwargs: Any) -> smallest.SmallestError:
    with pytest.raises(smallest.SmallestError) as raised:
        Client(api_url=url, license_key=key or "stt1.not-a-key", **kwargs).stream(**PCM)
    return raised.value


@pytest.mark.parametrize(
    "key, error, code",
    [
        (None, smallest.InvalidLicenseError, "INVALID_LICENSE"),
        (ISSUER.issue(days=-1), smallest.LicenseExpiredError, "LICENSE_EXPIRED"),
    ],
)
def test_refused_handshakes_raise_what_file_calls_raise(url: str, key: str | None, error: type, code: str) -> None:
    on_stream, on_file = _stream_error(url, key), _file_error(url, key)
    assert type(on_stream) is type(on_file) is error
    assert isinstance(on_stream, smallest.APIError) and isinstance(on_file, smallest.APIError)
    assert (on_stream.status, on_stream.code) == (on_file.status, on_file.code) and on_stream.code == code
    if isinstance(on_stream, smallest.LicenseExpiredError):
        assert on_stream.expires_at and on_stream.expires_at == on_file.body["expires_at"]


def test_a_stream_past_its_quota_ends_with_the_finals_and_is_not_reopened(url: str) -> None:
    key = ISSUER.issue(audio_hours_per_day=4 / 3600)  # four seconds
    client = Client(api_url=url, license_key=key)
    stream = client.stream(**PCM)
    stream.send(JFK_PCM)
    with pytest.raises(smallest.QuotaExceededError) as raised:
        list(stream)
    assert raised.value.status == 403 and stream.finals and stream.finals[0].text == "Hello world."
    with pytest.raises(smallest.QuotaExceededError):  # the stream is over, for the sender too
        stream.send(JFK_PCM[:3200])
    usage = _metered(client)
    assert usage["requests_today"] == 1 and 4 <= usage["audio_seconds_today"] < 5  # one stream: never opened again
    on_stream, on_file = _stream_error(url, key), _file_error(url, key)
    assert type(on_stream) is type(on_file) is smallest.QuotaExceededError


def test_429_handshake_is_retried_after_retry_after_then_opens(url: str) -> None:
    key = ISSUER.issue(concurrent_requests=1)
    client = Client(api_url=url, license_key=key)
    holder = client.stream(**PCM)  # the key's one concurrent slot
    on_stream, on_file = _stream_error(url, key, max_retries=0), _file_error(url, key, max_retries=0)
    assert type(on_stream) is type(on_file) is smallest.RateLimitError
    assert isinstance(on_stream, smallest.RateLimitError) and on_stream.retry_after == 1

    threading.Timer(0.3, holder.close).start()  # the slot frees while the next stream waits to retry
    started = time.monotonic()
    with client.stream(**PCM) as stream:
        stream.send(JFK_PCM[: 2 * SECOND])
    assert time.monotonic() - started >= 0.95  # refused once, retried after the second it was told
    assert stream.finals and stream.metadata is not None


def test_refused_connections_are_retried_then_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nothing = f"http://127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(smallest.APIConnectionError):
        Client(api_url=nothing, license_key=KEY, max_retries=2, backoff=0.2).stream(**PCM)
    assert time.monotonic() - started >= 0.3  # two backoffs: at least half of 0.2 s, then half of 0.4 s


def test_list_and_boolean_options_reach_the_server(url: str, engine: FakeEngine) -> None:
    with Client(api_url=url, license_key=KEY).stream(**PCM, keyterm=["Kowloon", "Hong Kong"], punctuate=True) as stream:
        stream.send(JFK_PCM[: 3 * SECOND])
    assert engine.previous and set(engine.previous) == {"Kowloon, Hong Kong."}  # both terms, in the decoder's prompt


def test_async_stream_interims_finals_and_close(url: str) -> None:
    async def run() -> tuple[list[Any], list[LiveResult], smallest.AsyncLiveStream]:
        async with AsyncClient(api_url=url, license_key=KEY) as client:
            async with client.stream(**PCM, interim_results=True) as stream:
                await stream.send(JFK_PCM[: 4 * SECOND])
                await stream.finalize()
                messages = []
                async for message in stream:
                    messages.append(message)
                    if isinstance(message, LiveResult) and message.from_finalize:
                        break
                await stream.send(JFK_PCM[4 * SECOND :])
                owed = await stream.close()
            return messages, owed, stream

    messages, owed, stream = asyncio.run(run())
    assert any(isinstance(m, LiveResult) and not m.is_final for m in messages)
    assert _finals(messages) and _finals(messages)[-1].from_finalize and owed
    assert stream.finals == _finals(messages) + owed and stream.metadata is not None
    assert stream.metadata.duration == pytest.approx(11.0, abs=0.01)


def test_async_handshake_errors_and_retry(url: str) -> None:
    key = ISSUER.issue(concurrent_requests=1)

    async def run() -> float:
        with pytest.raises(smallest.InvalidLicenseError):
            await AsyncClient(api_url=url, license_key="stt1.not-a-key").stream(**PCM)
        client = AsyncClient(api_url=url, license_key=key)
        holder = await client.stream(**PCM)
        with pytest.raises(smallest.RateLimitError):
            await AsyncClient(api_url=url, license_key=key, max_retries=0).stream(**PCM)
        asyncio.get_running_loop().call_later(0.3, lambda: asyncio.ensure_future(holder.close()))
        started = time.monotonic()
        async with client.stream_file(_wav(JFK_PCM[: 2 * SECOND]), realtime=False) as stream:
            pass
        assert stream.finals and stream.metadata is not None
        return time.monotonic() - started

    assert asyncio.run(run()) >= 0.95


def test_stream_file_sends_a_wav_or_stated_raw_bytes_exactly(url: str, tmp_path: Path) -> None:
    path = tmp_path / "jfk.wav"
    path.write_bytes(_wav(JFK_PCM[: 2 * SECOND]))
    client = Client(api_url=url, license_key=KEY)
    started = time.monotonic()
    with client.stream_file(path) as paced:  # in real time by default
        pass
    assert time.monotonic() - started >= 1.9
    with client.stream_file(JFK_PCM, encoding="linear16", sample_rate=16000, realtime=False) as raw:
        pass
    for stream, pcm in ((paced, JFK_PCM[: 2 * SECOND]), (raw, JFK_PCM)):
        assert stream.metadata is not None and stream.metadata.sha256 == hashlib.sha256(pcm).hexdigest()
        assert stream.finals and stream.finals[0].text == "Hello world."


def test_stream_file_says_what_it_cannot_read() -> None:
    client = Client(api_url="http://127.0.0.1:9", license_key=KEY)  # refused before any connection
    with pytest.raises(smallest.SmallestError, match="encoding="):
        client.stream_file(JFK_PCM)
    with pytest.raises(smallest.SmallestError, match="realtime=False"):
        client.stream_file(JFK_FLAC, encoding="flac")
    eight_bit = io.BytesIO()
    with wave.open(eight_bit, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(bytes(800))
    with pytest.raises(smallest.SmallestError, match="16-bit"):
        client.stream_file(eight_bit.getvalue())


def test_microphone_without_sounddevice_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if not installed
    with pytest.raises(smallest.SmallestError, match=r"smallest-client\[microphone\]"):
        next(smallest.microphone())


def test_a_refusal_sent_as_the_only_message_is_the_same_error() -> None:
    """A server without the WebSocket denial extension accepts, sends the JSON error, and closes."""
    from smallest.live import parse

    refused = parse('{"error": "Invalid license key", "code": "INVALID_LICENSE", "reason": "missing"}')
    assert isinstance(refused, smallest.InvalidLicenseError) and refused.status == 401
    idle = parse('{"type": "Error", "variant": "STREAM_IDLE_TIMEOUT", "description": "No audio", "code": "STREAM_IDLE_TIMEOUT"}')
    assert isinstance(idle, smallest.APIError) and idle.status == 408 and idle.message == "No audio"
    assert parse('{"type": "Novel"}') is None and parse("not json") is None


def test_the_example_prints_interims_and_finals(url: str, tmp_path: Path) -> None:
    path = tmp_path / "jfk.wav"
    path.write_bytes(_wav(JFK_PCM[: 4 * SECOND]))
    env = {**os.environ, "LICENSE_KEY": KEY, "API_URL": url, "PYTHONPATH": str(SDK_SRC)}
    done = subprocess.run([sys.executable, str(EXAMPLE), str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("interim") for line in lines) and any(line.startswith("final") for line in lines)
    assert lines[-1].startswith("transcript: Hello world.")


@pytest.mark.e2e
def test_jfk_streamed_in_100_ms_frames_gives_the_file_transcript(server: Server) -> None:
    with Client(api_url=server.url, license_key=server.key) as client:
        expected = normalize(client.transcribe_file(JFK_FLAC).text)
        assert expected == normalize(manifest()["whisper_jfk.flac"]["text"])
        with client.stream(**PCM, interim_results=True) as stream:
            stream.send_all([JFK_PCM[at : at + 3200] for at in range(0, len(JFK_PCM), 3200)], 0.1)  # at the pace of speech
        assert normalize(stream.transcript) == expected and len(stream.finals) >= 2
        assert stream.metadata is not None and stream.metadata.duration == pytest.approx(11.0, abs=0.01)
    on_stream, on_file = _stream_error(server.url, None), _file_error(server.url, None)
    assert type(on_stream) is type(on_file) is smallest.InvalidLicenseError and on_stream.code == on_file.code
