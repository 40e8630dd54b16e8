"""Typed results; `raw` keeps the whole JSON body for everything else the server sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


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
