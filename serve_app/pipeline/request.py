"""One transcription request, dialect-free: what every API module parses its own option names into
(api/listen.py, api/pulse.py, api/openai.py), and what the pipeline and the answer writers read."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidRequest
from ..types import EngineInfo


@dataclass(frozen=True)
class TranscriptionRequest:
    language: str | None = None  # ISO 639-1; None: the server's default ("en") unless detect_language
    detect_language: bool = False  # identify the language on the first window
    timestamps: bool | None = None  # model-aligned word times; None: the server's default
    response_format: str | None = None  # None: the route's own answer
    timestamp_granularities: tuple[str, ...] = ()  # "word" and/or "segment" (verbose_json)
    punctuate: bool = True  # false: lower case without punctuation (pipeline/transforms.py)
    smart_format: bool = False  # spoken numbers, currency, dates, times, phones, emails written (pipeline/formatting.py)
    numerals: bool | None = None  # true: numbers as digits; false: as words (pipeline/spelled.py); None: as Whisper wrote them
    utterances: bool = False  # speech split at pauses of `utt_split` seconds
    utt_split: float = 0.8
    paragraphs: bool = False  # sentences grouped into paragraphs
    multichannel: bool = False  # transcribe each channel on its own
    diarize: bool = False  # label words (and utterances, paragraphs) with speakers
    num_speakers: int | None = None  # diarize into exactly this many speakers; None: find how many
    callback: str | None = None  # answer at once, POST the result there
    translate: bool = False  # English text for speech in another language (multilingual models only)
    keyterms: tuple[str, ...] = ()  # names and jargon to spell as given (pipeline/prompt.py)
    filler_words: bool = False  # keep "um", "uh" (pipeline/prompt.py)
    prompt: str = ""  # the caller's own text for the decoder to continue (OpenAI realtime's `prompt`, pipeline/prompt.py)
    redact: tuple[str, ...] = ()  # entity kinds to replace by placeholders (pipeline/redact.py)
    redact_style: str = "deepgram"  # whose placeholders: "deepgram" ([CREDIT_CARD_1]) or "pulse" ([ACCOUNTNUMBER_1])
    replace: tuple[tuple[str, str], ...] = ()  # Deepgram's find:replacement pairs (pipeline/replace.py)
    profanity_filter: bool = False  # profane words masked with asterisks (pipeline/profanity.py)
    dictation: bool = False  # spoken punctuation commands become marks (pipeline/dictation.py)
    measurements: bool = False  # spoken units after numbers abbreviated (pipeline/measurements.py)
    search: tuple[str, ...] = ()  # Deepgram's search queries: hits in the answer (pipeline/search.py)
    extra: tuple[tuple[str, str], ...] = ()  # Deepgram's key:value pairs, echoed in `metadata.extra`
    tags: tuple[str, ...] = ()  # Deepgram's `tag`: echoed in `metadata.tags` and logged with the request

    @property
    def needs_times(self) -> bool:
        """Whether the answer is built on word times, which must then be the model's."""
        return self.utterances or self.paragraphs or self.diarize or "word" in self.timestamp_granularities


def supported_language(language: str, info: EngineInfo) -> str:
    """`language` if the served model transcribes it, else a 400 (the value sent is not echoed)."""
    if language not in info.languages:
        detail = "is English-only" if not info.multilingual else "does not support this language"
        raise InvalidRequest(f"Model {info.model} {detail}: choose a language it serves", parameter="language")
    return language
