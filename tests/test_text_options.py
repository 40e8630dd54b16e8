"""Deepgram's text options, fast: `replace`, `profanity_filter`, `dictation`, `measurements` (text
transforms), `search` (hits in the answer), `extra` and `tag` (echoed): each stage on exact words and
times, then through the ingress with a fake engine on every file route and the live routes, and the
400s for bad values. The real deepgram-sdk against the real service: test_text_options_e2e.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from serve_app.api.live import Deepgram
from serve_app.api.pulse_live import Smallest
from serve_app.errors import InvalidRequest
from serve_app.pipeline import dictation, measurements, profanity
from serve_app.pipeline import replace as find_and_replace
from serve_app.pipeline.search import MAX_HITS, Hit, search
from serve_app.pipeline.transcript import Transcript, Word
from serve_app.types import ChunkTranscript, Token

from .helpers import JFK_FLAC
from .support import AUTH, JFK_PCM, FakeEngine, Records, make_ingress, received, serve_log


def words(text: str, confidence: float = 0.9) -> Transcript:
    """`text` as a transcript of words 0.4 s long every 0.5 s, normalised as pipeline/stitch.py does."""
    out = []
    for i, punctuated in enumerate(text.split()):
        core = re.sub(r"^[^\w']+|[^\w']+$", "", punctuated).lower() or punctuated
        out.append(Word(core, punctuated, round(i * 0.5, 3), round(i * 0.5 + 0.4, 3), confidence))
    return Transcript(text, out, confidence, len(out) * 0.5, "en")


def shown(t: Transcript) -> list[tuple[str, str, float, float]]:
    return [(w.word, w.punctuated_word, w.start, w.end) for w in t.words]


# --- replace -------------------------------------------------------------------------------------


def test_replace_keeps_punctuation_and_times_word_for_word() -> None:
    t = find_and_replace.apply(words('He said "monika, hello.'), (("Monika", "Monica"),))
    assert t.text == 'He said "Monica, hello.'
    assert shown(t)[2] == ("monica", '"Monica,', 1.0, 1.4)


def test_replace_merges_and_splits_words_over_the_span() -> None:
    merged = find_and_replace.apply(words("we met in new york today"), (("new york", "NYC"), ("new", "old")))
    assert merged.text == "we met in NYC today"  # the longest find term wins where both start
    assert shown(merged)[3:] == [("nyc", "NYC", 1.5, 2.4), ("today", "today", 2.5, 2.9)]
    split = find_and_replace.apply(words("nyc rocks."), (("nyc", "New York"),))
    # 0.0-0.4 shared by length: "New" 3 letters, "York" 4
    assert shown(split) == [("new", "New", 0.0, 0.171), ("york", "York", 0.171, 0.4), ("rocks", "rocks.", 0.5, 0.9)]


def test_replace_is_one_pass_removes_with_an_empty_replacement_and_keeps_the_lowest_confidence() -> None:
    t = words("a b um c")
    t = Transcript(t.text, [*t.words[:1], Word("b", "b", 0.5, 0.9, 0.3), *t.words[2:]], 0.9, 2.0, "en")
    out = find_and_replace.apply(t, (("a", "b"), ("b", "c"), ("um", ""), ("a b", "x")))
    assert out.text == "x c"  # "a b" -> "x" (longest first), never chained; "um" removed
    assert out.words[0].confidence == 0.3
    untouched = words("nothing to see")
    assert find_and_replace.apply(untouched, (("absent", "x"),)) is untouched


# --- profanity -----------------------------------------------------------------------------------


def test_profanity_is_masked_letter_for_letter_keeping_punctuation() -> None:
    t = profanity.apply(words("What the fuck, this shit is mother-fucker good. Fuckin' hell, God."))
    assert t.text == "What the ****, this **** is mother-****** good. ******' hell, God."
    assert [w.word for w in t.words][2:5] == ["****", "this", "****"]
    assert shown(t)[2][2:] == (1.0, 1.4)  # times stay
    assert profanity.profane("bullshit") and not profanity.profane("ass") and not profanity.profane("god")


# --- dictation -----------------------------------------------------------------------------------


def test_dictation_turns_commands_into_marks_on_the_word_before() -> None:
    spoken = "Patient presents with a headache comma nausea, comma and vomiting, period. they report new paragraph It started full stop"
    t = dictation.apply(words(spoken))
    assert t.text == "Patient presents with a headache, nausea, and vomiting. They report\n\nIt started."
    assert shown(t)[4:6] == [("headache", "headache,", 2.0, 2.4), ("nausea", "nausea,", 3.0, 3.4)]
    # the commands' words are gone, the words around them keep their times
    assert [w.punctuated_word for w in t.words] == [
        *"Patient presents with a headache, nausea, and vomiting. They report It started.".split()
    ]
    assert shown(t)[8:10] == [("they", "They", 5.5, 5.9), ("report", "report", 6.0, 6.4)]


def test_dictation_leaves_a_leading_command_and_plain_text_alone() -> None:
    assert dictation.apply(words("comma here")).text == "comma here"
    plain = words("no commands here.")
    assert dictation.apply(plain) is plain
    assert dictation.apply(words("really question mark yes exclamation point")).text == "really? Yes!"


# --- measurements --------------------------------------------------------------------------------


def test_measurements_abbreviate_units_after_numbers() -> None:
    t = measurements.apply(
        words("She ran 10 kilometers per hour for 5 miles. It weighs 2.5 kilograms and a few meters, 3 pounds")
    )
    assert t.text == "She ran 10 km/h for 5 mi. It weighs 2.5 kg and a few meters, 3 pounds"
    assert shown(t)[2:5] == [("10", "10", 1.0, 1.4), ("km/h", "km/h", 1.5, 2.9), ("for", "for", 3.0, 3.4)]
    assert measurements.apply(words("it was 37 degrees Celsius")).text == "it was 37 °C"


# --- search --------------------------------------------------------------------------------------


def test_search_finds_words_phrases_and_split_words_by_confidence() -> None:
    t = words("We studied social epistemology and episte mology at Warwick. New York is big, newyork")
    found = search(t.words, ("epistemology", "New York", "banana"))
    assert [f.query for f in found] == ["epistemology", "New York", "banana"]
    assert found[0].hits == [Hit(0.9, 1.5, 1.9, "epistemology"), Hit(0.9, 2.5, 3.4, "episte mology")]
    assert found[1].hits == [Hit(0.9, 4.5, 5.4, "new york"), Hit(0.9, 6.5, 6.9, "newyork")]
    assert found[2].hits == []
    fuzzy = search(words("the epistemolgy class").words, ("epistemology",))[0].hits
    assert len(fuzzy) == 1 and fuzzy[0].snippet == "epistemolgy" and 0.8 < fuzzy[0].confidence < 0.9


def test_search_hits_are_bounded() -> None:
    t = words(" ".join(["hello"] * (MAX_HITS + 5)))
    assert len(search(t.words, ("hello",))[0].hits) == MAX_HITS
    assert search([], ("hello",))[0].hits == []


# --- through the ingress -------------------------------------------------------------------------


class ScriptEngine(FakeEngine):
    """A fake engine that says `text` (one token a word, times when aligned) for every chunk."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def answer(self, align: bool) -> ChunkTranscript:
        parts = self.text.split()
        tokens = [Token(" " + p, -0.1, 0.5 * i if align else None, 0.5 * i + 0.4 if align else None) for i, p in enumerate(parts)]
        return ChunkTranscript(" " + self.text, tokens, aligned=align)


