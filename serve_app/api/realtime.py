"""OpenAI's realtime transcription sessions, `WS /v1/realtime?intent=transcription`: the client
events `session.update` (GA: `session.type` "transcription", `audio.input.{format, transcription,
turn_detection}`) or `transcription_session.update` (beta: `input_audio_format`,
`input_audio_transcription`, `turn_detection`), `input_audio_buffer.append` (base64 audio),
`.commit` and `.clear`; the server events `session.created`/`.updated` (or
`transcription_session.*` when the client speaks the beta: `OpenAI-Beta: realtime=v1`, or its
`openai-beta.realtime-v1` subprotocol), `input_audio_buffer.speech_started`, `.speech_stopped`,
`.committed`, `.cleared`, `conversation.item.input_audio_transcription.delta` and `.completed`,
and `error`.

An utterance is an item: with `server_vad` (the default, `silence_duration_ms` 500) a pause commits
it, `commit` commits whatever is open, `turn_detection: null` leaves commits to the client. As
OpenAI's whisper-1 does, an item is transcribed once committed: one `delta` with its whole text,
then `completed`. Options apply before the first audio; once audio has come, a `session.update`
that would change them is an error (a new session takes new options).

What this server cannot honour is refused with an `error` (the session keeps its options, as
OpenAI's does with a bad update): `semantic_vad`, a VAD `threshold` or `prefix_padding_ms` other
than the fixed 0.5 and 300 ms, `noise_reduction`, logprobs, `delay`, several `languages`. The
`model` asked for is accepted and reported; the server's own model transcribes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest, ServiceError
from ..pipeline.request import TranscriptionRequest
from ..stream.protocol import CLEAR, FINALIZE, Context, Incoming, Opening, Result, StreamOptions, base64_audio, json_message
from .live_params import MIN_ENDPOINT_S
from .realtime_session import (
    FORMATS,
    GA_FORMATS,
    PREFIX_PADDING_MS,
    VAD_THRESHOLD,
    Config,
    format_of,
    transcription_of,
    turn_detection_of,
)

UPDATES = ("session.update", "transcription_session.update")
BUFFER = ("input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear")
BETA_SESSION = {
    "input_audio_format",
    "input_audio_transcription",
    "turn_detection",
    "input_audio_noise_reduction",
    "include",
    "modalities",
    "client_secret",
}


class Realtime:
    """`WS /v1/realtime?intent=transcription`; one per stream (it keeps the session's configuration)."""

    name = "openai-realtime"
    key_in_opening = False  # the key is a header (Bearer) or the openai-insecure-api-key subprotocol

    def __init__(self) -> None:
        self.config = Config()
        self.beta = False
        self._sent_audio = False  # audio appended since the last commit or clear
        self._previous: str | None = None  # the last item committed
        self._ctx: Context | None = None  # the stream's ids and model, from `greeting`

    # --- handshake and options ---------------------------------------------------------------------

    def parse(self, params: Mapping[str, Any], default_endpoint_s: float) -> StreamOptions:
        if params.get("intent") != "transcription":
            raise InvalidRequest("Only transcription sessions are served: connect with intent=transcription", parameter="intent")
        return self.options(self.config)

    def options(self, c: Config) -> StreamOptions:
        encoding, _ = FORMATS[c.format]
        return StreamOptions(
            encoding=encoding,
            sample_rate=c.rate,
            channels=1,
            language=c.language,
            interim_results=False,  # an item is transcribed once committed
            endpoint_s=max(c.silence_ms / 1000, MIN_ENDPOINT_S) if c.vad else None,
            utterance_end_s=None,
            vad_events=c.vad,
            punctuate=True,
            timestamps=False,
            text=TranscriptionRequest(keyterms=c.keywords, prompt=c.prompt),
        )

    def greeting(self, ctx: Context, headers: Mapping[str, str], subprotocols: Sequence[str]) -> dict[str, Any] | None:
        self._ctx = ctx
        self.beta = headers.get("openai-beta", "").strip().lower() == "realtime=v1" or "openai-beta.realtime-v1" in subprotocols
        kind = "transcription_session.created" if self.beta else "session.created"
        return self._event(kind, session=self._session(ctx, beta=self.beta))

    def opening(self, text: str, ctx: Context) -> Opening:
        message, kind = json_message(text, "type")
        if kind in UPDATES:
            self.config = self._updated(self.config, message, ctx)
            return Opening(reply=self._updated_event(kind, ctx))
        if kind in BUFFER:
            return Opening(options=self.options(self.config), first=True)
        raise _unsupported()

    def _updated(self, c: Config, message: dict[str, Any], ctx: Context) -> Config:
        """`c` with the fields an update sends (the others kept, as OpenAI's updates do)."""
        s = message.get("session")
        if not isinstance(s, dict):
            raise InvalidRequest("session must be an object", parameter="session")
        if s.get("type", "transcription") != "transcription":
            raise InvalidRequest(
                "Only transcription sessions are served: session.type must be transcription", parameter="session.type"
            )
        if set(s) - BETA_SESSION - {"type", "audio"}:
            raise InvalidRequest(
                "session has a field this server does not know (type, audio, include; or the beta's input_audio_*, turn_detection)",
                parameter="session",
            )
        include = s.get("include")
        if include:  # logprobs: Whisper's words have confidences, not the token log probabilities asked for
            raise InvalidRequest("include is not supported: this server sends no logprobs", parameter="session.include")
        audio = s.get("audio", {})
        if not isinstance(audio, dict) or set(audio) - {"input"}:
            raise InvalidRequest(
                "session.audio may only have input (a transcription session has no output)", parameter="session.audio"
            )
        given = audio.get("input", {})
        if not isinstance(given, dict) or set(given) - {"format", "transcription", "turn_detection", "noise_reduction"}:
            raise InvalidRequest(
                "session.audio.input may have format, transcription, turn_detection, noise_reduction",
                parameter="session.audio.input",
            )
        fields = {  # one name per field, whichever shape sent it
            "format": ("session.audio.input.format", given, "format", s, "input_audio_format"),
            "transcription": ("session.audio.input.transcription", given, "transcription", s, "input_audio_transcription"),
            "turn_detection": ("session.audio.input.turn_detection", given, "turn_detection", s, "turn_detection"),
            "noise_reduction": (
                "session.audio.input.noise_reduction",
                given,
                "noise_reduction",
                s,
                "input_audio_noise_reduction",
            ),
        }
        for field, (path, ga, ga_name, beta, beta_name) in fields.items():
            if ga_name in ga and beta_name in beta:
                raise InvalidRequest(f"Send {field} once, in the GA or the beta shape", parameter=path)
            if ga_name in ga:
                c = self._field(c, field, ga[ga_name], path, ctx)
            elif beta_name in beta:
                c = self._field(c, field, beta[beta_name], f"session.{beta_name}", ctx)
        return c

    def _field(self, c: Config, field: str, value: Any, path: str, ctx: Context) -> Config:
        if field == "format":
            return format_of(c, value, path)
        if field == "transcription":
            return transcription_of(c, value, path, ctx)
        if field == "turn_detection":
            return turn_detection_of(c, value, path)
        if value is not None:
            raise InvalidRequest("noise_reduction is not supported: send null or leave it out", parameter=path)
        return c

    def _updated_event(self, kind: str, ctx: Context) -> dict[str, Any]:
        beta = kind == "transcription_session.update" or self.beta
        return self._event(kind.replace(".update", ".updated"), session=self._session(ctx, beta=beta))

    def _session(self, ctx: Context, beta: bool) -> dict[str, Any]:
        c = self.config
        transcription: dict[str, Any] = {"model": c.model or ctx.model, "language": c.language, "prompt": c.prompt}
        if c.keywords:
            transcription["keywords"] = list(c.keywords)
        turn = (
            {
                "type": "server_vad",
                "threshold": VAD_THRESHOLD,
                "prefix_padding_ms": PREFIX_PADDING_MS,
                "silence_duration_ms": c.silence_ms,
            }
            if c.vad
            else None
        )
        session: dict[str, Any] = {"id": f"sess_{ctx.request_id[:24]}", "object": "realtime.transcription_session"}
        if beta:
            return {
                **session,
                "input_audio_format": c.format,
                "input_audio_transcription": transcription,
                "turn_detection": turn,
                "input_audio_noise_reduction": None,
                "include": None,
                "modalities": ["text"],
                "client_secret": None,
            }
        audio_format: dict[str, Any] = {"type": next(k for k, v in GA_FORMATS.items() if v == c.format)}
        if c.format == "pcm16":
            audio_format["rate"] = c.rate
        return {
            **session,
            "type": "transcription",
            "audio": {
                "input": {"format": audio_format, "transcription": transcription, "noise_reduction": None, "turn_detection": turn}
            },
            "include": None,
        }

    # --- the running session -----------------------------------------------------------------------

    def incoming(self, text: str) -> Incoming:
        message, kind = json_message(text, "type")
        if kind == "input_audio_buffer.append":
            audio = base64_audio(message.get("audio"), "audio")
            self._sent_audio = self._sent_audio or bool(audio)
            return Incoming(audio=audio)
        if kind == "input_audio_buffer.commit":
            if not self._sent_audio:
                raise InvalidRequest("Error committing input audio buffer: no audio was appended since the last commit or clear")
            self._sent_audio = False
            return Incoming(control=FINALIZE)
        if kind == "input_audio_buffer.clear":
            self._sent_audio = False
            return Incoming(control=CLEAR, reply=self._event("input_audio_buffer.cleared"))
        if kind in UPDATES:
            return Incoming(reply=self._update_running(kind, message))
        raise _unsupported()

    def _update_running(self, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        """Once audio has come, an update may change only what the stream does not depend on (the model's name)."""
        ctx = self._context()
        config = self._updated(self.config, message, ctx)
        if self.options(config) != self.options(self.config):
            raise InvalidRequest(
                "session.update cannot change the audio format, turn detection or transcription once audio has been sent: "
                "open a new session for new options",
                parameter="session",
            )
        self.config = config
        return self._updated_event(kind, ctx)

    def result(self, r: Result, ctx: Context) -> list[dict[str, Any]] | None:
        text = r.transcript.text
        if not r.is_final or (r.is_last and not text and r.duration == 0):
            return None  # no interims (an item is transcribed once committed); nothing open at the end
        item = _item(ctx, r.utterance)
        events = []
        if r.speech_final and not r.from_finalize and ctx.options.vad_events:
            events.append(self._event("input_audio_buffer.speech_stopped", audio_end_ms=_ms(r.start + r.duration), item_id=item))
        events.append(self._event("input_audio_buffer.committed", previous_item_id=self._previous, item_id=item))
        if text:
            kind = "conversation.item.input_audio_transcription.delta"
            events.append(self._event(kind, item_id=item, content_index=0, delta=text))
        kind = "conversation.item.input_audio_transcription.completed"
        usage = {"type": "duration", "seconds": round(r.duration, 3)}
        events.append(self._event(kind, item_id=item, content_index=0, transcript=text, usage=usage))
        self._previous = item
        return events

    def speech_started(self, at: float, utterance: int, channel: int = 0) -> dict[str, Any] | None:
        # where speech was heard: OpenAI's value includes its prefix padding, but this server's
        # 300 ms pre-roll before `at` stops at the last item's end, which only the item's final knows
        return self._event("input_audio_buffer.speech_started", audio_start_ms=_ms(at), item_id=_item(self._context(), utterance))

    def _context(self) -> Context:
        assert self._ctx is not None, "greeting() is the first call of a stream"
        return self._ctx

    def utterance_end(self, last_word_end: float, channel: int = 0) -> dict[str, Any] | None:
        return None

    def metadata(self, ctx: Context, sha256: str, duration: float) -> dict[str, Any] | None:
        return None

    def error(self, exc: ServiceError) -> dict[str, Any]:
        extra = {k: v for k, v in exc.extra.items() if k != "parameter"}
        return self._event(
            "error",
            error={
                "type": "invalid_request_error" if exc.status < 500 else "server_error",
                "code": exc.code,
                "message": exc.message,
                "param": exc.extra.get("parameter"),
                "event_id": None,  # the client's event_id is not said back: errors never quote what was sent
                **extra,
            },
        )

    @staticmethod
    def _event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"event_{uuid.uuid4().hex[:22]}", **fields}


def _unsupported() -> InvalidRequest:
    return InvalidRequest(
        "Unsupported event in a transcription session: expected session.update, transcription_session.update "
        "or input_audio_buffer.append, .commit, .clear",
        parameter="type",
    )


def _item(ctx: Context, utterance: int) -> str:
    return f"item_{ctx.request_id[:16]}_{utterance}"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
