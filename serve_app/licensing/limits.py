"""Admission per license: quotas, concurrent requests and requests per minute, all checked against
the shared usage store so they hold across every ingress replica.

Order matters for honesty: the concurrency slot is taken first and given back if the rate limit then
refuses, so a refused request never uses up a slot or a place in the minute window.

Quotas hold under concurrency because audio is billed before it is transcribed: once a request's
duration is known (after decoding) its seconds are reserved in one atomic store step that refuses
them when they do not fit (`Admission.reserve`); a stream reserves blocks as its audio arrives. The
bill is settled when the request ends: a request the server failed is refunded, a stream's unused
block is given back, and a request whose replica dies keeps its bill (its audio is never free).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from ..errors import QuotaExceeded, RateLimited, ServiceUnavailable
from .auth import Principal
from .keys import Limits, iso
from .usage import STORE_ERRORS, QuotaCaps, Usage, UsageStore

T = TypeVar("T")
RATE_WINDOW_S = 60.0
STORE_RETRY_AFTER_S = 5


def _next_day(now: float) -> datetime:
    dt = datetime.fromtimestamp(now, timezone.utc)
    return datetime(dt.year, dt.month, dt.day, tzinfo=timezone.utc) + timedelta(days=1)


def _next_month(now: float) -> datetime:
    dt = datetime.fromtimestamp(now, timezone.utc)
    return datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=timezone.utc)


def remaining_audio_seconds(limits: Limits, usage: Usage) -> dict[str, float | None]:
    def left(hours: float | None, used: float) -> float | None:
        return None if hours is None else max(0.0, round(hours * 3600 - used, 3))

    return {
        "day": left(limits.audio_hours_per_day, usage.audio_seconds_today),
        "month": left(limits.audio_hours_per_month, usage.audio_seconds_month),
    }


def caps(limits: Limits) -> QuotaCaps:
    hours = lambda h: None if h is None else h * 3600  # noqa: E731
    return QuotaCaps(hours(limits.audio_hours_per_day), hours(limits.audio_hours_per_month))


class Admission:
    """An admitted request's bill: audio seconds reserved (billed) up front, settled at the end."""

    def __init__(self, limiter: Limiter, principal: Principal) -> None:
        self.limiter, self.principal = limiter, principal
        self.billed = 0.0
        self.billed_at: float | None = None
        # Audio seconds the request really used, set when it ends well; None: it did not end (cancelled).
        self.audio_seconds: float | None = None

    async def reserve(self, seconds: float, partial: bool = False) -> float:
        """Bill `seconds` more; a file's audio must fit whole (else 403 QUOTA_EXCEEDED), a stream's
        block may be cut to what is left (`partial`: returns the seconds billed, 0 when none)."""
        now = self.limiter.clock()
        limits = self.principal.claims.limits
        billed = await self.limiter._store(self.limiter.store.reserve, self.principal.key_id, seconds, caps(limits), now, partial)
        self.billed += billed
        self.billed_at = self.billed_at or now
        if billed == 0 and seconds > 0 and not partial:
            usage = await self.limiter.usage(self.principal.key_id)
            check_quota(limits, usage, now)  # names the period that ran out
            quota = _tightest(limits, usage)
            raise QuotaExceeded(
                f"Not enough audio quota left for {seconds:.1f} s of audio", quota=quota, resets_at=iso(_RESETS[quota](now))
            )
        return billed

    def settlement(self) -> float:
        """Seconds to add to (or, negative, give back from) the bill."""
        used = self.billed if self.audio_seconds is None else self.audio_seconds
        return used - self.billed


_RESETS = {"audio_hours_per_day": _next_day, "audio_hours_per_month": _next_month}


def _tightest(limits: Limits, usage: Usage) -> str:
    remaining = remaining_audio_seconds(limits, usage)
    period = min((p for p in remaining if remaining[p] is not None), key=lambda p: remaining[p])  # type: ignore[arg-type,return-value]
    return f"audio_hours_per_{period}"