SAID = "It weighs 5 kilograms comma the fuck period monika said new line hello"
FLAC = {**AUTH, "Content-Type": "audio/flac"}


@pytest.fixture
def client(tmp_path: Any) -> Iterator[TestClient]:
    with TestClient(make_ingress(ScriptEngine(SAID), tmp_path).__serve_build_asgi_app__()) as c:
        yield c


def _post(client: TestClient, path: str, query: str) -> Any:
    return client.post(f"{path}?{query}", headers=FLAC, content=JFK_FLAC.read_bytes())


ALL = "measurements=true&replace=monika:Monica&replace=hello:Hi&profanity_filter=true&dictation=true"


@pytest.mark.parametrize("path", ["/v1/listen", "/waves/v1/stt/", "/v1/audio/transcriptions"])
def test_text_options_on_every_file_route(client: TestClient, path: str) -> None:
    body = _post(client, path, ALL).json()
    expected = "It weighs 5 kg, the ****. Monica said\nHi"
    text = body.get("text", body.get("transcription"))
    assert text == expected
    if path != "/v1/audio/transcriptions":
        assert [w.get("punctuated_word", w["word"]) for w in body["words"]] == "It weighs 5 kg, the ****. Monica said Hi".split()


def test_repeated_options_from_query_form_and_json(client: TestClient) -> None:
    query = _post(client, "/v1/listen", "replace=monika:Monica&replace=hello:Hi").json()
    form = client.post(
        "/v1/listen",
        headers=AUTH,
        files={"audio": ("a.flac", JFK_FLAC.read_bytes(), "audio/flac")},
        data={"replace": ["monika:Monica", "hello:Hi"]},
    ).json()
    assert query["text"] == form["text"] == "It weighs 5 kilograms comma the fuck period Monica said new line Hi"


