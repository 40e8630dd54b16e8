"""The Python SDK's live streams with `reconnect=True` through a replaced replica (close 1012 after the
drain, serve_app/stream/drain.py) and a killed one (the connection dropped, 1006): the stream is
reopened on the next server, the audio the first did not take or answer is resent, and the caller
reads one stream. Two ingresses on the fake engine, on 127.0.0.1 behind `Switch`, which stands for
Serve's proxy routing new connections to the replacement replica."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import smallest
from smallest import AsyncClient, Client, LiveMetadata, LiveResult
from smallest.live import Replay, parse

from .support import JFK_PCM, JFK_S, KEY, FakeEngine, Stopping, make_ingress, served, until

PCM = {"encoding": "linear16", "sample_rate": 16000}
SECOND = 32000  # bytes of 16 kHz 16-bit mono
ARGS = {"stream": {"idle_timeout_s": 30, "min_final_speech_s": 0}}  # every pause ends an utterance


class Switch:
    """A TCP forwarder on 127.0.0.1: each new connection goes to `backend` (an http:// URL the test
    changes), as Serve's proxy sends new streams to a replacement replica; `cut()` drops the open
    connections without a close frame, as a killed replica's process does."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        for conn in self._open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._open.clear()

    def close(self) -> None:
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            backend = urlsplit(self.backend)
            try:
                upstream = socket.create_connection((backend.hostname or "127.0.0.1", backend.port or 80))
            except OSError:  # nothing there: the client's connection is dropped, as a dead replica's
                client.close()
                continue
            self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # the other side's orderly close, passed on
        except OSError:  # cut
            pass


@contextmanager
def switch(first: str) -> Iterator[Switch]:
    forwarder = Switch(first)
    try:
        yield forwarder
    finally:
        forwarder.close()


class Replica:
    """An ingress on the fake engine served on 127.0.0.1; `stopping` is its controller's answer."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.engine, self.stopping = FakeEngine(), Stopping()
        (tmp_path / name).mkdir()
        self.ingress = make_ingress(self.engine, tmp_path / name, ARGS)  # its own usage store: what it took
        self.ingress.drain.stopping, self.ingress.drain.every_s = self.stopping, 0.05


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[str, Replica, str, Replica]]:
    old, new = Replica(tmp_path, "old"), Replica(tmp_path, "new")
    with served(old.ingress) as old_url, served(new.ingress) as new_url:
        yield old_url, old, new_url, new


def _took(url: str, streams: int) -> float:
    """Seconds of audio the server at `url` metered, once it has metered `streams` streams."""
    client = Client(api_url=url, license_key=KEY)
    until(lambda: client.usage()["usage"]["requests_today"] >= streams, 5)
    return float(client.usage()["usage"]["audio_seconds_today"])


def _reference(url: str) -> list[tuple[float, float]]:
    """The spoken finals' (start, end) of the clip streamed without a break."""
    with Client(api_url=url, license_key=KEY).stream(**PCM) as stream:
        stream.send(JFK_PCM)
    return [(f.start, f.start + f.duration) for f in stream.finals if f.text]


def _one_stream(messages: list[Any], reference: list[tuple[float, float]]) -> list[LiveResult]:
    """Asserts that `messages` read as one uninterrupted stream of the clip: each phrase's final once,
    where the unbroken stream has it, none overlapping, one Metadata at the end. The finals."""
    finals = [m for m in messages if isinstance(m, LiveResult) and m.is_final]
    spoken = [f for f in finals if f.text]
    assert [f.text for f in spoken] == ["Hello world."] * len(reference)  # every phrase answered once, none twice
    for final, (start, end) in zip(spoken, reference):
        assert final.start == pytest.approx(start, abs=0.1) and final.start + final.duration == pytest.approx(end, abs=0.1)
    for before, after in zip(finals, finals[1:]):  # one timeline, in order
        assert after.start >= before.start + before.duration - 0.01
    metadata = [m for m in messages if isinstance(m, LiveMetadata)]
    assert len(metadata) == 1 and messages[-1] is metadata[0]  # the first connection's Metadata is not the stream's end
    assert metadata[0].duration == pytest.approx(JFK_S, abs=0.001)  # where the audio ends on the stream's timeline
    return finals


