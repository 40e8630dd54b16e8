"""OpenAI, `POST /v1/audio/transcriptions`: multipart `file` with `model` (accepted, ignored),
`language`, `response_format` and `timestamp_granularities[]`; answers `{"text"}` by default and
`verbose_json` on request. The other options of /v1/listen are read too, so an OpenAI-shaped call
may ask for diarization or word times. `POST /v1/audio/translations` is the same with Whisper's
translate task: English text whatever language is spoken (detected unless `language` is sent)."""

from __future__ import annotations

import math
from typing import Any

from ..pipeline.transcript import Transcript, Word, segments
from . import params
from .listen import OPTIONS as LISTEN_OPTIONS

OPTIONS = LISTEN_OPTIONS
TRANSLATION_OPTIONS = (*LISTEN_OPTIONS, params.translating)
DEFAULT_FORMAT = "json"


def json_body(t: Transcript) -> dict[str, Any]:
    return {"text": t.text}


def verbose_json(t: Transcript, with_words: bool, translated: bool = False) -> dict[str, Any]:
    """OpenAI's `verbose_json`: segments always, words when `timestamp_granularities[]=word`."""
    body: dict[str, Any] = {
        "task": "translate" if translated else "transcribe",
        "language": t.language,
        "duration": t.duration,
        "text": t.text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": " " + s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": _mean_logprob(s.words),
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            for i, s in enumerate(segments(t.words))
        ],
    }
    if with_words:
        body["words"] = [{"word": w.punctuated_word, "start": w.start, "end": w.end} for w in t.words]
    return body


def _mean_logprob(words: list[Word]) -> float:
    return round(sum(math.log(max(w.confidence, 1e-9)) for w in words) / max(len(words), 1), 4)
