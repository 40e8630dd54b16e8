"""Typed results; `raw` keeps the whole JSON body for everything else the server sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float
    punctuated_word: Optional[str] = None
    speaker: Optional[int] = None  # with diarize=True

    @classmethod
    def from_json(cls, w: Dict[str, Any]) -> "Word":
        return cls(
            w.get("word", ""),
            float(w.get("start", 0.0)),
            float(w.get("end", 0.0)),
            float(w.get("confidence", 0.0)),
            w.get("punctuated_word"),
            w.get("speaker"),
        )


@dataclass(frozen=True)
class TranscriptionResult:
    text: str
    words: List[Word]
    confidence: float
    duration: float
    language: Optional[str]
    request_id: Optional[str]
    raw: Dict[str, Any] = field(repr=False)

    @property
    def utterances(self) -> List[Dict[str, Any]]:
        """With utterances=True: `{"text", "start", "end", "speaker"?...}` per utterance (Deepgram's)."""
        return list(self.raw.get("results", {}).get("utterances", []))

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "TranscriptionResult":
        return cls(
            text=body.get("text", body.get("transcription", "")),
            words=[Word.from_json(w) for w in body.get("words", [])],
            confidence=float(body.get("confidence", 0.0)),
            duration=float(body.get("duration", 0.0)),
            language=body.get("language"),
            request_id=body.get("request_id"),
            raw=body,
        )


@dataclass(frozen=True)
class Accepted:
    """A request with `callback_url`: the server answered at once and will POST the result there."""

    request_id: str
    status: str


@dataclass(frozen=True)
class LiveResult:
    """A live stream's `Results`: an interim (`is_final=False`, replaced by later ones) or a final.
    `speech_final`: the speaker paused; `from_finalize`: made final by `finalize()` or the close.
    Times are seconds from the stream's start."""

    text: str
    words: List[Word]
    confidence: float
    start: float
    duration: float
    is_final: bool
    speech_final: bool
    from_finalize: bool
    request_id: Optional[str]
    raw: Dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "LiveResult":
        alternative = (body.get("channel", {}).get("alternatives") or [{}])[0]
        return cls(
            text=alternative.get("transcript", ""),
            words=[Word.from_json(w) for w in alternative.get("words", [])],
            confidence=float(alternative.get("confidence", 0.0)),
            start=float(body.get("start", 0.0)),
            duration=float(body.get("duration", 0.0)),
            is_final=bool(body.get("is_final")),
            speech_final=bool(body.get("speech_final")),
            from_finalize=bool(body.get("from_finalize")),
            request_id=body.get("metadata", {}).get("request_id"),
            raw=body,
        )


@dataclass(frozen=True)
class SpeechStarted:
    """With `vad_events=True`: speech began at `timestamp` seconds."""

    timestamp: float
    raw: Dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class UtteranceEnd:
    """With `utterance_end_ms`: that much silence followed the word ending at `last_word_end`."""

    last_word_end: float
    raw: Dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class LiveMetadata:
    """The stream's last message before a normal close: its `request_id` and audio `duration`."""

    request_id: Optional[str]
    duration: float
    sha256: Optional[str]
    raw: Dict[str, Any] = field(repr=False)


LiveMessage = Union[LiveResult, SpeechStarted, UtteranceEnd, LiveMetadata]