def test_search_extra_and_tags_in_deepgrams_answer(client: TestClient) -> None:
    from deepgram.types.listen_v1response import ListenV1Response

    with serve_log(Records()) as records:
        response = _post(
            client, "/v1/listen", "search=kilograms&search=monica&extra=team:a&extra=team:gtm&extra=x:1:2&tag=prod&tag=web"
        )
    body = response.json()
    assert body["metadata"]["extra"] == {"team": "gtm", "x": "1:2"}  # the last value of a key wins, as Deepgram's
    assert body["metadata"]["tags"] == ["prod", "web"]
    search_results = body["results"]["channels"][0]["search"]
    assert [s["query"] for s in search_results] == ["kilograms", "monica"]
    (kilograms,) = search_results[0]["hits"]
    assert kilograms["snippet"] == "kilograms" and kilograms["start"] < kilograms["end"]
    assert kilograms["confidence"] == pytest.approx(np.exp(-0.1), abs=1e-3)  # exact letters x the word's confidence
    assert search_results[1]["hits"][0]["snippet"] == "monika"
    parsed = ListenV1Response.model_validate(body)  # as deepgram-sdk parses it
    assert parsed.results.channels[0].search[0].hits[0].snippet == "kilograms"
    assert parsed.metadata.tags == ["prod", "web"] and parsed.metadata.extra == {"team": "gtm", "x": "1:2"}
    assert any("tags=['prod', 'web']" in r.getMessage() for r in records.records)
    plain = _post(client, "/v1/listen", "").json()
    assert "extra" not in plain["metadata"] and "tags" not in plain["metadata"]
    assert "search" not in plain["results"]["channels"][0]


@pytest.mark.parametrize(
    "path, query, parameter",
    [
        ("/v1/listen", "replace=monika", "replace"),
        ("/v1/listen", "replace=:x", "replace"),
        ("/v1/listen", "&".join(["replace=a:b"] * 201), "replace"),
        ("/v1/listen", "replace=" + "a" * 201 + ":b", "replace"),
        ("/v1/listen", "search=%21%3F", "search"),
        ("/v1/listen", "search=", "search"),
        ("/v1/listen", "&".join(["search=x"] * 51), "search"),
        ("/v1/listen", "extra=novalue", "extra"),
        ("/v1/listen", "extra=k:" + "v" * 2100, "extra"),
        ("/v1/listen", "tag=" + "t" * 129, "tag"),
        ("/v1/listen", "tag=a%0Ab", "tag"),
        ("/v1/listen", "profanity_filter=maybe", "profanity_filter"),
        ("/v1/listen", "measurements=2", "measurements"),
        ("/v1/listen", "dictation=true&punctuate=false", "dictation"),
        ("/v1/listen", "dictation=true&language=de", "dictation"),
        ("/v1/listen", "profanity_filter=true&language=fr", "profanity_filter"),
        ("/v1/listen", "language=en&language=de", "language"),  # a single-valued option sent twice
        ("/v1/listen", "search=x&response_format=srt", "search"),
        ("/waves/v1/stt/", "search=x", "search"),
        ("/waves/v1/stt/", "extra=a:b", "extra"),
        ("/v1/audio/transcriptions", "extra=a:b", "extra"),
    ],
)
def test_bad_text_options_are_400_naming_the_parameter(client: TestClient, path: str, query: str, parameter: str) -> None:
    response = _post(client, path, query)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "INVALID_REQUEST" and body["parameter"] == parameter
    assert "monika" not in response.text and "novalue" not in response.text  # never the value sent


# --- live streams --------------------------------------------------------------------------------


