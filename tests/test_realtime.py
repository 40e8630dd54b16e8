"""OpenAI realtime transcription sessions, fast: `WS /v1/realtime?intent=transcription` through the
ingress with a fake engine (real Silero VAD), in the GA shape and the beta's, by raw events and by the
`openai` SDK's realtime client (against a local uvicorn); and the events a client may get wrong. The
real engine's transcript through the SDK is in test_stream_e2e.py."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient, WebSocketDenialResponse

from serve_app.api.realtime import Realtime
from serve_app.errors import InvalidRequest
from serve_app.stream.protocol import CLEAR, FINALIZE, Context

from .helpers import free_port
from .support import ISSUER, KEY, FakeEngine, jfk_mulaw, jfk_pcm24, make_ingress, realtime_appends, received, settled_usage

URL = "/v1/realtime?intent=transcription"
BEARER = {"Authorization": f"Bearer {KEY}"}
PCM24 = jfk_pcm24()
COMPLETED = "conversation.item.input_audio_transcription.completed"
GA_UPDATE = {
    "type": "session.update",
    "session": {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "JFK's inaugural address."},
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500},
                "noise_reduction": None,
            }
        },
    },
}
BARRIER = json.dumps({"type": "session.update", "session": {"type": "transcription"}})  # changes nothing


def until(ws: Any, kind: str) -> list[dict]:
    """Every event up to and including the first of type `kind`."""
    events = []
    while True:
        events.append(ws.receive_json())
        if events[-1]["type"] == kind:
            return events


def items(events: list[dict]) -> dict[str, list[str]]:
    """item_id -> the types of the events about it, in order."""
    out: dict[str, list[str]] = {}
    for e in events:
        if "item_id" in e:
            out.setdefault(e["item_id"], []).append(e["type"])
    return out


def test_a_ga_session_commits_an_item_at_each_pause(client: TestClient, engine: FakeEngine) -> None:
    with client.websocket_connect(URL, headers=BEARER) as ws:
        assert ws.accepted_subprotocol is None
        created = ws.receive_json()
        session = created["session"]
        assert created["type"] == "session.created" and created["event_id"].startswith("event_")
        assert session["type"] == "transcription" and session["object"] == "realtime.transcription_session"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
        ws.send_text(json.dumps(GA_UPDATE))
        updated = ws.receive_json()
        assert updated["type"] == "session.updated" and updated["session"]["audio"]["input"]["transcription"] == {
            "model": "gpt-4o-transcribe",
            "language": "en",
            "prompt": "JFK's inaugural address.",
        }
        for append in realtime_appends(PCM24):
            ws.send_text(append)
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        ws.send_text(BARRIER)  # answered after the results of everything before it
        events = until(ws, "session.updated")
    assert not [e for e in events if e["type"] == "error"]
    by_item = items(events)
    assert len(by_item) >= 3
    paused = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "input_audio_buffer.committed"]
    transcribed = ["conversation.item.input_audio_transcription.delta", COMPLETED]
    for kinds in list(by_item.values())[:-1]:
        assert kinds == paused + transcribed  # the pauses commit
    assert list(by_item.values())[-1][-3:] == ["input_audio_buffer.committed", *transcribed]  # the commit: no speech_stopped
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    assert [c["previous_item_id"] for c in committed] == [None, *[c["item_id"] for c in committed[:-1]]]
    completed = [e for e in events if e["type"] == COMPLETED]
    assert all(
        c["transcript"] == "Hello world." and c["content_index"] == 0 and c["usage"]["type"] == "duration" for c in completed
    )
    deltas = [e["delta"] for e in events if e["type"].endswith(".delta")]
    assert deltas == [c["transcript"] for c in completed]  # whisper-1's way: one delta, the whole text
    assert set(engine.previous) == {"JFK's inaugural address."}  # the prompt is the decoder's


def test_a_beta_session_with_mulaw_and_no_turn_detection(client: TestClient, engine: FakeEngine) -> None:
    with client.websocket_connect(URL, headers={**BEARER, "OpenAI-Beta": "realtime=v1"}) as ws:
        created = ws.receive_json()
        assert created["type"] == "transcription_session.created" and created["session"]["input_audio_format"] == "pcm16"
        update = {
            "type": "transcription_session.update",
            "session": {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": None,
                "input_audio_noise_reduction": None,
                "include": [],
            },
        }
        ws.send_text(json.dumps(update))
        updated = ws.receive_json()
        assert updated["type"] == "transcription_session.updated"
        assert updated["session"]["input_audio_format"] == "g711_ulaw" and updated["session"]["turn_detection"] is None
        for append in realtime_appends(jfk_mulaw(), piece=1600):
            ws.send_text(append)
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        events = until(ws, COMPLETED)
    assert [e["type"] for e in events] == [
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        COMPLETED,
    ]
    assert events[-1]["usage"]["seconds"] == pytest.approx(11.0, abs=0.1)  # the client decides: one item, all of it
    assert len(engine.calls) == 1


def test_browser_subprotocols_carry_the_key(client: TestClient) -> None:
    offered = ["realtime", f"openai-insecure-api-key.{KEY}", "openai-beta.realtime-v1"]
    with client.websocket_connect(URL, subprotocols=offered) as ws:
        assert ws.accepted_subprotocol == "realtime"  # never the key's
        created = ws.receive_json()
    assert created["type"] == "transcription_session.created" and KEY not in json.dumps(created)
    # A browser cannot read a refused handshake: OpenAI's error event, then close 1008 with the code.
    with client.websocket_connect(URL, subprotocols=["realtime", "openai-insecure-api-key.nope"]) as ws:
        messages, code = received(ws)
    assert code == 1008 and [(m["type"], m["error"]["code"]) for m in messages] == [("error", "INVALID_LICENSE")]
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(URL, headers={"Authorization": "Bearer nope"}):
            pass
    assert denied.value.status_code == 401 and denied.value.json()["code"] == "INVALID_LICENSE"


def test_only_transcription_sessions_are_served(client: TestClient) -> None:
    for url in ("/v1/realtime", "/v1/realtime?model=gpt-realtime"):
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect(url, headers=BEARER):
                pass
        assert denied.value.status_code == 400 and denied.value.json()["parameter"] == "intent"


def test_clear_drops_the_open_item(client: TestClient, engine: FakeEngine) -> None:
    with client.websocket_connect(URL, headers=BEARER) as ws:
        ws.receive_json()
        ws.send_text(
            json.dumps({**GA_UPDATE, "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}}})
        )
        ws.receive_json()
        half = len(PCM24) // 2 // 2 * 2
        for append in realtime_appends(PCM24[:half]):
            ws.send_text(append)
        ws.send_text(json.dumps({"type": "input_audio_buffer.clear"}))
        for append in realtime_appends(PCM24[half:]):
            ws.send_text(append)
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        events = until(ws, COMPLETED)
    assert [e["type"] for e in events] == [
        "input_audio_buffer.cleared",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        COMPLETED,
    ]
    assert events[1]["item_id"].endswith("_1") and events[1]["previous_item_id"] is None  # item 0 was cleared, never committed
    assert len(engine.calls) == 1 and engine.calls[0][0] < 0.6 * 11 * 16000  # only the second half was decoded


def error_of(ws: Any, message: Any) -> dict:
    ws.send_text(message if isinstance(message, str) else json.dumps(message))
    event = ws.receive_json()
    assert event["type"] == "error" and event["error"]["type"] == "invalid_request_error", event
    assert event["error"]["code"] == "INVALID_REQUEST" and event["error"]["message"] and event["error"]["event_id"] is None
    return event["error"]


def update(**input_: Any) -> dict:
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": input_}}}


@pytest.mark.parametrize(
    "message, param",
    [
        ("not json", "type"),
        ("[1, 2]", "type"),
        ({"type": "response.create"}, "type"),
        ({"type": "conversation.item.create", "item": {}}, "type"),
        ({"type": "input_audio_buffer.commit"}, None),  # nothing appended
        ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "audio"),
        ({"type": "input_audio_buffer.append"}, "audio"),
        ({"type": "session.update", "session": "fast"}, "session"),
        ({"type": "session.update", "session": {"type": "realtime"}}, "session.type"),
        ({"type": "session.update", "session": {"type": "transcription", "instructions": "x"}}, "session"),
        ({"type": "session.update", "session": {"include": ["item.input_audio_transcription.logprobs"]}}, "session.include"),
        ({"type": "session.update", "session": {"audio": {"output": {}}}}, "session.audio"),
        (update(format={"type": "audio/mp3"}), "session.audio.input.format"),
        (update(format={"type": "audio/pcmu", "rate": 16000}), "session.audio.input.format"),
        (update(turn_detection={"type": "semantic_vad"}), "session.audio.input.turn_detection.type"),
        (update(turn_detection={"type": "server_vad", "threshold": 0.7}), "session.audio.input.turn_detection.threshold"),
        (update(turn_detection={"prefix_padding_ms": 500}), "session.audio.input.turn_detection.prefix_padding_ms"),
        (update(turn_detection={"silence_duration_ms": "long"}), "session.audio.input.turn_detection.silence_duration_ms"),
        (update(noise_reduction={"type": "near_field"}), "session.audio.input.noise_reduction"),
        (update(transcription=None), "session.audio.input.transcription"),
        (update(transcription={"language": "multi"}), "session.audio.input.transcription.language"),
        (update(transcription={"language": "de"}), "session.audio.input.transcription.language"),  # the model is English-only
        (update(transcription={"languages": ["en", "de"]}), "session.audio.input.transcription.languages"),
        (update(transcription={"prompt": "x" * 501}), "session.audio.input.transcription.prompt"),
        (update(transcription={"keywords": ["x" * 65]}), "session.audio.input.transcription.keywords"),
        (update(transcription={"delay": "low"}), "session.audio.input.transcription.delay"),
        ({"type": "transcription_session.update", "session": {"input_audio_format": "mp3"}}, "session.input_audio_format"),
        (
            {
                "type": "session.update",
                "session": {"input_audio_format": "pcm16", "audio": {"input": {"format": {"type": "audio/pcm"}}}},
            },
            "session.audio.input.format",
        ),
    ],
)
def test_bad_events_are_errors_and_the_session_goes_on(client: TestClient, message: Any, param: str | None) -> None:
    with client.websocket_connect(URL, headers=BEARER) as ws:
        created = ws.receive_json()
        assert error_of(ws, message)["param"] == param
        ws.send_text(BARRIER)
        assert ws.receive_json()["session"] == created["session"]  # a refused update changed nothing
        for append in realtime_appends(PCM24[: 3 * 48000]):
            ws.send_text(append)
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        assert COMPLETED in [e["type"] for e in until(ws, COMPLETED)]


CANARY = "c4n4ry<b>x</b>"


def test_errors_never_say_back_what_was_sent(client: TestClient) -> None:
    with client.websocket_connect(URL, headers=BEARER) as ws:
        ws.receive_json()
        for message in (
            f"not json {CANARY}",
            {"type": CANARY, "event_id": CANARY},
            {"type": "session.update", "session": {CANARY: 1}},
            update(transcription={"language": CANARY}),
            update(format={"type": CANARY}),
        ):
            assert "c4n4ry" not in json.dumps(error_of(ws, message))


def test_after_audio_an_update_may_not_change_the_stream(client: TestClient) -> None:
    with client.websocket_connect(URL, headers=BEARER) as ws:
        ws.receive_json()
        ws.send_text(realtime_appends(PCM24[:9600])[0])
        error = error_of(ws, update(format={"type": "audio/pcmu"}))
        assert error["param"] == "session"
        ws.send_text(json.dumps(update(transcription={"model": "whisper-1"})))  # the stream does not depend on it
        updated = ws.receive_json()
        assert (
            updated["type"] == "session.updated" and updated["session"]["audio"]["input"]["transcription"]["model"] == "whisper-1"
        )
        ws.send_bytes(b"\x00" * 100)  # no binary frames: audio goes inside append events
        assert ws.receive_json()["type"] == "error"


def test_an_idle_session_is_closed_with_an_error_event(client: TestClient) -> None:
    with client.websocket_connect(URL, headers=BEARER) as ws:
        ws.receive_json()
        messages, code = received(ws)
    assert code == 1011 and messages[-1]["type"] == "error" and messages[-1]["error"]["code"] == "STREAM_IDLE_TIMEOUT"
    assert messages[-1]["error"]["type"] == "invalid_request_error"  # a 408: the client's silence


def test_metered_like_any_stream(client: TestClient) -> None:
    key = ISSUER.issue()
    with client.websocket_connect(URL, headers={"Authorization": f"Bearer {key}"}) as ws:
        ws.receive_json()
        for append in realtime_appends(PCM24):
            ws.send_text(append)
        ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
        ws.send_text(BARRIER)
        until(ws, "session.updated")
    used = settled_usage(client, {"Authorization": f"Token {key}"})["audio_seconds_today"]
    assert used == pytest.approx(11.0, abs=0.05)


def test_the_dialect_reads_both_shapes() -> None:
    dialect = Realtime()
    ctx = Context("0123456789abcdef0123", "tiny.en", dialect.parse({"intent": "transcription"}, 0.3), ("en",))
    dialect.greeting(ctx, {}, [])
    dialect.opening(json.dumps(GA_UPDATE), ctx)
    options = dialect.options(dialect.config)
    assert (options.encoding, options.sample_rate, options.endpoint_s, options.vad_events) == ("linear16", 24000, 0.5, True)
    dialect.opening(
        json.dumps(
            {
                "type": "transcription_session.update",
                "session": {"input_audio_format": "g711_alaw", "turn_detection": {"silence_duration_ms": 20}},
            }
        ),
        ctx,
    )
    options = dialect.options(dialect.config)
    assert (options.encoding, options.sample_rate, options.endpoint_s) == ("alaw", 8000, 0.1)  # raised to the floor
    assert options.text.prompt == "JFK's inaugural address."  # an update keeps what it does not send
    begun = dialect.opening(realtime_appends(b"\x00\x01")[0], ctx)
    assert begun.first and begun.options == options
    assert dialect.incoming(realtime_appends(b"\x00\x01")[0]).audio == b"\x00\x01"
    assert dialect.incoming('{"type": "input_audio_buffer.commit"}').control == FINALIZE
    with pytest.raises(InvalidRequest):
        dialect.incoming('{"type": "input_audio_buffer.commit"}')  # nothing appended since
    cleared = dialect.incoming('{"type": "input_audio_buffer.clear"}')
    assert cleared.control == CLEAR and cleared.reply is not None and cleared.reply["type"] == "input_audio_buffer.cleared"


# --- the openai SDK's realtime client -------------------------------------------------------------


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` on a local uvicorn (the SDK opens a real WebSocket): its http URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_openai_sdk_realtime_client(engine: FakeEngine, tmp_path: Any) -> None:
    """`client.realtime.connect(extra_query={"intent": "transcription"})` on a base_url of this server."""
    from openai import OpenAI

    app = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 5, "min_final_speech_s": 0}}).__serve_build_asgi_app__()
    with serving(app) as url:
        client = OpenAI(api_key=KEY, base_url=url + "/v1")
        with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
            created = connection.recv()
            assert created.type == "session.created" and created.session.type == "transcription"
            connection.session.update(session=GA_UPDATE["session"])  # type: ignore[arg-type]
            assert connection.recv().type == "session.updated"
            for at in range(0, len(PCM24), 4800):
                connection.input_audio_buffer.append(audio=base64.b64encode(PCM24[at : at + 4800]).decode())
            connection.input_audio_buffer.commit()
            connection.session.update(session={"type": "transcription"})
            events = []
            for event in connection:
                events.append(event)
                if event.type == "session.updated":
                    break
    completed = [e for e in events if e.type == COMPLETED]
    assert len(completed) >= 3 and all(e.transcript == "Hello world." for e in completed)
    assert not [e for e in events if e.type == "error"]
