"""The official `smallestai` SDK, pointed at our server, gets the transcript back (it posts raw
audio to /waves/v1/stt/ with Bearer auth)."""

from __future__ import annotations

import re

import pytest

from serve_app.pipeline.redact import PULSE, placeholders, pulse_kinds, redact_words
from serve_app.pipeline.transcript import Word

from .conftest import Server
from .helpers import DATA, JFK_FLAC, manifest, normalize
from .support import smallest_client

pytestmark = pytest.mark.e2e
_PUNCT = re.compile(r"^[^\w']+|[^\w']+$")  # how the pipeline normalises a word (pipeline/stitch.py)


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


def test_redacted_pulse_answer(server: Server) -> None:
    """A real reading that names someone after a title ("And Mr. John Dashwood had then leisure..."):
    the answer redacted as Pulse renders it, exactly what redacting the plain answer's words gives
    (the engine decodes greedily), with the entities listed."""
    call = (DATA / "sense_and_sensibility_01_austen_64kb-0870.wav").read_bytes()
    stt = smallest_client(server).waves.speech_to_text
    plain = stt.transcribe(model="pulse", language="en", request=call, word_timestamps=True)
    result = stt.transcribe(
        model="pulse", language="en", request=call, word_timestamps=True, redact_pii="true", redact_pci="true"
    )
    words = [Word(_PUNCT.sub("", w.word).lower() or w.word, w.word, w.start, w.end, w.confidence) for w in plain.words]
    expected = redact_words(words, pulse_kinds(pii=True, pci=True), PULSE)
    assert result.status == "success" and result.transcription == " ".join(w.punctuated_word for w in expected)
    assert [w.word for w in result.words] == [w.punctuated_word for w in expected]
    entities = (result.model_extra or {})["redacted_entities"]  # not in the SDK's model: kept as an extra
    assert entities == placeholders(expected) == ["[FIRSTNAME_1]", "[LASTNAME_1]"], plain.transcription
    assert "Dashwood" in plain.transcription and "Dashwood" not in result.transcription
