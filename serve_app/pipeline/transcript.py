"""What a transcription is, dialect-free: words with times, the text, per-channel transcripts; and
the ways answers cut it up (caption segments, pause-separated runs, sentences)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Word:
    word: str  # normalised: lower case, no surrounding punctuation
    punctuated_word: str
    start: float
    end: float
    confidence: float
    speaker: int | None = None  # set by diarization


@dataclass(frozen=True)
class Transcript:
    text: str
    words: list[Word]
    confidence: float
    duration: float
    language: str
    language_confidence: float | None = None  # set when the language was detected
    channels: tuple[Transcript, ...] = ()  # multichannel: one transcript per channel (this one merges them)


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: list[Word]


_SENTENCE_END = (".", "?", "!")


def segments(words: list[Word], max_s: float = 7.0, max_chars: int = 84, pause_s: float = 0.6) -> list[Segment]:
    """Words -> caption-sized segments: a new one after a sentence end, at a pause, or before one
    would pass `max_s` seconds or `max_chars` characters (two 42-character subtitle lines)."""
    groups: list[list[Word]] = []
    for word in words:
        current = groups[-1] if groups else None
        if (
            current is None
            or current[-1].punctuated_word.endswith(_SENTENCE_END)
            or word.start - current[-1].end > pause_s
            or word.speaker != current[-1].speaker
            or word.end - current[0].start > max_s
            or sum(len(w.punctuated_word) + 1 for w in current) + len(word.punctuated_word) > max_chars
        ):
            groups.append([word])
        else:
            current.append(word)
    return [Segment(g[0].start, g[-1].end, " ".join(w.punctuated_word for w in g), g) for g in groups]


def split_at_pauses(words: list[Word], pause_s: float) -> list[list[Word]]:
    """Runs of one speaker's words with no silence of `pause_s` or more between them (Deepgram's utterances)."""
    runs: list[list[Word]] = []
    for word in words:
        if runs and word.start - runs[-1][-1].end < pause_s and word.speaker == runs[-1][-1].speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def sentences(words: list[Word]) -> list[list[Word]]:
    """Words up to and including each sentence-ending mark (or before another speaker's word)."""
    out: list[list[Word]] = [[]]
    for word in words:
        if out[-1] and word.speaker != out[-1][-1].speaker:
            out.append([])
        out[-1].append(word)
        if word.punctuated_word.endswith(_SENTENCE_END):
            out.append([])
    return [s for s in out if s]


_AROUND = re.compile(r"^([^\w']*)(.*?)([^\w']*)$", re.DOTALL)


def around(punctuated: str) -> tuple[str, str, str]:
    """A punctuated word's (leading punctuation, core, trailing punctuation): '"Monika,' ->
    ('"', 'Monika', ','). Inside marks stay in the core ("don't", "1,000")."""
    match = _AROUND.match(punctuated)
    assert match is not None  # every string matches
    return match.group(1), match.group(2), match.group(3)


def rewritten(t: Transcript, words: list[Word], text: str | None = None) -> Transcript:
    """`t` with new words, its text the words joined (or `text`) when they changed; the same
    transcript when nothing did, so Whisper's own text (CJK spacing) survives a stage that found
    nothing to do."""
    if words == t.words and text is None:
        return t
    return replace(t, words=words, text=" ".join(w.punctuated_word for w in words) if text is None else text)
