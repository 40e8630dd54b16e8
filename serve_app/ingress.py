"""The ingress: Starlette routes that only sequence the stages (auth -> limits -> source -> fetch ->
decode -> chunk -> (detect language) -> engine -> stitch -> meter -> format). Errors of every stage
are `ServiceError`s, rendered as JSON in one place (`_route`). A request with a callback URL is
answered once its options are checked; the same stages then run in a background task that POSTs
the formatted result (or the error) to the callback (callback.py).

Decoding and URL fetching are blocking, so they run in worker threads to keep the event loop free
for other requests. All chunks of a request go to the engine at once: vLLM batches them together
with the chunks of every other request in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib.metadata import version as _version
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .audio import SAMPLE_RATE
from .audio.chunk import Chunk, split
from .audio.decode import decode
from .audio.fetch import Fetcher, FetchLimits, UrlPolicy
from .audio.source import AudioSource, BodyLimits, Options, flag, parse_source
from .callback import Callbacks, failure
from .callback import check as check_callback
from .errors import HeadersTooLarge, InvalidRequest, MethodNotAllowed, NotFound, RateLimited, ServiceError
from .formats import FORMATS, ROUTE_FORMATS, TIMED, Formatter, RequestMeta
from .licensing.auth import UNVERIFIED, Authenticator, FailureThrottle, Principal, Refusal
from .licensing.keys import iso
from .licensing.limits import Admission, Limiter, has_quota, remaining_audio_seconds
from .metrics import Metrics, RayMetrics
from .outbox import OutboxStore
from .outbox import beside as outbox_beside
from .pipeline.engine_client import EngineClient
from .settings import IngressArgs
from .stream.audio_in import open_input
from .stream.protocol import Context, Deepgram, Smallest, StreamOptions
from .stream.segment import Segmenter, SileroVad, Utterance
from .stream.session import Decode, InterimBudget, Session, StreamLimits
from .transcript import Transcript, merge_channels, stitch, unpunctuated, with_speakers
from .types import ChunkTranscript, EngineInfo

logger = logging.getLogger("ray.serve")

Handler = Callable[[Request], Awaitable[Response]]
VERSION = _version("selfhost-stt")
HEALTH_TIMEOUT_S = 3
MAX_HEADER_BYTES = 16 * 1024  # a key and a few headers need under 2 KiB


class Ingress:
    def __init__(
        self,
        engine: Any,
        args: IngressArgs | dict,
        auth: Authenticator,
        limiter: Limiter,
        url_policy: UrlPolicy,
        metrics: Metrics | None = None,
        outbox: OutboxStore | None = None,
    ) -> None:
        self.args = IngressArgs.model_validate(args)
        self.engine = EngineClient(engine, self.args.engine_timeout_s)  # engine: a DeploymentHandle (a fake in tests)
        self.auth = auth
        self.limiter = limiter
        self.url_policy = url_policy
        self.metrics = metrics if metrics is not None else RayMetrics()
        self.max_bytes = int(self.args.max_body_mb * 1_000_000)
        self.body_limits = BodyLimits(self.max_bytes, self.args.body_idle_s, self.args.body_min_bytes_per_s)
        limits = FetchLimits(self.max_bytes, self.args.url_timeout_s, self.args.url_max_redirects)
        self.fetcher = Fetcher(url_policy, limits, self.args.url_fetch_workers)  # its own threads: slow URLs wait there
        self._info: EngineInfo | None = None
        self._background: set[asyncio.Task] = set()  # callback requests in progress
        # Pending callbacks live in the usage store's backend unless told otherwise (outbox.py).
        self.callbacks = Callbacks(outbox if outbox is not None else outbox_beside(limiter.store), url_policy, self.args.callbacks)
        self.callbacks.start()  # under Serve, on the replica's event loop; in tests, at the first callback request
        self.started = time.monotonic()
        self._interims = InterimBudget(self.args.stream.interims_in_flight)
        self.auth_throttle = FailureThrottle(self.args.auth_failures_per_minute)

    def __serve_build_asgi_app__(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self._route(self.health), methods=["GET"]),
                Route("/v1/listen", self._route(self.listen), methods=["POST"]),
                Route("/v1/audio/transcriptions", self._route(self.openai_transcriptions), methods=["POST"]),
                # Smallest's cloud path, which its `smallestai` SDK posts to (with a trailing slash)
                Route("/waves/v1/stt", self._route(self.waves), methods=["POST"]),
                Route("/waves/v1/stt/", self._route(self.waves), methods=["POST"]),
                Route("/v1/usage", self._route(self.usage), methods=["GET"]),
                # Live transcription: Deepgram's paths and Smallest's
                _StreamRoute("/v1/listen", self._streaming(Deepgram())),
                _StreamRoute("/v1/listen/stream", self._streaming(Deepgram())),
                _StreamRoute("/waves/v1/stt/live", self._streaming(Smallest())),
            ],
            exception_handlers={HTTPException: _http_exception},
        )

    async def health(self, request: Request) -> Response:
        """Healthy when the engine answers; `?detailed=true` adds every component, the version and uptime."""
        detailed = flag(request.query_params, "detailed")
        try:
            # Ask the engine every time: a cached answer would stay "healthy" after the engine died.
            self._info = await asyncio.wait_for(self.engine.info(), timeout=HEALTH_TIMEOUT_S)
            reason = None
        except (asyncio.TimeoutError, ServiceError) as exc:
            reason = "engine not ready" if isinstance(exc, asyncio.TimeoutError) else exc.message
        if not detailed:
            if reason is not None:
                return JSONResponse({"status": "unhealthy", "reason": reason}, status_code=503)
            return JSONResponse({"status": "healthy"})
        components = {
            "ingress": {"status": "healthy"},
            "engine": await self._engine_health(reason),
            "usage_store": await self._store_health(),
            "license": self._license_health(),
        }
        failing = [name for name, part in components.items() if part["status"] != "healthy"]
        body: dict[str, Any] = {"status": "unhealthy" if failing else "healthy"}
        if failing:
            body["reason"] = f"unhealthy: {', '.join(failing)}"
        body.update(version=VERSION, uptime_s=round(time.monotonic() - self.started, 1), components=components)
        return JSONResponse(body, status_code=503 if failing else 200)

    async def _engine_health(self, reason: str | None) -> dict[str, Any]:
        part: dict[str, Any] = {"status": "unhealthy", "reason": reason} if reason else {"status": "healthy"}
        if self._info is not None:
            part["model"] = self._info.model
        running = await self.engine.replicas_running()
        if running is not None:  # unknown outside Serve
            part["replicas_running"] = running
        return part

    async def _store_health(self) -> dict[str, Any]:
        try:
            return {"status": "healthy", "kind": await asyncio.wait_for(self.limiter.ping(), timeout=HEALTH_TIMEOUT_S)}
        except asyncio.TimeoutError:
            return {"status": "unhealthy", "reason": "usage store not answering"}
        except ServiceError as exc:
            return {"status": "unhealthy", "reason": exc.message}

    def _license_health(self) -> dict[str, Any]:
        # Unhealthy with no issuer key or an unreadable revocation list: every key would be refused.
        return self.auth.describe()

    async def listen(self, request: Request) -> Response:
        """Smallest / Deepgram: one JSON body for every client, or `response_format` (srt, vtt, ...)."""
        return await self._transcription(request, default_format="listen")

    async def openai_transcriptions(self, request: Request) -> Response:
        """OpenAI's `POST /v1/audio/transcriptions` (multipart `file`, `model` is accepted and ignored)."""
        return await self._transcription(request, default_format="json")

    async def waves(self, request: Request) -> Response:
        """Smallest's `POST /waves/v1/stt/` (Pulse): raw audio or `{"url"}`, the answer in its own shape."""
        return await self._transcription(request, default_format="waves")

    async def _transcription(self, request: Request, default_format: str) -> Response:
        principal = await self._authenticate(request)
        admitted = AsyncExitStack()  # the admission outlives this handler when a callback is asked for
        admission = await admitted.enter_async_context(self.limiter.admit(principal))
        try:
            source = await parse_source(request, self.body_limits)
            options = source.options
            name = options.response_format or default_format
            formatter = FORMATS.get(name)
            if formatter is None or name in ROUTE_FORMATS and name != default_format:
                raise InvalidRequest(f"response_format must be one of {', '.join(sorted(set(FORMATS) - ROUTE_FORMATS))}", parameter="response_format")
            info = await self._engine_info()
            job = _Job(principal, source, name, formatter, info, self._language(source, info), uuid.uuid4().hex)
            callback = await asyncio.to_thread(check_callback, options.callback, self.url_policy) if options.callback is not None else None
            if callback is not None:  # into the outbox, or refused (503/429) before any work
                await self.callbacks.accept(job.request_id, principal.key_id, callback)
        except BaseException:
            await admitted.aclose()
            raise
        if callback is None:
            async with admitted:
                transcript, data = await self._run(job, admission)
            return await self._respond(job, transcript, data)
        task = asyncio.create_task(self._run_and_deliver(job, admitted, admission))
        self._background.add(task)  # a reference, or the event loop may drop the task
        task.add_done_callback(self._background.discard)
        return JSONResponse({"request_id": job.request_id, "status": "processing"})

    async def _run(self, job: _Job, admission: Admission) -> tuple[Transcript, bytes]:
        """fetch -> decode -> chunk -> (detect) -> engine -> stitch, per channel if asked; the admission is metered."""
        source, options = job.source, job.source.options
        if source.data is not None:
            data = source.data
        else:
            assert source.url is not None  # every AudioSource carries data or a URL (audio/source.py)
            with self._timed("fetch"):
                data = await self.fetcher.fetch(source.url)
        with self._timed("decode"):
            audio = await asyncio.to_thread(decode, data, self.args.max_duration_s, options.multichannel)
        channel_audio = audio if options.multichannel else [audio]
        # Billed before the engine runs: parallel requests cannot all fit in the same quota left.
        await admission.reserve(audio.shape[-1] / SAMPLE_RATE * len(channel_audio))
        channels = [split(channel, max_s=job.info.window_s) for channel in channel_audio]
        language, confidence = job.language, None
        if language is None:  # Whisper's way: identify on the first window, transcribe all in it
            language, confidence = await self.engine.detect_language(channels[0][0].audio)
        # Captions and word granularity need the model's times; otherwise the request or the server decides.
        align = (job.format in TIMED or options.needs_times
                 or (options.timestamps if options.timestamps is not None else self.args.word_timestamps))
        with self._timed("engine"):
            transcripts = await asyncio.gather(*(
                self._transcribe_channel(chunks, samples, language, confidence, align, options)
                for chunks, samples in zip(channels, channel_audio)
            ))
        transcript = merge_channels(list(transcripts)) if options.multichannel else transcripts[0]
        admission.audio_seconds = transcript.duration * len(channels)  # each channel is transcribed
        logger.info("transcription request_id=%s key_id=%s audio_s=%.1f channels=%d", job.request_id, job.principal.key_id, transcript.duration, len(channels))
        return transcript, data

    async def _transcribe_channel(
        self, chunks: list[Chunk], audio: Any, language: str, confidence: float | None, align: bool, options: Options
    ) -> Transcript:
        """One channel: its chunks transcribed and, when asked, the whole channel diarized alongside.

        The first chunk is the admission test: when the engine's queue is full it fails with a 503,
        the request is shed and its other calls are cancelled. Those run alongside it (a bounded
        number at a time) and wait out a full queue: once the first is in, so is the request."""
        gate = asyncio.Semaphore(self.args.chunks_in_flight)

        async def rest(chunk: Chunk) -> ChunkTranscript:
            async with gate:
                return await self.engine.patiently(lambda: self.engine.transcribe(chunk.audio, language, align))

        calls: list[Awaitable[Any]] = [self.engine.transcribe(chunks[0].audio, language, align), *map(rest, chunks[1:])]
        if options.diarize:
            calls.append(self.engine.patiently(lambda: self.engine.diarize(audio, options.num_speakers)))
        tasks = [asyncio.ensure_future(call) for call in calls]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # a shed request stops waiting (no-op for calls that finished)
                task.cancel()
        turns = results.pop() if options.diarize else None
        transcript = stitch(chunks, results, language, confidence)
        if turns is not None:
            transcript = with_speakers(transcript, turns)
        return transcript if options.punctuate else unpunctuated(transcript)

    async def _respond(self, job: _Job, transcript: Transcript, data: bytes) -> Response:
        await self._observe(job.principal, transcript.duration)
        meta = RequestMeta(job.request_id, hashlib.sha256(data).hexdigest(), job.info.model, datetime.now(timezone.utc))
        return job.formatter(transcript, meta, job.source.options)

    async def _run_and_deliver(self, job: _Job, admitted: AsyncExitStack, admission: Admission) -> None:
        """A callback request after its 200: transcribe, then hand the result (or the error) to the
        outbox, from which a delivery loop POSTs it (callback.py)."""
        try:
            async with admitted:
                transcript, data = await self._run(job, admission)
            response = await self._respond(job, transcript, data)
            body, content_type = bytes(response.body), response.headers["content-type"]  # srt, vtt... keep theirs
        except Exception as exc:
            if not isinstance(exc, ServiceError):
                logger.exception("callback request %s failed", job.request_id)
            body, content_type = failure(job.request_id, exc if isinstance(exc, ServiceError) else ServiceError()), "application/json"
        await self.callbacks.finish(job.request_id, body, content_type)

    def _streaming(self, protocol: Deepgram | Smallest) -> Callable[[WebSocket], Awaitable[None]]:
        async def handler(ws: WebSocket) -> None:
            await self.stream(ws, protocol)

        return handler

    async def stream(self, ws: WebSocket, protocol: Deepgram | Smallest) -> None:
        """A live stream is checked like a request (key, options, limits) before the WebSocket is
        accepted; it then holds its concurrency slot until it ends and is metered by audio streamed."""
        header, subprotocol = _stream_credentials(ws)
        admitted = AsyncExitStack()
        try:
            _check_headers(ws)
            principal = await self._check_key(header, ws)
            options = protocol.parse(ws.query_params, self.args.stream.endpointing_ms / 1000)
            info = await self._engine_info()
            _supported(options.language, info)
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
            limits = self.args.stream
            session = Session(
                ws, protocol, ctx, open_input(options.encoding, options.sample_rate, options.channels, limits.buffered_s, limits.buffered_kb * 1024),
                Segmenter(vad, options.endpoint_s, info.window_s, options.utterance_end_s),
                self._stream_decoder(options),
                StreamLimits(
                    limits.idle_timeout_s, limits.interim_every_s, limits.decodes_in_flight,
                    lambda seconds: admission.reserve(seconds, partial=True), self._interims,
                    max_frame_bytes=limits.max_frame_kb * 1024, max_duration_s=limits.max_duration_s,
                ),
            )
            try:
                await session.run()
            finally:
                admission.audio_seconds = session.audio_seconds
                logger.info("stream request_id=%s key_id=%s audio_s=%.1f", ctx.request_id, principal.key_id, session.audio_seconds)
        self.metrics.request("stream", 101, principal.key_id)
        await self._observe(principal, session.audio_seconds)

    def _stream_decoder(self, options: StreamOptions) -> Decode:
        """An utterance through the same engine as files; finals wait out a full queue, interims do not."""

        async def decode(utterance: Utterance, final: bool) -> Transcript:
            align = final and options.timestamps
            call = lambda: self.engine.transcribe(utterance.audio, options.language, align)  # noqa: E731
            with self._timed("stream_final" if final else "stream_interim"):
                result = await (self.engine.patiently(call) if final else call())
            transcript = stitch([Chunk(utterance.start, utterance.audio)], [result], options.language)
            return transcript if options.punctuate else unpunctuated(transcript)

        return decode

    async def usage(self, request: Request) -> Response:
        """A key holder's own usage, limits and remaining quota."""
        principal = await self._authenticate(request)
        claims = principal.claims
        usage = await self.limiter.usage(principal.key_id)
        remaining = remaining_audio_seconds(claims.limits, usage)
        return JSONResponse({
            "key_id": claims.kid,
            "customer": claims.customer,
            "environment": claims.environment,
            "expires_at": iso(claims.expires_at),
            "features": claims.features,
            "limits": claims.limits.model_dump(),
            "usage": asdict(usage),
            "remaining": {"audio_seconds_today": remaining["day"], "audio_seconds_month": remaining["month"]},
        })

    async def _authenticate(self, request: Request) -> Principal:
        return await self._check_key(request.headers.get("authorization"), request)

    async def _check_key(self, header: str | None, connection: HTTPConnection) -> Principal:
        """The key's principal (its key id then labels the connection's metrics), or its error. An
        address with too many recent failures is refused before anything is verified."""
        address = connection.client.host if connection.client else "unknown"
        wait = self.auth_throttle.retry_after(address)
        if wait is not None:
            self.metrics.auth_failure("throttled")
            raise RateLimited("Too many failed authentications from this address", retry_after=wait)
        result = self.auth.check(header)
        if isinstance(result, Principal):
            connection.state.key_id = result.key_id
            return result
        await self._refused(result, address)
        raise result.error

    async def _refused(self, refusal: Refusal, address: str) -> None:
        """Meter a refused key: under its own key id only if its signature verified (otherwise anyone
        could create usage rows and label values at will), else in one bucket."""
        self.metrics.auth_failure(refusal.reason)
        if refusal.client_fault:  # an unreadable revocation list is the server's failure, not the client's
            self.auth_throttle.failed(address)
            await self.limiter.record(refusal.key_id or UNVERIFIED, auth_failures=1)

    async def _observe(self, principal: Principal, audio_s: float) -> None:
        """Operator metrics for a transcribed request (usage itself is metered by the limiter)."""
        self.metrics.audio(principal.key_id, audio_s)
        if not has_quota(principal.claims.limits):
            return
        remaining = remaining_audio_seconds(principal.claims.limits, await self.limiter.usage(principal.key_id))
        for period, seconds in remaining.items():
            if seconds is not None:
                self.metrics.quota_remaining(principal.key_id, period, seconds)

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        """Record how long a stage took when it succeeds (metrics.STAGE_BOUNDARIES)."""
        started = time.perf_counter()
        yield
        self.metrics.stage(stage, time.perf_counter() - started)

    def _route(self, handler: Handler) -> Handler:
        """Every route answers errors as JSON and is counted by status and key id."""

        async def wrapped(request: Request) -> Response:
            try:
                _check_headers(request)
                response = await handler(request)
            except ServiceError as exc:
                response = exc.response()
            except Exception:
                # Log the details, answer without internals.
                logger.exception("unhandled error on %s %s", request.method, request.url.path)
                response = ServiceError().response()
            self.metrics.request(handler.__name__, response.status_code, getattr(request.state, "key_id", "none"))
            return response

        return wrapped

    def _language(self, source: AudioSource, info: EngineInfo) -> str | None:
        """The language to transcribe in; None: detect it (an English-only model answers "en")."""
        if source.options.detect_language:
            return None
        return _supported(source.options.language or "en", info)

    async def _engine_info(self) -> EngineInfo:
        if self._info is None:
            self._info = await self.engine.info()
        return self._info


