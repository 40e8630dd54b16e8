"""A file's way through the pipeline, in request order: fetch (a URL) -> decode -> reserve its
seconds -> chunk -> (detect the language) -> engine -> stitch -> text transforms; per channel when
asked. Decoding and URL fetching are blocking, so they run on worker threads and keep the event
loop free for other requests. All chunks of a request go to the engine at once: vLLM batches them
with the chunks of every other request in flight."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..licensing.auth import Principal
from ..licensing.limits import Admission
from ..settings import IngressArgs
from ..types import SAMPLE_RATE, ChunkTranscript, EngineInfo
from . import transforms
from .chunk import Chunk, split
from .decode import decode
from .engine_client import EngineClient, context
from .fetch import Fetcher
from .meter import Meter
from .prompt import decoder_prompt
from .request import TranscriptionRequest
from .source import AudioSource
from .stitch import merge_channels, stitch, with_speakers
from .transcript import Transcript

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Job:
    """A transcription request once it is admitted and its options are checked."""

    principal: Principal
    source: AudioSource
    request: TranscriptionRequest
    info: EngineInfo
    language: str | None  # None: detect
    request_id: str
    timed_answer: bool = False  # the answer (captions, verbose_json) is built on word times


class FilePipeline:
    def __init__(self, engine: EngineClient, fetcher: Fetcher, meter: Meter, args: IngressArgs) -> None:
        self.engine, self.fetcher, self.meter, self.args = engine, fetcher, meter, args

    async def run(self, job: Job, admission: Admission) -> tuple[Transcript, bytes]:
        """The transcript and the audio's bytes (their hash goes in the answer); the admission is metered."""
        request = job.request
        data = job.source.data
        if data is None:
            assert job.source.url is not None  # every AudioSource carries data or a URL (source.py)
            with self.meter.timed("fetch"):
                data = await self.fetcher.fetch(job.source.url)
        with self.meter.timed("decode"):
            audio = await asyncio.to_thread(decode, data, self.args.max_duration_s, request.multichannel)
        channel_audio = audio if request.multichannel else [audio]
        # Billed before the engine runs: parallel requests cannot all fit in the same quota left.
        await admission.reserve(audio.shape[-1] / SAMPLE_RATE * len(channel_audio))
        channels = [split(channel, max_s=job.info.window_s) for channel in channel_audio]
        language, confidence = job.language, None
        if language is None:  # Whisper's way: identify on the first window, transcribe all in it
            language, confidence = await self.engine.detect_language(channels[0][0].audio)
        align = self._align(job)
        with self.meter.timed("engine"):
            transcripts = await asyncio.gather(
                *(
                    self._channel(chunks, samples, language, confidence, align, request)
                    for chunks, samples in zip(channels, channel_audio)
                )
            )
        transcript = merge_channels(list(transcripts)) if request.multichannel else transcripts[0]
        admission.audio_seconds = transcript.duration * len(channels)  # each channel is transcribed
        logger.info(
            "transcription request_id=%s key_id=%s audio_s=%.1f channels=%d%s",
            job.request_id,
            job.principal.key_id,
            transcript.duration,
            len(channels),
            f" tags={list(request.tags)!r}" if request.tags else "",
        )
        return transcript, data

    def _align(self, job: Job) -> bool:
        """Captions and word granularity need the model's times; otherwise the request or the server decides."""
        request = job.request
        return (
            job.timed_answer
            or request.needs_times
            or (request.timestamps if request.timestamps is not None else self.args.word_timestamps)
        )

    async def _channel(
        self, chunks: list[Chunk], audio: Any, language: str, confidence: float | None, align: bool, request: TranscriptionRequest
    ) -> Transcript:
        """One channel: its chunks transcribed and, when asked, the whole channel diarized alongside."""
        transcribe = self._in_order if self.args.condition_on_previous_text else self._alongside
        calls: list[Awaitable[Any]] = [transcribe(chunks, language, align, request)]
        if request.diarize:
            calls.append(self.engine.patiently(lambda: self.engine.diarize(audio, request.num_speakers)))
        results = await _all_or_none(calls)
        transcript = stitch(chunks, results[0], language, confidence)
        if request.diarize:
            transcript = with_speakers(transcript, results[1])
        return transforms.apply(transcript, request)

    async def _in_order(
        self, chunks: list[Chunk], language: str, align: bool, request: TranscriptionRequest
    ) -> list[ChunkTranscript]:
        """Each chunk with the text before it as Whisper's context, as openai/whisper decodes long
        audio: the model continues the sentence across a cut instead of starting afresh. One chunk
        of a file at a time (other requests' chunks share the engine's batch meanwhile). The first
        is the admission test: when the engine's queue is full it fails with a 503 and the request is
        shed; once it is in, the rest wait out a full queue."""
        translate = request.translate
        results = [await self.engine.transcribe(chunks[0].audio, language, align, decoder_prompt(request), translate)]
        for chunk in chunks[1:]:
            previous = decoder_prompt(request, context([r.text for r in results]))
            call = partial(self.engine.transcribe, chunk.audio, language, align, previous, translate)
            results.append(await self.engine.patiently(call))
        return results

    async def _alongside(
        self, chunks: list[Chunk], language: str, align: bool, request: TranscriptionRequest
    ) -> list[ChunkTranscript]:
        """Every chunk at once, without context (the default, `condition_on_previous_text: false`): lower latency
        for a long file. The first chunk is the admission test as above; the others run alongside it,
        a bounded number at a time, and wait out a full queue."""
        gate = asyncio.Semaphore(self.args.chunks_in_flight)

        prompt = decoder_prompt(request)

        def call(chunk: Chunk) -> Awaitable[ChunkTranscript]:
            return self.engine.transcribe(chunk.audio, language, align, prompt, request.translate)

        async def rest(chunk: Chunk) -> ChunkTranscript:
            async with gate:
                return await self.engine.patiently(lambda: call(chunk))

        return await _all_or_none([call(chunks[0]), *map(rest, chunks[1:])])


async def _all_or_none(calls: list[Awaitable[Any]]) -> list[Any]:
    """Every call's result; when one fails the others are cancelled (a shed request stops waiting)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:  # no-op for calls that finished
            task.cancel()
