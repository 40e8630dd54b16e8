"""Smallest Pulse's live API, `WS /waves/v1/stt/live`, as its `smallestai` streaming helper speaks
it: its handshake options and its `transcription` and `error` messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest, ServiceError
from ..pipeline.redact import placeholders
from ..pipeline.request import TranscriptionRequest
from ..stream.protocol import Context, Incoming, Result, StreamOptions, controls
from .live_params import MAX_CHANNELS, MIN_ENDPOINT_S, audio_format, language, milliseconds, refuse
from .params import flag, whole
from .text_params import filler_words, formatting, keyterms, labels, redaction, text_options


class Smallest:
    """`WS /waves/v1/stt/live` as Smallest's `smallestai` streaming helper speaks it."""

    name = "smallest"

    def parse(self, params: Mapping[str, Any], default_endpoint_s: float) -> StreamOptions:
        refuse(params, ("diarize", "multichannel", "vad_events", "sentence_timestamps", "translate"))
        for name in ("search", "extra"):  # Deepgram's answer fields: Pulse's messages have no place for them
            if params.get(name) is not None:
                raise InvalidRequest(f"{name} is not supported on Pulse streams: use WS /v1/listen", parameter=name)
        timestamps = flag(params, "word_timestamps")
        encoding, sample_rate = audio_format(params, "linear16")
        return StreamOptions(
            encoding=encoding,
            sample_rate=sample_rate,
            channels=whole(params, "channels", 1, 1, MAX_CHANNELS) or 1,
            language=language(params),
            interim_results=True,  # Pulse always streams partial results
            endpoint_s=milliseconds(params, "eou_timeout_ms", default_endpoint_s, int(MIN_ENDPOINT_S * 1000)),
            utterance_end_s=None,
            vad_events=False,
            punctuate=flag(params, "punctuate") is not False,
            timestamps=bool(timestamps),
            full_transcript=bool(flag(params, "full_transcript")),
            text=TranscriptionRequest(
                **text_options(params),
                tags=labels(params)["tags"],
                **formatting(params),
                **redaction(params),
                **keyterms(params),
                **filler_words(params),
            ),
        )

    def incoming(self, text: str) -> Incoming:
        return controls(text)  # audio comes in binary frames

    def result(self, r: Result, ctx: Context) -> dict[str, Any]:
        text = r.transcript.text
        body: dict[str, Any] = {
            "type": "transcription",
            "status": "success",
            "session_id": ctx.request_id,
            "transcription": text,
            "transcript": text,
            "is_final": r.is_final,
            "is_last": r.is_last,
            "from_finalize": r.from_finalize,
            "language": r.transcript.language,
            "words": [
                {"word": w.punctuated_word, "start": w.start, "end": w.end, "confidence": w.confidence}
                for w in r.transcript.words
            ],
        }
        if ctx.options.full_transcript and r.is_final:
            body["full_transcript"] = r.full_text
        if ctx.options.text.redact:
            body["redacted_entities"] = placeholders(r.transcript.words)
        return body

    def speech_started(self, at: float, utterance: int, channel: int = 0) -> dict[str, Any] | None:
        return None  # Pulse has no voice activity messages (`vad_events` is refused)

    def utterance_end(self, last_word_end: float, channel: int = 0) -> dict[str, Any] | None:
        return None

    def metadata(self, ctx: Context, sha256: str, duration: float) -> dict[str, Any] | None:
        return None  # Pulse ends with its `is_last` transcription

    def error(self, exc: ServiceError) -> dict[str, Any]:
        return {"type": "error", "status": "error", "message": exc.message, **exc.body()}
