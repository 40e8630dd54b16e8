"""A live stream, dialect-free: the options every live API parses into (`StreamOptions`), one
decoded utterance (`Result`) and what a client's text message asks for (`Incoming`); `LiveDialect`
is what an API module (api/live.py, api/pulse_live.py, api/twilio.py, api/realtime.py) provides to
turn them into its own JSON messages. A dialect whose audio and options come inside JSON text
messages (Twilio's `start` and `media`, OpenAI's `session.update` and `input_audio_buffer.append`)
is also an `Opens`: it reads the messages before the audio (`opening`) and each one after it
(`incoming`), so every dialect shares one session loop (stream/session.py)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import InvalidRequest, ServiceError
from ..pipeline.request import TranscriptionRequest
from ..pipeline.transcript import Transcript

KEEP_ALIVE, FINALIZE, CLOSE, CLEAR = "keep_alive", "finalize", "close", "clear"
BINARY_REFUSED = "This stream's messages are JSON text: its audio goes inside them, base64-encoded"
_CONTROLS = {"keepalive": KEEP_ALIVE, "keep_alive": KEEP_ALIVE, "finalize": FINALIZE, "closestream": CLOSE, "close_stream": CLOSE}


@dataclass(frozen=True)
class StreamOptions:
    encoding: str | None  # "linear16" etc.; None: a container stream (webm/ogg)
    sample_rate: int
    channels: int  # interleaved in raw PCM; mixed down unless `multichannel`
    language: str
    interim_results: bool
    endpoint_s: float | None  # pause that ends an utterance; None: only Finalize, close or length do
    utterance_end_s: float | None  # Deepgram's UtteranceEnd after this much silence; None: never sent
    vad_events: bool  # Deepgram's SpeechStarted
    punctuate: bool
    timestamps: bool  # model-aligned word times in final results (otherwise estimated)
    full_transcript: bool = False  # Smallest: the whole session's text on each final
    multichannel: bool = False  # each of `channels` segmented and decoded on its own (raw encodings only)
    diarize: bool = False  # finals' words carry the stream's speaker numbers (stream/speakers.py)
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
    utterance: int = 0  # the stream's utterances numbered from 0: an utterance's interims, final and speech start share it
    channel: int = 0  # of a multichannel stream's channels; 0 otherwise


@dataclass(frozen=True)
class Context:
    request_id: str  # Deepgram's request_id, Smallest's session_id: one per stream
    model: str
    options: StreamOptions
    languages: tuple[str, ...] = ()  # what the model transcribes: for options that change after the handshake


@dataclass(frozen=True)
class Incoming:
    """What one client text message asks of a running stream: audio it carries (decoded), a control
    (KEEP_ALIVE, FINALIZE, CLOSE, CLEAR: drop the open utterance unanswered), and a message to answer
    with once the audio sent before it is answered (OpenAI's `input_audio_buffer.cleared`)."""

    audio: bytes = b""
    control: str | None = None
    reply: dict[str, Any] | None = None


@dataclass(frozen=True)
class Opening:
    """What one text message before a stream's audio did: `options` set means the stream begins with
    them (and, when `first`, this very message is its first, handed to `incoming`); `key` is a
    license key the message carried (Twilio's `customParameters`); `reply` is answered at once;
    `error`: the stream cannot begin (a bad Twilio `start`, which is never sent again), answered
    before the close."""

    options: StreamOptions | None = None
    first: bool = False
    key: str | None = None
    reply: dict[str, Any] | None = None
    error: ServiceError | None = None


@dataclass(frozen=True)
class Reply:
    """A reply placed in the audio's queue, so that it follows the results of the audio before it."""

    message: dict[str, Any]


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


def json_message(text: str, field: str) -> tuple[dict[str, Any], str]:
    """A text message as a JSON object and the string in `field` naming its kind (Twilio's `event`,
    OpenAI's `type`). Errors never quote what was sent."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"Text messages must be JSON objects with a string {field}", parameter=field) from exc
    kind = message.get(field) if isinstance(message, dict) else None
    if not isinstance(kind, str):
        raise InvalidRequest(f"Text messages must be JSON objects with a string {field}", parameter=field)
    return message, kind


def base64_audio(value: Any, parameter: str) -> bytes:
    """Audio carried in a JSON message, base64-encoded (standard alphabet, padded)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{parameter} must be a base64 string", parameter=parameter)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: characters outside ASCII
        raise InvalidRequest(f"{parameter} must be base64 (standard alphabet, padded)", parameter=parameter) from exc


def controls(text: str) -> Incoming:
    """The text messages of the dialects whose audio comes in binary frames: controls only."""
    return Incoming(control=control(text))


class LiveDialect(Protocol):
    """A live API's handshake options and messages (None: the dialect has no such message). The
    routes make one per stream (api/streaming.py), so a dialect may keep the stream's state."""

    name: str

    def parse(self, params: Any, default_endpoint_s: float) -> StreamOptions: ...
    def incoming(self, text: str) -> Incoming: ...
    def result(self, r: Result, ctx: Context) -> dict[str, Any] | list[dict[str, Any]] | None: ...
    def speech_started(self, at: float, utterance: int, channel: int = 0) -> dict[str, Any] | None: ...
    def utterance_end(self, last_word_end: float, channel: int = 0) -> dict[str, Any] | None: ...
    def metadata(self, ctx: Context, sha256: str, duration: float) -> dict[str, Any] | None: ...
    def error(self, exc: ServiceError) -> dict[str, Any]: ...


@runtime_checkable
class Opens(LiveDialect, Protocol):
    """A dialect whose options (and perhaps its key) come in text messages after the WebSocket is
    accepted rather than in the handshake's query. `parse` then gives the defaults."""

    key_in_opening: bool  # the key may come in a message (checked then) when the handshake has none

    def greeting(self, ctx: Context, headers: Mapping[str, str], subprotocols: Sequence[str]) -> dict[str, Any] | None:
        """The message sent as the stream is accepted (OpenAI's `session.created`), if any."""

    def opening(self, text: str, ctx: Context) -> Opening:
        """One text message before the audio. A bad one raises InvalidRequest (reported, then the
        next message is read); one the stream cannot begin after returns `Opening(error=...)`."""


@runtime_checkable
class Reports(LiveDialect, Protocol):
    """A dialect whose client may ask for the whole stream's transcript at a URL once it ends
    (Twilio's `callback` parameter: a phone call's transcript reaches its owner with no relay)."""

    callback: str | None  # the URL, once the stream's options are read; None: no report

    def report(self, ctx: Context, duration: float) -> dict[str, Any]:
        """The body POSTed to `callback` after the stream's last final."""
