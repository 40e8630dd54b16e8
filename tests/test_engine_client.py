"""The ingress's engine calls (serve_app/pipeline/engine_client.py) when they are cancelled."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Generator
from typing import Any

import pytest
from ray.serve.exceptions import RequestCancelledError

from serve_app.errors import ServiceUnavailable
from serve_app.pipeline.engine_client import EngineClient


class SlowServeResponse:
    """Awaits like Serve's DeploymentResponse: never answers, and a cancel surfaces as
    RequestCancelledError rather than CancelledError."""

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            yield from asyncio.sleep(3600).__await__()
        except asyncio.CancelledError:
            raise RequestCancelledError("engine-call") from None

    def cancel(self) -> None:
        pass


class Running:
    async def running(self) -> int:
        return 1


def test_a_cancelled_engine_call_leaves_no_unretrieved_exception() -> None:
    """A /health poll that times out while the engine starts cancels its call: nothing may be
    left for asyncio to log as "Task exception was never retrieved"."""
    unhandled: list[dict] = []

    async def poll() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: unhandled.append(context))
        client = EngineClient(handle=None, timeout_s=60, watch=Running())  # type: ignore[arg-type]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.call(SlowServeResponse()), timeout=0.1)
        await asyncio.sleep(0.05)  # the cancelled tasks finish
        gc.collect()  # a task's unretrieved exception is reported when it is collected

    asyncio.run(poll())
    assert unhandled == []


def test_an_engine_call_past_its_timeout_is_a_503() -> None:
    """The engine timeout cancels the Serve call, which surfaces as RequestCancelledError: the caller
    gets a 503 to retry, not a cancelled request."""

    async def call() -> None:
        client = EngineClient(handle=None, timeout_s=0.1, watch=Running())  # type: ignore[arg-type]
        with pytest.raises(ServiceUnavailable) as raised:
            await client.call(SlowServeResponse())
        assert raised.value.status == 503 and "Retry-After" in raised.value.headers()

    asyncio.run(call())
