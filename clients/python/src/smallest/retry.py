"""When to retry, how long to wait, and client-side rate limiting."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Deque, Optional

# Overload and gateway answers; every other 4xx/5xx is final.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff: float = 0.5  # first wait when the server names none; doubles each attempt
    max_backoff: float = 30.0

    def delay(self, attempt: int, retry_after: Optional[float]) -> float:
        """Seconds before retry number `attempt` (0-based). The server's `retry_after` is honoured
        as given; otherwise exponential backoff with jitter (half fixed, half random), so that
        clients that failed together do not come back together."""
        if retry_after is not None:
            return retry_after
        cap = min(self.max_backoff, self.backoff * 2**attempt)
        return cap / 2 + random.uniform(0, cap / 2)


class RateLimiter:
    """At most `calls` requests in any `period` seconds, shared by every thread or task using it;
    a call over the limit waits for the oldest one to leave the window."""

    def __init__(self, calls: int, period: float) -> None:
        if calls < 1 or period <= 0:
            raise ValueError("calls must be >= 1 and period > 0")
        self.calls, self.period = calls, period
        self._sent: Deque[float] = deque()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a slot now or say how long to wait for one."""
        with self._lock:
            now = time.monotonic()
            while self._sent and now - self._sent[0] >= self.period:
                self._sent.popleft()
            if len(self._sent) < self.calls:
                self._sent.append(now)
                return 0.0
            return self.period - (now - self._sent[0])

    def acquire(self) -> None:
        while (wait := self._reserve()) > 0:
            time.sleep(wait)

    async def acquire_async(self) -> None:
        while (wait := self._reserve()) > 0:
            await asyncio.sleep(wait)
