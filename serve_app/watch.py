"""How many replicas of a deployment are running, and whether this replica is being stopped, as
Serve's controller sees them.

Serve keeps a request queued while its deployment has no running replica (its node is gone, it is
restarting), so a caller that only awaits the request hangs until one comes back. The ingress asks
this instead, while it waits, and answers 503 when there is nothing to wait for.
"""

from __future__ import annotations

import asyncio
import logging
import time

logger = logging.getLogger(__name__)


class ReplicaWatch:
    def __init__(self, deployment: str, ttl_s: float = 1.0) -> None:
        self.deployment = deployment
        self.ttl_s = ttl_s  # every waiting request shares one answer per ttl: one controller call per second at most
        self._checked_at = float("-inf")
        self._running: int | None = None
        self._lock = asyncio.Lock()

    async def running(self) -> int | None:
        """Running replicas; None when unknown (outside Serve, or the controller did not answer)."""
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl_s:
                self._running = await asyncio.to_thread(self._ask)
                self._checked_at = time.monotonic()
            return self._running

    def _ask(self) -> int | None:
        import ray
        from ray import serve
        from ray.serve.schema import ReplicaState

        if not ray.is_initialized():  # unit tests: no controller to ask
            return None
        try:
            app = serve.get_replica_context().app_name
            deployment = serve.status().applications[app].deployments[self.deployment]
            return int(deployment.replica_states.get(ReplicaState.RUNNING, 0))
        except Exception as exc:  # noqa: BLE001 - a status we cannot read must not fail the request
            logger.warning("could not read the status of %s: %s", self.deployment, type(exc).__name__)
            return None


async def replica_stopping() -> bool:
    """Whether Serve's controller is stopping this replica (stream/drain.py asks, while it has live
    streams); False outside Serve or when the controller does not answer."""
    import ray

    if not ray.is_initialized():  # unit tests: no controller to ask
        return False
    return await asyncio.to_thread(_stopping)


def _stopping() -> bool:
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ReplicaState

    try:
        me = serve.get_replica_context()
        # The controller's own view (what `serve status` and the dashboard show): Serve tells a replica
        # it stops by no call that reaches our code before its requests have ended (stream/drain.py).
        client = _get_global_client()
        if client is None:
            return False
        details = client.get_serve_details()
        replicas = details["applications"][me.app_name]["deployments"][me.deployment]["replicas"]
        return any(r["replica_id"] == me.replica_tag and r["state"] == ReplicaState.STOPPING for r in replicas)
    except Exception as exc:  # noqa: BLE001 - a status we cannot read must not end the streams
        logger.warning("could not read this replica's state: %s", type(exc).__name__)
        return False
