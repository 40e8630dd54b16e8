"""A replica's live streams when Serve stops the replica (a changed config deployed, a scale-down).

Serve tells a replica only by `perform_graceful_shutdown` on its actor, and that first waits for the
replica's requests to end, up to the deployment's `graceful_shutdown_timeout_s`, before it runs any
code of ours (`__del__`, the ASGI lifespan's shutdown); then the replica is killed. A live stream is a
request that ends when its client ends it: left alone, it would hold the replica to the kill and its
client would see close 1006 and never get the finals of the audio it had sent.

So while streams are open the replica asks, every `every_s`, whether it is being stopped (`stopping`:
Serve's controller, serve_app/watch.py). Once it is, `event` is set: each stream stops reading audio,
decodes what it took, sends those finals and its Metadata, and closes with 1012 (stream/session.py);
a new stream that still reaches this replica is refused with 503 (api/streaming.py) while Serve
routes the others to the replacements. The time this takes is in docs/streaming.md (Restarts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.types import Message
from starlette.websockets import WebSocket

logger = logging.getLogger("ray.serve")


class Drain:
    def __init__(self, stopping: Callable[[], Awaitable[bool]] | None = None, every_s: float = 1.0) -> None:
        self.stopping = stopping  # None: nothing to ask (a replica that is never stopped under it)
        self.every_s = every_s
        self.streams = 0
        self.event = asyncio.Event()
        self._watcher: asyncio.Task | None = None

    @property
    def draining(self) -> bool:
        return self.event.is_set()

    @asynccontextmanager
    async def stream(self) -> AsyncIterator[asyncio.Event]:
        """Held by each live stream: the event it ends on. The controller is asked only while there
        are streams (files need no asking: Serve waits for them)."""
        if not self.streams and not self.draining:
            self.event = asyncio.Event()  # on the streams' loop (tests start one loop per client)
        self.streams += 1
        if self._watcher is None and self.stopping is not None and not self.draining:
            self._watcher = asyncio.create_task(self._watch(self.stopping))
        try:
            yield self.event
        finally:
            self.streams -= 1
            if not self.streams and self._watcher is not None and not self._watcher.done():
                self._watcher.cancel()
                self._watcher = None

    async def _watch(self, stopping: Callable[[], Awaitable[bool]]) -> None:
        while not await stopping():
            await asyncio.sleep(self.every_s)
        logger.info("replica stopping: draining %d live streams", self.streams)
        self.event.set()


async def next_message(ws: WebSocket, draining: asyncio.Event | None, timeout: float) -> Message | None:
    """The client's next message within `timeout` (else TimeoutError); None once the replica drains.
    A message that comes later is not taken: the stream's Metadata says how much audio was."""
    if draining is None:
        async with asyncio.timeout(timeout):
            return await ws.receive()
    if draining.is_set():
        return None
    receive, drained = asyncio.ensure_future(ws.receive()), asyncio.ensure_future(draining.wait())
    try:
        done, _ = await asyncio.wait((receive, drained), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        drained.cancel()
        if not receive.done():
            receive.cancel()
    if receive in done:
        return receive.result()
    if drained in done:
        return None
    raise asyncio.TimeoutError()