def test_a_drained_stream_reopens_on_the_new_replica_and_resends_what_was_not_taken(
    replicas: tuple[str, Replica, str, Replica],
) -> None:
    old_url, old, new_url, new = replicas
    reference = _reference(new_url)
    cut = 48 * 3200  # 4.8 s: in the pause after JFK's second phrase
    with switch(old_url) as proxy, Client(api_url=proxy.url, license_key=KEY) as client:
        stream = client.stream(**PCM, reconnect=True)
        messages: list[Any] = []
        reader = threading.Thread(target=lambda: messages.extend(stream))
        reader.start()
        stream.send(JFK_PCM[:cut])
        until(lambda: len(old.engine.calls) >= 1)
        time.sleep(0.3)  # the old replica has read all 4.8 s
        proxy.backend = new_url  # Serve routes new streams to the replacement
        old.stopping.now.set()
        until(lambda: old.ingress.drain.draining)
        stream.send(JFK_PCM[cut:])  # after the drain began: not taken by the old replica
        stream.finish()
        reader.join(30)
        assert not reader.is_alive()  # the iteration went on after the 1012 and ended with the stream
    assert stream.reconnects == 1 and stream.dropped_s == 0
    finals = _one_stream(messages, reference)
    took_old, took_new = _took(old_url, 1), _took(new_url, 2) - JFK_S  # the new one also took the reference stream
    assert took_old == pytest.approx(cut / SECOND, abs=0.001)
    assert took_old + took_new == pytest.approx(JFK_S, abs=0.001)  # every byte taken once
    assert stream.metadata is not None and stream.metadata.sha256 == hashlib.sha256(JFK_PCM[cut:]).hexdigest()
    assert len({f.request_id for f in finals}) == 2 and old.stopping.asked and not new.stopping.now.is_set()


def test_a_dropped_connection_reopens_and_resends_what_no_final_answered(
    replicas: tuple[str, Replica, str, Replica],
) -> None:
    """Through the asyncio client: the old replica dies mid-phrase (no close frame, no Metadata)."""
    old_url, old, new_url, new = replicas
    reference = _reference(new_url)

    async def run() -> tuple[list[Any], smallest.AsyncLiveStream, float]:
        with switch(old_url) as proxy:
            async with AsyncClient(api_url=proxy.url, license_key=KEY) as client:
                stream = await client.stream(**PCM, reconnect=True)
                messages: list[Any] = []

                async def read() -> None:
                    async for message in stream:
                        messages.append(message)

                reader = asyncio.create_task(read())
                await stream.send(JFK_PCM[: 6 * SECOND])  # two phrases and part of the third
                while len(stream.finals) < 2:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                answered = stream.finals[-1].start + stream.finals[-1].duration
                proxy.backend = new_url
                proxy.cut()
                await stream.send(JFK_PCM[6 * SECOND :])
                await stream.finish()
                await asyncio.wait_for(reader, 30)
                return messages, stream, answered

    messages, stream, answered = asyncio.run(run())
    assert stream.reconnects == 1 and 4.5 < answered < 5.0  # the second phrase's end
    finals = _one_stream(messages, reference)
    resent_from = round(answered * SECOND / 2) * 2
    assert stream.metadata is not None and stream.metadata.sha256 == hashlib.sha256(JFK_PCM[resent_from:]).hexdigest()
    assert _took(new_url, 2) - JFK_S == pytest.approx(JFK_S - resent_from / SECOND, abs=0.001)
    assert [f.request_id for f in finals[:2]] == [finals[0].request_id] * 2 != [finals[-1].request_id] * 2


def test_a_stream_that_cannot_be_reopened_ends_with_the_reason_and_keeps_its_finals(
    replicas: tuple[str, Replica, str, Replica],
) -> None:
    old_url, *_ = replicas
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        nothing = f"http://127.0.0.1:{s.getsockname()[1]}"
    with switch(old_url) as proxy:
        stream = Client(api_url=proxy.url, license_key=KEY, max_retries=1, backoff=0.05).stream(**PCM, reconnect=True)
        stream.send(JFK_PCM[: 3 * SECOND])
        until(lambda: len(stream.finals) >= 1)
        proxy.backend = nothing
        proxy.cut()
        with pytest.raises(smallest.APIConnectionError, match="abnormally.*could not be reopened"):
            list(stream)
    assert stream.reconnects == 0 and stream.finals[0].text == "Hello world."
    with pytest.raises(smallest.APIConnectionError):  # the stream is over, for the sender too
        stream.send(JFK_PCM[:3200])


@pytest.mark.parametrize(
    "options, match",
    [
        ({"encoding": "opus"}, "encoding=opus cannot be"),
        ({"encoding": "flac"}, "encoding=flac cannot be"),
        ({}, "container stream"),
        ({"encoding": "mulaw"}, "needs sample_rate"),
    ],
)
def test_reconnect_needs_raw_audio_and_says_so_at_open(options: dict[str, Any], match: str) -> None:
    client = Client(api_url="http://127.0.0.1:9", license_key=KEY)  # refused before any connection
    with pytest.raises(ValueError, match=match):
        client.stream(reconnect=True, **options)
    with pytest.raises(ValueError, match=match):
        AsyncClient(api_url="http://127.0.0.1:9", license_key=KEY).stream(reconnect=True, **options)


