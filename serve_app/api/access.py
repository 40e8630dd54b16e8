"""Who is calling: the license key of an HTTP request or a WebSocket handshake checked, and a refused
key metered. An address with too many recent failures is refused before anything is verified."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from ..errors import RateLimited
from ..licensing.auth import UNVERIFIED, Authenticator, FailureThrottle, Principal, Refusal
from ..licensing.limits import Limiter
from ..metrics import Metrics


class Access:
    def __init__(self, auth: Authenticator, throttle: FailureThrottle, limiter: Limiter, metrics: Metrics) -> None:
        self.auth, self.throttle, self.limiter, self.metrics = auth, throttle, limiter, metrics

    async def check(self, header: str | None, connection: HTTPConnection) -> Principal:
        """The key's principal (its key id then labels the connection's metrics), or its error."""
        address = connection.client.host if connection.client else "unknown"
        wait = self.throttle.retry_after(address)
        if wait is not None:
            self.metrics.auth_failure("throttled")
            raise RateLimited("Too many failed authentications from this address", retry_after=wait)
        result = self.auth.check(header)
        if isinstance(result, Principal):
            connection.state.key_id = result.key_id
            return result
        await self._refused(result, address)
        raise result.error

    async def request(self, connection: HTTPConnection) -> Principal:
        return await self.check(connection.headers.get("authorization"), connection)

    async def _refused(self, refusal: Refusal, address: str) -> None:
        """Meter a refused key: under its own key id only if its signature verified (otherwise anyone
        could create usage rows and label values at will), else in one bucket."""
        self.metrics.auth_failure(refusal.reason)
        if refusal.client_fault:  # an unreadable revocation list is the server's failure, not the client's
            self.throttle.failed(address)
            await self.limiter.record(refusal.key_id or UNVERIFIED, auth_failures=1)
