"""One live connection, as three tasks joined by queues so that none waits on another's slow part:

- receive: binary frames -> the audio input; text messages -> what the dialect reads in them
  (`incoming`: audio inside JSON, controls), controls and replies as markers placed after the audio
  that came before them (so Finalize closes exactly what was sent before it); idle timeout.
- process: audio -> segmenter (VAD, in a worker thread) -> events; finals and interims become
  engine decodes started at once, put on the outgoing queue in stream order.
- send: awaits each outgoing item in order and writes it, so a final always follows the interims
  of its utterance and precedes the next one's, however the decodes finish.

The stream ends on close (CloseStream / close_stream, or a client gone), idle timeout, quota, its
length limit, a message over the size limit, its replica being stopped (close 1012, stream/drain.py),
or an error; everything the client already sent is decoded and answered before a deliberate close.

Memory: every stage is bounded in bytes, not in messages, so a stream holds at most (defaults in
brackets; W is the engine's window as 16 kHz float32: 0.96 MB for 15 s, 1.9 MB for 30 s):
- the WebSocket message in hand: `max_frame_bytes` [1 MiB], twice while a leftover odd byte is
  joined to it (PCM is then converted 0.5 s at a time, never as one array); a JSON dialect's message
  (Twilio, OpenAI realtime) also as its parsed copy and its base64-decoded audio, about 2.5 MiB more;
- decoded audio waiting for the segmenter: `buffered_s` [10 s = 0.64 MB];
- a container stream's bytes FFmpeg has not read, and those it read past its last audio:
  `buffered_bytes` each [1 MiB + 1 MiB];
- the segmenter's open utterance: W (+ 0.3 s pre-roll), twice while a piece is appended;
- audio being decoded: `decodes_in_flight` finals [4] and one interim, W each;
- `OUTGOING` results waiting for a slow client, as text (their audio is not kept).
That is 4.8 MB + 7 W: about 11.5 MB with a 15 s window, 18 MB with 30 s (2.6 MB more for a JSON
dialect). A multichannel stream (at most 8 channels) holds the decoded audio and the open
utterance per channel: 0.64 MB + 2 W more per channel past the first (the finals in flight and the
one interim are the stream's), so 8 channels take about 30 MB with a 15 s window, 49 MB with 30 s.
Diarization adds per channel its speakers' voices (stream/speakers.py: 0.96 MB) and, per final
being diarized, a copy of them and of the final (1 MB + W). The WebSocket server in front (uvicorn,
Ray Serve's proxy) holds frames of its own before they reach the session.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import EngineBusy, FileTooLarge, InvalidRequest, QuotaExceeded, ServerRestarting, ServiceError, StreamIdle
from ..pipeline.transcript import Transcript
from ..types import SAMPLE_RATE
from .audio_in import END, ContainerInput, PcmInput
from .channels import Channels
from .drain import next_message
from .limits import MESSAGE_TOO_BIG, NORMAL, QUOTA_BLOCK_S, Close, StreamLimits, closing
from .outgoing import ClientGone, close_with, until_over, write
from .protocol import BINARY_REFUSED, CLEAR, CLOSE, FINALIZE, Context, LiveDialect, Opens, Reply, Result
from .segment import Span, SpeechStarted, Utterance, UtteranceEnd

logger = logging.getLogger("ray.serve")

Decode = Callable[[Utterance, bool], Awaitable[Transcript]]  # (utterance, final) -> transcript in stream time
OUTGOING = 16  # results waiting for a client that reads slowly: beyond, the stream waits for it
# Utterances with less speech than this (Silero's own minimum) are a click or a breath: answered
# empty without asking the engine, which would only make up words such as "[BLANK_AUDIO]".
MIN_SPEECH_S = 0.25


class Session:
    def __init__(
        self,
        ws: WebSocket,
        protocol: LiveDialect,
        ctx: Context,
        audio: PcmInput | ContainerInput,
        segmenter: Channels,
        decode: Decode,
        limits: StreamLimits,
    ) -> None:
        self.ws, self.protocol, self.ctx, self.audio, self.segmenter = ws, protocol, ctx, audio, segmenter
        self.decode, self.limits = decode, limits
        self.outgoing: asyncio.Queue[Any] = asyncio.Queue(OUTGOING)
        self.sha256 = hashlib.sha256()
        self._ending = Close(NORMAL)  # how the stream closes once its audio is answered
        self._slots = asyncio.Semaphore(limits.decodes_in_flight)
        self._decodes: set[asyncio.Task] = set()  # engine calls under way
        self._interim_at: dict[int, float] = {}  # per channel: length of its open utterance at its last interim
        self._finals: list[str] = []
        self._refused_after = float("inf")
        self._billed = 0.0  # audio seconds reserved against the key's quota so far
        self._interims: dict[int, asyncio.Task] = {}  # per channel: its latest interim decode
        self._utterance = 0  # number of the open (or next) utterance: Result.utterance
        self._last_word_end: dict[int, float] = {}  # per channel: its last final's last word, until UtteranceEnd says it

    @property
    def audio_seconds(self) -> float:
        """The metered amount: audio received (a client that leaves has sent what it sent), except
        what came after its quota or length limit ran out, which is refused."""
        return min(self.audio.seconds, self._refused_after)

    async def run(self, first: str | None = None) -> None:
        """`first`: a text message already read (the one that began the stream), taken before the rest."""
        tasks = [asyncio.create_task(t) for t in (self._receive(first), self._process(), self._send())]
        try:
            failed = await until_over(tasks, sender=tasks[2])
        finally:
            for task in [*tasks, *self._decodes]:  # a client gone: its decodes are not wanted either
                task.cancel()
            while not self.outgoing.empty():  # results never sent: release their coroutines
                item = self.outgoing.get_nowait()
                if asyncio.iscoroutine(item):
                    item.close()
            if isinstance(self.audio, ContainerInput):
                self.audio.stop()
        if failed is None or isinstance(failed, (ClientGone, WebSocketDisconnect)):
            return
        if not isinstance(failed, ServiceError):
            logger.error("stream %s failed", self.ctx.request_id, exc_info=failed)
            failed = ServiceError()
        await self._close(closing(failed))

    async def _receive(self, first: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.max_duration_s  # KeepAlives cannot hold a stream open for ever either
        if first is not None and (ending := await self._take(None, first)) is not None:
            self._end(ending)
            await self.audio.close()
            return
        while True:
            try:
                timeout = max(0.0, min(self.limits.idle_timeout_s, deadline - loop.time()))
                message = await next_message(self.ws, self.limits.draining, timeout)
            except asyncio.TimeoutError:
                self._end(closing(self._too_long() if loop.time() >= deadline else StreamIdle()))
                await self.audio.close()
                return
            if message is None:  # the replica is being stopped: what was taken is answered, then 1012
                self._end(closing(ServerRestarting(retry_after=1)))
                await self.audio.close()
                return
            if message["type"] == "websocket.disconnect":
                raise ClientGone()
            ending = await self._take(message.get("bytes"), message.get("text"))
            if ending is not None:
                self._end(ending)
                await self.audio.close()
                return

    async def _take(self, data: bytes | None, text: str | None) -> Close | None:
        """One client message: None while the stream goes on, else how it ends."""
        if len(data or text or "") > self.limits.max_frame_bytes:  # refused before it is converted or parsed
            limit = self.limits.max_frame_bytes
            return Close(
                MESSAGE_TOO_BIG, FileTooLarge(f"WebSocket messages must be at most {limit} bytes", max_frame_bytes=limit)
            )
        if data is not None and isinstance(self.protocol, Opens):  # its audio comes inside its JSON messages
            await self.outgoing.put(self.protocol.error(InvalidRequest(BINARY_REFUSED)))
            return None
        if data:
            self.sha256.update(data)
            await self.audio.feed(data)
        elif data is not None:  # an empty binary frame: Deepgram's old way to close a stream
            return Close(NORMAL)
        elif text is not None:
            try:
                incoming = self.protocol.incoming(text)
            except InvalidRequest as exc:
                await self.outgoing.put(self.protocol.error(exc))  # reported; the stream goes on
                return None
            if incoming.audio:
                self.sha256.update(incoming.audio)
                await self.audio.feed(incoming.audio)
            if incoming.control == CLOSE:
                return Close(NORMAL)
            if incoming.control in (FINALIZE, CLEAR):
                await self.audio.mark(incoming.control)
            if incoming.reply is not None:
                await self.audio.mark(Reply(incoming.reply))
        return None

    async def _process(self) -> None:
        while (item := await self.audio.get()) is not END:
            if isinstance(item, ServiceError):
                raise item
            if item is FINALIZE:
                await self._finalize()
                continue
            if item is CLEAR:
                self._clear()
                continue
            if isinstance(item, Reply):
                await self.outgoing.put(item.message)
                continue
            for event in await asyncio.to_thread(self.segmenter.push, item):
                await self._event(event)
            if (over := self._over_limit() or await self._quota_gone()) is not None:
                self._end(closing(over))
                self._refused_after = min(self.segmenter.seconds, self._billed)
                break
            self._maybe_interim()
        await self._finalize(is_last=True)
        metadata = self.protocol.metadata(self.ctx, self.sha256.hexdigest(), self.audio_seconds)
        if metadata is not None:
            await self.outgoing.put(metadata)
        await self.outgoing.put(self._ending)

    def _over_limit(self) -> ServiceError | None:
        """The audio taken in reached the stream's length limit."""
        return self._too_long() if self.segmenter.seconds >= self.limits.max_duration_s else None

    async def _quota_gone(self) -> QuotaExceeded | None:
        """Audio is billed in blocks ahead of what arrives, each block in one atomic step against the
        key's quota (so parallel streams and requests share it honestly); the stream ends when the
        quota has no block left. What the last block did not use is given back when the stream ends."""
        if self.limits.reserve is None:
            return None
        while self.segmenter.seconds >= self._billed:
            granted = await self.limits.reserve(QUOTA_BLOCK_S)
            if granted <= 0:
                return QuotaExceeded("Audio quota used up during the stream", quota="audio_hours")
            self._billed += granted
        return None

    def _too_long(self) -> FileTooLarge:
        limit = self.limits.max_duration_s
        return FileTooLarge(f"Streams are limited to {limit:g} s (of audio, and of time)", max_duration_s=limit)

    def _end(self, close: Close) -> None:
        """The first reason to end the stream is the one the client is told."""
        if self._ending.error is None:
            self._ending = close

    async def _event(self, event: SpeechStarted | Utterance | UtteranceEnd) -> None:
        if isinstance(event, Utterance):
            await self._final(event)
        elif isinstance(event, SpeechStarted) and self.ctx.options.vad_events:
            await self._put(self.protocol.speech_started(event.at, self._utterance, event.channel))
        elif isinstance(event, UtteranceEnd) and self.ctx.options.utterance_end_s is not None:
            await self.outgoing.put(self._utterance_end(event.channel))

    async def _utterance_end(self, channel: int) -> dict[str, Any] | None:
        """Built when the sender reaches it, after the finals before it: as on Deepgram, only after
        words (a pause after a cough or an empty final says nothing), and `last_word_end` is the
        end of the last finalized word."""
        last = self._last_word_end.pop(channel, None)
        return None if last is None else self.protocol.utterance_end(last, channel)

    async def _put(self, message: dict[str, Any] | None) -> None:
        if message is not None:
            await self.outgoing.put(message)

    async def _finalize(self, is_last: bool = False) -> None:
        """Every channel's open utterance final now: the client's Finalize, or the stream's end."""
        utterances = self.segmenter.finalize()
        for channel, utterance in enumerate(utterances):
            if is_last and utterance is not None:
                utterance = replace(utterance, from_finalize=False)
            last = is_last and channel == len(utterances) - 1
            await self._final(utterance, from_finalize=not is_last, is_last=last, channel=channel)

    async def _final(
        self, utterance: Utterance | None, from_finalize: bool = False, is_last: bool = False, channel: int = 0
    ) -> None:
        """A final result; with nothing open (a Finalize or close after silence) an empty one."""
        channel = utterance.channel if utterance is not None else channel
        self._interim_at.pop(channel, None)
        number = self._utterance
        self._utterance += 1
        if utterance is None:
            empty = Utterance(self.segmenter.seconds, np.zeros(0, np.float32), from_finalize=from_finalize, channel=channel)
            await self.outgoing.put(self._decoded(empty.span(), _ready(self._empty(0.0)), number, is_last))
            return
        self._drop_interim(channel)  # the utterance's interim is obsolete: free the engine for its final
        await self._slots.acquire()  # released when the decode ends
        task = self._start(utterance, final=True)
        task.add_done_callback(lambda _: self._slots.release())
        await self.outgoing.put(self._decoded(utterance.span(), task, number, is_last))

    def _clear(self) -> None:
        """The client dropped what it sent since the last final (OpenAI's input_audio_buffer.clear):
        the open utterance ends unanswered and the next one is another."""
        self._drop_interim()
        self._interim_at.clear()
        if self.segmenter.discard():
            self._utterance += 1

    def _drop_interim(self, channel: int | None = None) -> None:
        """Cancel a channel's interim decode (every channel's: None)."""
        for c in list(self._interims) if channel is None else [channel]:
            if (task := self._interims.pop(c, None)) is not None:
                task.cancel()

    def _maybe_interim(self) -> None:
        if not self.ctx.options.interim_results or self._decodes or self.outgoing.full():
            return  # one decode at a time per stream for interims, and none for a client behind: they are optional work
        # the channel whose open utterance grew most since its interim: channels take turns
        grown = [open_s - self._interim_at.get(c, 0.0) if open_s else 0.0 for c, open_s in enumerate(self.segmenter.open_s())]
        channel = max(range(len(grown)), key=grown.__getitem__)
        if grown[channel] < self.limits.interim_every_s or (current := self.segmenter.current(channel)) is None:
            return
        if current.speech_s >= MIN_SPEECH_S and not self.limits.interims.take():
            return  # the replica's interims are at their cap: try again with the next audio
        self._interim_at[channel] = current.audio.size / SAMPLE_RATE
        interim = self._interims[channel] = self._start(current, final=False)
        if current.speech_s >= MIN_SPEECH_S:
            interim.add_done_callback(self.limits.interims.give)
        self.outgoing.put_nowait(self._decoded(current.span(), interim, self._utterance, interim=True))

    def _start(self, utterance: Utterance, final: bool) -> asyncio.Task:
        if utterance.speech_s < MIN_SPEECH_S:
            return asyncio.ensure_future(_ready(self._empty(utterance.audio.size / SAMPLE_RATE)))
        task = asyncio.ensure_future(self.decode(utterance, final))  # decode is typed as returning an Awaitable
        self._decodes.add(task)
        task.add_done_callback(self._decodes.discard)
        return task

    async def _decoded(
        self, span: Span, transcript: Awaitable[Transcript], number: int, is_last: bool = False, interim: bool = False
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
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
        if not interim and self.ctx.options.full_transcript:  # kept only when asked for: it grows with the stream
            self._finals.append(result.text)
        if not interim and result.words:
            self._last_word_end[span.channel] = result.words[-1].end
        return self.protocol.result(
            Result(
                result,
                span.start,
                span.duration,
                is_final=not interim,
                speech_final=span.speech_final,
                from_finalize=span.from_finalize,
                is_last=is_last,
                full_text=" ".join(t for t in self._finals if t),
                utterance=number,
                channel=span.channel,
            ),
            self.ctx,
        )

    def _empty(self, duration: float) -> Transcript:
        return Transcript("", [], 0.0, round(duration, 3), self.ctx.options.language)

    async def _send(self) -> None:
        while True:
            item = await self.outgoing.get()
            if isinstance(item, Close):
                await self._close(item)
                return
            message = await item if asyncio.iscoroutine(item) else item
            for each in message if isinstance(message, list) else [message]:  # a dialect may answer with several
                if each is not None:
                    await self._write(each)

    async def _write(self, message: dict[str, Any]) -> None:
        await write(self.ws, message)

    async def _close(self, close: Close) -> None:
        await close_with(self.ws, close, self.protocol.error(close.error) if close.error is not None and close.tell else None)


async def _ready(value: Transcript) -> Transcript:
    return value
