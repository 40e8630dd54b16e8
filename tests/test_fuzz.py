"""Property-based fuzzing (Hypothesis) of what a client controls: request options, whole HTTP
requests (query, content type, body) and audio bytes. Whatever comes in, the answer is a result or
one of the service's JSON errors: never an unhandled exception, never a 500.

CI runs a few thousand cases (`FUZZ_EXAMPLES` scales them); `scripts/fuzz.sh` runs many more.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any
from urllib.parse import urlencode

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from serve_app.api import listen
from serve_app.api import params as api_params
from serve_app.errors import ServiceError
from serve_app.pipeline.decode import decode

from .helpers import JFK_FLAC
from .support import AUTH, FakeEngine, make_ingress

SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))


def examples(n: int) -> Any:
    # No example database: nothing is written into the checkout, and every run explores afresh.
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


OPTION_NAMES = [
    "language",
    "detect_language",
    "timestamps",
    "word_timestamps",
    "punctuate",
    "smart_format",
    "itn_normalize",
    "numerals",
    "utterances",
    "utt_split",
    "paragraphs",
    "diarize",
    "num_speakers",
    "multichannel",
    "response_format",
    "callback",
    "callback_url",
    "webhook_url",
    "webhook_method",
    "webhook_extra",
    "redact_pii",
    "emotion_detection",
    "timestamp_granularities",
    "model",
    "encoding",
    "sample_rate",
]


def offline_text(max_size: int) -> st.SearchStrategy[str]:
    """Any text but a URL: a generated `url` or `callback` must never make the ingress look up a
    name or connect anywhere. The URLs tried are the loopback ones below."""
    return st.text(max_size=max_size).filter(lambda text: "://" not in text)


# Refused by the policy without a connection (127.0.0.1, ftp), or allowlisted loopback with nothing listening.
URLS = ["http://127.0.0.1:1/a.wav", "http://127.0.0.2:1/a.wav", "https://127.0.0.2:1/a", "ftp://127.0.0.2/a", "http://[::1]:1/"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    offline_text(40),
    st.sampled_from(URLS),
    st.sampled_from(["true", "false", "1", "0", "en", "multi", "nan", "-1", "1e309", "srt", "vtt", ""]),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6
)
option_names = st.sampled_from(OPTION_NAMES) | st.text(max_size=12)


@examples(3000)
@given(st.dictionaries(option_names, json_values, max_size=6))
@example({"timestamp_granularities": [[]]})  # found by this test: was a TypeError (unhashable list)
def test_any_options_parse_or_are_a_400(params: dict[str, Any]) -> None:
    try:
        api_params.parse(listen.OPTIONS, params)
    except ServiceError as exc:
        assert exc.status == 400 and exc.code


def _clips() -> dict[str, bytes]:
    """One second of speech in each container clients send, made here: small, so mutants decode fast."""
    audio = decode(JFK_FLAC.read_bytes(), 60)[16_000:32_000]
    out = {}
    for fmt, codec in (("wav", "pcm_s16le"), ("flac", "flac"), ("mp3", "libmp3lame"), ("ogg", "libopus"), ("webm", "libopus")):
        buffer = io.BytesIO()
        with av.open(buffer, "w", format=fmt) as container:
            rate = 48_000 if codec == "libopus" else 16_000
            stream = container.add_stream(codec, rate=rate, layout="mono")
            frame = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16)[None], format="s16", layout="mono")
            frame.sample_rate = 16_000
            resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
            for piece in resampler.resample(frame) + resampler.resample(None):
                container.mux(stream.encode(piece))
            container.mux(stream.encode(None))
        out[fmt] = buffer.getvalue()
    return out


CLIPS = _clips()


@st.composite
def mutated_audio(draw: st.DrawFn) -> bytes:
    data = bytearray(CLIPS[draw(st.sampled_from(sorted(CLIPS)))])
    for _ in range(draw(st.integers(0, 8))):  # flipped bytes, mostly in the headers where parsers branch
        at = draw(st.integers(0, min(len(data) - 1, draw(st.sampled_from([64, 512, len(data) - 1])))))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # cut short
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))  # junk inserted
    return bytes(data)


@examples(1500)
@given(st.one_of(mutated_audio(), st.binary(max_size=2048)), st.booleans())
def test_any_bytes_decode_to_audio_or_are_a_clear_error(data: bytes, keep_channels: bool) -> None:
    try:
        audio = decode(data, 2.0, keep_channels)
    except ServiceError as exc:
        assert exc.status in (400, 413, 415) and exc.code
        return
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert audio.shape[-1] <= 2.0 * 16_000  # the duration limit holds for any input


HEADER_CHARS = st.characters(min_codepoint=32, max_codepoint=126)  # what an HTTP client can send
CONTENT_TYPES = [
    "application/json",
    "audio/wav",
    "audio/flac",
    "audio/mpeg",
    "application/octet-stream",
    "multipart/form-data; boundary=xyz",
    "text/plain",
    "",
    "video/webm",
    "application/json; charset=utf-8",
]


@st.composite
def requests_(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    path = draw(st.sampled_from(["/v1/listen", "/waves/v1/stt/", "/v1/audio/transcriptions", "/v1/usage", "/health"]))
    query = urlencode(draw(st.dictionaries(option_names, offline_text(12) | st.sampled_from(URLS), max_size=4)))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    headers = (
        {**AUTH, "Content-Type": content_type}
        if draw(st.integers(0, 9))
        else {"Authorization": draw(st.text(HEADER_CHARS, max_size=30))}
    )
    if content_type.startswith("application/json"):
        body = draw(
            st.one_of(
                st.builds(
                    lambda v: json.dumps(v).encode(),
                    st.dictionaries(st.sampled_from(["url", *OPTION_NAMES]), json_values, max_size=4),
                ),
                st.binary(max_size=64),
            )
        )
    elif content_type.startswith("multipart"):
        part = draw(mutated_audio())
        body = (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            + part
            + draw(st.sampled_from([b"\r\n--xyz--\r\n", b""]))
        )
    else:
        body = draw(st.one_of(mutated_audio(), st.binary(max_size=256)))
    return path, query, headers, body


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ingress = make_ingress(FakeEngine(), tmp_path_factory.mktemp("fuzz"), {"max_body_mb": 1, "auth_failures_per_minute": None})
    with TestClient(ingress.__serve_build_asgi_app__(), raise_server_exceptions=True) as c:
        yield c


@examples(600)
@given(requests_())
def test_any_request_is_answered_without_a_500(client: TestClient, request_: tuple[str, str, dict[str, str], bytes]) -> None:
    path, query, headers, body = request_
    response = client.post(f"{path}?{query}", headers=headers, content=body)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()
        assert error["code"] and error["error"]


def test_a_wav_of_unknown_codec_is_a_415() -> None:
    """Found by the fuzzer: a WAV whose format tag FFmpeg does not know has no codec context."""
    data = bytearray(CLIPS["wav"])
    data[20:22] = b"\x00\x00"  # WAVE_FORMAT_UNKNOWN
    for keep_channels in (False, True):
        with pytest.raises(ServiceError) as caught:
            decode(bytes(data), 60, keep_channels)
        assert caught.value.status == 415


def test_the_clips_decode_whole() -> None:
    """The fuzzer's seeds are valid audio: without this, mutants would only test the error path."""
    for fmt, data in CLIPS.items():
        assert abs(len(decode(data, 60)) - 16_000) < 1_600, fmt
