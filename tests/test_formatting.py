"""Smart formatting and numerals (pipeline/formatting.py, pipeline/spelled.py): a golden table of
inverse-normalisation cases in real transcripts' phrasing, each with its exact output and the times
of its words; then the options through the ingress (the file routes and both live dialects).

An expected output is written token by token; a token's suffix says which spoken words it took:
none: the next one; `{n}`: the next n (its start is the first one's, its end the last one's);
`{=}`: the same words as the token before it ("7pm" -> "7 PM"); `{~}`: a run of tokens sharing the
next spoken word, its time split by length (numerals=false: "$5" -> "five dollars")."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from serve_app.api.live import Deepgram
from serve_app.api.pulse_live import Smallest
from serve_app.errors import InvalidRequest
from serve_app.pipeline.request import TranscriptionRequest
from serve_app.pipeline.stitch import _PUNCT
from serve_app.pipeline.transcript import Transcript, Word
from serve_app.pipeline.transforms import apply
from serve_app.settings import ROOT
from serve_app.types import ChunkTranscript, Token

from .helpers import JFK_FLAC
from .support import AUTH, FakeEngine, make_ingress, whole_stream

SMART = TranscriptionRequest(smart_format=True)
DIGITS = TranscriptionRequest(numerals=True)
WORDS = TranscriptionRequest(numerals=False)

# Whisper's own output from docs/accuracy/sets.json: numbers it already writes as digits, which
# formatting leaves exactly as they are.
WHISPER_ALREADY = [
    "Go forward 10 meters.",
    "In 1465, Swainheim and Panerps began printing in the monastery of Subiacul near Rome.",
    "for the 20th time that evening the two men shook hands.",
    "Today, only platforms 1 and 3 are used.",
    "8 of spades, 4 of close, 7 of hearts.",
    "1, 2, 3.",
    "5 5",
    "1,0001 90210 0,1803",
    "The earliest book printed with movable types, the Guttenburg, or 42-line Bible, of about 1455.",
    "And type very similar was used during the next 15 or 20 years, not only by Schofer.",
    "Malheureusement, il est difficile d'étudier le flux de circulation, avec 100% de sortitudes.",
    # ...and what callers say that it writes in the written form already
    "My number is 415-555-0132.",
    "You can reach me at (415) 555-0132.",
    "It's on our website, www.acme.com.",
    "The deadline is Friday, March 15.",
    "It's due by the 15th of March.",
    "That will be $25.99, please.",
    "Prices rose 3.5% last year.",
    "She finished in second place.",
    "Pick the first option.",
    "You may go now.",
    "Wait a second.",
    "One of the best.",
    "About a third of the class.",
]

GOLDEN: list[tuple[TranscriptionRequest, str, str]] = [
    # phone numbers, said digit by digit (with Whisper's commas at the pauses) or as Whisper grouped them
    (SMART, "Call me at five five five one two three four five six seven.", "Call me at 555-123-4567.{10}"),
    (SMART, "Call me at five five five, one two three, four five six seven.", "Call me at 555-123-4567.{10}"),
    (SMART, "My number is 555 123 4567.", "My number is 555-123-4567.{3}"),
    (SMART, "Call one eight hundred, five five five, one two three four.", "Call 1-800-555-1234.{10}"),
    (SMART, "It's nine one zero five five five twelve thirty four.", "It's 910-555-1234.{9}"),
    (SMART, "Dial five five five, one two one two.", "Dial 555-1212.{7}"),
    # digits read out: zip codes, order numbers, PINs, rooms
    (SMART, "The zip code is nine oh two one oh.", "The zip code is 90210.{5}"),
    (SMART, "Your order number is four five seven two nine.", "Your order number is 45729.{5}"),
    (SMART, "My PIN is one two three four.", "My PIN is 1234.{4}"),
    (SMART, "Room two oh five.", "Room 205.{3}"),
    # emails and web addresses
    (SMART, "My email is john dot smith at gmail dot com.", "My email is john.smith@gmail.com.{7}"),
    (SMART, "send it to support at help dot com", "send it to support@help.com{5}"),
    (SMART, "Write to info at acme dot io.", "Write to info@acme.io.{5}"),
    (SMART, "Email me at sarah underscore lee at yahoo dot com.", "Email me at sarah_lee@yahoo.com.{7}"),
    (SMART, "It's john.smith at gmail.com.", "It's john.smith@gmail.com.{3}"),
    (SMART, "Go to w w w dot example dot com slash pricing.", "Go to www.example.com/pricing.{9}"),
    (SMART, "Check out acme dot com for details.", "Check out acme.com{3} for details."),
    (SMART, "Visit us at example dot com.", "Visit us at example.com.{3}"),
    (SMART, "Go to acme dot com slash support.", "Go to acme.com/support.{5}"),
    # currency
    (SMART, "It costs five dollars and fifty cents.", "It costs $5.50.{5}"),
    (SMART, "I paid forty two dollars for it.", "I paid $42{3} for it."),
    (SMART, "It was about thirty dollars and ninety nine cents.", "It was about $30.99.{7}"),
    (SMART, "The total was 5 dollars.", "The total was $5.{2}"),
    (SMART, "It costs 5 bucks.", "It costs $5.{2}"),
    (SMART, "They raised two million dollars.", "They raised $2 million.{2}"),
    (SMART, "They raised 2 million dollars.", "They raised $2 million.{2}"),
    (SMART, "That's one point five million dollars.", "That's $1.5{3} million.{2}"),
    (SMART, "I'll need about five hundred dollars.", "I'll need about $500.{3}"),
    (SMART, "It's a twenty dollar bill.", "It's a $20{2} bill."),
    (SMART, "It was fifty cents.", "It was 50¢.{2}"),
    (SMART, "Five hundred euros.", "€500.{3}"),
    (SMART, "Ten pounds.", "£10.{2}"),
    # percentages
    (SMART, "Twenty five percent of the people.", "25%{3} of the people."),
    (SMART, "That's 25 percent off.", "That's 25%{2} off."),
    (SMART, "Ninety nine point nine percent.", "99.9%.{5}"),
    (SMART, "Interest is three point five percent.", "Interest is 3.5%.{4}"),
    (SMART, "The rate went up by 3.5 percent.", "The rate went up by 3.5%.{2}"),
    # times
    (SMART, "See you at three thirty p m.", "See you at 3:30{2} PM.{2}"),
    (SMART, "It was nine thirty a m when I left.", "It was 9:30{2} AM{2} when I left."),
    (SMART, "The flight leaves at six forty five a m on Tuesday.", "The flight leaves at 6:45{3} AM{2} on Tuesday."),
    (SMART, "We're open from nine a m to five p m.", "We're open from 9 AM{2} to 5 PM.{2}"),
    (SMART, "Meet me at 3.30 p.m. tomorrow.", "Meet me at 3:30 PM tomorrow."),
    (SMART, "Meet me at 3.30 p.m.", "Meet me at 3:30 PM."),
    (SMART, "I'll be there at 7pm.", "I'll be there at 7 PM.{=}"),
    (SMART, "It's one thirty.", "It's 1:30.{2}"),
    (SMART, "It's three o'clock.", "It's 3:00.{2}"),
    # dates
    (SMART, "The meeting is on March third twenty twenty four.", "The meeting is on March 3,{1} 2024.{3}"),
    (SMART, "The meeting is on march third twenty twenty four", "The meeting is on March 3,{1} 2024{3}"),
    (SMART, "The deadline is March 3rd, 2024.", "The deadline is March 3, 2024."),
    (SMART, "It's due March twenty, twenty twenty four.", "It's due March 20, 2024.{3}"),
    (SMART, "Born July fourth, nineteen seventy six.", "Born July 4, 1976.{3}"),
    (SMART, "On January first, twenty twenty five.", "On January 1, 2025.{3}"),
    (SMART, "It happened in May twenty twenty.", "It happened in May 2020.{2}"),
    (SMART, "The appointment is June 12th at 10:30 a.m.", "The appointment is June 12 at 10:30 AM."),
    (SMART, "I was born on the twelfth of June nineteen eighty eight.", "I was born on the 12th of June 1988.{3}"),
    # numbers, ordinals, years: smart_format and numerals=true alike
    (SMART, "I have two hundred and fifty three apples.", "I have 253{5} apples."),
    (SMART, "In fourteen sixty five, Swainheim began printing.", "In 1465,{3} Swainheim began printing."),
    (SMART, "Nineteen ninety nine was a good year.", "1999{3} was a good year."),
    (SMART, "Back in twenty nineteen we moved.", "Back in 2019{2} we moved."),
    (SMART, "It was twenty oh five.", "It was 2005.{3}"),
    (SMART, "The twenty first century.", "The 21st{2} century."),
    (SMART, "This is the third time I've called.", "This is the 3rd time I've called."),
    (SMART, "Chapter twenty one.", "Chapter 21.{2}"),
    (SMART, "I'm twenty three years old.", "I'm 23{2} years old."),
    (SMART, "The temperature was minus five.", "The temperature was -5.{2}"),
    (SMART, "Sales grew to ten thousand five hundred.", "Sales grew to 10,500.{4}"),
    (SMART, "The population is about eight billion.", "The population is about 8 billion."),
    (SMART, "A hundred people came.", "100{2} people came."),
    (SMART, "Give me five minutes.", "Give me 5 minutes."),
    (DIGITS, "Give me five minutes.", "Give me 5 minutes."),
    (DIGITS, "I have two hundred and fifty three apples.", "I have 253{5} apples."),
    (DIGITS, "Nineteen ninety nine was a good year.", "1999{3} was a good year."),
    (DIGITS, "Zero point five of a second.", "0.5{3} of a second."),
    (DIGITS, "The twenty first century.", "The 21st{2} century."),
    # numerals=true is numbers only: currency, percentages, phones, emails stay as said
    (DIGITS, "Twenty five percent of the people.", "25{2} percent of the people."),
    (DIGITS, "I paid forty two dollars for it.", "I paid 42{2} dollars for it."),
    (DIGITS, "My email is john dot smith at gmail dot com.", "My email is john dot smith at gmail dot com."),
    # other languages text2num reads: numbers only
    (TranscriptionRequest(smart_format=True, language="fr"), "Il y a vingt trois personnes.", "Il y a 23{2} personnes."),
    # numerals=false: Whisper's digits written out
    (WORDS, "Go forward 10 meters.", "Go forward ten meters."),
    (WORDS, "In 1465, Swainheim began printing.", "In fourteen{~} sixty-five,{~} Swainheim began printing."),
    (WORDS, "for the 20th time that evening.", "for the twentieth time that evening."),
    (WORDS, "8 of spades, 4 of close.", "Eight of spades, four of close."),
    (WORDS, "It costs $5.50.", "It costs five{~} dollars{~} and{~} fifty{~} cents.{~}"),
    (WORDS, "It costs $1.", "It costs one{~} dollar.{~}"),
    (WORDS, "They raised $2 million.", "They raised two{~2} million{~2} dollars.{~2}"),
    (WORDS, "That's 25% off.", "That's twenty-five{~} percent{~} off."),
    (WORDS, "Meet me at 3:30.", "Meet me at three{~} thirty.{~}"),
    (WORDS, "It's 3:00 now.", "It's three{~} o'clock{~} now."),
    (WORDS, "1,000 people came.", "One{~} thousand{~} people came."),
    (WORDS, "It was 2.5 times bigger.", "It was two{~} point{~} five{~} times bigger."),
    (WORDS, "Back in the 1990s.", "Back in the nineteen{~} nineties.{~}"),
    (WORDS, "Call 555-1234.", "Call five{~} five{~} five{~} one{~} two{~} three{~} four.{~}"),
    (WORDS, "The 42-line Bible.", "The forty-two-line Bible."),
    (WORDS, "Go forward ten meters.", "Go forward ten meters."),
    (TranscriptionRequest(numerals=False, language="fr"), "Il y a 25 personnes.", "Il y a vingt-cinq personnes."),
]


def _words(text: str) -> list[Word]:
    """Whisper's words as stitch makes them, one a second, each with its own confidence."""
    return [
        Word(_PUNCT.sub("", token).lower() or token, token, float(k), k + 0.5, round(0.5 + (k * 7 % 10) / 20, 2))
        for k, token in enumerate(text.split())
    ]


