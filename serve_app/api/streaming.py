"""The live routes of every dialect: a stream is checked like a request (key, options, limits)
before the WebSocket is accepted; it then holds its concurrency slot until it ends, and is billed
by the audio it streams (stream/session.py runs it)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from functools import partial

from starlette.websockets import WebSocket

from ..errors import ServiceError
from ..licensing.limits import Admission, Limiter
from ..metrics import Metrics
from ..pipeline import transforms
from ..pipeline.chunk import Chunk
from ..pipeline.engine_client import EngineClient, context
from ..pipeline.meter import Meter
from ..pipeline.prompt import decoder_prompt
from ..pipeline.request import supported_language
from ..pipeline.source import repeated
from ..pipeline.stitch import stitch
from ..pipeline.transcript import Transcript
from ..settings import StreamArgs
from ..stream.audio_in import open_input
from ..stream.limits import InterimBudget, StreamLimits
from ..stream.protocol import Context, LiveDialect, StreamOptions
from ..stream.segment import Segmenter, SileroVad, Utterance
from ..stream.session import Decode, Session
from .access import Access
from .http import check_headers

logger = logging.getLogger("ray.serve")


@dataclass
class StreamRoutes:
    access: Access
    limiter: Limiter
    engine: EngineClient
    meter: Meter
    metrics: Metrics
    args: StreamArgs
    context: bool = False  # decode each utterance with the stream's finals so far as context

    def __post_init__(self) -> None:
        self.interims = InterimBudget(self.args.interims_in_flight)  # shared by every stream of the replica

    def handler(self, dialect: LiveDialect) -> Callable[[WebSocket], Awaitable[None]]:
        async def stream(ws: WebSocket) -> None:
            await self.stream(ws, dialect)

        return stream

    async def stream(self, ws: WebSocket, dialect: LiveDialect) -> None:
        header, subprotocol = _credentials(ws)
        admitted = AsyncExitStack()
        try:
            check_headers(ws)
            principal = await self.access.check(header, ws)
            options = dialect.parse(repeated(ws.query_params.multi_items()), self.args.endpointing_ms / 1000)
            info = await self.engine.known_info()
            supported_language(options.language, info)
            admission = await admitted.enter_async_context(self.limiter.admit(principal))
            vad = await asyncio.to_thread(SileroVad)
        except ServiceError as exc:
            await admitted.aclose()
            self.metrics.request("stream", exc.status, getattr(ws.state, "key_id", "none"))
            await _refuse(ws, exc, subprotocol)
            return
        async with admitted:
            await ws.accept(subprotocol=subprotocol)
            ctx = Context(uuid.uuid4().hex, info.model, options)
            session = self._session(ws, dialect, ctx, self._segmenter(vad, options, info.window_s), admission)
            try:
                await session.run()
            finally:
                admission.audio_seconds = session.audio_seconds
                tags = options.text.tags if options.text else ()
                logger.info(
                    "stream request_id=%s key_id=%s audio_s=%.1f%s",
                    ctx.request_id,
                    principal.key_id,
                    session.audio_seconds,
                    f" tags={list(tags)!r}" if tags else "",
                )
        self.metrics.request("stream", 101, principal.key_id)
        await self.meter.observe(principal, session.audio_seconds)

    def _session(self, ws: WebSocket, dialect: LiveDialect, ctx: Context, segmenter: Segmenter, admission: Admission) -> Session:
        options, args = ctx.options, self.args
        return Session(
            ws,
            dialect,
            ctx,
            open_input(options.encoding, options.sample_rate, options.channels, args.buffered_s, args.buffered_kb * 1024),
            segmenter,
            self._decoder(options),
            StreamLimits(
                args.idle_timeout_s,
                args.interim_every_s,
                args.decodes_in_flight,
                lambda seconds: admission.reserve(seconds, partial=True),
                self.interims,
                max_frame_bytes=args.max_frame_kb * 1024,
                max_duration_s=args.max_duration_s,
            ),
        )

    def _segmenter(self, vad: SileroVad, options: StreamOptions, window_s: float) -> Segmenter:
        args = self.args
        long_pause_s = args.merge_pause_ms / 1000
        return Segmenter(vad, options.endpoint_s, window_s, options.utterance_end_s, args.min_final_speech_s, long_pause_s)

    def _decoder(self, options: StreamOptions) -> Decode:
        """An utterance through the same engine as files; finals wait out a full queue, interims do not.
        With `context`, each is decoded with the stream's finals so far, as a file's chunks are
        (pipeline/files.py): the text of those finished when it starts, which on a live stream
        (finals seconds apart, decoded in a fraction of one) is every final before it."""
        request = replace(options.text, language=options.language, punctuate=options.punctuate)
        finals: list[str] = []

        async def decode(utterance: Utterance, final: bool) -> Transcript:
            align = final and options.timestamps
            previous = decoder_prompt(request, context(finals) if self.context else "")
            call = partial(self.engine.transcribe, utterance.audio, options.language, align, previous)
            with self.meter.timed("stream_final" if final else "stream_interim"):
                result = await (self.engine.patiently(call) if final else call())
            if final and self.context:
                finals[:] = [context([*finals, result.text])]  # bounded: only the end is ever sent
            transcript = stitch([Chunk(utterance.start, utterance.audio)], [result], options.language)
            return transforms.apply(transcript, request)

        return decode


def _credentials(ws: WebSocket) -> tuple[str | None, str | None]:
    """The key from the Authorization header or, for browsers (which cannot set headers), from the
    WebSocket subprotocols `token, KEY` (Deepgram's) or `bearer, KEY`: (header, subprotocol to accept)."""
    header = ws.headers.get("authorization")
    offered = ws.scope.get("subprotocols") or []
    if header is None and len(offered) >= 2 and offered[0].lower() in ("token", "bearer"):
        return f"{offered[0]} {offered[1]}", offered[0]
    return header, None


async def _refuse(ws: WebSocket, error: ServiceError, subprotocol: str | None) -> None:
    """A refused handshake: the HTTP status and JSON error where the server can send one (the
    WebSocket denial extension) and the client can read it; otherwise the error as the stream's only
    message, then a close whose reason starts with the code. A client that sent its key as a
    subprotocol is a browser, and a browser shows a refused handshake to the page only as close 1006,
    without its status or body: it gets the message and the close."""
    if subprotocol is None and "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(error.response())
        return
    await ws.accept(subprotocol=subprotocol)
    await ws.send_json(error.body())
    await ws.close(code=1008 if error.status < 500 else 1011, reason=f"{error.code}: {error.message}"[:120])
