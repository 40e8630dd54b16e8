"""Live streams on a replica that Serve stops (serve_app/stream/drain.py): every final of the audio
the stream took, its Metadata, then close 1012; new streams refused with 503. The controller's
answer is faked here (the `stopping` probe); tools/cluster/resilience.py stops real replicas."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

import smallest

from .support import AUTH, FRAME, JFK_PCM, JFK_S, KEY, FakeEngine, Stopping, make_ingress, received, served, until

DG = "/v1/listen?encoding=linear16&sample_rate=16000"


@pytest.fixture
def stopping() -> Stopping:
    return Stopping()


@pytest.fixture
def client(engine: FakeEngine, stopping: Stopping, tmp_path: Any) -> Iterator[TestClient]:
    ingress = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 30, "min_final_speech_s": 0}})
    ingress.drain.stopping, ingress.drain.every_s = stopping, 0.05
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        yield c


@pytest.fixture
def url(engine: FakeEngine, stopping: Stopping, tmp_path: Any) -> Iterator[str]:
    ingress = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 30, "min_final_speech_s": 0}})
    ingress.drain.stopping, ingress.drain.every_s = stopping, 0.05
    with served(ingress) as address:
        yield address


def test_a_stopped_replica_answers_what_it_took_then_closes_1012(
    client: TestClient, engine: FakeEngine, stopping: Stopping
) -> None:
    assert stopping.asked == 0  # no stream: the controller is not asked
    with client.websocket_connect(DG, headers=AUTH) as ws:
        for at in range(0, len(JFK_PCM), FRAME):
            ws.send_bytes(JFK_PCM[at : at + FRAME])
        until(lambda: len(engine.calls) >= 2)  # some finals decoded, the rest of the clip in the pipeline
        time.sleep(0.2)  # the receiver, 10 s of audio ahead at most, has read the whole clip
        began = time.monotonic()
        stopping.now.set()
        messages, code = received(ws)
    assert code == 1012 and time.monotonic() - began < 5  # not held open until the idle timeout
    assert not [m for m in messages if m["type"] == "Error"]  # nothing was lost: no error to report
    metadata = [m for m in messages if m["type"] == "Metadata"]
    assert len(metadata) == 1 and metadata[0]["duration"] == pytest.approx(JFK_S, abs=0.1)  # the whole clip was taken
    finals = [m for m in messages if m["type"] == "Results" and m["is_final"]]
    spoken = [f for f in finals if f["channel"]["alternatives"][0]["transcript"] == "Hello world."]
    assert len(spoken) == len(engine.calls) == 4  # JFK's four phrases, each decoded and its final sent
    for before, after in zip(finals, finals[1:]):  # in stream order, none overlapping
        assert after["start"] >= before["start"] + before["duration"] - 0.01
    assert finals[-1]["start"] + finals[-1]["duration"] == pytest.approx(metadata[0]["duration"], abs=0.01)  # up to its end


def test_new_streams_are_refused_while_it_drains(client: TestClient, stopping: Stopping) -> None:
    with client.websocket_connect(DG, headers=AUTH) as ws:
        ws.send_bytes(JFK_PCM[: 10 * FRAME])
        stopping.now.set()
        assert received(ws)[1] == 1012
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(DG, headers=AUTH):
            pass
    assert denied.value.status_code == 503 and denied.value.headers["retry-after"] == "1"
    assert denied.value.json()["code"] == "SERVER_RESTARTING"


def test_streams_go_on_while_the_replica_is_not_stopped(client: TestClient, stopping: Stopping) -> None:
    with client.websocket_connect(DG, headers=AUTH) as ws:
        ws.send_bytes(JFK_PCM[: 10 * FRAME])
        until(lambda: stopping.asked >= 3)  # asked while the stream is open, and told no
        ws.send_text('{"type": "CloseStream"}')
        assert received(ws)[1] == 1000
    asked = stopping.asked
    time.sleep(0.3)
    assert stopping.asked == asked  # no stream left: no more questions


def test_the_python_sdk_keeps_the_finals_and_names_the_restart(url: str, engine: FakeEngine, stopping: Stopping) -> None:
    """Through a real socket (uvicorn, as Serve's proxy): without `reconnect=True` the SDK
    raises, naming 1012, with every final and the Metadata kept on the stream."""
    with smallest.Client(api_url=url, license_key=KEY) as client:
        stream = client.stream(encoding="linear16", sample_rate=16000)
        stream.send(JFK_PCM)
        until(lambda: len(engine.calls) >= 2)
        time.sleep(0.2)
        stopping.now.set()
        with pytest.raises(smallest.APIConnectionError, match="1012: SERVER_RESTARTING"):
            list(stream)
    spoken = [f for f in stream.finals if f.text]  # the last, a tail of 0.1 s, is answered empty
    assert len(spoken) == len(engine.calls) == 4 and all(f.text == "Hello world." for f in spoken)
    assert stream.metadata is not None and stream.metadata.duration == pytest.approx(JFK_S, abs=0.1)
    assert stream.finals[-1].start + stream.finals[-1].duration == pytest.approx(stream.metadata.duration, abs=0.01)