def has_quota(limits: Limits) -> bool:
    return limits.audio_hours_per_day is not None or limits.audio_hours_per_month is not None


def check_quota(limits: Limits, usage: Usage, now: float) -> None:
    remaining = remaining_audio_seconds(limits, usage)
    for period, reset in (("day", _next_day), ("month", _next_month)):
        left = remaining[period]
        if left is not None and left <= 0:
            raise QuotaExceeded(
                f"Audio quota for this {period} used up", quota=f"audio_hours_per_{period}", resets_at=iso(reset(now))
            )


class Limiter:
    def __init__(self, store: UsageStore, clock: Callable[[], float] = time.time, lease_s: float = 60.0) -> None:
        self.store, self.clock, self.lease_s = store, clock, lease_s

    async def _store(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (blocking) store call off the event loop; a store that cannot answer is a 503."""
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except STORE_ERRORS as exc:
            raise ServiceUnavailable("Usage store unavailable", retry_after=STORE_RETRY_AFTER_S) from exc

    async def ping(self) -> str:
        return await self._store(self.store.ping)

    async def usage(self, key_id: str) -> Usage:
        return await self._store(self.store.usage, key_id, self.clock())

    async def record(self, key_id: str, **amounts: float) -> None:
        await self._store(self.store.add, key_id, self.clock(), **amounts)

    @asynccontextmanager
    async def admit(self, principal: Principal) -> AsyncIterator[Admission]:
        """Admit a request or raise; on the way out, meter it (one store write per request)."""
        kid, limits = principal.key_id, principal.claims.limits
        if has_quota(limits):  # keys without quotas skip the read
            check_quota(limits, await self.usage(kid), self.clock())
        lease = await self._take_slot(kid, limits.concurrent_requests)
        try:
            if limits.requests_per_minute is not None:
                wait = await self._store(self.store.hit_rate, kid, limits.requests_per_minute, RATE_WINDOW_S, self.clock())
                if wait is not None:
                    raise RateLimited(retry_after=max(1, math.ceil(wait)))
            admission = Admission(self, principal)
            try:
                yield admission
            except Exception:  # the request failed (an error answer): its audio is not billed
                admission.audio_seconds = 0.0
                raise
            finally:  # admitted requests count whether they succeed or not, cancelled ones too (shielded)
                await asyncio.shield(self._settle(admission))
        finally:
            if lease is not None:
                lease.cancel()
                await asyncio.shield(self._store(self.store.release_slot, kid, lease.get_name()))

    async def _settle(self, admission: Admission) -> None:
        """One store write per request: the request and the bill's correction, both counted in the
        period the audio was billed in (a refund just after midnight refunds the day it was billed)."""
        when = admission.billed_at if admission.billed_at is not None else self.clock()
        await self._store(self.store.add, admission.principal.key_id, when, requests=1, audio_seconds=admission.settlement())

    async def _take_slot(self, kid: str, limit: int | None) -> asyncio.Task | None:
        """A concurrency slot held by a lease that a background task renews; a replica that dies
        stops renewing, so its slots free themselves within `lease_s`."""
        if limit is None:
            return None
        lease_id = uuid.uuid4().hex
        if not await self._renew(kid, lease_id, limit):
            raise RateLimited("Too many concurrent requests", retry_after=1)

        async def keep() -> None:
            while True:
                await asyncio.sleep(self.lease_s / 3)
                with contextlib.suppress(ServiceUnavailable):  # a store blip: try again next round
                    await self._renew(kid, lease_id, limit)

        return asyncio.create_task(keep(), name=lease_id)

    async def _renew(self, kid: str, lease_id: str, limit: int) -> bool:
        now = self.clock()
        return await self._store(self.store.acquire_slot, kid, lease_id, limit, now + self.lease_s, now)
