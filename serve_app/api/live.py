"""Deepgram's live API, `WS /v1/listen` (and `/v1/listen/stream`): its handshake options and its
messages (`Results`, `SpeechStarted`, `UtteranceEnd`, `Metadata`, `Error`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import InvalidRequest, ServiceError
from ..pipeline.request import TranscriptionRequest
from ..stream.protocol import Context, Incoming, Result, StreamOptions, controls
from .listen import echoed, model_uuid, search_results, word_dict
from .live_params import MAX_CHANNELS, MIN_ENDPOINT_S, audio_format, language, milliseconds, refuse
from .params import flag, whole
from .text_params import filler_words, formatting, keyterms, labels, redaction, search, text_options


class Deepgram:
    """`WS /v1/listen` as Deepgram's live clients speak it."""

    name = "deepgram"

    def parse(self, params: Mapping[str, Any], default_endpoint_s: float) -> StreamOptions:
        refuse(params, ("multichannel", "diarize", "translate"))
        utterance_end = milliseconds(params, "utterance_end_ms", None, 100)
        interim = bool(flag(params, "interim_results"))
        if utterance_end is not None and not interim:
            raise InvalidRequest("utterance_end_ms needs interim_results=true", parameter="utterance_end_ms")
        encoding, sample_rate = audio_format(params, None)
        return StreamOptions(
            encoding=encoding,
            sample_rate=sample_rate,
            channels=whole(params, "channels", 1, 1, MAX_CHANNELS) or 1,
            language=language(params),
            interim_results=interim,
            endpoint_s=milliseconds(params, "endpointing", default_endpoint_s, int(MIN_ENDPOINT_S * 1000)),
            utterance_end_s=utterance_end,
            vad_events=bool(flag(params, "vad_events")),
            punctuate=flag(params, "punctuate") is not False,
            timestamps=False,
            text=TranscriptionRequest(
                **text_options(params),
                **search(params),
                **labels(params),
                **formatting(params),
                **redaction(params),
                **keyterms(params),
                **filler_words(params),
            ),
        )

    def incoming(self, text: str) -> Incoming:
        return controls(text)  # audio comes in binary frames

    def result(self, r: Result, ctx: Context) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(r.duration, 3),
            "start": round(r.start, 3),
            "is_final": r.is_final,
            "speech_final": r.speech_final,
            "from_finalize": r.from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": r.transcript.text,
                        "confidence": r.transcript.confidence,
                        "words": [word_dict(w) for w in r.transcript.words],
                    }
                ]
            },
            "metadata": {
                "request_id": ctx.request_id,
                "model_info": {"name": ctx.model, "version": "1", "arch": "whisper"},
                "model_uuid": model_uuid(ctx.model),
            },
        }
        text = ctx.options.text
        if text.search:  # interims too: the hits of what is heard so far
            body["channel"]["search"] = search_results(r.transcript.words, text.search)
        body["metadata"].update(echoed(text))
        return body

    def speech_started(self, at: float, utterance: int) -> dict[str, Any] | None:
        return {"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(at, 3)}

    def utterance_end(self, last_word_end: float) -> dict[str, Any] | None:
        return {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(last_word_end, 3)}

    def metadata(self, ctx: Context, sha256: str, duration: float) -> dict[str, Any] | None:
        mid = model_uuid(ctx.model)
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": ctx.request_id,
            "sha256": sha256,
            "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "duration": round(duration, 3),
            "channels": 1,
            "models": [mid],
            "model_info": {mid: {"name": ctx.model, "version": "1", "arch": "whisper"}},
            **echoed(ctx.options.text),
        }

    def error(self, exc: ServiceError) -> dict[str, Any]:
        return {"type": "Error", "variant": exc.code, "description": exc.message, "message": exc.message, **exc.body()}