class _StreamRoute(WebSocketRoute):
    """A WebSocket route whose handshake method Ray Serve can read. Without `methods`, Serve's route
    extraction marks the whole path "any method" and then matches it as GET only, so the POSTs
    sharing `/v1/listen` would be logged and counted under route "/"."""

    methods = {"GET"}


def _check_headers(connection: HTTPConnection) -> None:
    """Headers past MAX_HEADER_BYTES are refused. Serve's proxy (uvicorn with h11, see setup.sh) drops
    a connection whose headers are still incomplete past 16 KiB; what it passes on is checked here."""
    if sum(len(name) + len(value) for name, value in connection.scope["headers"]) > MAX_HEADER_BYTES:
        raise HeadersTooLarge(f"Request headers larger than {MAX_HEADER_BYTES:,} bytes")


def _stream_credentials(ws: WebSocket) -> tuple[str | None, str | None]:
    """The key from the Authorization header or, for browsers (which cannot set headers), from the
    WebSocket subprotocols `token, KEY` (Deepgram's) or `bearer, KEY`: (header, subprotocol to accept)."""
    header = ws.headers.get("authorization")
    offered = ws.scope.get("subprotocols") or []
    if header is None and len(offered) >= 2 and offered[0].lower() in ("token", "bearer"):
        return f"{offered[0]} {offered[1]}", offered[0]
    return header, None


async def _refuse(ws: WebSocket, error: ServiceError, subprotocol: str | None) -> None:
    """A refused handshake: the HTTP status and JSON error where the server can send one (the
    WebSocket denial extension); otherwise the error as the stream's only message, then a close."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(error.response())
        return
    await ws.accept(subprotocol=subprotocol)
    await ws.send_json(error.body())
    await ws.close(code=1008 if error.status < 500 else 1011, reason=f"{error.code}: {error.message}"[:120])


def _supported(language: str, info: EngineInfo) -> str:
    if language not in info.languages:
        detail = "is English-only" if not info.multilingual else "does not support this language"
        raise InvalidRequest(f"Model {info.model} {detail}: choose a language it serves", parameter="language")  # the value sent is not echoed
    return language


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    error = {404: NotFound, 405: MethodNotAllowed}.get(status, ServiceError)
    return error().response()


@dataclass(frozen=True)
class _Job:
    """What a transcription request asked for, once it is admitted and its options are checked."""

    principal: Principal
    source: AudioSource
    format: str
    formatter: Formatter
    info: EngineInfo
    language: str | None  # None: detect
    request_id: str
