"""Deepgram's live API, `WS /v1/listen` (and `/v1/listen/stream`): its handshake options and its
messages (`Results`, `SpeechStarted`, `UtteranceEnd`, `Metadata`, `Error`). With `multichannel=true`
each message names its channel as Deepgram does, `[channel, channels]`; with `diarize=true` the
words of finals carry `speaker` (Deepgram's live words have no `speaker_confidence`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import InvalidRequest, ServiceError
from ..pipeline.request import TranscriptionRequest
from ..stream.audio_in import RAW
from ..stream.protocol import Context, Incoming, Result, StreamOptions, controls
from .listen import echoed, model_uuid, search_results, word_dict
from .live_params import MAX_CHANNELS, MIN_ENDPOINT_S, audio_format, language, milliseconds, refuse
from .params import flag, whole
from .text_params import filler_words, formatting, keyterms, labels, redaction, search, text_options


class Deepgram:
    """`WS /v1/listen` as Deepgram's live clients speak it."""

    name = "deepgram"

    def __init__(self) -> None:
        self.channels = 1  # what `channel_index` counts: the stream's channels when multichannel

    def parse(self, params: Mapping[str, Any], default_endpoint_s: float) -> StreamOptions:
        refuse(params, ("translate",))
        utterance_end = milliseconds(params, "utterance_end_ms", None, 100)
        interim = bool(flag(params, "interim_results"))
        if utterance_end is not None and not interim:
            raise InvalidRequest("utterance_end_ms needs interim_results=true", parameter="utterance_end_ms")
        encoding, sample_rate = audio_format(params, None)
        channels = whole(params, "channels", 1, 1, MAX_CHANNELS) or 1
        multichannel = bool(flag(params, "multichannel"))
        if multichannel and encoding not in RAW:  # a coded stream's channels are the codec's, mixed down by FFmpeg
            raise InvalidRequest(
                f"multichannel needs raw samples (encoding={', '.join(RAW)}) with channels", parameter="multichannel"
            )
        if multichannel and channels < 2:
            raise InvalidRequest(f"multichannel needs channels=2 to {MAX_CHANNELS}", parameter="multichannel")
        self.channels = channels if multichannel else 1
        return StreamOptions(
            encoding=encoding,
            sample_rate=sample_rate,
            channels=channels,
            multichannel=multichannel,
            diarize=bool(flag(params, "diarize")),
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
            "channel_index": [r.channel, self.channels],
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

    def speech_started(self, at: float, utterance: int, channel: int = 0) -> dict[str, Any] | None:
        return {"type": "SpeechStarted", "channel": [channel, self.channels], "timestamp": round(at, 3)}

    def utterance_end(self, last_word_end: float, channel: int = 0) -> dict[str, Any] | None:
        return {"type": "UtteranceEnd", "channel": [channel, self.channels], "last_word_end": round(last_word_end, 3)}

    def metadata(self, ctx: Context, sha256: str, duration: float) -> dict[str, Any] | None:
        mid = model_uuid(ctx.model)
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": ctx.request_id,
            "sha256": sha256,
            "created": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "duration": round(duration, 3),
            "channels": self.channels,
            "models": [mid],
            "model_info": {mid: {"name": ctx.model, "version": "1", "arch": "whisper"}},
            **echoed(ctx.options.text),
        }

    def error(self, exc: ServiceError) -> dict[str, Any]:
        return {"type": "Error", "variant": exc.code, "description": exc.message, "message": exc.message, **exc.body()}
