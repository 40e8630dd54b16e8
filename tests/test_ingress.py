"""The ingress with a fake engine (fast): every input mode, every bad input, the response shape.
The real engine runs in test_e2e.py."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from serve_app.licensing.auth import LicenseAuthenticator, RevocationList
from serve_app.licensing.keys import PublicKeys
from serve_app.pipeline.engine_client import ENGINE_CHECK_S
from serve_app.pipeline.prompt import FILLER_STYLE, MAX_KEYTERM_CHARS, MAX_KEYTERMS
from serve_app.types import ChunkTranscript, EngineInfo

from .helpers import JFK_FLAC, JFK_MP3, STEREO, FileServer, serving, wav_bytes
from .support import AUTH, KEY, FakeEngine, Method, Records, make_ingress, serve_log


@pytest.fixture
def client(engine: FakeEngine, tmp_path: Any) -> Iterator[TestClient]:
    ingress = make_ingress(engine, tmp_path, {"max_body_mb": 2, "max_duration_s": 60})
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        yield c


@pytest.fixture
def storage() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {"/jfk.mp3": JFK_MP3.read_bytes(), "/notes.txt": b"not audio"})


def _error(response: Any, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["error"]
    return body


def test_health_needs_no_key(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "healthy"}


def test_detailed_health_lists_every_component(client: TestClient) -> None:
    response = client.get("/health?detailed=true")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "healthy" and body["version"] == "0.1.0"
    assert body["uptime_s"] >= 0
    assert body["components"] == {
        "ingress": {"status": "healthy"},
        "engine": {"status": "healthy", "model": "fake-whisper"},
        "usage_store": {"status": "healthy", "kind": "sqlite"},
        "license": {"status": "healthy", "issuer_keys": 1, "revoked_keys": 0},
    }
    _error(client.get("/health?detailed=sometimes"), 400, "INVALID_REQUEST")


def test_detailed_health_names_the_failing_component(tmp_path: Any) -> None:
    import sqlite3

    def broken() -> str:
        raise sqlite3.OperationalError("disk I/O error")

    ingress = make_ingress(FakeEngine(), tmp_path)
    ingress.limiter.store.ping = broken  # type: ignore[method-assign]
    ingress.auth = LicenseAuthenticator(PublicKeys.from_lines([]), RevocationList(None))
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        response = c.get("/health?detailed=1")
        assert c.get("/health").status_code == 200  # the plain check follows the engine only
    body = response.json()
    assert response.status_code == 503 and body["reason"] == "unhealthy: usage_store, license"
    assert body["components"]["usage_store"] == {"status": "unhealthy", "reason": "Usage store unavailable"}
    assert body["components"]["license"]["issuer_keys"] == 0 and body["components"]["engine"]["status"] == "healthy"


class BusyEngine(FakeEngine):
    """Refuses the calls whose turn is listed, as Serve does when the engine's queue is full."""

    def __init__(self, refused: set[int]) -> None:
        super().__init__()
        self.refused, self.turn = refused, 0

    async def arrive(self) -> None:
        self.turn += 1
        if self.turn in self.refused:
            from ray.serve.exceptions import BackPressureError

            raise BackPressureError(num_queued_requests=64, max_queued_requests=64)


