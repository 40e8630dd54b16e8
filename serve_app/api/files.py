"""The file routes of every dialect (`POST /v1/listen`, `/waves/v1/stt/`, `/v1/audio/transcriptions`):
key -> admission -> source -> the dialect's options -> answer format -> the pipeline, then the
answer in the dialect's shape. A request with a callback URL is answered once its options are
checked; the pipeline then runs in a background task whose result (or error) goes to the callback
outbox (callback.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..callback import Callbacks, failure
from ..callback import check as check_callback
from ..errors import InvalidRequest, ServiceError
from ..licensing.limits import Admission, Limiter
from ..pipeline.engine_client import EngineClient
from ..pipeline.fetch import UrlPolicy
from ..pipeline.files import FilePipeline, Job
from ..pipeline.meter import Meter
from ..pipeline.request import TranscriptionRequest, supported_language
from ..pipeline.source import BodyLimits, parse_source
from ..pipeline.transcript import Transcript
from ..types import EngineInfo
from . import params
from .access import Access
from .formats import FORMATS, ROUTE_FORMATS, TIMED, Rendered, Writer
from .http import Handler, respond
from .meta import RequestMeta

logger = logging.getLogger("ray.serve")


@dataclass
class FileRoutes:
    """What the file routes share; `handler(dialect)` is one dialect's route."""

    access: Access
    limiter: Limiter
    engine: EngineClient
    pipeline: FilePipeline
    meter: Meter
    callbacks: Callbacks
    url_policy: UrlPolicy
    body_limits: BodyLimits

    def __post_init__(self) -> None:
        self.background: set[asyncio.Task] = set()  # callback requests in progress

    def handler(self, options: tuple[params.Option, ...], default_format: str) -> Handler:
        """One dialect's route: its option names (its module's OPTIONS) and its own answer format."""

        async def transcribe(request: Request) -> Response:
            return await self.transcribe(request, options, default_format)

        return transcribe

    async def transcribe(self, http: Request, options: tuple[params.Option, ...], default_format: str) -> Response:
        principal = await self.access.request(http)
        admitted = AsyncExitStack()  # the admission outlives this handler when a callback is asked for
        admission = await admitted.enter_async_context(self.limiter.admit(principal))
        try:
            source = await parse_source(http, self.body_limits)
            request = params.parse(options, source.params)
            name, writer = _writer(request, default_format)
            _answerable(request, name)
            info = await self.engine.known_info()
            job = Job(principal, source, request, info, _language(request, info), uuid.uuid4().hex, name in TIMED)
            callback = (
                await asyncio.to_thread(check_callback, request.callback, self.url_policy)
                if request.callback is not None
                else None
            )
            if callback is not None:  # into the outbox, or refused (503/429) before any work
                await self.callbacks.accept(job.request_id, principal.key_id, callback)
        except BaseException:
            await admitted.aclose()
            raise
        if callback is None:
            async with admitted:
                transcript, data = await self.pipeline.run(job, admission)
            return respond(await self._render(job, writer, transcript, data))
        task = asyncio.create_task(self._run_and_deliver(job, writer, admitted, admission))
        self.background.add(task)  # a reference, or the event loop may drop the task
        task.add_done_callback(self.background.discard)
        return JSONResponse({"request_id": job.request_id, "status": "processing"})

    async def _render(self, job: Job, writer: Writer, transcript: Transcript, data: bytes) -> Rendered:
        await self.meter.observe(job.principal, transcript.duration)
        meta = RequestMeta(job.request_id, hashlib.sha256(data).hexdigest(), job.info.model, datetime.now(timezone.utc))
        return writer(transcript, meta, job.request)

    async def _run_and_deliver(self, job: Job, writer: Writer, admitted: AsyncExitStack, admission: Admission) -> None:
        """A callback request after its 200: transcribe, then hand the answer (or the error) to the
        outbox, from which a delivery loop POSTs it (callback.py)."""
        try:
            async with admitted:
                transcript, data = await self.pipeline.run(job, admission)
            rendered = await self._render(job, writer, transcript, data)
            body, content_type = rendered.body, rendered.content_type  # srt, vtt... keep theirs
        except Exception as exc:
            if not isinstance(exc, ServiceError):
                logger.exception("callback request %s failed", job.request_id)
            body, content_type = (
                failure(job.request_id, exc if isinstance(exc, ServiceError) else ServiceError()),
                "application/json",
            )
        await self.callbacks.finish(job.request_id, body, content_type)


def _writer(request: TranscriptionRequest, default_format: str) -> tuple[str, Writer]:
    """The answer's format: the route's own, or another that `response_format` names (never another route's own)."""
    name = request.response_format or default_format
    writer = FORMATS.get(name)
    if writer is None or name in ROUTE_FORMATS and name != default_format:
        raise InvalidRequest(
            f"response_format must be one of {', '.join(sorted(set(FORMATS) - ROUTE_FORMATS))}", parameter="response_format"
        )
    return name, writer


def _language(request: TranscriptionRequest, info: EngineInfo) -> str | None:
    """The language to transcribe in; None: detect it (an English-only model answers "en"). A
    translation is of speech in any language: detected unless named."""
    if request.translate and not info.multilingual:
        raise InvalidRequest(f"Model {info.model} is English-only: translation needs a multilingual model", parameter="translate")
    if request.detect_language or (request.translate and request.language is None):
        return None
    return supported_language(request.language or "en", info)


def _answerable(request: TranscriptionRequest, name: str) -> None:
    """`search` and `extra` are fields of Deepgram's answer only: asked for with another answer
    (Pulse's, OpenAI's, captions), they are refused, not dropped."""
    for option, asked in (("search", request.search), ("extra", request.extra)):
        if asked and name != "listen":
            raise InvalidRequest(f"{option} is answered in /v1/listen's JSON only, not in this answer format", parameter=option)
