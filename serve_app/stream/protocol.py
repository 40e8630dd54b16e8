"""The two wire protocols: the handshake's query string -> `StreamOptions`, and the JSON messages
each product's clients parse (Deepgram's live `Results`, `SpeechStarted`, `UtteranceEnd`,
`Metadata`, `Error`; Smallest's `transcription` and `error`). Control messages from the client
(`KeepAlive`, `Finalize`, `CloseStream` and Smallest's `finalize`, `close_stream`) map to one set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..audio.source import Options, flag
from ..errors import InvalidRequest, ServiceError
from ..formats import model_uuid, word_dict
from ..transcript import Transcript
from .audio_in import ENCODINGS

MIN_ENDPOINT_S = 0.1  # shorter pauses are inside words at the VAD's 32 ms frames
MAX_CHANNELS = 8
SAMPLE_RATES = (8000, 192000)
KEEP_ALIVE, FINALIZE, CLOSE = "keep_alive", "finalize", "close"
_CONTROLS = {"keepalive": KEEP_ALIVE, "keep_alive": KEEP_ALIVE, "finalize": FINALIZE, "closestream": CLOSE, "close_stream": CLOSE}


@dataclass(frozen=True)
class StreamOptions:
    encoding: str | None  # "linear16" etc.; None: a container stream (webm/ogg)
    sample_rate: int
    channels: int  # interleaved in raw PCM; mixed down
    language: str
    interim_results: bool
    endpoint_s: float | None  # pause that ends an utterance; None: only Finalize, close or length do
    utterance_end_s: float | None  # Deepgram's UtteranceEnd after this much silence; None: never sent
    vad_events: bool  # Deepgram's SpeechStarted
    punctuate: bool
    timestamps: bool  # model-aligned word times in final results (otherwise estimated)
    full_transcript: bool = False  # Smallest: the whole session's text on each final


@dataclass(frozen=True)
class Result:
    """One decoded utterance as both protocols describe it."""

    transcript: Transcript
    start: float
    duration: float
    is_final: bool
    speech_final: bool = False
    from_finalize: bool = False
    is_last: bool = False  # the last result of the stream (after a close)
    full_text: str = ""  # every final so far, this one included


@dataclass(frozen=True)
class Context:
    request_id: str  # Deepgram's request_id, Smallest's session_id: one per stream
    model: str
    options: StreamOptions


def control(text: str) -> str:
    """A client's text message -> KEEP_ALIVE, FINALIZE or CLOSE; anything else is a 400. Errors
    never quote what was sent: a client's text echoed back is a reflection channel."""
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise InvalidRequest("Text messages must be JSON objects with a type (KeepAlive, Finalize, CloseStream)") from exc
    name = _CONTROLS.get(kind.lower()) if isinstance(kind, str) else None
    if name is None:
        raise InvalidRequest("Unknown message type: expected KeepAlive, Finalize or CloseStream", parameter="type")
    return name


