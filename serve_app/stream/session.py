"""One live connection, as three tasks joined by queues so that none waits on another's slow part:

- receive: binary frames -> the audio input; control messages -> markers placed after the audio
  that came before them (so Finalize closes exactly what was sent before it); idle timeout.
- process: audio -> segmenter (VAD, in a worker thread) -> events; finals and interims become
  engine decodes started at once, put on the outgoing queue in stream order.
- send: awaits each outgoing item in order and writes it, so a final always follows the interims
  of its utterance and precedes the next one's, however the decodes finish.

The stream ends on close (CloseStream / close_stream, or a client gone), idle timeout, quota, or
an error; everything the client already sent is decoded and answered before a deliberate close.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..audio import SAMPLE_RATE
from ..errors import EngineBusy, InvalidRequest, QuotaExceeded, ServiceError, StreamIdle
from ..transcript import Transcript
from .audio_in import END, ContainerInput, PcmInput
from .protocol import CLOSE, FINALIZE, Context, Deepgram, Result, Smallest, control
from .segment import Segmenter, SpeechStarted, Utterance, UtteranceEnd

logger = logging.getLogger("ray.serve")

Decode = Callable[[Utterance, bool], Awaitable[Transcript]]  # (utterance, final) -> transcript in stream time
NORMAL, POLICY, SERVER_ERROR = 1000, 1008, 1011  # WebSocket close codes
# Utterances with less speech than this (Silero's own minimum) are a click or a breath: answered
# empty without asking the engine, which would only make up words such as "[BLANK_AUDIO]".
MIN_SPEECH_S = 0.25


class InterimBudget:
    """Interim decodes under way across all the streams of an ingress replica. Interims are optional
    work: capped, they never crowd out the finals and file chunks that share the engine (on two
    cores the engine does about three decodes a second, fewer than four streams' interims)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give(self, _: object = None) -> None:
        self.used -= 1


@dataclass(frozen=True)
class StreamLimits:
    idle_timeout_s: float = 10.0  # no audio or message for this long closes the stream
    interim_every_s: float = 1.0  # new audio in an utterance before its next interim result
    decodes_in_flight: int = 4  # finals of one stream decoding at once (a fast sender waits)
    quota_s: float | None = None  # audio seconds left on the key's quota when the stream opened
    interims: InterimBudget = field(default_factory=lambda: InterimBudget(2))  # shared by a replica's streams


@dataclass(frozen=True)
class _Close:
    code: int
    error: ServiceError | None = None


def _closing(error: ServiceError | None) -> _Close:
    """Close codes as Deepgram uses them: 1011 for its idle timeout (NET-0001) and server errors,
    1008 for what the client did wrong."""
    if error is None:
        return _Close(NORMAL)
    return _Close(SERVER_ERROR if error.status >= 500 or isinstance(error, StreamIdle) else POLICY, error)


class _ClientGone(Exception):
    pass


class Session:
    def __init__(
        self,
        ws: WebSocket,
        protocol: Deepgram | Smallest,
        ctx: Context,
        audio: PcmInput | ContainerInput,
        segmenter: Segmenter,
        decode: Decode,
        limits: StreamLimits,
    ) -> None:
        self.ws, self.protocol, self.ctx, self.audio, self.segmenter = ws, protocol, ctx, audio, segmenter
        self.decode, self.limits = decode, limits
        self.outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self.sha256 = hashlib.sha256()
        self._ending: ServiceError | None = None  # why the receiver closed the audio, if not the client
        self._slots = asyncio.Semaphore(limits.decodes_in_flight)
        self._decodes: set[asyncio.Task] = set()  # engine calls under way
        self._interim_at = 0.0  # length of the open utterance at its last interim
        self._finals: list[str] = []
        self._refused_after = float("inf")
        self._interim: asyncio.Task | None = None  # the latest interim decode

    @property
    def audio_seconds(self) -> float:
        """The metered amount: audio received (a client that leaves has sent what it sent), except
        what came after its quota ran out, which is refused."""
        return min(self.audio.seconds, self._refused_after)

    async def run(self) -> None:
        tasks = [asyncio.create_task(t) for t in (self._receive(), self._process(), self._send())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            errors = [t.exception() for t in done]  # every one retrieved, so none is reported as lost
            failed = next((e for e in errors if e is not None), None)
        finally:
            for task in [*tasks, *self._decodes]:  # a client gone: its decodes are not wanted either
                task.cancel()
            while not self.outgoing.empty():  # results never sent: release their coroutines
                item = self.outgoing.get_nowait()
                if asyncio.iscoroutine(item):
                    item.close()
            if isinstance(self.audio, ContainerInput):
                self.audio.stop()
        if failed is None or isinstance(failed, (_ClientGone, WebSocketDisconnect)):
            return
        if not isinstance(failed, ServiceError):
            logger.error("stream %s failed", self.ctx.request_id, exc_info=failed)
            failed = ServiceError()
        await self._close(_closing(failed))

    async def _receive(self) -> None:
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=self.limits.idle_timeout_s)
            except asyncio.TimeoutError:
                self._ending = StreamIdle()
                await self.audio.close()
                return
            if message["type"] == "websocket.disconnect":
                raise _ClientGone()
            data, text = message.get("bytes"), message.get("text")
            if data:
                self.sha256.update(data)
                await self.audio.feed(data)
            elif data is not None:  # an empty binary frame: Deepgram's old way to close a stream
                await self.audio.close()
                return
            elif text is not None:
                try:
                    kind = control(text)
                except InvalidRequest as exc:
                    await self.outgoing.put(self.protocol.error(exc))  # reported; the stream goes on
                    continue
                if kind == CLOSE:
                    await self.audio.close()
                    return
                if kind == FINALIZE:
                    await self.audio.mark(FINALIZE)

    async def _process(self) -> None:
        while (item := await self.audio.get()) is not END:
            if isinstance(item, ServiceError):
                raise item
            if item is FINALIZE:
                await self._final(self.segmenter.finalize(), from_finalize=True)
                continue
            for event in await asyncio.to_thread(self.segmenter.push, item):
                await self._event(event)
            if self.limits.quota_s is not None and self.segmenter.seconds >= self.limits.quota_s:
                self._ending = QuotaExceeded("Audio quota used up during the stream", quota="audio_hours")
                self._refused_after = self.segmenter.seconds
                break
            self._maybe_interim()
        last = self.segmenter.finalize()
        await self._final(replace(last, from_finalize=False) if last else None, from_finalize=False, is_last=True)
        metadata = self.protocol.metadata(self.ctx, self.sha256.hexdigest(), self.audio_seconds)
        if metadata is not None:
            await self.outgoing.put(metadata)
        await self.outgoing.put(_closing(self._ending))

    async def _event(self, event: SpeechStarted | Utterance | UtteranceEnd) -> None:
        if isinstance(event, Utterance):
            await self._final(event)
        elif isinstance(event, SpeechStarted) and self.ctx.options.vad_events:
            await self._put(self.protocol.speech_started(event.at))
        elif isinstance(event, UtteranceEnd) and self.ctx.options.utterance_end_s is not None:
            await self._put(self.protocol.utterance_end(event.last_speech_end))

    async def _put(self, message: dict[str, Any] | None) -> None:
        if message is not None:
            await self.outgoing.put(message)

    async def _final(self, utterance: Utterance | None, from_finalize: bool = False, is_last: bool = False) -> None:
        """A final result; with nothing open (a Finalize or close after silence) an empty one."""
        self._interim_at = 0.0
        if utterance is None:
            empty = Utterance(self.segmenter.seconds, np.zeros(0, np.float32), from_finalize=from_finalize)
            await self.outgoing.put(self._decoded(empty, _ready(self._empty(0.0)), is_last))
            return
        if self._interim is not None:  # the utterance's interim is obsolete: free the engine for its final
            self._interim.cancel()
            self._interim = None
        await self._slots.acquire()  # released when the decode ends
        task = self._start(utterance, final=True)
        task.add_done_callback(lambda _: self._slots.release())
        await self.outgoing.put(self._decoded(utterance, task, is_last))

    def _maybe_interim(self) -> None:
        if not self.ctx.options.interim_results or self._decodes:
            return  # one decode at a time per stream for interims: they are optional work
        current = self.segmenter.current()
        if current is None or current.audio.size / SAMPLE_RATE - self._interim_at < self.limits.interim_every_s:
            return
        if current.speech_s >= MIN_SPEECH_S and not self.limits.interims.take():
            return  # the replica's interims are at their cap: try again with the next audio
        self._interim_at = current.audio.size / SAMPLE_RATE
        self._interim = self._start(current, final=False)
        if current.speech_s >= MIN_SPEECH_S:
            self._interim.add_done_callback(self.limits.interims.give)
        self.outgoing.put_nowait(self._decoded(current, self._interim, interim=True))

    def _start(self, utterance: Utterance, final: bool) -> asyncio.Task:
        if utterance.speech_s < MIN_SPEECH_S:
            return asyncio.ensure_future(_ready(self._empty(utterance.audio.size / SAMPLE_RATE)))
        task = asyncio.create_task(self.decode(utterance, final))
        self._decodes.add(task)
        task.add_done_callback(self._decodes.discard)
        return task

    async def _decoded(self, utterance: Utterance, transcript: Awaitable[Transcript], is_last: bool = False, interim: bool = False) -> dict[str, Any] | None:
        """The message for a decode, built when the sender reaches it (full text in stream order)."""
        try:
            result = await transcript
        except EngineBusy:
            if interim:
                return None  # the engine is full: skip this interim, the final will come
            raise
        except asyncio.CancelledError:
            if interim and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return None  # overtaken by its final
            raise
        if not interim:
            self._finals.append(result.text)
        return self.protocol.result(
            Result(
                result, utterance.start, utterance.end - utterance.start, is_final=not interim,
                speech_final=utterance.speech_final, from_finalize=utterance.from_finalize, is_last=is_last,
                full_text=" ".join(t for t in self._finals if t),
            ),
            self.ctx,
        )

    def _empty(self, duration: float) -> Transcript:
        return Transcript("", [], 0.0, round(duration, 3), self.ctx.options.language)

    async def _send(self) -> None:
        while True:
            item = await self.outgoing.get()
            if isinstance(item, _Close):
                await self._close(item)
                return
            message = await item if asyncio.iscoroutine(item) else item
            if message is not None:
                await self._write(message)

    async def _write(self, message: dict[str, Any]) -> None:
        if self.ws.application_state != WebSocketState.CONNECTED or self.ws.client_state != WebSocketState.CONNECTED:
            raise _ClientGone()
        try:
            await self.ws.send_json(message)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise _ClientGone() from exc

    async def _close(self, close: _Close) -> None:
        try:
            if close.error is not None:
                await self._write(self.protocol.error(close.error))
            reason = f"{close.error.code}: {close.error.message}"[:120] if close.error else ""
            await self.ws.close(code=close.code, reason=reason)
        except (_ClientGone, RuntimeError, OSError):
            pass  # already gone: nothing to tell


async def _ready(value: Transcript) -> Transcript:
    return value

