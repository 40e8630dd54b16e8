"""Segments and caption formats from word times, without the service."""

from __future__ import annotations

from serve_app.api.captions import srt, vtt
from serve_app.api.openai import verbose_json
from serve_app.pipeline.transcript import Transcript, Word, segments


def _words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(text.strip(".,?!").lower(), text, start, end, 0.9) for text, start, end in spec]


def test_segments_break_at_sentences_pauses_and_length() -> None:
    words = _words(("Hi.", 0.0, 0.3), ("Then", 0.4, 0.6), ("more", 0.6, 0.9), ("after", 2.0, 2.3), ("pause", 2.3, 2.6))
    assert [s.text for s in segments(words)] == ["Hi.", "Then more", "after pause"]
    long = _words(*((f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(30)))
    parts = segments(long)
    assert all(s.end - s.start <= 7.0 and len(s.text) <= 84 for s in parts)
    assert [w for s in parts for w in s.words] == long  # nothing lost or doubled


def test_srt_and_vtt_clock_past_an_hour() -> None:
    t = Transcript("One. Two.", _words(("One.", 3599.5, 3600.25), ("Two.", 3601.0, 3602.0)), 0.9, 3602.0, "en")
    assert srt(t) == "1\n00:59:59,500 --> 01:00:00,250\nOne.\n\n2\n01:00:01,000 --> 01:00:02,000\nTwo.\n"
    assert vtt(t).startswith("WEBVTT\n\n00:59:59.500 --> 01:00:00.250\nOne.\n")
    body = verbose_json(t, with_words=True)
    assert [s["text"] for s in body["segments"]] == [" One.", " Two."] and body["words"][1] == {
        "word": "Two.",
        "start": 3601.0,
        "end": 3602.0,
    }


def test_unpunctuated_keeps_inner_marks() -> None:
    from serve_app.pipeline.transforms import unpunctuated

    t = unpunctuated(Transcript("Don't pay 1,000!", _words(("Don't", 0, 1), ("pay", 1, 2), ("1,000!", 2, 3)), 0.9, 3.0, "en"))
    assert t.text == "don't pay 1,000" and [w.punctuated_word for w in t.words] == ["don't", "pay", "1,000"]


def test_utterances_split_at_pauses_and_paragraphs_at_sentences() -> None:
    from serve_app.api.listen import paragraphs, utterances

    words = _words(("One", 0.0, 0.3), ("two.", 0.4, 0.7), ("Three", 1.0, 1.3), ("four.", 1.4, 1.6), ("Five.", 3.0, 3.5))
    runs = utterances(words, split_s=0.8)
    assert [(u["transcript"], u["start"], u["end"]) for u in runs] == [("One two. Three four.", 0.0, 1.6), ("Five.", 3.0, 3.5)]
    assert [w["word"] for w in runs[0]["words"]] == ["one", "two", "three", "four"]
    body = paragraphs(words)
    assert [[s["text"] for s in p["sentences"]] for p in body["paragraphs"]] == [["One two.", "Three four."], ["Five."]]
    assert body["transcript"] == "\nOne two. Three four.\n\nFive." and body["paragraphs"][0]["num_words"] == 4


def test_diarized_words_utterances_paragraphs_and_captions_carry_speakers() -> None:
    from dataclasses import replace

    from serve_app.api.listen import paragraphs, utterances, word_dict

    spoken = _words(("Hello?", 0.0, 0.4), ("Hi", 0.5, 0.7), ("there.", 0.7, 1.0), ("Bye.", 1.1, 1.4))
    words = [replace(w, speaker=s) for w, s in zip(spoken, (0, 1, 1, 0))]
    # a change of speaker ends an utterance, a paragraph and a caption even without a pause
    assert [(u["text"], u["speaker"]) for u in utterances(words, 0.8)] == [("Hello?", 0), ("Hi there.", 1), ("Bye.", 0)]
    assert [(p["sentences"][0]["text"], p["speaker"]) for p in paragraphs(words)["paragraphs"]] == [
        ("Hello?", 0),
        ("Hi there.", 1),
        ("Bye.", 0),
    ]
    t = Transcript("Hello? Hi there. Bye.", words, 0.9, 1.4, "en")
    assert srt(t).split("\n")[2:4] == ["[speaker 0]", "Hello?"] and "[speaker 1]\nHi there." in srt(t)
    assert "<v Speaker 1>Hi there.\n" in vtt(t)
    assert word_dict(words[1])["speaker"] == 1
    # undiarized: no speaker anywhere (Deepgram's SDK wants an integer when the key is there)
    assert (
        "speaker" not in word_dict(spoken[0])
        and "speaker" not in utterances(spoken, 0.8)[0]
        and "[speaker" not in srt(replace(t, words=spoken))
    )


def test_words_take_the_speaker_they_overlap_most_or_the_nearest() -> None:
    from serve_app.pipeline.stitch import with_speakers
    from serve_app.types import Turn

    words = _words(("a", 0.0, 0.5), ("b", 0.9, 1.5), ("c", 3.0, 3.2), ("d", 5.0, 5.5))
    turns = [Turn(0.0, 1.0, 0), Turn(1.0, 2.0, 1), Turn(4.0, 6.0, 0)]
    labelled = with_speakers(Transcript("a b c d", words, 0.9, 6.0, "en"), turns)
    # b: 0.1 s with speaker 0, 0.5 s with 1; c lies in no turn: the nearest ends at 2.0 (1.0 s) vs starts at 4.0 (0.8 s)
    assert [w.speaker for w in labelled.words] == [0, 1, 0, 0]
    assert [w.speaker for w in with_speakers(Transcript("a", words[:1], 0.9, 1.0, "en"), []).words] == [0]
