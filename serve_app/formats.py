"""Wire formats at the edge. One `/v1/listen` body serves every client at once:
Smallest Self-Host (`request_id, text, confidence, duration, language, words`), the `smallestai`
SDK (`status, transcription`) and Deepgram (`metadata` with all seven fields the SDK requires, and
`results.channels[].alternatives[]`). Words carry no `speaker` here: Deepgram's SDK wants an
integer and smallestai a string, so it is only added once diarization gives it meaning.

The other formats (OpenAI's json, text, srt, vtt, verbose_json) are siblings in `FORMATS`: every
route picks its formatter by `response_format`, and caption formats are built from the same
segments."""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from starlette.responses import JSONResponse, PlainTextResponse, Response

from .transcript import Transcript, Word, segments

_MODEL_NAMESPACE = uuid.UUID("6f1b3c2a-8d4e-4f5a-9b7c-2e1d0a9f8c7b")


@dataclass(frozen=True)
class RequestMeta:
    request_id: str
    sha256: str
    model: str
    created: datetime


def model_uuid(model: str) -> str:
    """A stable id per model name, as Deepgram's `models` list expects."""
    return str(uuid.uuid5(_MODEL_NAMESPACE, model))


def listen_body(t: Transcript, meta: RequestMeta) -> dict[str, Any]:
    words = [asdict(w) for w in t.words]
    created = meta.created.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    mid = model_uuid(meta.model)
    return {
        "request_id": meta.request_id,
        "status": "success",
        "text": t.text,
        "transcription": t.text,
        "confidence": t.confidence,
        "duration": t.duration,
        "language": t.language,
        "words": words,
        "metadata": {
            "request_id": meta.request_id,
            "sha256": meta.sha256,
            "created": created,
            "duration": t.duration,
            "channels": 1,
            "models": [mid],
            "model_info": {mid: {"name": meta.model, "version": "1", "arch": "whisper"}},
        },
        "results": {
            "channels": [
                {
                    "alternatives": [{"transcript": t.text, "confidence": t.confidence, "words": words}],
                    "detected_language": t.language,
                }
            ]
        },
    }


Formatter = Callable[[Transcript, RequestMeta, bool], Response]  # (transcript, meta, with words)


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def srt(t: Transcript) -> str:
    blocks = [f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n" for i, s in enumerate(segments(t.words), 1)]
    return "\n".join(blocks)


def vtt(t: Transcript) -> str:
    blocks = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in segments(t.words)]
    return "\n".join(["WEBVTT\n", *blocks])


def verbose_json(t: Transcript, with_words: bool) -> dict[str, Any]:
    """OpenAI's `verbose_json`: segments always, words when `timestamp_granularities[]=word`."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": t.language,
        "duration": t.duration,
        "text": t.text,
        "segments": [
            {
                "id": i, "seek": 0, "start": s.start, "end": s.end, "text": " " + s.text, "tokens": [],
                "temperature": 0.0, "avg_logprob": _mean_logprob(s.words), "compression_ratio": 1.0, "no_speech_prob": 0.0,
            }
            for i, s in enumerate(segments(t.words))
        ],
    }
    if with_words:
        body["words"] = [{"word": w.punctuated_word, "start": w.start, "end": w.end} for w in t.words]
    return body


def _mean_logprob(words: list[Word]) -> float:
    return round(sum(math.log(max(w.confidence, 1e-9)) for w in words) / max(len(words), 1), 4)


FORMATS: dict[str, Formatter] = {
    "listen": lambda t, meta, words: JSONResponse(listen_body(t, meta)),
    "json": lambda t, meta, words: JSONResponse({"text": t.text}),
    "text": lambda t, meta, words: PlainTextResponse(t.text + "\n"),
    "srt": lambda t, meta, words: PlainTextResponse(srt(t), media_type="application/x-subrip"),
    "vtt": lambda t, meta, words: PlainTextResponse(vtt(t), media_type="text/vtt"),
    "verbose_json": lambda t, meta, words: JSONResponse(verbose_json(t, words)),
}
TIMED = {"srt", "vtt", "verbose_json"}  # formats whose times must be the model's