def _transcript(text: str, language: str = "en") -> Transcript:
    return Transcript(text, _words(text), 0.9, 30.0, language)


def _expected(source: list[Word], expected: str) -> list[Word]:
    """The words `expected` stands for (see the module's docstring), with their times and confidences."""
    out: list[Word] = []
    tokens = expected.split()
    k = at = 0
    while at < len(tokens):
        token = tokens[at]
        m = re.fullmatch(r"(.+?)(?:\{(\d+|=|~\d*)\})?", token)
        assert m is not None
        text, mark = m.group(1), m.group(2)
        if mark and mark.startswith("~"):  # a run sharing the next spoken word(s)
            run = [text]
            while at + 1 < len(tokens) and tokens[at + 1].endswith("{" + mark + "}"):
                at += 1
                run.append(tokens[at][: -len(mark) - 2])
            taken = source[k : k + int(mark[1:] or 1)]
            start, end = taken[0].start, taken[-1].end
            bare = [_PUNCT.sub("", t).lower() or t for t in run]
            total, edge = sum(len(b) for b in bare), start
            for n, (t, b) in enumerate(zip(run, bare)):
                until = end if n == len(run) - 1 else round(edge + (end - start) * len(b) / total, 3)
                out.append(Word(b, t, edge, until, taken[0].confidence, None))
                edge = until
            k += len(taken)
        elif mark == "=":
            out.append(Word(_bare(text), text, out[-1].start, out[-1].end, out[-1].confidence))
        else:
            taken = source[k : k + int(mark or 1)]
            if mark is None and text == taken[0].punctuated_word:
                out.append(taken[0])  # unchanged
            else:
                out.append(Word(_bare(text), text, taken[0].start, taken[-1].end, min(w.confidence for w in taken)))
            k += len(taken)
        at += 1
    assert k == len(source), "the expected tokens must take every spoken word"
    return out


