"""Twilio Media Streams, fast: `WS /v1/twilio` through the ingress with a fake engine (real Silero VAD,
real mu-law decoding of the JFK clip), sent as Twilio sends it (`connected`, `start`, 20 ms `media`
messages, `stop`), the key in `start.customParameters`; and what Twilio or a stray client may get
wrong. The real engine's transcript of a paced call is in test_stream_e2e.py."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from serve_app.api.twilio import Twilio
from serve_app.errors import InvalidRequest
from serve_app.stream.protocol import CLOSE, Context

from .helpers import FileServer, serving
from .support import (
    AUTH,
    ISSUER,
    KEY,
    TWILIO_CONNECTED,
    TWILIO_STOP,
    FakeEngine,
    Records,
    jfk_mulaw,
    received,
    serve_log,
    settled_usage,
    twilio_media,
    twilio_start,
)

MULAW = jfk_mulaw()
URL = "/v1/twilio"


def call(
    client: TestClient,
    custom: dict[str, str] | None = None,
    audio: bytes = MULAW,
    headers: dict[str, str] | None = None,
    before: tuple[str, ...] = (),
    tracks: tuple[str, ...] = ("inbound",),
    extra: list[str] | None = None,
) -> tuple[list[dict], int]:
    """A whole call as Twilio streams it: connected, start (the key in customParameters unless
    `headers` carry it), `before` messages, the audio's media messages (`extra` interleaved), stop."""
    custom = {"key": KEY, **(custom or {})} if headers is None else custom
    with client.websocket_connect(URL, headers=headers or {}) as ws:
        ws.send_text(TWILIO_CONNECTED)
        ws.send_text(twilio_start(custom, tracks))
        for message in before:
            ws.send_text(message)
        for k, message in enumerate(twilio_media(audio)):
            ws.send_text(message)
            if extra and k < len(extra):
                ws.send_text(extra[k])
        ws.send_text(TWILIO_STOP)
        return received(ws)


def finals(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["event"] == "transcript" and m["is_final"]]


def test_a_call_is_transcribed_and_stop_ends_it_after_its_finals(client: TestClient, engine: FakeEngine) -> None:
    key = ISSUER.issue()
    messages, code = call(client, {"key": key})
    assert code == 1000
    done = finals(messages)
    assert len(done) >= 3 and all(m["text"] == "Hello world." for m in done if m["duration"] > 0.5)
    assert done[-1]["is_last"] and not any(m["is_last"] for m in done[:-1])
    assert messages[-1] == {
        "event": "metadata",
        "streamSid": "MZ0001",
        "callSid": "CA0001",
        "request_id": messages[-1]["request_id"],
        "duration": pytest.approx(11.0, abs=0.01),
    }
    for m in messages:
        assert m["streamSid"] == "MZ0001" and m["callSid"] == "CA0001"
    for a, b in zip(done, done[1:]):  # in call order, not overlapping
        assert a["start"] + a["duration"] <= b["start"] + 1e-6
    word = done[0]["words"][0]
    assert word["punctuated_word"] == "Hello" and word["start"] >= done[0]["start"] and done[0]["track"] == "inbound"
    assert len(engine.calls) == len([m for m in done if m["text"]])  # one decode per final: no interims unless asked
    assert settled_usage(client, {"Authorization": f"Token {key}"})["audio_seconds_today"] == pytest.approx(11.0, abs=0.05)


def test_options_come_from_custom_parameters(client: TestClient, engine: FakeEngine) -> None:
    custom = {"interim_results": "true", "vad_events": "true", "keyterm": "Kowloon", "callerName": "anything else is left alone"}
    messages, code = call(client, custom)
    kinds = {m["event"] for m in messages}
    assert code == 1000 and {"speech_started", "transcript", "metadata"} <= kinds
    assert any(m["event"] == "transcript" and not m["is_final"] for m in messages)
    assert engine.previous and set(engine.previous) == {"Kowloon."}


