"""The documentation's request examples (examples/) and the SDKs' live-stream examples, each run
against the real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server
from .helpers import JFK_FLAC, FileServer, manifest, normalize, serving
from .support import JFK_PCM, js_sdk_installed

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def storage() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {"/audio.wav": JFK_FLAC.read_bytes()})


def _command(name: str) -> list[str]:
    tool = {"curl.sh": "curl", "javascript_fetch.mjs": "node", "javascript_live.mjs": "node", "go": "go"}.get(name)
    if tool and shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/test.sh installs it)")
    if name == "javascript_live.mjs":
        js_sdk_installed()  # the SDK streams through `ws` on Node 18-21
    return {
        "curl.sh": ["bash", str(EXAMPLES / "curl.sh")],
        "python_requests.py": [sys.executable, str(EXAMPLES / "python_requests.py")],
        "javascript_fetch.mjs": ["node", str(EXAMPLES / "javascript_fetch.mjs")],
        "javascript_live.mjs": ["node", str(EXAMPLES / "javascript_live.mjs")],
        "go": ["go", "run", "."],
    }[name]


@pytest.mark.parametrize("name", ["curl.sh", "python_requests.py", "javascript_fetch.mjs", "javascript_live.mjs", "go"])
def test_example_prints_the_transcript(server: Server, storage: FileServer, name: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LICENSE_KEY": server.key,
        "API_URL": server.url,
        "AUDIO_URL": storage.url("/audio.wav"),
        "AUDIO_PATH": str(JFK_FLAC),  # the live example streams a file's bytes
        "GOCACHE": str(tmp_path / "gocache"),
        "GOPATH": str(tmp_path / "gopath"),
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
    }
    done = subprocess.run(
        _command(name), cwd=EXAMPLES / "go" if name == "go" else EXAMPLES, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert normalize(manifest()["whisper_jfk.flac"]["text"]) in normalize(done.stdout)


def test_stream_example_prints_finals_with_the_transcript(server: Server, tmp_path: Path) -> None:
    """examples/python_stream.py (the Python SDK, live) streams the JFK clip as a WAV file in real time."""
    path = tmp_path / "jfk.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(JFK_PCM)
    env = {**os.environ, "LICENSE_KEY": server.key, "API_URL": server.url}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_stream.py"), str(path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("final") for line in lines)
    assert normalize(lines[-1].removeprefix("transcript:")) == normalize(manifest()["whisper_jfk.flac"]["text"])
