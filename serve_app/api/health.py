"""`GET /health` (no key): healthy when the engine answers; `?detailed=true` adds every component
(engine, usage store, license), the version and the uptime."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version as _version
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ServiceError
from ..licensing.auth import Authenticator
from ..licensing.limits import Limiter
from ..pipeline.engine_client import EngineClient
from .params import flag

VERSION = _version("selfhost-stt")
HEALTH_TIMEOUT_S = 3


class Health:
    def __init__(self, engine: EngineClient, limiter: Limiter, auth: Authenticator) -> None:
        self.engine, self.limiter, self.auth = engine, limiter, auth
        self.started = time.monotonic()

    async def health(self, request: Request) -> Response:
        detailed = flag(request.query_params, "detailed")
        try:
            # Ask the engine every time: a cached answer would stay "healthy" after the engine died.
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await self.engine.info()
            reason = None
        except (TimeoutError, ServiceError) as exc:
            reason = "engine not ready" if isinstance(exc, TimeoutError) else exc.message
        if not detailed:
            if reason is not None:
                return JSONResponse({"status": "unhealthy", "reason": reason}, status_code=503)
            return JSONResponse({"status": "healthy"})
        components = {
            "ingress": {"status": "healthy"},
            "engine": await self._engine(reason),
            "usage_store": await self._store(),
            # Unhealthy with no issuer key or an unreadable revocation list: every key would be refused.
            "license": self.auth.describe(),
        }
        failing = [name for name, part in components.items() if part["status"] != "healthy"]
        body: dict[str, Any] = {"status": "unhealthy" if failing else "healthy"}
        if failing:
            body["reason"] = f"unhealthy: {', '.join(failing)}"
        body.update(version=VERSION, uptime_s=round(time.monotonic() - self.started, 1), components=components)
        return JSONResponse(body, status_code=503 if failing else 200)

    async def _engine(self, reason: str | None) -> dict[str, Any]:
        part: dict[str, Any] = {"status": "unhealthy", "reason": reason} if reason else {"status": "healthy"}
        if self.engine.last_info is not None:
            part["model"] = self.engine.last_info.model
        running = await self.engine.replicas_running()
        if running is not None:  # unknown outside Serve
            part["replicas_running"] = running
        return part

    async def _store(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                return {"status": "healthy", "kind": await self.limiter.ping()}
        except TimeoutError:
            return {"status": "unhealthy", "reason": "usage store not answering"}
        except ServiceError as exc:
            return {"status": "unhealthy", "reason": exc.message}