def test_the_key_may_be_a_header_instead(client: TestClient) -> None:
    messages, code = call(client, headers={"Authorization": f"Bearer {KEY}"})
    assert code == 1000 and len(finals(messages)) >= 3


def test_only_the_chosen_track_is_transcribed(client: TestClient, engine: FakeEngine) -> None:
    """`both_tracks`: the caller (inbound) by default; `track=outbound` the other party."""
    silence = twilio_media(b"\xff" * len(MULAW), track="outbound")  # mu-law 0xFF is 0
    messages, code = call(client, tracks=("inbound", "outbound"), extra=silence)
    assert code == 1000 and messages[-1]["duration"] == pytest.approx(11.0, abs=0.01) and len(finals(messages)) >= 3
    engine.calls.clear()
    messages, code = call(client, {"track": "outbound"}, tracks=("inbound", "outbound"), extra=silence)
    assert code == 1000 and messages[-1]["duration"] == pytest.approx(11.0, abs=0.01)
    assert not engine.calls and all(m["text"] == "" for m in finals(messages))  # silence: nothing to decode


def test_bad_messages_are_reported_and_the_call_goes_on(client: TestClient) -> None:
    with client.websocket_connect(URL) as ws:
        ws.send_text(TWILIO_CONNECTED)
        errors = []
        for bad in ("not json", '["a list"]', '{"event": 3}', '{"event": "dance"}', twilio_media(MULAW[:160])[0]):
            ws.send_text(bad)  # before start
            errors.append(ws.receive_json())
        ws.send_bytes(b"\x00" * 160)  # Twilio's audio is never a binary frame
        errors.append(ws.receive_json())
        ws.send_text(twilio_start({"key": KEY}))
        good = twilio_media(MULAW[:32000])
        for message in good[:50]:
            ws.send_text(message)
        media = json.loads(good[50])
        for broken in (
            {**media, "media": {**media["media"], "payload": "not base64!"}},
            {**media, "media": {**media["media"], "payload": base64.b64encode(b"x").decode()[:-1]}},  # bad padding
            {**media, "media": {"track": "inbound"}},  # no payload
            {**media, "media": "a string"},
            json.loads(twilio_start({"key": KEY})),  # start again
        ):
            ws.send_text(json.dumps(broken))
            errors.append(ws.receive_json())
        ws.send_bytes(b"\x00" * 160)
        errors.append(ws.receive_json())
        for message in good[50:]:
            ws.send_text(message)
        ws.send_text(json.dumps({"event": "dtmf", "streamSid": "MZ0001", "dtmf": {"track": "inbound_track", "digit": "1"}}))
        ws.send_text(json.dumps({"event": "mark", "streamSid": "MZ0001", "mark": {"name": "x"}}))
        ws.send_text(TWILIO_STOP)
        messages, code = received(ws)
    assert all(e["event"] == "error" and e["code"] == "INVALID_REQUEST" and e["error"] for e in errors), errors
    parameters = [e.get("parameter") for e in errors]
    assert parameters == ["event"] * 5 + [None] + ["media.payload"] * 3 + ["media", "event", None]
    assert code == 1000 and messages[-1]["event"] == "metadata" and messages[-1]["duration"] == pytest.approx(4.0, abs=0.01)


CANARY = "c4n4ry<b>x</b>"


def test_errors_never_say_back_what_was_sent(client: TestClient) -> None:
    with client.websocket_connect(URL) as ws:
        for bad in (
            f"not json {CANARY}",
            json.dumps({"event": CANARY}),
            json.dumps({"event": "media", "media": {"payload": CANARY}}),
        ):
            ws.send_text(bad)
            assert "c4n4ry" not in json.dumps(ws.receive_json())
        ws.send_text(twilio_start({"key": KEY, "language": CANARY}))
        messages, code = received(ws)
    assert code == 1008 and messages[-1]["parameter"] == "language" and "c4n4ry" not in json.dumps(messages)


