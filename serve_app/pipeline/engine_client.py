"""How the ingress calls the engine deployment: the policy for an engine that is busy, missing or
slow, in one place.

- A full engine queue (Serve's back-pressure) is `EngineBusy`, a 503 with `retry_after`: a new
  request is shed with it; work already under way waits it out (`patiently`), with jitter.
- A call still waiting after ENGINE_CHECK_S asks Serve's controller whether an engine replica runs
  at all: with none (its node is gone), Serve would hold the call until one returns, so it is
  cancelled and answered 503 instead of hanging.
- Ray's replica and actor failures and the engine timeout are 503s the client may retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ray.exceptions import RayActorError, TaskCancelledError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
    RequestCancelledError,
)

from ..errors import EngineBusy, ServiceError, ServiceUnavailable
from ..types import ChunkTranscript, EngineInfo, Turn
from ..watch import ReplicaWatch

logger = logging.getLogger("ray.serve")

T = TypeVar("T")
_UNAVAILABLE = (
    DeploymentUnavailableError,
    ReplicaUnavailableError,
    RayActorError,
    TaskCancelledError,
)  # BackPressureError: EngineBusy
RETRY_AFTER_S = 5
BUSY_RETRY_S = 1.0  # how soon a request under way asks a full engine queue again
ENGINE_CHECK_S = 2.0  # how long an engine call waits before checking that a replica is running


class EngineClient:
    def __init__(self, handle: Any, timeout_s: float, watch: ReplicaWatch | None = None) -> None:
        self.handle = handle  # DeploymentHandle to WhisperEngine (a fake in unit tests)
        self.timeout_s = timeout_s
        self.watch = watch if watch is not None else ReplicaWatch("WhisperEngine")
        self.last_info: EngineInfo | None = None  # what the engine last said of itself

    async def info(self) -> EngineInfo:
        """Asked every time (health checks must not trust a cached answer after the engine died)."""
        self.last_info = await self.call(self.handle.info.remote())
        return self.last_info

    async def known_info(self) -> EngineInfo:
        """The model and its window: they do not change while the service runs, so asked once."""
        return self.last_info if self.last_info is not None else await self.info()

    async def transcribe(
        self, audio: Any, language: str, align: bool, previous: str = "", translate: bool = False, live: bool = False
    ) -> ChunkTranscript:
        """`previous`: the text before this audio, the decoder's context. `live`: a stream's utterance."""
        return await self.call(self.handle.transcribe.remote(audio, language, align, previous, translate, live))

    async def detect_language(self, audio: Any) -> tuple[str, float]:
        return await self.call(self.handle.detect_language.remote(audio))

    async def diarize(self, audio: Any, num_speakers: int | None) -> list[Turn]:
        return await self.call(self.handle.diarize.remote(audio, num_speakers))

    async def replicas_running(self) -> int | None:
        """Engine replicas Serve reports running; None outside Serve."""
        return await self.watch.running()

    async def patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call` again while the engine's queue is full, up to the engine timeout."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return await call()
            except EngineBusy:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(BUSY_RETRY_S * (0.5 + random.random()))  # jitter: waiters do not return in step

    async def call(self, response: Awaitable[Any]) -> Any:
        """Await an engine call; a missing or overloaded engine is a 503 the client may retry."""
        waiting = asyncio.ensure_future(_awaited(response, self.timeout_s))
        try:
            while not (await asyncio.wait({waiting}, timeout=ENGINE_CHECK_S))[0]:
                if await self.watch.running() == 0:
                    getattr(response, "cancel", lambda: None)()
                    raise ServiceUnavailable("No engine replica is running", retry_after=RETRY_AFTER_S)
            return waiting.result()
        except ServiceError:
            raise
        except BackPressureError as exc:
            raise EngineBusy(retry_after=RETRY_AFTER_S) from exc
        except (asyncio.TimeoutError, *_UNAVAILABLE) as exc:
            logger.warning("engine unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable(retry_after=RETRY_AFTER_S) from exc
        finally:
            waiting.cancel()  # no-op once done


async def _awaited(response: Awaitable[Any], timeout_s: float) -> Any:
    """`response` awaited in a coroutine of ours, for at most `timeout_s`. A cancelled Serve call raises
    RequestCancelledError, not CancelledError: left to the task asyncio wraps a bare awaitable in, it was
    logged as "Task exception was never retrieved" on every cancel (a /health poll timing out while the
    engine starts). Turned into CancelledError inside the timeout, which then makes it a TimeoutError."""
    async with asyncio.timeout(timeout_s):
        try:
            return await response
        except RequestCancelledError:
            raise asyncio.CancelledError from None


CONTEXT_CHARS = 1000  # the engine keeps the last 223 tokens; this bounds what crosses to it


def context(texts: list[str]) -> str:
    """The end of the text so far, whole words, at most CONTEXT_CHARS."""
    text = " ".join(t.strip() for t in texts if t.strip())
    if len(text) <= CONTEXT_CHARS:
        return text
    return text[-CONTEXT_CHARS:].split(" ", 1)[-1]