def _bare(text: str) -> str:
    return re.sub(r"^[\"'(]+|[.,;:?!\"')]+$", "", text).lower()


@pytest.mark.parametrize("text", WHISPER_ALREADY)
@pytest.mark.parametrize("request_", [SMART, DIGITS], ids=["smart_format", "numerals"])
def test_what_whisper_already_writes_is_left_as_it_is(text: str, request_: TranscriptionRequest) -> None:
    t = _transcript(text, "fr" if text.startswith("Malheureusement") else "en")
    assert apply(t, request_) is t


@pytest.mark.parametrize("request_, spoken, expected", GOLDEN, ids=[f"{i}-{g[1][:40]}" for i, g in enumerate(GOLDEN)])
def test_golden(request_: TranscriptionRequest, spoken: str, expected: str) -> None:
    t = _transcript(spoken, request_.language or "en")
    out = apply(t, request_)
    words = _expected(t.words, expected)
    assert out.text == re.sub(r"\{[^}]*\}", "", expected)
    assert out.words == words
    assert (out.confidence, out.duration, out.language) == (t.confidence, t.duration, t.language)


def test_the_golden_table_is_at_least_fifty_cases() -> None:
    assert len(GOLDEN) + len(WHISPER_ALREADY) >= 100 and len(GOLDEN) >= 50


