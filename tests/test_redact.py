"""Redaction (pipeline/redact.py): a golden table of exact outputs, the options as each dialect
sends them, every route and stream through the ingress on a fake engine that says something
sensitive, callbacks and captions, and the logs of a redacted request."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from serve_app.api import listen, params
from serve_app.errors import InvalidRequest
from serve_app.pipeline import transforms
from serve_app.pipeline.redact import find, placeholders
from serve_app.pipeline.transcript import Transcript, Word
from serve_app.types import ChunkTranscript, Token

from .helpers import JFK_FLAC, FileServer, serving
from .support import AUTH, KEY, FakeEngine, make_ingress, serve_log, whole_stream

_PUNCT = re.compile(r"^[^\w']+|[^\w']+$")


def words_of(text: str) -> list[Word]:
    """Words as the pipeline makes them (normalised `word`), each 0.4 s long, one every 0.5 s."""
    return [Word(_PUNCT.sub("", tok).lower() or tok, tok, k * 0.5, k * 0.5 + 0.4, 0.9) for k, tok in enumerate(text.split())]


def redacted(text: str, query: dict[str, Any]) -> Transcript:
    request = params.parse(listen.OPTIONS, query)
    return transforms.apply(Transcript(text, words_of(text), 0.9, 10.0, "en"), request)


CARD = "4111 1111 1111 1111"  # Visa's test number: passes Luhn
BAD_CARD = "4111 1111 1111 1112"  # one digit off: fails Luhn
SPOKEN_CARD = " ".join(["four"] + ["one"] * 15)
SPOKEN_BAD_CARD = " ".join(["four"] + ["one"] * 14 + ["two"])
PCI, SSN, PII, NUMBERS = {"redact": "pci"}, {"redact": "ssn"}, {"redact": "pii"}, {"redact": "numbers"}
PULSE_PII, PULSE_PCI = {"redact_pii": "true"}, {"redact_pci": "true"}

# (what Whisper wrote, options, the transcript redacted, (placeholder, start, end) of each placeholder word)
GOLDEN: list[tuple[str, dict[str, Any], str, list[tuple[str, float, float]]]] = [
    # cards: Luhn decides, written in groups, as one word, spelled out
    (f"My card is {CARD}.", PCI, "My card is [CREDIT_CARD_1].", [("[CREDIT_CARD_1]", 1.5, 3.4)]),
    (f"My card is {BAD_CARD}.", PCI, f"My card is {BAD_CARD}.", []),
    ("Card 4111-1111-1111-1111, thanks.", PCI, "Card [CREDIT_CARD_1], thanks.", [("[CREDIT_CARD_1]", 0.5, 0.9)]),
    ("Amex 3782 822463 10005 please", PCI, "Amex [CREDIT_CARD_1] please", [("[CREDIT_CARD_1]", 0.5, 1.9)]),
    (f"it is {SPOKEN_CARD} thanks", PCI, "it is [CREDIT_CARD_1] thanks", [("[CREDIT_CARD_1]", 1.0, 8.9)]),
    (f"it is {SPOKEN_BAD_CARD} thanks", PCI, f"it is {SPOKEN_BAD_CARD} thanks", []),
    (f"it is {SPOKEN_BAD_CARD} thanks", PII, f"it is {SPOKEN_BAD_CARD} thanks", []),  # never cut into a phone number
    (f"{CARD} 1234 was it", PCI, "[CREDIT_CARD_1] 1234 was it", [("[CREDIT_CARD_1]", 0.0, 1.9)]),
    (f"My card is {CARD}.", SSN, f"My card is {CARD}.", []),
    # the card's expiration date and CVV, when the words before say so
    (
        "It expires 12/27 and the CVV is 123.",
        PCI,
        "It expires [CREDIT_CARD_EXPIRATION_1] and the CVV is [CVV_1].",
        [("[CREDIT_CARD_EXPIRATION_1]", 1.0, 1.4), ("[CVV_1]", 3.5, 3.9)],
    ),
    ("I have 123 apples.", PCI, "I have 123 apples.", []),
    # SSNs: 3-2-4, spelled out (Deepgram's own example, numbered per transcript)
    ("My SSN is 123-45-6789.", SSN, "My SSN is [SSN_1].", [("[SSN_1]", 1.5, 1.9)]),
    ("It's 123 45 6789 OK", SSN, "It's [SSN_1] OK", [("[SSN_1]", 0.5, 1.9)]),
    (
        "mine is five five five two two one one one one and his is six six six two two one three three three",
        SSN,
        "mine is [SSN_1] and his is [SSN_2]",
        [("[SSN_1]", 1.0, 5.4), ("[SSN_2]", 7.0, 11.4)],
    ),
    ("It is 000-12-3456.", SSN, "It is 000-12-3456.", []),  # no SSN has an all-zero part
    ("My SSN is 123-45-6789.", PCI, "My SSN is 123-45-6789.", []),
    # phone numbers
    ("Call (555) 123-4567 now.", PII, "Call [PHONE_NUMBER_1] now.", [("[PHONE_NUMBER_1]", 0.5, 1.4)]),
    ("Call +44 20 7946 0958.", PII, "Call [PHONE_NUMBER_1].", [("[PHONE_NUMBER_1]", 0.5, 2.4)]),
    (
        "call five five five oh one two three four five six",
        PII,
        "call [PHONE_NUMBER_1]",
        [("[PHONE_NUMBER_1]", 0.5, 5.4)],
    ),
    ("Call 555-1234.", PII, "Call [PHONE_NUMBER_1].", [("[PHONE_NUMBER_1]", 0.5, 0.9)]),
    # emails, written and spoken; IP addresses
    ("Mail john.smith@example.com today.", PII, "Mail [EMAIL_ADDRESS_1] today.", [("[EMAIL_ADDRESS_1]", 0.5, 0.9)]),
    (
        "write to john dot smith at gmail dot com please",
        PII,
        "write to [EMAIL_ADDRESS_1] please",
        [("[EMAIL_ADDRESS_1]", 1.0, 4.4)],
    ),
    ("write to john at gmail.com please", PII, "write to [EMAIL_ADDRESS_1] please", [("[EMAIL_ADDRESS_1]", 1.0, 2.4)]),
    ("The server is 10.0.0.1.", PII, "The server is [IP_ADDRESS_1].", [("[IP_ADDRESS_1]", 1.5, 1.9)]),
    # names: after "my name is" or a title only (no named-entity model: anywhere else they stay)
    ("Hi, my name is John Smith and I live here.", PII, "Hi, my name is [NAME_1] and I live here.", [("[NAME_1]", 2.0, 2.9)]),
    ("Ask Dr. Jones.", PII, "Ask Dr. [NAME_1].", [("[NAME_1]", 1.0, 1.4)]),
    ("I met Sarah Connor yesterday.", PII, "I met Sarah Connor yesterday.", []),  # the documented gap
    # numbers: any other run of three digits or more, and words with three digits in a row
    ("I have 2 cats and 300 dogs.", NUMBERS, "I have 2 cats and [NUMERICAL_PII_1] dogs.", [("[NUMERICAL_PII_1]", 2.5, 2.9)]),
    (f"My card is {BAD_CARD}.", NUMBERS, "My card is [NUMERICAL_PII_1].", [("[NUMERICAL_PII_1]", 1.5, 3.4)]),
    ("Order A12345 came.", NUMBERS, "Order [NUMERICAL_PII_1] came.", [("[NUMERICAL_PII_1]", 0.5, 0.9)]),
    ("one two three go", NUMBERS, "[NUMERICAL_PII_1] go", [("[NUMERICAL_PII_1]", 0.0, 1.4)]),
    (f"My card is {CARD}.", NUMBERS, "My card is [CREDIT_CARD_1].", [("[CREDIT_CARD_1]", 1.5, 3.4)]),
    ("John at 3.5 percent", NUMBERS, "John at 3.5 percent", []),
    # combinations, repeated or comma-separated
    (
        f"Card {CARD}, SSN 123-45-6789.",
        {"redact": ["pci", "ssn"]},
        "Card [CREDIT_CARD_1], SSN [SSN_1].",
        [("[CREDIT_CARD_1]", 0.5, 2.4), ("[SSN_1]", 3.0, 3.4)],
    ),
    (
        "Card 4111111111111111, SSN 123-45-6789.",
        {"redact": "pci,ssn"},
        "Card [CREDIT_CARD_1], SSN [SSN_1].",
        [("[CREDIT_CARD_1]", 0.5, 0.9), ("[SSN_1]", 1.5, 1.9)],
    ),
    (
        "Call 555-123-4567 or 555-987-6543.",
        PII,
        "Call [PHONE_NUMBER_1] or [PHONE_NUMBER_2].",
        [("[PHONE_NUMBER_1]", 0.5, 0.9), ("[PHONE_NUMBER_2]", 1.5, 1.9)],
    ),
    # Pulse's names for the same things
    (f"My card is {CARD}.", PULSE_PCI, "My card is [ACCOUNTNUMBER_1].", [("[ACCOUNTNUMBER_1]", 1.5, 3.4)]),
    (
        "The CVV is 123, zip code 94105.",
        PULSE_PCI,
        "The CVV is [CREDITCARDCVV_1], zip code [ZIPCODE_1].",
        [("[CREDITCARDCVV_1]", 1.5, 1.9), ("[ZIPCODE_1]", 3.0, 3.4)],
    ),
    (
        "My name is John Smith, call (555) 123-4567.",
        PULSE_PII,
        "My name is [FIRSTNAME_1] [LASTNAME_1], call [PHONENUMBER_1].",
        [("[FIRSTNAME_1]", 1.5, 1.9), ("[LASTNAME_1]", 2.0, 2.4), ("[PHONENUMBER_1]", 3.0, 3.9)],
    ),
    ("My SSN is 123-45-6789.", PULSE_PII, "My SSN is [SSN_1].", [("[SSN_1]", 1.5, 1.9)]),
    (f"My card is {CARD}.", PULSE_PII, f"My card is {CARD}.", []),  # cards are Pulse's PCI
    # nothing to redact
    ("Hello world.", PII, "Hello world.", []),
    ("Hello world.", {"redact": "false"}, "Hello world.", []),
]


@pytest.mark.parametrize("text, query, expected, marks", GOLDEN, ids=[f"{i}:{g[2][:40]}" for i, g in enumerate(GOLDEN)])
def test_golden(text: str, query: dict[str, Any], expected: str, marks: list[tuple[str, float, float]]) -> None:
    t = redacted(text, query)
    assert t.text == expected == " ".join(w.punctuated_word for w in t.words)
    assert [(w.word, w.start, w.end) for w in t.words if w.word.startswith("[")] == marks
    assert placeholders(t.words) == [m[0] for m in marks]
    kept = [w for w in t.words if not w.word.startswith("[")]
    assert all(w in words_of(text) for w in kept)  # every other word as it was, times included


def test_unpunctuated_transcripts_are_redacted_too() -> None:
    t = redacted("My name is John Smith and my card is 4111 1111 1111 1111.", {"punctuate": "false", "redact": "pii"})
    assert t.text == "my name is [NAME_1] and my card is [CREDIT_CARD_1]"


@pytest.mark.parametrize(
    "text, query, expected",
    [
        # Formatting would regroup a spoken SSN into "1 2 345-6789" and leave "1 2" in clear: redaction runs first.
        (
            "My social is one two three, four five, six seven eight nine.",
            {**PII, "smart_format": "true"},
            "My social is [SSN_1].",
        ),
        ("Call five five five, one two three, four five six seven.", {**PII, "smart_format": "true"}, "Call [PHONE_NUMBER_1]."),
        # A placeholder's count is not a number to spell out.
        (
            "My social is 123-45-6789 and it cost 25 dollars.",
            {**SSN, "numerals": "false"},
            "My social is [SSN_1] and it cost twenty-five dollars.",
        ),
        # A ZIP code said with a final "oh" is all redacted; "number one oh" is not a number run.
        ("My zip code is nine oh two one oh.", NUMBERS, "My zip code is [LOCATION_ZIP_1]."),
        ("The code was nine oh two one oh.", NUMBERS, "The code was [NUMERICAL_PII_1]."),
        ("I am number one oh wait.", NUMBERS, "I am number one oh wait."),
    ],
)
def test_redaction_comes_before_the_stages_that_rewrite_numbers(text: str, query: dict[str, Any], expected: str) -> None:
    assert redacted(text, query).text == expected


def test_a_placeholder_keeps_speaker_and_lowest_confidence() -> None:
    words = [Word("call", "call", 0.0, 0.4, 0.9, 1), Word("555-1234", "555-1234.", 0.5, 0.9, 0.7, 1)]
    t = transforms.apply(Transcript("", words, 0.9, 1.0, "en"), params.parse(listen.OPTIONS, PII))
    assert t.words[1] == Word("[PHONE_NUMBER_1]", "[PHONE_NUMBER_1].", 0.5, 0.9, 0.7, 1)


def test_entities_are_found_whatever_is_asked() -> None:
    assert [(e.start, e.end, e.kind) for e in find(words_of(f"{CARD} and 123-45-6789"))] == [
        (0, 4, "credit_card"),
        (5, 6, "ssn"),
    ]


@pytest.mark.parametrize(
    "query, parameter",
    [
        ({"redact": "phi"}, "redact"),
        ({"redact": "aggressive_numbers"}, "redact"),
        ({"redact": ["pci", "c4n4ry"]}, "redact"),
        ({"redact": {"a": 1}}, "redact"),
        ({"redact": "pci", "redact_pii": "true"}, "redact"),
        ({"redact_pii": "c4n4ry"}, "redact_pii"),
        ({"redact_pci": "maybe"}, "redact_pci"),
    ],
)
def test_options_that_cannot_be_honoured_are_400(query: dict[str, Any], parameter: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        params.parse(listen.OPTIONS, query)
    body = json.dumps(raised.value.body())
    assert raised.value.extra["parameter"] == parameter and "c4n4ry" not in body, body


def test_nothing_is_done_when_not_asked() -> None:
    request = params.parse(listen.OPTIONS, {})
    assert request.redact == () and not [t for t in transforms.TRANSFORMS if t.name == "redact" and t.applies(request)]


# --- through the ingress ----------------------------------------------------------------------------

SECRET = "My card is 4111 1111 1111 1111 and my SSN is 123-45-6789."
CLEAR = ("4111", "123-45-6789", "6789")  # what must never leave the server once redacted


class SecretEngine(FakeEngine):
    """Says SECRET for every chunk (times 0.5 s + 0.3 s per word when aligned)."""

    def answer(self, align: bool) -> ChunkTranscript:
        pieces = SECRET.split()
        times = [(0.5 + 0.3 * k, 0.75 + 0.3 * k) if align else (None, None) for k in range(len(pieces))]
        return ChunkTranscript(" " + SECRET, [Token(" " + p, -0.1, *t) for p, t in zip(pieces, times)], aligned=align)


@pytest.fixture
def client(tmp_path: Any) -> Iterator[TestClient]:
    args = {"stream": {"idle_timeout_s": 2, "min_final_speech_s": 0}, "callbacks": {"poll_s": 0.05}}
    with TestClient(make_ingress(SecretEngine(), tmp_path, args).__serve_build_asgi_app__()) as c:
        yield c


@pytest.fixture
def hooks() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {})  # make_ingress allowlists 127.0.0.2


def _post(client: TestClient, path: str, query: str, auth: dict[str, str] = AUTH) -> Any:
    response = client.post(f"{path}?{query}", headers={**auth, "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes())
    assert response.status_code == 200, response.text
    return response


def _no_clear_text(body: str) -> None:
    assert not any(c in body for c in CLEAR), body


def test_deepgram_answer_is_redacted_everywhere(client: TestClient) -> None:
    query = "redact=pci&redact=ssn&utterances=true&paragraphs=true&timestamps=true"
    response = _post(client, "/v1/listen", query)
    _no_clear_text(response.text)
    body = response.json()
    expected = "My card is [CREDIT_CARD_1] and my SSN is [SSN_1]."
    alternative = body["results"]["channels"][0]["alternatives"][0]
    assert body["text"] == alternative["transcript"] == body["results"]["utterances"][0]["transcript"] == expected
    assert alternative["paragraphs"]["paragraphs"][0]["sentences"][0]["text"] == expected
    card = alternative["words"][3]
    assert card["punctuated_word"] == "[CREDIT_CARD_1]" and card["start"] < card["end"]
    assert [w["punctuated_word"] for w in alternative["words"]][-1] == "[SSN_1]."


def test_pulse_answer_names_its_redactions(client: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {KEY}"}
    body = _post(client, "/waves/v1/stt", "model=pulse&language=en&redact_pci=true&redact_pii=true&diarize=true", bearer)
    _no_clear_text(body.text)
    answer = body.json()
    assert answer["transcription"] == "My card is [ACCOUNTNUMBER_1] and my SSN is [SSN_1]."
    assert answer["redacted_entities"] == ["[ACCOUNTNUMBER_1]", "[SSN_1]"]
    assert "[ACCOUNTNUMBER_1]" in " ".join(u["text"] for u in answer["utterances"])
    plain = _post(client, "/waves/v1/stt", "model=pulse&language=en", bearer).json()
    assert "redacted_entities" not in plain and "4111" in plain["transcription"]  # nothing paid, nothing changed


@pytest.mark.parametrize("response_format", ["json", "verbose_json", "text", "srt", "vtt"])
def test_openai_route_and_captions_are_redacted(client: TestClient, response_format: str) -> None:
    response = client.post(
        "/v1/audio/transcriptions",
        headers=AUTH,
        files={"file": ("a.flac", JFK_FLAC.read_bytes(), "audio/flac")},
        data={"response_format": response_format, "redact": ["pci", "ssn"], "timestamp_granularities[]": "word"},
    )
    assert response.status_code == 200, response.text
    _no_clear_text(response.text)
    assert "[CREDIT_CARD_1]" in response.text and "[SSN_1]" in response.text


def test_a_json_list_of_redactions_is_read() -> None:
    request = params.parse(listen.OPTIONS, {"redact": ["pci", "numbers"]})
    assert "credit_card" in request.redact and "numerical_pii" in request.redact


def test_callbacks_get_the_redacted_answer(client: TestClient, hooks: FileServer) -> None:
    _post(client, "/v1/listen", f"redact=pci&redact=ssn&callback={hooks.url('/hook')}")
    _post(client, "/v1/listen", f"redact=pii&response_format=srt&callback={hooks.url('/hook')}")
    deadline = time.monotonic() + 10
    while len(hooks.posted) < 2:
        assert time.monotonic() < deadline, "callbacks not delivered"
        time.sleep(0.05)
    for _, body in hooks.posted:
        _no_clear_text(body.decode())
    assert {b"[SSN_1]" in body for _, body in hooks.posted} == {True}


def test_deepgram_live_interims_and_finals_are_redacted(client: TestClient) -> None:
    messages = whole_stream(
        client, "/v1/listen?encoding=linear16&sample_rate=16000&redact=pci&redact=ssn&interim_results=true", AUTH
    )[0]
    results = [m for m in messages if m["type"] == "Results" and m["channel"]["alternatives"][0]["transcript"]]
    assert {r["is_final"] for r in results} == {True, False}
    _no_clear_text(json.dumps(messages))
    assert {r["channel"]["alternatives"][0]["transcript"] for r in results} == {
        "My card is [CREDIT_CARD_1] and my SSN is [SSN_1]."
    }


def test_pulse_live_is_redacted(client: TestClient) -> None:
    url = (
        "/waves/v1/stt/live?language=en&encoding=linear16&sample_rate=16000&redact_pci=true&redact_pii=true&full_transcript=true"
    )
    messages = whole_stream(client, url, {"Authorization": f"Bearer {KEY}"})[0]
    spoken = [m for m in messages if m.get("transcript")]
    assert spoken and {m["is_final"] for m in spoken} == {True, False}
    _no_clear_text(json.dumps(messages))
    assert all(m["redacted_entities"] == ["[ACCOUNTNUMBER_1]", "[SSN_1]"] for m in spoken)
    assert "[ACCOUNTNUMBER_1]" in [m for m in spoken if m["is_final"]][-1]["full_transcript"]


def test_a_redacted_request_never_logs_the_clear_text(client: TestClient, hooks: FileServer, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    with serve_log(caplog.handler):  # the service's own logger: Ray may stop it propagating to the root
        _redacted_traffic(client, hooks)
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("transcription request_id=") for m in logged)  # the requests were logged...
    assert any(m.startswith("stream request_id=") for m in logged)
    _no_clear_text(caplog.text)  # ...without what was said


def _redacted_traffic(client: TestClient, hooks: FileServer) -> None:
    _post(client, "/v1/listen", "redact=pci&redact=ssn")
    _post(client, "/v1/listen", f"redact=pci&redact=ssn&callback={hooks.url('/hook')}")
    whole_stream(client, "/v1/listen?encoding=linear16&sample_rate=16000&redact=pci&redact=ssn&interim_results=true", AUTH)[0]
    deadline = time.monotonic() + 10
    while not hooks.posted:
        assert time.monotonic() < deadline, "callback not delivered"
        time.sleep(0.05)
