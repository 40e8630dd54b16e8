"""Operator metrics of the pipeline: how long each stage took, and per key the audio transcribed and
the quota left. Usage itself (what quotas count) is metered by the limiter (licensing/limits.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..licensing.auth import Principal
from ..licensing.limits import Limiter, has_quota, remaining_audio_seconds
from ..metrics import Metrics


class Meter:
    def __init__(self, metrics: Metrics, limiter: Limiter) -> None:
        self.metrics = metrics
        self.limiter = limiter

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Record how long a stage took when it succeeds (metrics.STAGE_BOUNDARIES)."""
        started = time.perf_counter()
        yield
        self.metrics.stage(stage, time.perf_counter() - started)

    async def observe(self, principal: Principal, audio_s: float) -> None:
        """A transcribed request or stream: its audio, and the key's quota left when it has one."""
        self.metrics.audio(principal.key_id, audio_s)
        if not has_quota(principal.claims.limits):
            return
        remaining = remaining_audio_seconds(principal.claims.limits, await self.limiter.usage(principal.key_id))
        for period, seconds in remaining.items():
            if seconds is not None:
                self.metrics.quota_remaining(principal.key_id, period, seconds)
