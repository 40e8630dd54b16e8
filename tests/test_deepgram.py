"""The real `deepgram-sdk`, pointed at our server, gets the transcript back."""

from __future__ import annotations

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
    """`redact` as the SDK sends it: placeholders in the transcript and in the words."""
    call = (DATA / "espeak_redact_call.ogg").read_bytes()
    result = deepgram_client(server).listen.v1.media.transcribe_file(request=call, model="nova-3", redact="pii")
    alternative = result.results.channels[0].alternatives[0]
    assert "4111" not in alternative.transcript and "6789" not in alternative.transcript, alternative.transcript
    assert alternative.transcript == " ".join(w.punctuated_word for w in alternative.words)
    assert any(w.punctuated_word.startswith(("[CREDIT_CARD_", "[SSN_", "[PHONE_NUMBER_")) for w in alternative.words), (
        alternative.transcript
    )
