"""The real `openai` SDK against /v1/audio/transcriptions for every response format, and the real
`deepgram-captions` turning our /v1/listen response into valid SRT and WebVTT."""

from __future__ import annotations

import re

import pytest
import requests
from deepgram_captions import DeepgramConverter, srt, webvtt
from openai import OpenAI

from .conftest import Server
from .helpers import JFK_FLAC, manifest, normalize

pytestmark = pytest.mark.e2e

JFK_TEXT = normalize(manifest()["whisper_jfk.flac"]["text"])
SRT_CUE = re.compile(r"^\d+\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n.+", re.S)
VTT_TIME = re.compile(r"^(\d\d:)?\d\d:\d\d\.\d\d\d --> (\d\d:)?\d\d:\d\d\.\d\d\d$", re.M)


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(api_key=server.key, base_url=f"{server.url}/v1", max_retries=0)


def _seconds(clock: str) -> float:
    h, m, s = clock.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _srt_cues(text: str) -> list[tuple[float, float]]:
    cues = []
    for block in text.strip().split("\n\n"):
        match = SRT_CUE.match(block)
        assert match, f"not an SRT cue: {block!r}"
        cues.append((_seconds(match.group(1)), _seconds(match.group(2))))
    return cues


def _check_cues(cues: list[tuple[float, float]]) -> None:
    assert cues and all(0 <= a < b <= 11.1 for a, b in cues)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(cues, cues[1:])), cues


def test_json_and_text(client: OpenAI) -> None:
    with JFK_FLAC.open("rb") as f:
        result = client.audio.transcriptions.create(file=f, model="whisper-1")
    assert normalize(result.text) == JFK_TEXT
    with JFK_FLAC.open("rb") as f:
        text = client.audio.transcriptions.create(file=f, model="whisper-1", response_format="text")
    assert normalize(str(text)) == JFK_TEXT


def test_srt_and_vtt(client: OpenAI) -> None:
    with JFK_FLAC.open("rb") as f:
        subtitles = client.audio.transcriptions.create(file=f, model="whisper-1", response_format="srt")
    _check_cues(_srt_cues(str(subtitles)))
    with JFK_FLAC.open("rb") as f:
        captions = str(client.audio.transcriptions.create(file=f, model="whisper-1", response_format="vtt"))
    assert captions.startswith("WEBVTT\n\n") and VTT_TIME.search(captions)
    assert normalize(" ".join(line for line in captions.splitlines()[1:] if line and "-->" not in line)) == JFK_TEXT


def test_verbose_json_with_words(client: OpenAI) -> None:
    with JFK_FLAC.open("rb") as f:
        result = client.audio.transcriptions.create(
            file=f, model="whisper-1", response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert result.language == "en" and result.duration == pytest.approx(11.0, abs=0.1)
    assert normalize(" ".join(s.text for s in result.segments)) == JFK_TEXT
    assert normalize(" ".join(w.word for w in result.words)) == JFK_TEXT
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and starts[0] < 1.0 and result.words[-1].end > 9.0


def test_bad_format_is_a_400_the_sdk_raises(client: OpenAI) -> None:
    from openai import BadRequestError

    with JFK_FLAC.open("rb") as f, pytest.raises(BadRequestError):
        client.audio.transcriptions.create(file=f, model="whisper-1", response_format="docx")  # type: ignore[arg-type]


def test_deepgram_captions_from_listen(server: Server) -> None:
    response = requests.post(
        f"{server.url}/v1/listen?timestamps=true",
        headers={**server.auth, "Content-Type": "audio/flac"},
        data=JFK_FLAC.read_bytes(),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    converter = DeepgramConverter(response.json())
    _check_cues(_srt_cues(srt(converter)))
    captions = webvtt(converter)
    assert captions.startswith("WEBVTT") and VTT_TIME.search(captions)
