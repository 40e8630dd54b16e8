"""Smallest Pulse, `POST /waves/v1/stt/` (the path its `smallestai` SDK posts to): raw audio or
`{"url"}`, with Pulse's option names (`language`, `word_timestamps`, `diarize`, `webhook_url`...;
its flags this server cannot honour are 400s), answered in Pulse's own shape."""

from __future__ import annotations

from typing import Any

from ..pipeline.redact import placeholders
from ..pipeline.request import TranscriptionRequest
from ..pipeline.transcript import Transcript, split_at_pauses
from .listen import OPTIONS as LISTEN_OPTIONS
from .meta import RequestMeta

# Pulse's names are a subset of /v1/listen's, which Smallest's self-hosted clients send both routes.
OPTIONS = LISTEN_OPTIONS
DEFAULT_FORMAT = "waves"


def waves_body(t: Transcript, meta: RequestMeta, options: TranscriptionRequest) -> dict[str, Any]:
    """Smallest's Pulse answer (`POST /waves/v1/stt/`), as its `smallestai` SDK parses it: speakers
    are strings (`speaker_0`), and `utterances` come with diarization."""
    label = lambda speaker: {} if speaker is None else {"speaker": f"speaker_{speaker}"}  # noqa: E731
    words = [
        {"word": w.punctuated_word, "start": w.start, "end": w.end, "confidence": w.confidence, **label(w.speaker)}
        for w in t.words
    ]
    body: dict[str, Any] = {
        "status": "success",
        "transcription": t.text,
        "words": words,
        "language": t.language,
        "metadata": {"duration": t.duration, "model": meta.model},
        "request_id": meta.request_id,
    }
    if options.diarize or options.utterances:
        body["utterances"] = [
            {"text": " ".join(w.punctuated_word for w in run), "start": run[0].start, "end": run[-1].end, **label(run[0].speaker)}
            for run in split_at_pauses(t.words, options.utt_split)
        ]
    if options.redact:  # Pulse lists what it redacted
        body["redacted_entities"] = placeholders(t.words)
    return body