def test_a_formatted_token_keeps_its_speaker_and_nothing_joins_across_speakers() -> None:
    words = _words("It costs five dollars.")
    words = [w if k < 3 else Word(w.word, w.punctuated_word, w.start, w.end, w.confidence, 1) for k, w in enumerate(words)]
    out = apply(Transcript("", words, 0.9, 4.0, "en"), SMART)
    assert out.text == "It costs 5 dollars."  # "five" and "dollars" are two speakers' words
    words = [Word(w.word, w.punctuated_word, w.start, w.end, w.confidence, 0) for w in _words("It costs five dollars.")]
    assert [(w.punctuated_word, w.speaker) for w in apply(Transcript("", words, 0.9, 4.0, "en"), SMART).words][-1] == ("$5.", 0)


def test_punctuate_false_after_formatting() -> None:
    out = apply(_transcript("It costs five dollars and fifty cents."), TranscriptionRequest(smart_format=True, punctuate=False))
    assert out.text == "it costs $5.50"


# --- the options through the ingress --------------------------------------------------------------


class SpokenEngine(FakeEngine):
    """Says "It costs twenty five dollars." (aligned: a word every 0.5 s from 0.5 s)."""

    def answer(self, align: bool) -> ChunkTranscript:
        texts = [" It", " costs", " twenty", " five", " dollars", "."]
        times = [(0.5 + k * 0.5, 1.0 + k * 0.5) for k in range(5)] + [(3.0, 3.0)]
        tokens = [Token(t, -0.1, *(span if align else (None, None))) for t, span in zip(texts, times)]
        return ChunkTranscript("".join(texts), tokens, aligned=align)


