"""Limits, quotas, usage and metrics at the ingress, with a fake engine and an injected clock."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone
from typing import Any

import pytest
from starlette.testclient import TestClient

from serve_app.ingress import Ingress
from serve_app.licensing.auth import LicenseAuthenticator, RevocationList
from serve_app.licensing.keys import PublicKeys, read_claims
from serve_app.licensing.limits import Limiter
from serve_app.licensing.usage import SqliteStore
from serve_app.pipeline.fetch import UrlPolicy

from .helpers import JFK_FLAC, Issuer
from .support import FakeEngine

ISSUER = Issuer()
T0 = datetime(2026, 5, 20, 10, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class RecordingMetrics:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def request(self, route: str, status: int, key_id: str) -> None:
        self.events.append(("request", status, key_id))
        self.events.append(("route", route, status))

    def stage(self, name: str, seconds: float) -> None:
        assert seconds >= 0
        self.events.append(("stage", name))

    def auth_failure(self, reason: str) -> None:
        self.events.append(("auth_failure", reason))

    def audio(self, key_id: str, seconds: float) -> None:
        self.events.append(("audio", key_id, seconds))

    def quota_remaining(self, key_id: str, period: str, seconds: float) -> None:
        self.events.append(("quota", key_id, period, seconds))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


@pytest.fixture
def client(tmp_path: Any, clock: Clock, metrics: RecordingMetrics, request: pytest.FixtureRequest):
    engine = getattr(request, "param", None) or FakeEngine()
    auth = LicenseAuthenticator(PublicKeys.from_lines([ISSUER.public_line()]), RevocationList(None))
    ingress = Ingress(engine, {}, auth, Limiter(SqliteStore(tmp_path / "u.db"), clock=clock), UrlPolicy(), metrics)
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        yield c


def post(client: TestClient, key: str) -> Any:
    return client.post(
        "/v1/listen", headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()
    )


def test_requests_per_minute_with_honest_retry_after(client: TestClient, clock: Clock) -> None:
    key = ISSUER.issue(requests_per_minute=3)
    for i in range(3):
        clock.now = T0 + i * 10
        assert post(client, key).status_code == 200
    clock.now = T0 + 25
    response = post(client, key)
    assert response.status_code == 429
    assert response.json() == {"error": "Rate limit exceeded", "code": "RATE_LIMIT_EXCEEDED", "retry_after": 35}
    assert response.headers["Retry-After"] == "35"
    clock.now = T0 + 60.01  # exactly when it said: the first request has left the window
    assert post(client, key).status_code == 200


def test_quota_exceeded_with_reset_time(client: TestClient, clock: Clock) -> None:
    key = ISSUER.issue(audio_hours_per_day=20 / 3600)  # 20 s a day; each request is 11 s
    assert post(client, key).status_code == 200
    response = post(client, key)  # 9 s left: the 11 s do not fit, so nothing runs and nothing is billed
    body = response.json()
    assert response.status_code == 403 and body["code"] == "QUOTA_EXCEEDED"
    assert body["quota"] == "audio_hours_per_day" and body["resets_at"] == "2026-05-21T00:00:00Z"
    usage = client.get("/v1/usage", headers={"Authorization": f"Token {key}"}).json()["usage"]
    assert usage["audio_seconds_today"] == 11.0 and usage["requests_today"] == 2
    clock.now = T0 + 86400
    assert post(client, key).status_code == 200  # a new day


def test_parallel_requests_cannot_overrun_the_quota(client: TestClient) -> None:
    key = ISSUER.issue(audio_hours_per_day=36 / 3600)  # room for three 11 s requests

    async def burst() -> list[int]:
        from httpx import ASGITransport, AsyncClient

        app = client.app
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
            calls = [
                c.post(
                    "/v1/listen",
                    headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"},
                    content=JFK_FLAC.read_bytes(),
                )
                for _ in range(8)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    statuses = asyncio.run(burst())
    assert sorted(statuses) == [200] * 3 + [403] * 5
    usage = client.get("/v1/usage", headers={"Authorization": f"Token {key}"}).json()["usage"]
    assert usage["audio_seconds_today"] == 33.0


def test_a_failed_request_is_refunded(tmp_path: Any, clock: Clock, metrics: RecordingMetrics) -> None:
    class BrokenEngine(FakeEngine):
        async def _transcribe(self, *args: Any) -> Any:
            raise RuntimeError("engine bug")

    key = ISSUER.issue(audio_hours_per_day=20 / 3600)
    auth = LicenseAuthenticator(PublicKeys.from_lines([ISSUER.public_line()]), RevocationList(None))
    store = SqliteStore(tmp_path / "u.db")
    ingress = Ingress(BrokenEngine(), {}, auth, Limiter(store, clock=clock), UrlPolicy(), metrics)
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        assert post(c, key).status_code == 500
    kid = read_claims(key).kid
    assert store.usage(kid, clock()).audio_seconds_today == 0 and store.usage(kid, clock()).requests_today == 1


def test_expired_key_is_403_with_expires_at(client: TestClient) -> None:
    response = post(client, ISSUER.issue(days=-1))
    assert response.status_code == 403
    assert set(response.json()) == {"error", "code", "expires_at"} and response.json()["code"] == "LICENSE_EXPIRED"


def test_usage_endpoint_and_metering(client: TestClient, metrics: RecordingMetrics) -> None:
    key = ISSUER.issue(audio_hours_per_month=1)
    kid = client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()["key_id"]
    assert post(client, key).status_code == 200
    client.post("/v1/listen", headers={"Authorization": "Token not-a-key"}, json={"url": "http://x"})
    usage = client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    assert usage.status_code == 200
    body = usage.json()
    assert body["usage"]["requests_total"] == 1 and body["usage"]["audio_seconds_month"] == 11.0
    assert body["remaining"] == {"audio_seconds_today": None, "audio_seconds_month": 3600 - 11.0}
    assert body["limits"]["audio_hours_per_month"] == 1 and body["customer"] == "test"
    assert client.get("/v1/usage").status_code == 401
    assert ("request", 200, kid) in metrics.events and ("audio", kid, 11.0) in metrics.events
    assert ("quota", kid, "month", 3589.0) in metrics.events and ("auth_failure", "malformed") in metrics.events
    assert ("request", 401, "none") in metrics.events
    assert ("route", "listen", 200) in metrics.events and ("route", "usage", 200) in metrics.events
    assert {e[1] for e in metrics.events if e[0] == "stage"} == {"decode", "engine"}  # uploads: nothing fetched
    assert not any(key in repr(event) for event in metrics.events)


class SlowEngine(FakeEngine):
    async def arrive(self) -> None:
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("client", [SlowEngine()], indirect=True)
def test_concurrent_request_limit(client: TestClient) -> None:
    key = ISSUER.issue(concurrent_requests=2)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(5) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda _: post(client, key), range(5)))
    assert statuses == [200, 200, 429, 429, 429]
    assert post(client, key).status_code == 200  # slots were given back


def test_store_down_is_503_not_500(tmp_path: Any) -> None:
    from serve_app.licensing.usage import RedisStore

    from .helpers import free_port

    auth = LicenseAuthenticator(PublicKeys.from_lines([ISSUER.public_line()]), RevocationList(None))
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    ingress = Ingress(FakeEngine(), {}, auth, Limiter(store), UrlPolicy(), RecordingMetrics())
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        response = post(c, ISSUER.issue(requests_per_minute=10))
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE" and response.headers["Retry-After"] == "5"


def _settled_after(tmp_path: Any, clock: Clock, ending: BaseException | None) -> float:
    """Audio billed for an 11 s request (on a 20 s daily quota) that ends with `ending` raised inside it."""
    store = SqliteStore(tmp_path / f"{type(ending).__name__}.db")
    limiter = Limiter(store, clock=clock)
    key = ISSUER.issue(audio_hours_per_day=20 / 3600)
    principal = LicenseAuthenticator(PublicKeys.from_lines([ISSUER.public_line()]), RevocationList(None)).authenticate(
        f"Token {key}"
    )

    async def request() -> None:
        async with limiter.admit(principal) as admission:
            await admission.reserve(11.0)
            if ending is not None:
                raise ending
            admission.audio_seconds = 11.0

    with contextlib.suppress(BaseException):
        asyncio.run(request())
    return store.usage(principal.key_id, clock()).audio_seconds_today


@pytest.mark.parametrize(
    "ending, billed",
    [
        (None, 11.0),  # answered
        (RuntimeError("engine bug"), 0.0),  # the server failed it: refunded
        (asyncio.CancelledError(), 11.0),  # the client hung up (or the replica is going away): the work was under way
    ],
)
def test_what_a_request_is_billed_when_it_ends(tmp_path: Any, clock: Clock, ending: BaseException | None, billed: float) -> None:
    assert _settled_after(tmp_path, clock, ending) == billed