@pytest.mark.parametrize(
    "change, parameter",
    [
        ({"streamSid": None}, "start.streamSid"),
        ({"mediaFormat": {"encoding": "audio/l16", "sampleRate": 8000, "channels": 1}}, "start.mediaFormat"),
        ({"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": "fast", "channels": 1}}, "start.mediaFormat"),
        ({"customParameters": {"key": KEY, "endpointing": "soon"}}, "endpointing"),
        ({"customParameters": {"key": KEY, "encoding": "linear16"}}, "encoding"),  # Twilio's mediaFormat says it
        ({"customParameters": {"key": KEY, "search": "x"}}, "search"),  # no place for hits in a transcript event
        ({"customParameters": {"key": KEY, "track": "both"}}, "track"),
        ({"customParameters": {"key": KEY, "track": "outbound"}}, "track"),  # not one of the stream's tracks
        ({"customParameters": {"key": KEY, "diarize": "true"}}, "diarize"),
        ({"customParameters": {"key": 5}}, "start.customParameters"),
        ({"tracks": "inbound"}, "start.tracks"),
    ],
)
def test_a_bad_start_ends_the_stream_with_its_error(client: TestClient, engine: FakeEngine, change: dict, parameter: str) -> None:
    start = json.loads(twilio_start({"key": KEY}))
    start["start"].update(change)
    start.pop("streamSid")
    with client.websocket_connect(URL) as ws:
        ws.send_text(TWILIO_CONNECTED)
        ws.send_text(json.dumps(start))
        messages, code = received(ws)
    assert code == 1008 and len(messages) == 1 and messages[0]["event"] == "error"
    assert messages[0]["code"] == "INVALID_REQUEST" and messages[0]["parameter"] == parameter and not engine.calls


def test_keys_are_checked_in_start_and_never_logged(client: TestClient) -> None:
    with serve_log(Records()) as records:
        for custom, code in (
            ({}, "INVALID_LICENSE"),
            ({"key": "not-a-key"}, "INVALID_LICENSE"),
            ({"key": ISSUER.issue(days=-1)}, "LICENSE_EXPIRED"),
        ):
            with client.websocket_connect(URL) as ws:
                ws.send_text(twilio_start(custom))
                messages, closed = received(ws)
            assert closed == 1008 and messages == [messages[0]] and messages[0]["code"] == code
        small = ISSUER.issue(audio_hours_per_day=4 / 3600)  # four seconds of quota
        messages, closed = call(client, {"key": small})
        assert closed == 1008 and messages[-1]["code"] == "QUOTA_EXCEEDED" and len(finals(messages)) >= 1
        messages, closed = call(client, {"key": KEY})
        assert closed == 1000
    logged = " ".join(r.getMessage() for r in records.records)
    assert "stream request_id=" in logged and KEY not in logged and small not in logged and KEY.split(".")[-1] not in logged


def test_a_silent_opening_is_closed_at_the_idle_timeout(client: TestClient) -> None:
    with client.websocket_connect(URL) as ws:
        ws.send_text(TWILIO_CONNECTED)
        started = time.monotonic()
        messages, code = received(ws)
    assert code == 1011 and messages[-1]["code"] == "STREAM_IDLE_TIMEOUT" and time.monotonic() - started < 5


def test_a_caller_without_a_key_has_one_idle_timeout_to_start(client: TestClient) -> None:
    """Messages do not hold an unauthenticated socket open: `start` must come within the idle timeout."""
    with client.websocket_connect(URL) as ws:
        started = time.monotonic()
        for _ in range(3):
            ws.send_text(TWILIO_CONNECTED)
            time.sleep(0.6)
        messages, code = received(ws)
    assert code == 1011 and messages[-1]["code"] == "STREAM_IDLE_TIMEOUT" and time.monotonic() - started < 3


def test_a_stream_must_start_within_its_first_messages(client: TestClient) -> None:
    with client.websocket_connect(URL) as ws:
        for _ in range(32):
            ws.send_text(TWILIO_CONNECTED)
        ws.send_text(TWILIO_CONNECTED)
        messages, code = received(ws)
    assert code == 1008 and messages[-1]["code"] == "INVALID_REQUEST"


