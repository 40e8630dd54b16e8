"""`GET /v1/usage`: a key holder's own usage, limits and remaining quota."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..licensing.keys import iso
from ..licensing.limits import Limiter, remaining_audio_seconds
from .access import Access


class UsageRoute:
    def __init__(self, access: Access, limiter: Limiter) -> None:
        self.access, self.limiter = access, limiter

    async def usage(self, request: Request) -> Response:
        principal = await self.access.request(request)
        claims = principal.claims
        usage = await self.limiter.usage(principal.key_id)
        remaining = remaining_audio_seconds(claims.limits, usage)
        return JSONResponse(
            {
                "key_id": claims.kid,
                "customer": claims.customer,
                "environment": claims.environment,
                "expires_at": iso(claims.expires_at),
                "features": claims.features,
                "limits": claims.limits.model_dump(),
                "usage": asdict(usage),
                "remaining": {"audio_seconds_today": remaining["day"], "audio_seconds_month": remaining["month"]},
            }
        )
