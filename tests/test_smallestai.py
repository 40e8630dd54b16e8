"""The official `smallestai` SDK, pointed at our server, gets the transcript back (it posts raw
audio to /waves/v1/stt/ with Bearer auth)."""

from __future__ import annotations

import pytest

from .conftest import Server
from .helpers import DATA, JFK_FLAC, manifest, normalize
from .support import smallest_client

pytestmark = pytest.mark.e2e


def test_transcribe_raw_audio(server: Server) -> None:
    result = smallest_client(server).waves.speech_to_text.transcribe(
        model="pulse", language="en", request=JFK_FLAC.read_bytes(), word_timestamps=True
    )
    assert normalize(result.transcription) == normalize(manifest()["whisper_jfk.flac"]["text"])
    assert result.status == "success" and result.words and all(w.start <= w.end for w in result.words)


def test_diarized_speakers_are_strings(server: Server) -> None:
    call = (DATA / "pyannote_sample.wav").read_bytes()
    result = smallest_client(server).waves.speech_to_text.transcribe(
        model="pulse", language="en", request=call, diarize=True, word_timestamps=True
    )
    assert {w.speaker for w in result.words} == {"speaker_0", "speaker_1"}
    assert {u.speaker for u in result.utterances} == {"speaker_0", "speaker_1"}
