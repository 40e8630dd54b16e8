"""The send side of a live stream: messages written to the client in order, the close, and how the
session's tasks are waited for. A client gone mid-write is `ClientGone`, never an error to report."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .limits import Close


class ClientGone(Exception):
    pass


async def write(ws: WebSocket, message: dict[str, Any]) -> None:
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        raise ClientGone()
    try:
        await ws.send_json(message)
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        raise ClientGone() from exc


async def close_with(ws: WebSocket, close: Close, error_message: dict[str, Any] | None) -> None:
    """The error (in the dialect's shape) when there is one, then the close frame with its code."""
    try:
        if error_message is not None:
            await write(ws, error_message)
        reason = f"{close.error.code}: {close.error.message}"[:120] if close.error else ""
        await ws.close(code=close.code, reason=reason)
    except (ClientGone, RuntimeError, OSError):
        pass  # already gone: nothing to tell


async def until_over(tasks: list[asyncio.Task], sender: asyncio.Task) -> BaseException | None:
    """Wait until the sender has closed the stream or a task failed (the error). The receiver may
    still be waiting for room in a full buffer then: it is not waited for."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        errors = [t.exception() for t in done]  # every one retrieved, so none is reported as lost
        failed = next((e for e in errors if e is not None), None)
        if failed is not None or sender in done:
            return failed
    return None