def _wav(seconds: float) -> bytes:
    from serve_app.pipeline.decode import decode

    return wav_bytes(np.tile(decode(JFK_FLAC.read_bytes(), 60), int(seconds // 11) + 1)[: int(seconds * 16_000)])


def test_a_full_engine_queue_sheds_new_requests_not_those_under_way(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_app.pipeline import engine_client

    monkeypatch.setattr(engine_client, "BUSY_RETRY_S", 0.01)
    shed = make_ingress(BusyEngine({1}), tmp_path)
    with TestClient(shed.__serve_build_asgi_app__()) as c:
        response = c.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert _error(response, 503, "SERVICE_UNAVAILABLE")["retry_after"] > 0 and response.headers["Retry-After"]
    # 75 s: three chunks. The first is admitted; the queue is then full twice for the others.
    engine = BusyEngine({2, 3})
    under_way = make_ingress(engine, tmp_path, {"max_duration_s": 120, "max_body_mb": 5})
    with TestClient(under_way.__serve_build_asgi_app__()) as c:
        response = c.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/wav"}, content=_wav(75))
    assert response.status_code == 200, response.text
    assert len(engine.calls) == 3 and engine.turn == 5


def test_long_files_are_decoded_in_order_with_the_text_before_as_context(tmp_path: Any) -> None:
    engine = FakeEngine()
    args = {"max_duration_s": 120, "max_body_mb": 5, "condition_on_previous_text": True}
    ingress = make_ingress(engine, tmp_path, args)
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        response = c.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/wav"}, content=_wav(75))
    assert response.status_code == 200, response.text
    # 75 s in the fake engine's 30 s window: three chunks, each given the text of those before it.
    assert engine.previous == ["", "Hello world.", "Hello world. Hello world."]
    assert engine.live == [False] * 3  # a file's chunks are fitted to their own length


def test_by_default_the_chunks_go_alongside_without_context(tmp_path: Any) -> None:
    engine = FakeEngine()
    ingress = make_ingress(engine, tmp_path, {"max_duration_s": 120, "max_body_mb": 5})
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        response = c.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/wav"}, content=_wav(75))
    assert response.status_code == 200 and engine.previous == ["", "", ""]


def test_the_context_is_the_end_of_the_text_in_whole_words() -> None:
    from serve_app.pipeline.engine_client import CONTEXT_CHARS, context

    assert context([" Hello world. ", "", "Again."]) == "Hello world. Again."
    words = [f"word{i}" for i in range(1000)]
    kept = context([" ".join(words)])
    assert len(kept) <= CONTEXT_CHARS and kept.endswith("word999") and kept.split()[0] in words


def test_health_unhealthy_while_no_engine(tmp_path: Any) -> None:
    class Hanging(FakeEngine):
        async def _info(self) -> EngineInfo:
            from serve_app.errors import ServiceUnavailable

            raise ServiceUnavailable()

    ingress = make_ingress(Hanging(), tmp_path)
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        response = c.get("/health")
        detailed = c.get("/health?detailed=true").json()
    assert response.status_code == 503 and response.json()["status"] == "unhealthy" and response.json()["reason"]
    assert detailed["status"] == "unhealthy" and detailed["components"]["engine"]["status"] == "unhealthy"


def test_health_follows_the_engine_after_a_first_success(client: TestClient, engine: FakeEngine) -> None:
    assert client.get("/health").status_code == 200

    async def gone() -> EngineInfo:
        from ray.serve.exceptions import DeploymentUnavailableError

        raise DeploymentUnavailableError("WhisperEngine")

    engine.info = Method(gone)
    response = client.get("/health")
    assert response.status_code == 503 and response.json()["status"] == "unhealthy"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Token wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}])
def test_missing_or_wrong_key_is_401(client: TestClient, headers: dict) -> None:
    response = client.post("/v1/listen", headers=headers, json={"url": "http://127.0.0.2/x"})
    assert response.status_code == 401
    body = response.json()
    assert (body["error"], body["code"]) == ("Invalid license key", "INVALID_LICENSE") and body["reason"]


def test_raw_body_and_response_shape(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/v1/listen",
        headers={**AUTH, "Authorization": f"bearer {KEY}", "Content-Type": "audio/flac"},
        content=JFK_FLAC.read_bytes(),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == body["transcription"] == "Hello world." and body["status"] == "success"
    assert body["language"] == "en" and body["duration"] == 11.0 and 0 < body["confidence"] < 1
    assert [w["punctuated_word"] for w in body["words"]] == ["Hello", "world."]
    assert [w["word"] for w in body["words"]] == ["hello", "world"]
    meta = body["metadata"]
    assert set(meta) >= {"request_id", "sha256", "created", "duration", "channels", "models", "model_info"}
    assert meta["request_id"] == body["request_id"] and meta["models"][0] in meta["model_info"]
    alt = body["results"]["channels"][0]["alternatives"][0]
    assert alt["transcript"] == "Hello world." and alt["words"] == body["words"]
    assert engine.calls == [(176000, "en")]


@pytest.mark.parametrize(
    "query, aligned", [("", False), ("?timestamps=true", True), ("?word_timestamps=1", True), ("?timestamps=false", False)]
)
def test_word_times_are_aligned_when_asked(client: TestClient, engine: FakeEngine, query: str, aligned: bool) -> None:
    response = client.post(f"/v1/listen{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert response.status_code == 200, response.text
    assert engine.aligned == [aligned]
    words = response.json()["words"]
    if aligned:  # the engine's token times (JFK is speech at 0.5-1.5 s, so nothing is moved off silence)
        assert [(w["start"], w["end"]) for w in words] == [(0.5, 0.9), (0.9, 1.5)]
    else:  # the 11 s chunk shared out by word length: "Hello" 5 of 11 characters
        assert [(w["start"], w["end"]) for w in words] == [(0.0, 5.0), (5.0, 11.0)]


def test_bad_timestamps_flag_is_400(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/v1/listen?timestamps=maybe", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()
    )
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == "timestamps"
    assert engine.calls == []


def test_multipart_audio_or_file_field(client: TestClient) -> None:
    for field in ("audio", "file"):
        response = client.post("/v1/listen", headers=AUTH, files={field: ("jfk.mp3", JFK_MP3.read_bytes(), "audio/mpeg")})
        assert response.status_code == 200, response.text


def test_url_with_options_in_body_and_query(client: TestClient, storage: FileServer) -> None:
    response = client.post("/v1/listen?language=fr", headers=AUTH, json={"url": storage.url("/jfk.mp3"), "language": "en-US"})
    assert response.status_code == 200, response.text  # the body wins over the query string
    assert response.json()["language"] == "en"
    assert storage.requests == ["/jfk.mp3"]


def test_english_only_model_rejects_other_languages(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/v1/listen?language=fr", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()
    )
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == "language"
    assert engine.calls == []


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"content": b"", "headers": {"Content-Type": "audio/wav"}}, 400, "INVALID_REQUEST"),
        (
            {"content": b"\x13\x37garbage" * 64, "headers": {"Content-Type": "application/octet-stream"}},
            415,
            "UNSUPPORTED_FORMAT",
        ),
        ({"content": b"plain text, not audio\n" * 10, "headers": {"Content-Type": "audio/wav"}}, 415, "UNSUPPORTED_FORMAT"),
        ({"content": b"abc", "headers": {"Content-Type": "text/plain"}}, 415, "UNSUPPORTED_FORMAT"),
        ({"content": b"abc", "headers": {"Content-Type": "image/png"}}, 415, "UNSUPPORTED_FORMAT"),
        ({"json": {"uri": "http://x"}}, 400, "MISSING_PARAMETER"),
        ({"json": {}}, 400, "MISSING_PARAMETER"),
        ({"json": {"url": 42}}, 400, "INVALID_REQUEST"),
        ({"json": ["http://x"]}, 400, "INVALID_REQUEST"),
        ({"json": {"url": "http://127.0.0.2/a", "language": 7}}, 400, "INVALID_REQUEST"),
        ({"json": {"url": "http://127.0.0.2/a", "language": "english please"}}, 400, "INVALID_REQUEST"),
        ({"content": b'{"url": "http://x"', "headers": {"Content-Type": "application/json"}}, 400, "INVALID_REQUEST"),
        ({"content": b"\xff\xfe{}", "headers": {"Content-Type": "application/json"}}, 400, "INVALID_REQUEST"),
        ({"json": {"url": "ftp://127.0.0.2/a.wav"}}, 400, "INVALID_REQUEST"),
        ({"json": {"url": "http://[::1"}}, 400, "INVALID_REQUEST"),
        ({"json": {"url": "http://127.0.0.1:9/a.wav"}}, 400, "URL_NOT_ALLOWED"),
        ({"json": {"url": "http://[::1]:9/a.wav"}}, 400, "URL_NOT_ALLOWED"),
        ({"files": {"other": ("a.wav", b"x", "audio/wav")}}, 400, "MISSING_PARAMETER"),
        ({"content": b"--b\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=b"}}, 400, None),
        ({"content": b"x" * 2_000_001, "headers": {"Content-Type": "audio/wav"}}, 413, "FILE_TOO_LARGE"),
    ],
)
def test_bad_inputs_get_coded_errors(client: TestClient, kwargs: dict, status: int, code: str | None) -> None:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    response = client.post("/v1/listen", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    if code:
        assert response.json()["code"] == code
    assert client.get("/health").status_code == 200  # still serving


def test_url_errors(client: TestClient, storage: FileServer) -> None:
    assert (
        _error(client.post("/v1/listen", headers=AUTH, json={"url": storage.url("/nope.wav")}), 400, "URL_FETCH_FAILED")[
            "upstream_status"
        ]
        == 404
    )
    _error(client.post("/v1/listen", headers=AUTH, json={"url": storage.url("/notes.txt")}), 415, "UNSUPPORTED_FORMAT")


def test_unknown_route_and_method(client: TestClient) -> None:
    _error(client.get("/v2/whatever"), 404, "NOT_FOUND")
    _error(client.get("/v1/listen", headers=AUTH), 405, "METHOD_NOT_ALLOWED")


def test_engine_failure_is_500_without_internals(engine: FakeEngine, tmp_path: Any) -> None:
    raised: list[RuntimeError] = []

    async def broken(
        audio: Any,
        language: str | None = None,
        align: bool = False,
        previous: str = "",
        translate: bool = False,
        live: bool = False,
    ) -> Any:
        # The real WhisperEngine.transcribe signature, so the call is built and the engine itself fails.
        raised.append(RuntimeError("secret internal detail"))
        raise raised[-1]

    engine.transcribe = Method(broken)
    ingress = make_ingress(engine, tmp_path)
    with serve_log(Records()) as records, TestClient(ingress.__serve_build_asgi_app__()) as c:
        response = c.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error", "code": "INTERNAL_ERROR"}
    assert "secret internal detail" not in response.text
    # The engine's own error reached the ingress's catch-all, which logged it with its traceback.
    assert len(raised) == 1
    logged = [r for r in records.records if r.getMessage().startswith("unhandled error on POST /v1/listen")]
    assert len(logged) == 1 and logged[0].exc_info is not None and logged[0].exc_info[1] is raised[0]


def test_duration_limit_is_413(client: TestClient) -> None:
    long_audio = io.BytesIO()
    import wave

    with wave.open(long_audio, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 16000 * 61)
    response = client.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/wav"}, content=long_audio.getvalue())
    _error(response, 413, "FILE_TOO_LARGE")


def test_caption_formats_from_listen(client: TestClient, engine: FakeEngine) -> None:
    flac = {**AUTH, "Content-Type": "audio/flac"}
    srt = client.post("/v1/listen?response_format=srt", headers=flac, content=JFK_FLAC.read_bytes())
    assert srt.status_code == 200 and srt.headers["content-type"].startswith("application/x-subrip")
    assert srt.text == "1\n00:00:00,500 --> 00:00:01,500\nHello world.\n"
    vtt = client.post("/v1/listen?response_format=vtt", headers=flac, content=JFK_FLAC.read_bytes())
    assert vtt.text == "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nHello world.\n"
    assert engine.aligned == [True, True]  # captions always get the model's times


@pytest.mark.parametrize(
    "fmt, check",
    [
        ("json", lambda r: r.json() == {"text": "Hello world."}),
        ("text", lambda r: r.text == "Hello world.\n"),
        (
            "verbose_json",
            lambda r: r.json()["segments"][0]["start"] == 0.5 and r.json()["duration"] == 11.0 and "words" not in r.json(),
        ),
    ],
)
def test_openai_route_formats(client: TestClient, fmt: str, check: Callable) -> None:
    response = client.post(
        "/v1/audio/transcriptions",
        headers=AUTH,
        files={"file": ("jfk.flac", JFK_FLAC.read_bytes(), "audio/flac")},
        data={"model": "whisper-1", "response_format": fmt},
    )
    assert response.status_code == 200 and check(response), response.text


def test_openai_word_granularity(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/v1/audio/transcriptions",
        headers=AUTH,
        files={"file": ("jfk.flac", JFK_FLAC.read_bytes(), "audio/flac")},
        data={"response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]},
    )
    assert response.json()["words"] == [{"word": "Hello", "start": 0.5, "end": 0.9}, {"word": "world.", "start": 0.9, "end": 1.5}]


@pytest.mark.parametrize(
    "path, data, parameter",
    [
        ("/v1/audio/transcriptions", {"response_format": "docx"}, "response_format"),
        ("/v1/audio/transcriptions", {"response_format": "listen"}, "response_format"),
        ("/v1/audio/transcriptions", {"timestamp_granularities[]": "letter"}, "timestamp_granularities"),
        ("/v1/listen", {"response_format": "pdf"}, "response_format"),
    ],
)
def test_bad_format_options_are_400(client: TestClient, engine: FakeEngine, path: str, data: dict, parameter: str) -> None:
    response = client.post(path, headers=AUTH, files={"file": ("jfk.flac", JFK_FLAC.read_bytes(), "audio/flac")}, data=data)
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == parameter
    assert engine.calls == []


def test_punctuate_false_and_smart_format(client: TestClient) -> None:
    flac = {**AUTH, "Content-Type": "audio/flac"}
    body = client.post("/v1/listen?punctuate=false&smart_format=true", headers=flac, content=JFK_FLAC.read_bytes()).json()
    assert body["text"] == body["results"]["channels"][0]["alternatives"][0]["transcript"] == "hello world"
    assert [w["punctuated_word"] for w in body["words"]] == ["hello", "world"]
    bad = client.post("/v1/listen?smart_format=sometimes", headers=flac, content=JFK_FLAC.read_bytes())
    assert _error(bad, 400, "INVALID_REQUEST")["parameter"] == "smart_format"


def test_utterances_and_paragraphs_are_timed(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/v1/listen?utterances=true&paragraphs=true&utt_split=0.5",
        headers={**AUTH, "Content-Type": "audio/flac"},
        content=JFK_FLAC.read_bytes(),
    )
    body = response.json()
    assert engine.aligned == [True]
    assert [(u["transcript"], u["start"], u["end"]) for u in body["results"]["utterances"]] == [("Hello world.", 0.5, 1.5)]
    assert body["utterances"] == [
        {"text": "Hello world.", "start": 0.5, "end": 1.5, "confidence": body["results"]["utterances"][0]["confidence"]}
    ]
    assert body["results"]["channels"][0]["alternatives"][0]["paragraphs"]["transcript"] == "\nHello world."


def test_diarize_labels_words_and_utterances(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/v1/listen?diarize=true&utterances=true", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()
    )
    body = response.json()
    assert response.status_code == 200 and engine.diarized == [(11 * 16_000, None)]
    assert all(engine.aligned)  # speakers are given to words by their times, so the times are the model's
    assert [(w["word"], w["speaker"]) for w in body["results"]["channels"][0]["alternatives"][0]["words"]][:2] == [
        ("hello", 0),
        ("world", 1),
    ]
    assert [(u["transcript"], u["speaker"]) for u in body["results"]["utterances"][:2]] == [("Hello", 0), ("world.", 1)]
    engine.diarized.clear()
    assert (
        client.post(
            "/v1/listen?num_speakers=3", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()
        ).status_code
        == 200
    )
    assert engine.diarized == [(11 * 16_000, 3)]  # num_speakers implies diarize
    plain = client.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()).json()
    assert "speaker" not in plain["words"][0] and len(engine.diarized) == 1


@pytest.mark.parametrize("query", ["diarize=maybe", "num_speakers=0", "num_speakers=2.5", "num_speakers=many", "num_speakers=21"])
def test_bad_diarize_options_are_400(client: TestClient, query: str) -> None:
    response = client.post(f"/v1/listen?{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == query.split("=")[0]


def test_waves_route_answers_in_smallest_pulse_shape(client: TestClient, engine: FakeEngine) -> None:
    bearer = {"Authorization": AUTH["Authorization"].replace("Token", "Bearer"), "Content-Type": "application/octet-stream"}
    response = client.post(
        "/waves/v1/stt/?model=pulse&language=en&word_timestamps=true&diarize=true", headers=bearer, content=JFK_FLAC.read_bytes()
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success" and body["transcription"] == "Hello world."
    assert [(w["word"], w["speaker"]) for w in body["words"][:2]] == [("Hello", "speaker_0"), ("world.", "speaker_1")]
    assert [u["speaker"] for u in body["utterances"][:2]] == ["speaker_0", "speaker_1"]
    plain = client.post("/waves/v1/stt?model=pulse&language=en", headers=bearer, content=JFK_FLAC.read_bytes()).json()
    assert "speaker" not in plain["words"][0] and "utterances" not in plain and "results" not in plain


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("redact_pii=maybe", "redact_pii"),
        ("emotion_detection=true", "emotion_detection"),
        ("webhook_extra=x", "webhook_extra"),
        ("webhook_method=GET", "webhook_method"),
        ("response_format=waves", "response_format"),
        ("gender_detection=maybe", "gender_detection"),
    ],
)
def test_pulse_options_this_server_cannot_honour_are_400(client: TestClient, query: str, parameter: str) -> None:
    response = client.post(f"/v1/listen?{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == parameter


@pytest.mark.parametrize("query", ["utt_split=fast", "utt_split=-1", "utt_split=nan", "utterances=often"])
def test_bad_utterance_options_are_400(client: TestClient, query: str) -> None:
    response = client.post(f"/v1/listen?{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == query.split("=")[0]


@pytest.mark.parametrize(
    "languages, query, expected",
    [
        (["en"], "?detect_language=true", ("en", 1.0)),
        (["de", "en", "fr"], "?language=multi", ("fr", 0.8)),
        (["de", "en", "fr"], "?detect_language=true&language=de", ("fr", 0.8)),
        (["de", "en", "fr"], "?language=multi-eu", ("fr", 0.8)),  # Smallest's regional aggregators detect too
    ],
)
def test_detected_language_is_used_and_reported(tmp_path: Any, languages: list[str], query: str, expected: tuple) -> None:
    engine = FakeEngine(languages)
    with TestClient(make_ingress(engine, tmp_path, {}).__serve_build_asgi_app__()) as c:
        body = c.post(f"/v1/listen{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()).json()
    assert (body["language"], body["language_confidence"]) == expected
    assert body["results"]["channels"][0]["detected_language"] == expected[0]
    assert engine.calls == [(176000, expected[0])]


@pytest.mark.parametrize(
    "path, query, expected",
    [
        ("/v1/listen", "?translate=en", ("fr", True)),  # the spoken language detected, then translated
        ("/v1/listen", "?translate=true&language=de", ("de", True)),
        ("/v1/listen", "?translate=false", ("en", False)),
        ("/v1/audio/translations", "", ("fr", True)),
        ("/v1/audio/translations", "?language=de", ("de", True)),
        ("/v1/audio/transcriptions", "", ("en", False)),
    ],
)
def test_translation_uses_whispers_translate_task(tmp_path: Any, path: str, query: str, expected: tuple) -> None:
    engine = FakeEngine(("de", "en", "fr"))
    with TestClient(make_ingress(engine, tmp_path, {}).__serve_build_asgi_app__()) as c:
        response = c.post(f"{path}{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert response.status_code == 200, response.text
    assert (engine.calls[0][1], engine.translated[0]) == expected
    if path == "/v1/audio/translations":
        assert response.json() == {"text": "Hello world."}


def test_translation_verbose_json_says_translate(tmp_path: Any) -> None:
    with TestClient(make_ingress(FakeEngine(("en", "de")), tmp_path, {}).__serve_build_asgi_app__()) as c:
        response = c.post(
            "/v1/audio/translations?response_format=verbose_json",
            headers={**AUTH, "Content-Type": "audio/flac"},
            content=JFK_FLAC.read_bytes(),
        )
    assert response.json()["task"] == "translate" and response.json()["language"] == "de"  # the language spoken


@pytest.mark.parametrize("path, query", [("/v1/listen", "?translate=en"), ("/v1/audio/translations", "")])
def test_translation_with_an_english_only_model_is_400(client: TestClient, engine: FakeEngine, path: str, query: str) -> None:
    response = client.post(f"{path}{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    body = _error(response, 400, "INVALID_REQUEST")
    assert body["parameter"] == "translate" and "English-only" in body["error"] and engine.calls == []


@pytest.mark.parametrize("value", ["de", "fr-FR", "sometimes"])
def test_translation_to_another_language_is_400(client: TestClient, value: str) -> None:
    response = client.post(f"/v1/listen?translate={value}", headers={**AUTH, "Content-Type": "audio/flac"}, content=b"x")
    body = _error(response, 400, "INVALID_REQUEST")
    assert body["parameter"] == "translate" and value not in body["error"]


@pytest.mark.parametrize(
    "query",
    ["language=en&language=de", "punctuate=true&punctuate=false", "utterances=true&utterances=true", "translate=en&translate=en"],
)
def test_a_one_value_option_sent_twice_is_400(client: TestClient, engine: FakeEngine, query: str) -> None:
    """Not the first or the last silently: the caller learns the request was ambiguous."""
    response = client.post(f"/v1/listen?{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == query.split("=")[0] and engine.calls == []


def test_repeated_form_fields_are_kept_in_order(client: TestClient) -> None:
    response = client.post(
        "/v1/audio/transcriptions",
        headers=AUTH,
        files={"file": ("jfk.flac", JFK_FLAC.read_bytes(), "audio/flac")},
        data={"response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]},
    )
    assert response.status_code == 200 and "words" in response.json() and response.json()["segments"]


@pytest.mark.parametrize(
    "query, prompt",
    [
        ("", ""),  # nothing asked, nothing sent: the decoder sees no prompt
        ("?keyterm=Kowloon&keyterm=Hong%20Kong", "Kowloon, Hong Kong."),  # Deepgram: repeated, spaces kept
        ("?keywords=Smallest:2,Atoms,Waves:1.5", "Smallest, Atoms, Waves."),  # Pulse: comma-joined word:weight
        ("?keywords=Dashwood:5&keywords=Norland", "Dashwood, Norland."),  # Deepgram: repeated term:intensifier
        ("?keyterm=Norland&keywords=Norland:3", "Norland."),  # once each
        ("?filler_words=true", FILLER_STYLE),
        ("?filler_words=true&keyterm=Kowloon", FILLER_STYLE + " Kowloon."),
    ],
)
def test_keyterms_and_filler_words_become_the_decoders_prompt(
    client: TestClient, engine: FakeEngine, query: str, prompt: str
) -> None:
    response = client.post(f"/v1/listen{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert response.status_code == 200, response.text
    assert engine.previous == [prompt]


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("keywords=noise:-5", "keywords"),  # suppression: a prompt cannot do it
        ("keywords=noise:loud", "keywords"),
        ("keyterm=" + "x" * (MAX_KEYTERM_CHARS + 1), "keyterm"),
        ("&".join(f"keyterm=term{i}" for i in range(MAX_KEYTERMS + 1)), "keyterm"),
        ("filler_words=some", "filler_words"),
    ],
)
def test_bad_keyterms_are_400(client: TestClient, engine: FakeEngine, query: str, parameter: str) -> None:
    response = client.post(f"/v1/listen?{query}", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == parameter and engine.calls == []


def test_keyterms_reach_every_chunk_of_a_long_file(tmp_path: Any) -> None:
    engine = FakeEngine()
    ingress = make_ingress(engine, tmp_path, {})
    with TestClient(ingress.__serve_build_asgi_app__()) as c:  # 44 s: two windows of the fake engine's 30 s
        response = c.post("/v1/listen?keyterm=Kowloon", headers={**AUTH, "Content-Type": "audio/wav"}, content=_wav(44))
    assert response.status_code == 200 and engine.previous == ["Kowloon."] * 2


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("field", ["callback", "callback_url"])
def test_callback_answers_at_once_and_posts_the_result(client: TestClient, storage: FileServer, field: str) -> None:
    storage.post_statuses[:] = [503]  # the first delivery fails: it is retried
    response = client.post(
        f"/v1/listen?{field}={storage.url('/hook')}",
        headers={**AUTH, "Content-Type": "audio/flac"},
        content=JFK_FLAC.read_bytes(),
    )
    assert response.status_code == 200 and response.json()["status"] == "processing"
    request_id = response.json()["request_id"]
    _wait_for(lambda: len(storage.posted) == 2)
    path, body = storage.posted[-1]
    result = json.loads(body)
    assert path == "/hook" and result["request_id"] == result["metadata"]["request_id"] == request_id
    assert result["text"] == "Hello world."


def test_callback_gets_captions_with_their_content_type(client: TestClient, storage: FileServer) -> None:
    response = client.post(
        f"/v1/listen?response_format=srt&callback={storage.url('/hook')}",
        headers={**AUTH, "Content-Type": "audio/flac"},
        content=JFK_FLAC.read_bytes(),
    )
    assert response.status_code == 200
    _wait_for(lambda: len(storage.posted) == 1)
    assert storage.posted[0][1] == b"1\n00:00:00,500 --> 00:00:01,500\nHello world.\n"
    assert storage.posted_types[0].startswith("application/x-subrip")


def test_callback_gets_the_error_of_a_failed_request(client: TestClient, storage: FileServer) -> None:
    response = client.post(
        f"/v1/listen?callback={storage.url('/hook')}",
        headers={**AUTH, "Content-Type": "audio/flac"},
        content=b"not audio at all" * 10,
    )
    assert response.status_code == 200
    _wait_for(lambda: len(storage.posted) == 1)
    result = json.loads(storage.posted[0][1])
    assert (result["status"], result["code"], result["request_id"]) == (
        "failed",
        "UNSUPPORTED_FORMAT",
        response.json()["request_id"],
    )
    assert storage.posted_types == ["application/json"]


@pytest.mark.parametrize(
    "url, code",
    [
        ("http://127.0.0.1:9/hook", "URL_NOT_ALLOWED"),  # loopback is not allowlisted here: nothing is sent
        ("ftp://example.com/hook", "INVALID_REQUEST"),
        ("http://[::1/hook", "INVALID_REQUEST"),
    ],
)
def test_bad_callback_urls_are_refused_before_any_work(client: TestClient, engine: FakeEngine, url: str, code: str) -> None:
    response = client.post(
        "/v1/listen", params={"callback": url}, headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()
    )
    assert _error(response, 400, code)
    assert engine.calls == []


def test_multichannel_transcribes_each_channel(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/v1/listen?multichannel=true&utterances=true", headers={**AUTH, "Content-Type": "audio/wav"}, content=STEREO.read_bytes()
    )
    body = response.json()
    assert response.status_code == 200 and engine.calls == [(80000, "en"), (80000, "en")]
    assert body["metadata"]["channels"] == len(body["results"]["channels"]) == 2
    assert [c["alternatives"][0]["transcript"] for c in body["results"]["channels"]] == ["Hello world."] * 2
    assert sorted(u["channel"] for u in body["results"]["utterances"]) == [0, 1]
    assert len(body["words"]) == 4  # both channels' words, in time order


def test_mono_request_stays_one_channel(client: TestClient, engine: FakeEngine) -> None:
    body = client.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/wav"}, content=STEREO.read_bytes()).json()
    assert engine.calls == [(80000, "en")] and body["metadata"]["channels"] == 1


@pytest.mark.parametrize("value", [5, {"word": 1}, ["word", 3], "letter"])
def test_bad_granularities_in_json_are_400(client: TestClient, storage: FileServer, value: object) -> None:
    response = client.post("/v1/listen", headers=AUTH, json={"url": storage.url("/jfk.mp3"), "timestamp_granularities": value})
    assert _error(response, 400, "INVALID_REQUEST")["parameter"] == "timestamp_granularities"
    assert storage.requests == []


class _Watch:
    def __init__(self, running: int | None) -> None:
        self.value, self.asked = running, 0

    async def running(self) -> int | None:
        self.asked += 1
        return self.value


@pytest.mark.parametrize("running, status", [(0, 503), (None, 200), (1, 200)])
def test_a_call_waiting_on_an_engine_with_no_running_replica_is_a_quick_503(
    tmp_path: Any, running: int | None, status: int
) -> None:
    """Serve would hold the call until a replica returns; with none running, the ingress stops waiting."""
    engine, finished = FakeEngine(), []
    slow = engine._transcribe
    # Longer than one check period; with no replica running, long enough that only cancellation ends it.
    hold_s = ENGINE_CHECK_S * (30 if running == 0 else 1.5)

    async def transcribe(*args: Any) -> ChunkTranscript:
        await asyncio.sleep(hold_s)
        finished.append(True)
        return await slow(*args)

    engine.transcribe = Method(transcribe)
    ingress = make_ingress(engine, tmp_path)
    ingress.engine.watch = watch = _Watch(running)
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        response = c.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert response.status_code == status and watch.asked >= 1
    if status == 503:
        assert response.json()["code"] == "SERVICE_UNAVAILABLE" and response.headers["Retry-After"]
        assert finished == []  # answered at a check, the engine call cancelled, not waited out
    else:
        assert finished and len(engine.calls) >= 1
