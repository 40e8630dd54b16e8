"""Post-processing of a finished transcript's text, in order. Each transform is a function of the
transcript and the request; the pipeline applies those the request enables, in list order (the way
`api/formats.py` registers writers). A new one (formatting, redaction, replacements) is a function
and one entry in TRANSFORMS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from . import dictation, measurements, profanity, redact
from . import replace as find_and_replace
from .formatting import format_transcript
from .request import TranscriptionRequest
from .spelled import spell_transcript
from .transcript import Transcript


@dataclass(frozen=True)
class Transform:
    name: str
    applies: Callable[[TranscriptionRequest], bool]
    run: Callable[[Transcript, TranscriptionRequest], Transcript]


def unpunctuated(t: Transcript) -> Transcript:
    """`punctuate=false`: lower case, no punctuation around words (inside ones stay: "don't", "1,000")."""
    words = [replace(w, punctuated_word=w.word) for w in t.words]
    return replace(t, text=" ".join(w.word for w in words), words=words)


# Formatting reads the punctuation Whisper put between phrases (nothing is joined across a comma),
# so it runs before `unpunctuated` takes the punctuation away.
TRANSFORMS: list[Transform] = [
    # First, on the words as spoken: formatting can regroup spelled-out digits ("one two three, four
    # five, six seven eight nine" -> "1 2 345-6789") so that no rule sees an SSN any more, and part of
    # it would stay in clear; the stages after it only rewrite words, they cannot bring any back.
    Transform("redact", lambda request: bool(request.redact), lambda t, r: redact.redact(t, r.redact, r.redact_style)),
    Transform(
        "formatted",
        lambda request: request.smart_format or request.numerals is True,
        lambda t, request: format_transcript(t, entities=request.smart_format),
    ),
    Transform("spelled", lambda request: request.numerals is False, lambda t, request: spell_transcript(t)),
    Transform("unpunctuated", lambda request: not request.punctuate, lambda t, request: unpunctuated(t)),
    # Units before replacements, so `replace=km:kilometres` can undo one; the mask after them, so a
    # replacement cannot bring a swear word back; dictation last: its line breaks live in the text only,
    # which a later stage rebuilding the text from the words would lose.
    Transform("measurements", lambda request: request.measurements, lambda t, request: measurements.apply(t)),
    Transform("replace", lambda request: bool(request.replace), lambda t, request: find_and_replace.apply(t, request.replace)),
    Transform("profanity_filter", lambda request: request.profanity_filter, lambda t, request: profanity.apply(t)),
    Transform("dictation", lambda request: request.dictation, lambda t, request: dictation.apply(t)),
]


def apply(transcript: Transcript, request: TranscriptionRequest) -> Transcript:
    """Every transform the request enables, in TRANSFORMS order."""
    for transform in TRANSFORMS:
        if transform.applies(request):
            transcript = transform.run(transcript, request)
    return transcript
