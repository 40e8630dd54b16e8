"""The live routes of every dialect: a stream is checked like a request (key, options, limits)
before the WebSocket is accepted; it then holds its concurrency slot until it ends, and is billed
by the audio it streams (stream/session.py runs it).

A dialect whose options come in its first text messages (`Opens`: Twilio's `start`, OpenAI's
`session.update`) is read after the accept, until it has them; what is wrong then (a bad key in
Twilio's `start`, a language the model lacks, a full slot) is the dialect's error message and a
close, as the handshake can no longer be refused."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..callback import Callbacks
from ..callback import check as check_callback
from ..errors import FileTooLarge, InvalidRequest, ServerRestarting, ServiceError, StreamIdle
from ..licensing.auth import Principal
from ..licensing.limits import Admission, Limiter
from ..metrics import Metrics
from ..pipeline import transforms
from ..pipeline.chunk import Chunk
from ..pipeline.engine_client import EngineClient, context
from ..pipeline.fetch import UrlPolicy
from ..pipeline.meter import Meter
from ..pipeline.prompt import decoder_prompt
from ..pipeline.request import supported_language
from ..pipeline.source import repeated
from ..pipeline.stitch import stitch, with_speakers
from ..pipeline.transcript import Transcript
from ..settings import StreamArgs
from ..stream.audio_in import open_input
from ..stream.channels import Channels
from ..stream.drain import Drain
from ..stream.limits import MESSAGE_TOO_BIG, Close, InterimBudget, StreamLimits, closing
from ..stream.outgoing import ClientGone, close_with, write
from ..stream.protocol import BINARY_REFUSED, Context, LiveDialect, Opens, Reports, StreamOptions
from ..stream.segment import Segmenter, SileroVad, Utterance
from ..stream.session import Decode, Session
from ..stream.speakers import Speakers
from ..types import Turn
from .access import Access
from .http import check_headers

logger = logging.getLogger("ray.serve")
OPENING_MESSAGES = 32  # messages a stream may send before its options are complete (Twilio needs 2)


@dataclass
class StreamRoutes:
    access: Access
    limiter: Limiter
    engine: EngineClient
    meter: Meter
    metrics: Metrics
    args: StreamArgs
    context: bool = False  # decode each utterance with the stream's finals so far as context
    callbacks: Callbacks | None = None  # where a stream's report goes (a Twilio call's `callback`)
    url_policy: UrlPolicy | None = None  # the rules a callback URL obeys (those of file callbacks)
    drain: Drain = field(default_factory=Drain)  # the replica's streams end when Serve stops it

    def __post_init__(self) -> None:
        self.interims = InterimBudget(self.args.interims_in_flight)  # shared by every stream of the replica

    def handler(self, dialect: Callable[[], LiveDialect]) -> Callable[[WebSocket], Awaitable[None]]:
        """The route of a dialect; `dialect` makes one per stream (it may keep the stream's state)."""

        async def stream(ws: WebSocket) -> None:
            await self.stream(ws, dialect())

        return stream

    async def stream(self, ws: WebSocket, dialect: LiveDialect) -> None:
        header, subprotocol = _credentials(ws)
        opens = dialect if isinstance(dialect, Opens) else None  # its options come in messages after the accept
        deferred = header is None and opens is not None and opens.key_in_opening  # and so may its key
        principal: Principal | None = None
        admission: Admission | None = None
        vads: list[SileroVad] = []
        admitted = AsyncExitStack()
        try:
            check_headers(ws)
            if self.drain.draining:  # Serve routes new streams elsewhere; one that still comes here
                raise ServerRestarting(retry_after=1)
            if not deferred:
                principal = await self.access.check(header, ws)
            options = dialect.parse(repeated(ws.query_params.multi_items()), self.args.endpointing_ms / 1000)
            info = await self.engine.known_info()
            supported_language(options.language, info)
            if principal is not None:
                admission = await admitted.enter_async_context(self.limiter.admit(principal))
                vads = await _vads(_lanes(options))
        except ServiceError as exc:
            await admitted.aclose()
            self.metrics.request("stream", exc.status, getattr(ws.state, "key_id", "none"))
            await _refuse(ws, exc, subprotocol, dialect)
            return
        async with admitted:
            await ws.accept(subprotocol=subprotocol)
            ctx = Context(uuid.uuid4().hex, info.model, options, tuple(info.languages))
            first, reporting = None, False
            if opens is not None:
                try:
                    opened = await self._opening(ws, opens, ctx, known=principal is not None)
                    if opened is None:  # the client left before its audio
                        if principal is not None:
                            self.metrics.request("stream", 101, principal.key_id)
                        return
                    options, key, first = opened
                    if principal is None:
                        principal = await self.access.check(key, ws)
                        admission = await admitted.enter_async_context(self.limiter.admit(principal))
                    supported_language(options.language, info)
                    vads = vads or await _vads(_lanes(options))
                    # Last: once its callback is taken on, the stream must reach the `finally` that reports it.
                    reporting = await self._reporting(dialect, ctx, principal.key_id)
                except ServiceError as exc:
                    self.metrics.request("stream", exc.status, getattr(ws.state, "key_id", "none"))
                    too_big = "max_frame_bytes" in exc.extra  # a message over the limit: 1009, as in a session
                    close = Close(MESSAGE_TOO_BIG, exc) if too_big else closing(exc)
                    await close_with(ws, close, dialect.error(exc))
                    return
                ctx = replace(ctx, options=options)
            assert principal is not None and admission is not None and vads
            segmenter = self._segmenter(vads, options, info.window_s)
            async with self.drain.stream() as draining:
                session = self._session(ws, dialect, ctx, segmenter, admission, draining)
                try:
                    await session.run(first)
                finally:
                    admission.audio_seconds = session.audio_seconds * _lanes(options)  # each channel is transcribed
                    if reporting:
                        await self._report(dialect, ctx, session.audio_seconds)
                    tags = options.text.tags if options.text else ()
                    logger.info(
                        "stream request_id=%s key_id=%s audio_s=%.1f%s",
                        ctx.request_id,
                        principal.key_id,
                        session.audio_seconds,
                        f" tags={list(tags)!r}" if tags else "",
                    )
        self.metrics.request("stream", 101, principal.key_id)
        await self.meter.observe(principal, session.audio_seconds * _lanes(options))

    async def _reporting(self, dialect: LiveDialect, ctx: Context, key_id: str) -> bool:
        """Takes on the report a stream's client asked for (Twilio's `callback`), checked and
        counted as a file callback is (a bad URL: 400; the key's or replica's callbacks full:
        429, 503); whether there is one."""
        if not isinstance(dialect, Reports) or dialect.callback is None:
            return False
        if self.callbacks is None or self.url_policy is None:
            raise InvalidRequest("Stream reports are not served here", parameter="callback")
        url = await asyncio.to_thread(check_callback, dialect.callback, self.url_policy)
        await self.callbacks.accept(ctx.request_id, key_id, url)
        return True

    async def _report(self, dialect: LiveDialect, ctx: Context, duration: float) -> None:
        """The stream's report, handed to the callback outbox after its last final (however it ended)."""
        assert isinstance(dialect, Reports) and self.callbacks is not None
        body = json.dumps(dialect.report(ctx, duration)).encode()
        await self.callbacks.finish(ctx.request_id, body, "application/json")

    async def _opening(
        self, ws: WebSocket, dialect: Opens, ctx: Context, known: bool
    ) -> tuple[StreamOptions, str | None, str | None] | None:
        """Reads a message-opened stream's messages until its options are complete: (options, the
        key a message carried as an Authorization value, the message that begins the stream when
        it is also its first), or None when the client left. Each message must come within the idle
        timeout, all of them within it while the key is not `known`, and there may be at most
        OPENING_MESSAGES of them; a bad one is answered with the dialect's error and the next is read."""
        loop = asyncio.get_running_loop()
        idle = self.args.idle_timeout_s
        deadline = float("inf") if known else loop.time() + idle  # a caller without a key gets one idle timeout
        greeting = dialect.greeting(ctx, ws.headers, ws.scope.get("subprotocols") or [])
        try:
            if greeting is not None:
                await write(ws, greeting)
            for _ in range(OPENING_MESSAGES):
                try:
                    async with asyncio.timeout(min(idle, deadline - loop.time())):
                        message = await ws.receive()
                except TimeoutError:
                    raise StreamIdle("No audio or message received within the timeout") from None
                if message["type"] == "websocket.disconnect":
                    return None
                text, limit = message.get("text"), self.args.max_frame_kb * 1024
                if len(text or message.get("bytes") or b"") > limit:  # as a running stream does: it ends
                    raise FileTooLarge(f"WebSocket messages must be at most {limit} bytes", max_frame_bytes=limit)
                reply: dict[str, Any] | None = None
                try:
                    if text is None:
                        raise InvalidRequest(BINARY_REFUSED)
                    opening = dialect.opening(text, ctx)
                except InvalidRequest as exc:
                    reply = dialect.error(exc)  # reported; the next message is read
                else:
                    if opening.error is not None:
                        raise opening.error
                    reply = opening.reply
                    if opening.options is not None:
                        if reply is not None:
                            await write(ws, reply)
                        key = None if opening.key is None else f"Token {opening.key}"
                        return opening.options, key, text if opening.first else None
                if reply is not None:
                    await write(ws, reply)
            raise InvalidRequest(f"A stream must begin within {OPENING_MESSAGES} messages")
        except (ClientGone, WebSocketDisconnect):
            return None

    def _session(
        self,
        ws: WebSocket,
        dialect: LiveDialect,
        ctx: Context,
        segmenter: Channels,
        admission: Admission,
        draining: asyncio.Event,
    ) -> Session:
        options, args, lanes = ctx.options, self.args, _lanes(ctx.options)

        async def reserve(seconds: float) -> float:  # a multichannel stream is billed per channel, as files are
            return await admission.reserve(seconds * lanes, partial=True) / lanes

        return Session(
            ws,
            dialect,
            ctx,
            open_input(
                options.encoding, options.sample_rate, options.channels, args.buffered_s, args.buffered_kb * 1024, lanes > 1
            ),
            segmenter,
            self._decoder(options),
            StreamLimits(
                args.idle_timeout_s,
                args.interim_every_s,
                args.decodes_in_flight,
                reserve,
                self.interims,
                max_frame_bytes=args.max_frame_kb * 1024,
                max_duration_s=args.max_duration_s,
                draining=draining,
            ),
        )

    def _segmenter(self, vads: list[SileroVad], options: StreamOptions, window_s: float) -> Channels:
        """One segmenter per channel transcribed, each with its own VAD."""
        args = self.args
        long_pause_s = args.merge_pause_ms / 1000
        return Channels(
            [
                Segmenter(vad, options.endpoint_s, window_s, options.utterance_end_s, args.min_final_speech_s, long_pause_s)
                for vad in vads
            ]
        )

    def _decoder(self, options: StreamOptions) -> Decode:
        """An utterance through the same engine as files; finals wait out a full queue, interims do not.
        With `context`, each is decoded with the stream's finals so far, as a file's chunks are
        (pipeline/files.py): the text of those finished when it starts, which on a live stream
        (finals seconds apart, decoded in a fraction of one) is every final before it."""
        request = replace(options.text, language=options.language, punctuate=options.punctuate)
        finals: list[str] = []
        speakers = [Speakers(self._diarize) for _ in range(_lanes(options))] if options.diarize else []

        async def transcribe(utterance: Utterance, final: bool) -> Transcript:
            align = final and options.timestamps
            previous = decoder_prompt(request, context(finals) if self.context else "")
            call = partial(self.engine.transcribe, utterance.audio, options.language, align, previous, live=True)
            with self.meter.timed("stream_final" if final else "stream_interim"):
                result = await (self.engine.patiently(call) if final else call())
            if final and self.context:
                finals[:] = [context([*finals, result.text])]  # bounded: only the end is ever sent
            return stitch([Chunk(utterance.start, utterance.audio)], [result], options.language)

        async def decode(utterance: Utterance, final: bool) -> Transcript:
            if not (final and speakers):  # interims carry no speakers
                return transforms.apply(await transcribe(utterance, final), request)
            # Asked before the first await: a channel's finals are diarized in the order they came.
            turns = asyncio.ensure_future(speakers[utterance.channel].turns(utterance.audio, utterance.start))
            try:
                transcript = with_speakers(await transcribe(utterance, final), await turns)
            finally:
                turns.cancel()  # no-op once done; a failed or cancelled decode needs no speakers
            return transforms.apply(transcript, request)

        return decode

    async def _diarize(self, audio: Any) -> list[Turn]:
        """A final's speakers (with the voices in front of it: stream/speakers.py); waits out a full engine."""
        return await self.engine.patiently(lambda: self.engine.diarize(audio, None))


OPENAI_KEY = "openai-insecure-api-key."  # OpenAI's browser subprotocol: the key follows the prefix


def _credentials(ws: WebSocket) -> tuple[str | None, str | None]:
    """The key from the Authorization header or, for browsers (which cannot set headers), from the
    WebSocket subprotocols `token, KEY` (Deepgram's), `bearer, KEY`, or OpenAI's
    `realtime, openai-insecure-api-key.KEY`: (header, subprotocol to accept, never the key's)."""
    header = ws.headers.get("authorization")
    offered = ws.scope.get("subprotocols") or []
    if header is None and len(offered) >= 2 and offered[0].lower() in ("token", "bearer"):
        return f"{offered[0]} {offered[1]}", offered[0]
    keyed = [p for p in offered if p.startswith(OPENAI_KEY)]
    if header is None and keyed:
        return f"Bearer {keyed[0][len(OPENAI_KEY) :]}", "realtime" if "realtime" in offered else None
    return header, "realtime" if "realtime" in offered else None


async def _refuse(ws: WebSocket, error: ServiceError, subprotocol: str | None, dialect: LiveDialect) -> None:
    """A refused handshake: the HTTP status and JSON error where the server can send one (the
    WebSocket denial extension) and the client can read it; otherwise the error as the stream's only
    message (in the dialect's shape), then a close whose reason starts with the code. A client that
    sent its key as a subprotocol is a browser, and a browser shows a refused handshake to the page
    only as close 1006, without its status or body: it gets the message and the close."""
    if subprotocol is None and "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(error.response())
        return
    await ws.accept(subprotocol=subprotocol)
    await close_with(ws, closing(error), dialect.error(error))


def _lanes(options: StreamOptions) -> int:
    """The channels a stream transcribes: each of a multichannel stream's, else one (mixed down)."""
    return options.channels if options.multichannel else 1


async def _vads(count: int) -> list[SileroVad]:
    """A VAD per channel: each keeps its own state from frame to frame."""
    return [await asyncio.to_thread(SileroVad) for _ in range(count)]