def test_stream_file_of_coded_audio_refuses_reconnect() -> None:
    client = Client(api_url="http://127.0.0.1:9", license_key=KEY)
    with pytest.raises(ValueError, match="encoding=flac"):
        client.stream_file(b"fLaC", encoding="flac", realtime=False, reconnect=True)
    with pytest.raises(ValueError, match="encoding=flac"):
        AsyncClient(api_url="http://127.0.0.1:9", license_key=KEY).stream_file(
            b"fLaC", encoding="flac", realtime=False, reconnect=True
        )


def _final(start: float, duration: float, channel: int = 0, channels: int = 1) -> str:
    return json.dumps(
        {"type": "Results", "is_final": True, "start": start, "duration": duration, "channel_index": [channel, channels]}
    )


def test_the_resend_buffer_is_bounded_and_counts_what_it_dropped() -> None:
    replay = Replay(SECOND, 2, max_resend_s=1.0, give_up_after=3)
    for at in range(0, 3 * SECOND, 3200):
        replay.sent(JFK_PCM[at : at + 3200])
    assert b"".join(replay.restart()) == JFK_PCM[2 * SECOND : 3 * SECOND]  # the last second only, as kept
    assert replay.dropped_s == pytest.approx(2.0) and replay.shift == pytest.approx(2.0) and replay.reconnects == 1
    replay.sent(JFK_PCM[3 * SECOND : 7 * SECOND // 2])  # 2.0-3.5 s kept: over the bound, 2.0-2.5 s dropped
    replay.received(parse(_final(0.0, 0.5), replay.shift))  # on the new connection: 2.0-2.5 s of the stream, answered
    assert b"".join(replay.restart()) == JFK_PCM[5 * SECOND // 2 : 7 * SECOND // 2] and replay.shift == pytest.approx(2.5)
    assert replay.dropped_s == pytest.approx(2.0)  # what was dropped had been answered: nothing more lost
    replay.sent(JFK_PCM[7 * SECOND // 2 : 5 * SECOND])  # one message of 1.5 s; 2.5-5.0 s unanswered, 4.0-5.0 s kept
    assert b"".join(replay.restart()) == JFK_PCM[4 * SECOND : 5 * SECOND] and replay.dropped_s == pytest.approx(3.5)
    assert replay.shift == pytest.approx(4.0) and replay.reconnects == 3


def test_a_two_channel_stream_resends_from_the_channel_answered_least() -> None:
    replay = Replay(2 * SECOND, 4, max_resend_s=30, give_up_after=3)
    replay.sent(bytes(8 * SECOND))  # 4 s of stereo
    replay.received(parse(_final(0.0, 3.0, channel=1, channels=2), 0.0))
    assert len(b"".join(replay.restart())) == 8 * SECOND  # channel 0 has no final yet: all of it
    replay.received(parse(_final(0.0, 1.0, channel=0, channels=2), replay.shift))
    replay.received(parse(_final(0.0, 3.0, channel=1, channels=2), replay.shift))
    assert len(b"".join(replay.restart())) == 6 * SECOND and replay.shift == pytest.approx(1.0)


def test_results_after_a_reopening_are_shifted_onto_the_first_timeline() -> None:
    word = {"word": "hello", "start": 0.5, "end": 0.9}
    body = {"type": "Results", "is_final": True, "start": 0.25, "duration": 1.0, "channel": {"alternatives": [{"words": [word]}]}}
    result = parse(json.dumps(body), 4.8)
    assert isinstance(result, LiveResult) and result.start == pytest.approx(5.05) and result.duration == 1.0
    assert (result.words[0].start, result.words[0].end) == (pytest.approx(5.3), pytest.approx(5.7))
    assert result.raw["start"] == pytest.approx(5.05)  # `raw` says what the fields say
    metadata = parse('{"type": "Metadata", "duration": 6.2, "request_id": "r"}', 4.8)
    assert isinstance(metadata, LiveMetadata) and metadata.duration == pytest.approx(11.0)
    ended = parse('{"type": "UtteranceEnd", "last_word_end": 1.0}', 4.8)
    assert isinstance(ended, smallest.UtteranceEnd) and ended.last_word_end == pytest.approx(5.8)


def test_after_a_restart_the_audio_past_what_the_server_took_is_resent() -> None:
    """1012: the Metadata says how much the server took; it sent the finals of all of it (the silence
    after the last final has none), so what follows is resent, not what follows the last final."""
    replay = Replay(SECOND, 2, max_resend_s=30, give_up_after=1)
    replay.sent(JFK_PCM[: 3 * SECOND])
    assert replay.received(parse(_final(0.0, 1.0), 0.0)) is not None
    assert replay.received(parse('{"type": "Metadata", "duration": 2.0}', 0.0)) is None  # held: the close decides
    assert b"".join(replay.restart()) == JFK_PCM[2 * SECOND : 3 * SECOND] and replay.held() is None
    assert not replay.gives_up()
    replay.restart()  # closed again with nothing answered, twice: more than give_up_after
    replay.restart()
    assert replay.gives_up() and replay.shift == pytest.approx(2.0)
