"""`AsyncLiveStream`, the asyncio live stream: `LiveStream`'s behaviour with a receiver task instead
of a thread (live_sync.py says why it is built this way)."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, List, Optional

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from .errors import APIConnectionError, SmallestError
from .live import (
    CLOSE_STREAM,
    END,
    FINALIZE,
    KEEPALIVE,
    REOPEN,
    Ledger,
    Replay,
    StreamState,
    after_close,
    closed_error,
    handshake_error,
    parse,
    pieces,
    reopen_failed,
    reopens,
    settle,
)
from .types import LiveMessage, LiveResult


class AsyncLiveStream(StreamState):
    """An open `WS /v1/listen` stream (from `AsyncClient.stream`): `async for` yields every message in
    order until the server closes the stream; the methods are `LiveStream`'s, awaited."""

    def __init__(
        self,
        ws: ClientConnection,
        stack: AsyncExitStack,
        connect: Callable[[], Awaitable[ClientConnection]],
        keepalive: Optional[float],
        close_timeout: float,
        replay: Optional[Replay],
    ) -> None:
        """Use `open`: a running receiver needs a running loop."""
        self._ws, self._exit = ws, stack
        self._connect, self._replay = connect, replay
        self._keepalive, self._close_timeout = keepalive, close_timeout
        self._ledger = Ledger()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._sent_at = time.monotonic()
        self._finished = False
        self._aborted = False
        self._receiver = asyncio.create_task(self._receive())
        self._feeder: Optional[asyncio.Task] = None  # `feed`'s task, kept so that it is not collected

    @classmethod
    async def open(
        cls,
        connect: Callable[[], Awaitable[ClientConnection]],
        keepalive: Optional[float],
        close_timeout: float,
        replay: Optional[Replay] = None,
    ) -> "AsyncLiveStream":
        """`connect`: the handshake (`handshake` with the client's retries), again for each
        reopening; `replay`: reopen after a restart (`reconnect=True`)."""
        stack = AsyncExitStack()
        ws = await stack.enter_async_context(await connect())
        return cls(ws, stack, connect, keepalive, close_timeout, replay)

    async def send(self, audio: bytes) -> None:
        if self._finished:
            raise SmallestError("The stream is closing: no more audio can be sent")
        for piece in pieces(bytes(audio)):
            await self._send(piece)

    async def send_all(self, frames: Iterable[bytes], seconds_each: Optional[float] = None) -> None:
        started = time.monotonic()
        for k, frame in enumerate(frames):
            if seconds_each is not None:
                await asyncio.sleep(max(0.0, started + k * seconds_each - time.monotonic()))
            await self.send(frame)

    def feed(self, frames: Iterable[bytes], seconds_each: Optional[float] = None) -> None:
        """`send_all` in a background task, then `finish()`; `abort()` cancels it."""

        async def run() -> None:
            try:
                await self.send_all(frames, seconds_each)
            except SmallestError:
                pass  # the stream ended; its reader gets the reason
            finally:
                await self.finish()

        self._feeder = asyncio.create_task(run())

    async def finalize(self) -> None:
        await self._send(FINALIZE)

    async def finish(self) -> None:
        if not self._finished:
            self._finished = True
            await self._send(CLOSE_STREAM, quiet=True)

    async def close(self) -> List[LiveResult]:
        if self._feeder is not None:
            await asyncio.wait({self._feeder})
        await self.finish()
        await asyncio.wait({self._receiver}, timeout=self._close_timeout)
        await self._exit.aclose()
        unread = []
        while (item := await self._next(block=False)) is not END:
            unread.append(item)
        return settle(unread)

    async def abort(self) -> None:
        self._finished = self._aborted = True
        if self._feeder is not None:
            self._feeder.cancel()
        await self._exit.aclose()

    async def __aiter__(self) -> AsyncIterator[LiveMessage]:
        while (item := await self._next(block=True)) is not END:
            if isinstance(item, SmallestError):
                raise item
            yield item

    async def __aenter__(self) -> "AsyncLiveStream":
        return self

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.abort()

    async def _next(self, block: bool) -> Any:
        if not block and self._queue.empty():
            return END
        item = await self._queue.get()
        if item is END:
            self._queue.put_nowait(END)
        return item

    async def _send(self, message: Any, quiet: bool = False) -> None:
        try:
            async with self._send_lock:
                if self._replay is not None and isinstance(message, bytes):
                    self._replay.sent(message)  # under the lock: a reopening resends it or it goes on the new connection
                await self._ws.send(message)
                self._sent_at = time.monotonic()
        except ConnectionClosed as exc:
            if quiet or (self._replay is not None and reopens(exc) and not self._receiver.done()):
                return  # kept: the receiver reopens the stream and resends it
            await asyncio.wait({self._receiver}, timeout=1.0)  # it may be reading the Error that says why
            raise self._ledger.error or closed_error(exc) or APIConnectionError("The stream is closed") from None

    async def _receive(self) -> None:
        try:
            while await self._read():
                pass
        finally:
            self._queue.put_nowait(END)

    async def _read(self) -> bool:
        """`LiveStream._read`: one connection's messages; True if the stream was reopened."""
        try:
            while True:
                try:
                    text = await asyncio.wait_for(self._ws.recv(), self._until_keepalive())
                except asyncio.TimeoutError:  # recv is safe to cancel: no message is lost
                    await self._send(KEEPALIVE, quiet=True)
                    continue
                item = parse(text, self._replay.shift if self._replay is not None else 0.0)
                self._hand_on(self._replay.received(item) if self._replay is not None else item)
        except ConnectionClosed as exc:
            outcome = after_close(exc, self._replay, self._aborted, self._ledger)
            if self._replay is None or outcome is not REOPEN:
                return self._ended(outcome)
            try:
                ws = await self._connect()
            except SmallestError as error:
                return self._ended(reopen_failed(exc, error))
            await self._reopened(ws, self._replay)
            return True

    async def _reopened(self, ws: ClientConnection, replay: Replay) -> None:
        async with self._send_lock:
            await self._exit.enter_async_context(ws)
            self._ws = ws
            if self._aborted:
                await ws.close()
                return
            try:
                for audio in replay.restart():
                    for piece in pieces(audio):
                        await ws.send(piece)
                if self._finished:
                    await ws.send(CLOSE_STREAM)
                self._sent_at = time.monotonic()
            except ConnectionClosed:
                pass  # the next read sees it and reopens again


async def handshake(url: str, settings: Dict[str, Any]) -> ClientConnection:
    """One handshake: the server's refusal raises the exception a file call would (no retry here)."""
    try:
        return await connect(url, **settings)
    except (OSError, WebSocketException) as exc:  # OSError: refused, reset, timed out
        raise handshake_error(exc) from None


class Opening:
    """What `AsyncClient.stream` returns: `await` it for the stream, or `async with` it to close the
    stream at the end of the block."""

    def __init__(self, open_stream: Callable[[], Awaitable[AsyncLiveStream]]) -> None:
        self._open = open_stream
        self._stream: Optional[AsyncLiveStream] = None

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncLiveStream:
        self._stream = await self._open()
        return self._stream

    async def __aexit__(self, *exc: Any) -> None:
        if self._stream is not None:
            await self._stream.__aexit__(*exc)
