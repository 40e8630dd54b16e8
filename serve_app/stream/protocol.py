"""A live stream, dialect-free: the options every live API parses into (`StreamOptions`), one
decoded utterance (`Result`) and the control messages; `LiveDialect` is what an API module
(api/live.py, api/pulse_live.py) provides to turn them into its own JSON messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InvalidRequest, ServiceError
from ..pipeline.request import TranscriptionRequest
from ..pipeline.transcript import Transcript

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
    # The text options every result is transformed with (pipeline/transforms.py), what the decoder is
    # told (keyterms, filler_words: pipeline/prompt.py), Deepgram's search terms and labels (extra,
    # tag), read as the file routes read them (api/text_params.py).
    text: TranscriptionRequest = TranscriptionRequest()


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


class LiveDialect(Protocol):
    """A live API's handshake options and messages (None: the dialect has no such message)."""

    name: str

    def parse(self, params: Any, default_endpoint_s: float) -> StreamOptions: ...
    def result(self, r: Result, ctx: Context) -> dict[str, Any]: ...
    def speech_started(self, at: float) -> dict[str, Any] | None: ...
    def utterance_end(self, last_word_end: float) -> dict[str, Any] | None: ...
    def metadata(self, ctx: Context, sha256: str, duration: float) -> dict[str, Any] | None: ...
    def error(self, exc: ServiceError) -> dict[str, Any]: ...
