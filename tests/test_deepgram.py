"""The real `deepgram-sdk`, pointed at our server, gets the transcript back."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .conftest import Server
from .helpers import DATA, JFK_FLAC, FileServer, manifest, normalize, serving
from .support import deepgram_client

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def storage() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {"/jfk.flac": JFK_FLAC.read_bytes()})


def test_transcribe_url_and_file(server: Server, storage: FileServer) -> None:
    client = deepgram_client(server)
    expected = normalize(manifest()["whisper_jfk.flac"]["text"])
    by_url = client.listen.v1.media.transcribe_url(url=storage.url("/jfk.flac"), model="nova-3")
    by_file = client.listen.v1.media.transcribe_file(request=JFK_FLAC.read_bytes(), model="nova-3")
    for result in (by_url, by_file):
        assert normalize(result.results.channels[0].alternatives[0].transcript) == expected
        assert result.metadata.duration == pytest.approx(11.0, abs=0.1)


def test_utterances_and_paragraphs_parse(server: Server) -> None:
    result = deepgram_client(server).listen.v1.media.transcribe_file(
        request=JFK_FLAC.read_bytes(), model="nova-3", utterances=True, paragraphs=True
    )
    expected = normalize(manifest()["whisper_jfk.flac"]["text"])
    assert normalize(" ".join(u.transcript for u in result.results.utterances)) == expected
    assert all(u.start < u.end for u in result.results.utterances)
    paragraphs = result.results.channels[0].alternatives[0].paragraphs
    assert normalize(paragraphs.transcript) == expected and paragraphs.paragraphs[0].sentences[0].start < 1.0


def test_diarized_words_parse(server: Server) -> None:
    call = (DATA / "pyannote_sample.wav").read_bytes()
    result = deepgram_client(server).listen.v1.media.transcribe_file(request=call, model="nova-3", diarize=True, utterances=True)
    words = result.results.channels[0].alternatives[0].words
    assert {w.speaker for w in words} == {0, 1}
    assert {u.speaker for u in result.results.utterances} == {0, 1}


def test_redacted_answer_parses(server: Server) -> None:
    """`redact` as the SDK sends it, on a real recording of digits (CMU's "one zero zero zero one, nine
    oh two one oh, ..."): no run of three digits is left, in the transcript or the words."""
    call = (DATA / "vosk_test_10001-90210-01803.wav").read_bytes()
    client = deepgram_client(server)
    plain = client.listen.v1.media.transcribe_file(request=call, model="nova-3").results.channels[0].alternatives[0]
    assert re.search(r"\d{3}", plain.transcript), plain.transcript  # what there is to redact
    result = client.listen.v1.media.transcribe_file(request=call, model="nova-3", redact="numbers")
    alternative = result.results.channels[0].alternatives[0]
    assert not re.search(r"\d{3}", alternative.transcript), alternative.transcript
    assert alternative.transcript == " ".join(w.punctuated_word for w in alternative.words)
    assert all(w.punctuated_word.startswith("[NUMERICAL_PII_") for w in alternative.words), alternative.transcript
    assert alternative.words[0].start >= 0 and alternative.words[-1].end <= 8.4


def test_smart_format_and_numerals_parse(server: Server) -> None:
    """deepgram-sdk parses answers with smart_format; numerals=false writes the reading's years and
    ordinals ("In 1465", "the 15th century") as words, each word still timed."""
    client = deepgram_client(server)
    formatted = client.listen.v1.media.transcribe_file(request=JFK_FLAC.read_bytes(), model="nova-3", smart_format=True)
    alternative = formatted.results.channels[0].alternatives[0]
    assert normalize(alternative.transcript) == normalize(manifest()["whisper_jfk.flac"]["text"])
    assert all(w.punctuated_word and w.start <= w.end for w in alternative.words)
    reading = (DATA / "ljspeech_LJ001-0001_to_0032.flac").read_bytes()
    spelled = client.listen.v1.media.transcribe_file(request=reading, model="nova-3", numerals=False)
    alternative = spelled.results.channels[0].alternatives[0]
    assert not any(c.isdigit() for c in alternative.transcript) and "fifteenth century" in alternative.transcript
    assert all(w.start <= w.end for w in alternative.words)
