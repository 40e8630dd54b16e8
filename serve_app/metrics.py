"""Operator metrics through Ray's metrics export (Prometheus). Labels carry key ids, never keys."""

from __future__ import annotations

from typing import Protocol

# Seconds a stage of one request took: fetch (audio URL), decode, engine (every chunk of the
# request transcribed, waiting in Serve's and vLLM's queues included).
STAGE_BOUNDARIES = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]


class Metrics(Protocol):
    def request(self, route: str, status: int, key_id: str) -> None: ...
    def stage(self, name: str, seconds: float) -> None: ...
    def auth_failure(self, reason: str) -> None: ...
    def audio(self, key_id: str, seconds: float) -> None: ...
    def quota_remaining(self, key_id: str, period: str, seconds: float) -> None: ...


class NoMetrics:
    def request(self, route: str, status: int, key_id: str) -> None: ...
    def stage(self, name: str, seconds: float) -> None: ...
    def auth_failure(self, reason: str) -> None: ...
    def audio(self, key_id: str, seconds: float) -> None: ...
    def quota_remaining(self, key_id: str, period: str, seconds: float) -> None: ...


class RayMetrics:
    """Created inside the replica (Ray metrics cannot be pickled into deployment args)."""

    def __init__(self) -> None:
        from ray.serve.metrics import Counter, Gauge, Histogram

        # Ray types tag_keys as Tuple[str], meaning Tuple[str, ...]: hence the ignores below.
        self._requests = Counter("stt_requests", "Requests by route, HTTP status and key id", tag_keys=("route", "status", "key_id"))  # type: ignore[arg-type]  # fmt: skip
        self._stages = Histogram(
            "stt_stage_seconds", "Seconds per request stage", boundaries=STAGE_BOUNDARIES, tag_keys=("stage",)
        )
        self._auth = Counter("stt_auth_failures", "Failed authentication attempts by reason", tag_keys=("reason",))
        self._audio = Counter("stt_audio_seconds", "Audio seconds transcribed by key id", tag_keys=("key_id",))
        self._quota = Gauge("stt_quota_remaining_seconds", "Audio quota left by key id", tag_keys=("key_id", "period"))  # type: ignore[arg-type]

    def request(self, route: str, status: int, key_id: str) -> None:
        self._requests.inc(tags={"route": route, "status": str(status), "key_id": key_id})

    def stage(self, name: str, seconds: float) -> None:
        self._stages.observe(seconds, tags={"stage": name})

    def auth_failure(self, reason: str) -> None:
        self._auth.inc(tags={"reason": reason})

    def audio(self, key_id: str, seconds: float) -> None:
        self._audio.inc(seconds, tags={"key_id": key_id})

    def quota_remaining(self, key_id: str, period: str, seconds: float) -> None:
        self._quota.set(seconds, tags={"key_id": key_id, "period": period})
