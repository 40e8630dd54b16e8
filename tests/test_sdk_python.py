"""The Python SDK (`clients/python`, import name `smallest`): retries, errors and rate limiting
against a scripted stand-in on 127.0.0.1, then the seed's snippet and the SDK against the real server."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import smallest
from smallest import AsyncClient, Client

from .conftest import Server
from .helpers import JFK_FLAC, FileServer, ScriptedServer, manifest, normalize, serving

SDK = Path(__file__).parent.parent / "clients" / "python"
RATE_LIMITED = (429, {"error": "Rate limit exceeded", "code": "RATE_LIMIT_EXCEEDED", "retry_after": 1}, {"Retry-After": "1"})


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer([])
    yield server
    server.close()


def test_429_is_retried_after_the_time_the_server_names(scripted: ScriptedServer) -> None:
    scripted.script += [RATE_LIMITED, RATE_LIMITED]
    result = Client(api_url=scripted.url, license_key="k").transcribe_url("https://example.com/a.wav")
    assert result.text == "ok" and len(scripted.times) == 3
    gaps = [b - a for a, b in zip(scripted.times, scripted.times[1:])]
    assert all(gap >= 0.95 for gap in gaps), gaps  # waited the second it was told, each time
    assert scripted.headers[0]["Authorization"] == "Token k"


def test_retry_after_header_counts_when_the_body_names_none(scripted: ScriptedServer) -> None:
    scripted.script += [(503, {"error": "busy", "code": "SERVICE_UNAVAILABLE"}, {"Retry-After": "1"})]
    Client(api_url=scripted.url, license_key="k", backoff=0.01).transcribe_file(b"RIFF")
    assert scripted.times[1] - scripted.times[0] >= 0.95


@pytest.mark.parametrize(
    "status, body, error",
    [
        (401, {"error": "Invalid license key", "code": "INVALID_LICENSE"}, smallest.InvalidLicenseError),
        (
            403,
            {"error": "License expired", "code": "LICENSE_EXPIRED", "expires_at": "2024-12-31T23:59:59Z"},
            smallest.LicenseExpiredError,
        ),
        (403, {"error": "Quota exceeded", "code": "QUOTA_EXCEEDED"}, smallest.QuotaExceededError),
        (400, {"error": "bad", "code": "INVALID_REQUEST", "parameter": "language"}, smallest.BadRequestError),
        (413, {"error": "big", "code": "FILE_TOO_LARGE"}, smallest.PayloadTooLargeError),
        (500, {"error": "Internal server error", "code": "INTERNAL_ERROR"}, smallest.InternalServerError),
    ],
)
def test_other_errors_raise_at_once_with_their_type(scripted: ScriptedServer, status: int, body: dict, error: type) -> None:
    scripted.script.append((status, body, {}))
    with pytest.raises(error) as raised:
        Client(api_url=scripted.url, license_key="k").transcribe_url("https://example.com/a.wav")
    assert len(scripted.times) == 1 and raised.value.status == status and raised.value.code == body["code"]
    if error is smallest.LicenseExpiredError:
        assert raised.value.expires_at == "2024-12-31T23:59:59Z"


def test_retries_run_out_into_the_typed_error(scripted: ScriptedServer) -> None:
    scripted.script += [(503, {"error": "busy", "code": "SERVICE_UNAVAILABLE", "retry_after": 0}, {})] * 3
    with pytest.raises(smallest.ServiceUnavailableError) as raised:
        Client(api_url=scripted.url, license_key="k", max_retries=2).transcribe_url("https://example.com/a.wav")
    assert len(scripted.times) == 3 and raised.value.retry_after == 0


def test_connection_errors_are_retried_then_raised() -> None:
    started = time.monotonic()
    with pytest.raises(smallest.APIConnectionError):
        Client(api_url=_nothing_listening(), license_key="k", max_retries=2, backoff=0.2).transcribe_file(b"x")
    assert time.monotonic() - started >= 0.3  # two backoffs: at least half of 0.2 s, then half of 0.4 s


def test_license_key_comes_from_the_environment(scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICENSE_KEY", "from-env")
    Client(api_url=scripted.url).transcribe_file(io.BytesIO(b"audio"), language="en", diarize=True)
    assert scripted.headers[0]["Authorization"] == "Token from-env"
    monkeypatch.delenv("LICENSE_KEY")
    with pytest.raises(smallest.SmallestError, match="LICENSE_KEY"):
        Client(api_url=scripted.url)
    assert "from-env" not in repr(Client(api_url=scripted.url, license_key="from-env"))


class _RecordingLimiter(smallest.RateLimiter):
    """Records each answer of the limiter (0 = a slot granted, with the slot's time; else the wait),
    on the client's clock: the server's receive times would add the loaded machine's scheduling noise."""

    def __init__(self, calls: int, period: float) -> None:
        super().__init__(calls, period)
        self.answers: list[tuple[float, float]] = []

    def _reserve(self) -> float:
        wait = super()._reserve()
        self.answers.append((self._sent[-1] if wait == 0.0 else time.monotonic(), wait))  # a granted slot's own time
        return wait


def test_client_side_rate_limit_spaces_calls(scripted: ScriptedServer) -> None:
    limiter = _RecordingLimiter(2, 0.5)
    client = Client(api_url=scripted.url, license_key="k", rate_limit=limiter)
    for _ in range(3):
        client.transcribe_file(b"x")
    granted = [at for at, wait in limiter.answers if wait == 0.0]
    assert len(scripted.times) == 3 and len(granted) == 3
    # The third call was told to wait, and its slot came only once the first had left the window.
    assert [wait > 0 for _, wait in limiter.answers[:3]] == [False, False, True]
    assert granted[2] - granted[0] >= limiter.period


def test_async_client_retries_too(scripted: ScriptedServer) -> None:
    scripted.script += [RATE_LIMITED]

    async def run() -> smallest.TranscriptionResult:
        async with AsyncClient(api_url=scripted.url, license_key="k") as client:
            return await client.transcribe_url("https://example.com/a.wav")

    assert asyncio.run(run()).text == "ok" and scripted.times[1] - scripted.times[0] >= 0.95


def _nothing_listening() -> str:
    """A loopback URL with a port that was free a moment ago (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# The seed's Python snippet, exactly; the test points its URLs and key at the test server.
SEED_SNIPPET = """from smallest import Client
client = Client(
api_url = "http://localhost:7100" ,
license_key = "your-license-key-here"
)
result = client.transcribe_url( "https://example.com/audio.wav" )
print (result.text)
"""


@pytest.fixture(scope="module")
def storage() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {"/audio.wav": JFK_FLAC.read_bytes()})


@pytest.mark.e2e
def test_seed_snippet_prints_the_transcript(server: Server, storage: FileServer) -> None:
    code = (
        SEED_SNIPPET.replace("http://localhost:7100", server.url)
        .replace("your-license-key-here", server.key)
        .replace("https://example.com/audio.wav", storage.url("/audio.wav"))
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert normalize(out) == normalize(manifest()["whisper_jfk.flac"]["text"])


@pytest.mark.e2e
def test_sdk_against_the_real_server(server: Server) -> None:
    with Client(api_url=server.url, license_key=server.key) as client:
        expected = normalize(manifest()["whisper_jfk.flac"]["text"])
        with JFK_FLAC.open("rb") as handle:  # the caller's file: the SDK reads it and leaves it open
            for audio in (JFK_FLAC, JFK_FLAC.read_bytes(), handle):
                result = client.transcribe_file(audio, timestamps=True)
                assert normalize(result.text) == expected and result.duration == pytest.approx(11.0, abs=0.1)
                assert result.words[0].word == "and" and result.words[0].end > result.words[0].start
        with pytest.raises(smallest.BadRequestError) as raised:
            client.transcribe_file(JFK_FLAC, language="xx-long")
        assert raised.value.code == "INVALID_REQUEST"
    with pytest.raises(smallest.InvalidLicenseError):
        Client(api_url=server.url, license_key="stt1.not-a-key").transcribe_file(JFK_FLAC)


def test_sdk_builds_as_a_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(SDK)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("smallest_client-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("smallest_client-0.1.0.dist-info/METADATA").decode()
    assert {"smallest/__init__.py", "smallest/client.py", "smallest/py.typed"} <= names
    assert "Name: smallest-client" in metadata and "Requires-Dist: httpx" in metadata and "Requires-Dist: websockets" in metadata
    assert {"smallest/live.py", "smallest/live_sync.py", "smallest/live_async.py", "smallest/audio.py"} <= names