def test_live_handshakes_read_the_text_options() -> None:
    params = {"replace": "monika:Monica", "search": "hello", "extra": "k:v", "tag": "t", "dictation": "true"}
    text = Deepgram().parse(params, 0.3).text
    assert text is not None
    assert (text.replace, text.search, text.extra, text.tags, text.dictation) == (
        (("monika", "Monica"),),
        ("hello",),
        (("k", "v"),),
        ("t",),
        True,
    )
    pulse = Smallest().parse({"profanity_filter": "true", "measurements": "true"}, 0.3).text
    assert pulse is not None and pulse.profanity_filter and pulse.measurements
    for dialect, bad in (
        (Deepgram(), {"dictation": "true", "punctuate": "false"}),
        (Deepgram(), {"replace": "nocolon"}),
        (Deepgram(), {"profanity_filter": "true", "language": "de"}),
        (Smallest(), {"search": "x"}),
        (Smallest(), {"extra": "a:b"}),
    ):
        with pytest.raises(InvalidRequest):
            dialect.parse(bad, 0.3)


@pytest.mark.parametrize(
    "path, query",
    [
        ("/v1/listen", "&interim_results=true&search=monica&extra=team:gtm"),
        ("/waves/v1/stt/live", ""),
    ],
)
def test_live_finals_and_interims_are_transformed(tmp_path: Any, path: str, query: str) -> None:
    engine = ScriptEngine(SAID)
    url = f"{path}?encoding=linear16&sample_rate=16000&{ALL}{query}"
    with TestClient(make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 2}}).__serve_build_asgi_app__()) as client:
        with client.websocket_connect(url, headers=AUTH) as ws:
            for at in range(0, len(JFK_PCM), 3200):
                ws.send_bytes(JFK_PCM[at : at + 3200])
            ws.send_text('{"type": "CloseStream"}' if path == "/v1/listen" else '{"type": "close_stream"}')
            messages = received(ws)[0]
    expected = "It weighs 5 kg, the ****. Monica said\nHi"
    if path == "/v1/listen":
        from deepgram.listen.v1.types import ListenV1Metadata, ListenV1Results

        results = [m for m in messages if m["type"] == "Results"]
        parsed = ListenV1Results.model_validate(results[-1])  # as deepgram-sdk's live client parses it
        assert parsed.metadata.extra == {"team": "gtm"} and parsed.channel.search[0]["query"] == "monica"  # type: ignore[attr-defined]
        assert ListenV1Metadata.model_validate(messages[-1]).extra == {"team": "gtm"}  # type: ignore[attr-defined]
        assert any(not r["is_final"] for r in results) and any(r["is_final"] for r in results)
        for r in results:
            assert r["channel"]["alternatives"][0]["transcript"] == expected
            assert r["channel"]["search"][0]["query"] == "monica" and r["channel"]["search"][0]["hits"][0]["snippet"] == "monica"
            assert r["metadata"]["extra"] == {"team": "gtm"}
        assert messages[-1]["type"] == "Metadata" and messages[-1]["extra"] == {"team": "gtm"}
    else:
        results = [m for m in messages if m.get("type") == "transcription"]
        assert results and all(r["transcript"] == expected for r in results)


def test_the_cost_benchmark_measures_every_option() -> None:
    """tools/bench/transforms.py, with a minute for its hour: every option measured, "off" first, on
    every transcript (no time asserted)."""
    from tools.bench.transforms import OPTIONS, SCALE, run, table

    report = run(budget_s=0.0, hour_s=60)
    assert [r["option"] for r in report["rows"]] == [*OPTIONS, SCALE]
    assert [*OPTIONS] == [
        *("off", "smart_format", "numerals=true", "numerals=false", "redact=pci", "redact=pii", "redact=numbers"),
        *("redact_pii (Pulse)", "measurements", "replace (10 pairs)", "profanity_filter", "dictation"),
        *("search (3 terms)", "search (50 terms)", "extra + tag", "all at once"),
    ]
    assert report["transcripts"] == {
        "reading": {"words": 563, "minutes": 3.8},
        "call": {"words": 210, "minutes": 1.4},
        "1 h": {"words": 150, "minutes": 1.0},
    }
    for row in report["rows"]:
        assert set(row["ms_per_request"]) == set(report["transcripts"]) and row["first_ms"] >= 0
        assert all(ms >= 0 for ms in row["ms_per_request"].values())
    assert isinstance(report["libraries_loaded_with_options_off"], list)  # in this process the golden tests load them
    assert "all at once" in table(report)