@pytest.fixture
def client(tmp_path: Any) -> Any:
    ingress = make_ingress(SpokenEngine(), tmp_path, {"stream": {"idle_timeout_s": 2, "min_final_speech_s": 0}})
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        yield c


FLAC = {**AUTH, "Content-Type": "audio/flac"}


@pytest.mark.parametrize(
    "query, text",
    [
        ("", "It costs twenty five dollars."),
        ("?smart_format=true", "It costs $25."),
        ("?itn_normalize=true", "It costs $25."),
        ("?numerals=true", "It costs 25 dollars."),
        ("?numerals=auto", "It costs twenty five dollars."),
        ("?smart_format=false&numerals=false", "It costs twenty five dollars."),
    ],
)
def test_file_routes_format_on_request(client: TestClient, query: str, text: str) -> None:
    body = client.post(f"/v1/listen{query}", headers=FLAC, content=JFK_FLAC.read_bytes()).json()
    assert body["text"] == body["results"]["channels"][0]["alternatives"][0]["transcript"] == text
    pulse = client.post(f"/waves/v1/stt/{query}", headers=FLAC, content=JFK_FLAC.read_bytes()).json()
    assert pulse["transcription"] == text


def test_a_formatted_word_carries_its_spoken_words_times(client: TestClient) -> None:
    body = client.post("/v1/listen?smart_format=true&timestamps=true", headers=FLAC, content=JFK_FLAC.read_bytes()).json()
    words = body["results"]["channels"][0]["alternatives"][0]["words"]
    assert [(w["word"], w["punctuated_word"]) for w in words] == [("it", "It"), ("costs", "costs"), ("$25", "$25.")]
    assert (words[-1]["start"], words[-1]["end"]) == (words[1]["end"], 3.0)  # "twenty" starts, "dollars." ends
    pulse = client.post("/waves/v1/stt/?itn_normalize=true&word_timestamps=true", headers=FLAC, content=JFK_FLAC.read_bytes())
    assert [w["word"] for w in pulse.json()["words"]] == ["It", "costs", "$25."]


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("smart_format=sometimes", "smart_format"),
        ("itn_normalize=maybe", "itn_normalize"),
        ("numerals=digits", "numerals"),
        ("numerals=false&smart_format=true", "numerals"),
        ("numerals=false&itn_normalize=true", "numerals"),
        ("numerals=true&language=ja", "numerals"),  # text2num does not read Japanese
        ("numerals=false&language=zh", "numerals"),  # num2words does not write Chinese
    ],
)
def test_bad_formatting_options_are_400(client: TestClient, query: str, parameter: str) -> None:
    for path in ("/v1/listen", "/waves/v1/stt/"):
        response = client.post(f"{path}?{query}", headers=FLAC, content=JFK_FLAC.read_bytes())
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["code"] == "INVALID_REQUEST" and body["parameter"] == parameter
        sent = query.split("=")[1].split("&")[0]
        assert sent in ("true", "false") or sent not in body["error"]  # a bad value is never echoed