def test_an_oversized_message_ends_the_stream(client: TestClient) -> None:
    with client.websocket_connect(URL) as ws:
        ws.send_text("x" * (2**20 + 1))
        messages, code = received(ws)
    assert code == 1009 and messages[-1]["code"] == "FILE_TOO_LARGE"
    with client.websocket_connect(URL) as ws:
        ws.send_text(twilio_start({"key": KEY}))
        ws.send_text(twilio_media(MULAW[:8000])[0])
        ws.send_text(json.dumps({"event": "media", "media": {"payload": "A" * (2**20 + 4)}}))
        messages, code = received(ws)
    assert code == 1009 and messages[-1]["code"] == "FILE_TOO_LARGE" and messages[-2]["event"] == "metadata"


def test_a_bad_query_is_refused_at_the_handshake(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(URL + "?language=multi", headers=AUTH):
            pass
    assert denied.value.status_code == 400 and denied.value.json()["parameter"] == "language"


def test_the_dialect_reads_twilios_messages() -> None:
    twilio = Twilio()
    twilio.parse({}, 0.3)
    ctx = Context("r", "m", twilio.parse({}, 0.3))
    assert twilio.opening(TWILIO_CONNECTED, ctx).options is None
    opened = twilio.opening(twilio_start({"key": "K", "language": "en", "endpointing": "500"}), ctx)
    assert opened.key == "K" and opened.options is not None and opened.error is None
    options = opened.options
    assert (options.encoding, options.sample_rate, options.channels, options.endpoint_s) == ("mulaw", 8000, 1, 0.5)
    assert twilio.incoming(twilio_media(b"\x01\x02")[0]).audio == b"\x01\x02"
    assert twilio.incoming(twilio_media(b"\x01\x02", track="outbound")[0]).audio == b""
    assert twilio.incoming(TWILIO_STOP).control == CLOSE
    with pytest.raises(InvalidRequest):
        twilio.incoming('{"event": "media"}')


@pytest.fixture
def hooks() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {})  # make_ingress allowlists 127.0.0.2


def _posted(hooks: FileServer) -> list[tuple[str, bytes]]:
    # Generous: the outbox looks every second, and a CI machine under load once took over 10 s.
    deadline = time.monotonic() + 30
    while not hooks.posted and time.monotonic() < deadline:
        time.sleep(0.05)
    return hooks.posted


def test_a_callback_gets_the_whole_call_once_it_ends(client: TestClient, hooks: FileServer) -> None:
    with serve_log(Records()) as records:
        messages, code = call(client, {"callback": hooks.url("/calls")})
        assert code == 1000
        posted = _posted(hooks)
    # If nothing came, the outbox's warnings say why.
    assert len(posted) == 1, [r.getMessage() for r in records.records]
    texts = [m["text"] for m in finals(messages) if m["text"]]
    [(path, body)] = posted
    report = json.loads(body)
    assert path == "/calls" and report["event"] == "call_transcript"
    assert (report["streamSid"], report["callSid"], report["track"]) == ("MZ0001", "CA0001", "inbound")
    assert report["request_id"] == messages[-1]["request_id"] and report["duration"] == pytest.approx(11.0, abs=0.01)
    assert [u["text"] for u in report["utterances"]] == texts and report["transcript"] == " ".join(texts)
    assert hooks.url("/calls") not in json.dumps(messages)  # the URL is not echoed on the socket


@pytest.mark.parametrize(
    "url, error",
    [("http://127.0.0.1:9/x", "URL_NOT_ALLOWED"), ("ftp://127.0.0.2/x", "INVALID_REQUEST"), ("not a url", "INVALID_REQUEST")],
)
def test_a_callback_the_file_rules_refuse_ends_the_stream_before_its_audio(
    client: TestClient, engine: FakeEngine, url: str, error: str
) -> None:
    messages, code = call(client, {"callback": url})  # loopback (127.0.0.1) is not allowlisted: nothing is sent there
    assert code == 1008 and [m["code"] for m in messages if m["event"] == "error"][-1] == error
    assert not engine.calls and not finals(messages)
