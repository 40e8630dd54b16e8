"""Wire formats at the edge. One `/v1/listen` body serves every client at once:
Smallest Self-Host (`request_id, text, confidence, duration, language, words`), the `smallestai`
SDK (`status, transcription`) and Deepgram (`metadata` with all seven fields the SDK requires, and
`results.channels[].alternatives[]`). Words carry no `speaker` here: Deepgram's SDK wants an
integer and smallestai a string, so it is only added once diarization gives it meaning."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from .transcript import Transcript

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
