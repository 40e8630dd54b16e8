"""The official `smallestai` SDK, pointed at our server, gets the transcript back (it posts raw
audio to /waves/v1/stt/ with Bearer auth)."""

from __future__ import annotations

import pytest
from smallestai import SmallestAI
from smallestai.environment import SmallestAIEnvironment

from .conftest import Server
from .helpers import DATA, JFK_FLAC, manifest, normalize

pytestmark = pytest.mark.e2e


def _client(server: Server) -> SmallestAI:
    ws = server.url.replace("http", "ws")
    env = SmallestAIEnvironment(atoms=server.url, waves=server.url, waves_ws=ws, payment=server.url)
    return SmallestAI(api_key=server.key, environment=env)


def test_transcribe_raw_audio(server: Server) -> None:
    result = _client(server).waves.speech_to_text.transcribe(model="pulse", language="en", request=JFK_FLAC.read_bytes(), word_timestamps=True)
    assert normalize(result.transcription) == normalize(manifest()["whisper_jfk.flac"]["text"])
    assert result.status == "success" and result.words and all(w.start <= w.end for w in result.words)


def test_diarized_speakers_are_strings(server: Server) -> None:
    call = (DATA / "pyannote_sample.wav").read_bytes()
    result = _client(server).waves.speech_to_text.transcribe(model="pulse", language="en", request=call, diarize=True, word_timestamps=True)
    assert {w.speaker for w in result.words} == {"speaker_0", "speaker_1"}
    assert {u.speaker for u in result.utterances} == {"speaker_0", "speaker_1"}
