"""What bounds a live stream (stream/session.py): its limits, the replica-wide interim budget, and
how it closes (WebSocket close codes as Deepgram uses them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..errors import ServerRestarting, ServiceError, StreamIdle

NORMAL, POLICY, MESSAGE_TOO_BIG, SERVER_ERROR = 1000, 1008, 1009, 1011  # WebSocket close codes
SERVICE_RESTART = 1012  # IANA's "Service Restart": the replica is being replaced, reconnect
QUOTA_BLOCK_S = 30.0  # audio billed ahead of a stream at a time: one store write per 30 s streamed


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
    # Bills audio seconds ahead of the stream (as much as the quota has left, up to the amount
    # asked) and returns what it billed; None: the stream is not metered (tests).
    reserve: Callable[[float], Awaitable[float]] | None = None
    interims: InterimBudget = field(default_factory=lambda: InterimBudget(2))  # shared by a replica's streams
    max_frame_bytes: int = 2**20  # a larger message (binary or text) ends the stream (close 1009)
    max_duration_s: float = 3 * 3600.0  # audio or time past this ends the stream after its finals (close 1008)
    # Set when the replica is being stopped (stream/drain.py): the stream takes no more audio, sends
    # the finals of what it took and closes with 1012. None: never (tests of other things).
    draining: asyncio.Event | None = None


@dataclass(frozen=True)
class Close:
    code: int
    error: ServiceError | None = None
    tell: bool = True  # the error also as a message before the close; else only in the close's reason


def closing(error: ServiceError | None) -> Close:
    """Close codes as Deepgram uses them: 1011 for its idle timeout (NET-0001) and server errors,
    1008 for what the client did wrong. Deepgram documents no code for a restart: 1012, Service
    Restart, without an error message, since the stream lost nothing (its Metadata still comes)."""
    if error is None:
        return Close(NORMAL)
    if isinstance(error, ServerRestarting):
        return Close(SERVICE_RESTART, error, tell=False)
    return Close(SERVER_ERROR if error.status >= 500 or isinstance(error, StreamIdle) else POLICY, error)