def _integer(params: Mapping[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        number = lo - 1
    if not lo <= number <= hi:
        raise InvalidRequest(f"{name} must be a whole number from {lo} to {hi}", parameter=name)
    return number


def _milliseconds(params: Mapping[str, Any], name: str, default_s: float | None, lo_ms: int) -> float | None:
    """A pause in ms, or `false` for none; at least `lo_ms` (smaller values are raised to it)."""
    value = params.get(name)
    if value is None:
        return default_s
    if str(value).strip().lower() == "false":
        return None
    if str(value).strip().lower() == "true":
        return default_s
    ms = _integer(params, name, None, 0, 60_000)
    assert ms is not None
    return max(ms, lo_ms) / 1000


def _encoding(params: Mapping[str, Any], default: str | None) -> str | None:
    encoding = params.get("encoding", default)
    if encoding is not None and encoding not in ENCODINGS:
        raise InvalidRequest(f"encoding must be one of {', '.join(ENCODINGS)} (or omitted for webm/ogg)", parameter="encoding")
    return encoding


def _refuse(params: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """Options asked for that streaming cannot honour are refused, never silently ignored."""
    for name in names:
        if flag(params, name):
            raise InvalidRequest(f"{name} is not supported on streams by this server", parameter=name)


def _language(params: Mapping[str, Any]) -> str:
    options = Options.parse({"language": params["language"]} if params.get("language") else {})
    if options.detect_language:
        raise InvalidRequest("Streams need a language: language detection is for files", parameter="language")
    return options.language or "en"


class Deepgram:
    """`WS /v1/listen` as Deepgram's live clients speak it."""

    name = "deepgram"

    def parse(self, params: Mapping[str, Any], default_endpoint_s: float) -> StreamOptions:
        _refuse(params, ("multichannel", "diarize", "redact"))
        utterance_end = _milliseconds(params, "utterance_end_ms", None, 100)
        interim = bool(flag(params, "interim_results"))
        if utterance_end is not None and not interim:
            raise InvalidRequest("utterance_end_ms needs interim_results=true", parameter="utterance_end_ms")
        flag(params, "smart_format")  # validated: Whisper formats already
        return StreamOptions(
            encoding=_encoding(params, None),
            sample_rate=_integer(params, "sample_rate", 16000, *SAMPLE_RATES) or 16000,
            channels=_integer(params, "channels", 1, 1, MAX_CHANNELS) or 1,
            language=_language(params),
            interim_results=interim,
            endpoint_s=_milliseconds(params, "endpointing", default_endpoint_s, int(MIN_ENDPOINT_S * 1000)),
            utterance_end_s=utterance_end,
            vad_events=bool(flag(params, "vad_events")),
            punctuate=flag(params, "punctuate") is not False,
            timestamps=False,
        )

    def result(self, r: Result, ctx: Context) -> dict[str, Any]:
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(r.duration, 3),
            "start": round(r.start, 3),
            "is_final": r.is_final,
            "speech_final": r.speech_final,
            "from_finalize": r.from_finalize,
            "channel": {"alternatives": [{
                "transcript": r.transcript.text,
                "confidence": r.transcript.confidence,
                "words": [word_dict(w) for w in r.transcript.words],
            }]},
            "metadata": {
                "request_id": ctx.request_id,
                "model_info": {"name": ctx.model, "version": "1", "arch": "whisper"},
                "model_uuid": model_uuid(ctx.model),
            },
        }

    def speech_started(self, at: float) -> dict[str, Any] | None:
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
        }

    def error(self, exc: ServiceError) -> dict[str, Any]:
        return {"type": "Error", "variant": exc.code, "description": exc.message, "message": exc.message, **exc.body()}


class Smallest:
    """`WS /waves/v1/stt/live` as Smallest's `smallestai` streaming helper speaks it."""

    name = "smallest"

    def parse(self, params: Mapping[str, Any], default_endpoint_s: float) -> StreamOptions:
        _refuse(params, ("diarize", "redact_pii", "redact_pci", "vad_events", "sentence_timestamps"))
        timestamps = flag(params, "word_timestamps")
        return StreamOptions(
            encoding=_encoding(params, "linear16"),
            sample_rate=_integer(params, "sample_rate", 16000, *SAMPLE_RATES) or 16000,
            channels=_integer(params, "channels", 1, 1, MAX_CHANNELS) or 1,
            language=_language(params),
            interim_results=True,  # Pulse always streams partial results
            endpoint_s=_milliseconds(params, "eou_timeout_ms", default_endpoint_s, int(MIN_ENDPOINT_S * 1000)),
            utterance_end_s=None,
            vad_events=False,
            punctuate=flag(params, "punctuate") is not False,
            timestamps=bool(timestamps),
            full_transcript=bool(flag(params, "full_transcript")),
        )

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
            "words": [{"word": w.punctuated_word, "start": w.start, "end": w.end, "confidence": w.confidence} for w in r.transcript.words],
        }
        if ctx.options.full_transcript and r.is_final:
            body["full_transcript"] = r.full_text
        return body

    def speech_started(self, at: float) -> dict[str, Any] | None:
        return None  # Pulse has no voice activity messages (`vad_events` is refused)

    def utterance_end(self, last_word_end: float) -> dict[str, Any] | None:
        return None

    def metadata(self, ctx: Context, sha256: str, duration: float) -> dict[str, Any] | None:
        return None  # Pulse ends with its `is_last` transcription

    def error(self, exc: ServiceError) -> dict[str, Any]:
        return {"type": "error", "status": "error", "message": exc.message, **exc.body()}