def test_live_options_are_parsed_by_both_dialects() -> None:
    def text(dialect: Deepgram | Smallest, params: dict) -> TranscriptionRequest:
        options = dialect.parse(params, 0.3).text
        assert options is not None
        return options

    assert text(Deepgram(), {"smart_format": "true"}).smart_format
    assert text(Deepgram(), {"numerals": "false"}).numerals is False
    assert text(Smallest(), {"itn_normalize": "true"}).smart_format
    assert text(Smallest(), {"numerals": "auto"}).numerals is None
    assert text(Smallest(), {"numerals": "true"}).numerals is True
    for bad in ({"numerals": "digits"}, {"smart_format": "true", "numerals": "false"}):
        for dialect in (Deepgram(), Smallest()):
            with pytest.raises(InvalidRequest):
                dialect.parse(bad, 0.3)


def test_live_streams_format_finals_and_interims(client: TestClient) -> None:
    messages = whole_stream(client, "/v1/listen?encoding=linear16&sample_rate=16000&interim_results=true&smart_format=true")[0]
    results = [m for m in messages if m["type"] == "Results" and m["channel"]["alternatives"][0]["transcript"]]
    assert any(r["is_final"] for r in results) and any(not r["is_final"] for r in results)
    for r in results:
        alternative = r["channel"]["alternatives"][0]
        assert alternative["transcript"] == "It costs $25."
        assert [w["punctuated_word"] for w in alternative["words"]] == ["It", "costs", "$25."]
    pulse = whole_stream(client, "/waves/v1/stt/live?encoding=linear16&sample_rate=16000&numerals=true")[0]
    assert {m["transcript"] for m in pulse if m["type"] == "transcription"} - {""} == {"It costs 25 dollars."}
    plain = whole_stream(client, "/v1/listen?encoding=linear16&sample_rate=16000")[0]
    assert {m["channel"]["alternatives"][0]["transcript"] for m in plain if m["type"] == "Results"} - {""} == {
        "It costs twenty five dollars."
    }


def test_nothing_is_loaded_or_paid_with_the_options_off() -> None:
    """The ingress and a request without the options load neither library (their import is the
    first formatted request's)."""
    code = (
        "import sys, serve_app.ingress\n"
        "from serve_app.pipeline.transforms import apply\n"
        "from serve_app.pipeline.request import TranscriptionRequest\n"
        "from serve_app.pipeline.transcript import Transcript, Word\n"
        "t = Transcript('Five dollars.', [Word('five', 'Five', 0, 1, 0.9), Word('dollars', 'dollars.', 1, 2, 0.9)], 0.9, 2, 'en')\n"
        "assert apply(t, TranscriptionRequest()) is t\n"
        "print(','.join(m for m in ('text_to_num', 'num2words') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


VOCABULARY = (
    "one two three five twelve twenty thirty fifty ninety hundred thousand million oh zero point first third twenty-first "
    "a the and at dot com gmail w slash underscore dollars dollar cents percent per cent p m a.m. p.m. pm o'clock March May "
    "of minus Call 5 25 1,000 2.5 3rd 1465 3:30 3.30 7pm $5 25% 555-1234 (415) 2024, five, seven. twenty? Hello"
).split()


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=25), st.sampled_from([SMART, DIGITS, WORDS]))
def test_any_words_format_without_error_and_keep_time_order(tokens: list[str], request_: TranscriptionRequest) -> None:
    t = _transcript(" ".join(tokens))
    out = apply(t, request_)
    assert out.text == " ".join(w.punctuated_word for w in out.words)
    assert all(a.start <= b.start and a.end <= b.end for a, b in zip(out.words, out.words[1:]))
    assert out.words[0].start == t.words[0].start and out.words[-1].end == t.words[-1].end
    assert all(w.start <= w.end and w.punctuated_word for w in out.words)
