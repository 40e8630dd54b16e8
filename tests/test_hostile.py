"""Hostile request bodies at the ingress (fake engine, real parsing and decoding): every one is a
coded 4xx, never a 500, and the engine is never asked. The same classes against the real service
are in test_hostile_e2e.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from .helpers import JFK_FLAC
from .support import AUTH, FakeEngine, make_ingress

ROUTES = ["/v1/listen", "/waves/v1/stt/"]


@pytest.fixture
def client(engine: FakeEngine, tmp_path: Any) -> Iterator[TestClient]:
    with TestClient(make_ingress(engine, tmp_path).__serve_build_asgi_app__()) as c:
        yield c


def _post(client: TestClient, route: str, body: bytes, content_type: str) -> Any:
    return client.post(route, headers={**AUTH, "Content-Type": content_type}, content=body)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body", [b"[" * 200_000, b'{"url": ' + b"{" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000])
def test_deeply_nested_json_is_a_400(client: TestClient, engine: FakeEngine, route: str, body: bytes) -> None:
    response = _post(client, route, body, "application/json")
    assert response.status_code in (400, 413), response.text
    assert response.json()["code"] in ("INVALID_REQUEST", "FILE_TOO_LARGE")
    assert engine.calls == []


@pytest.mark.parametrize("route", ROUTES)
def test_nesting_under_the_size_cap_is_a_400(client: TestClient, route: str) -> None:
    response = _post(client, route, b"[" * 60_000, "application/json")
    assert response.status_code == 400 and response.json()["code"] == "INVALID_REQUEST"


def test_a_json_body_is_small(client: TestClient) -> None:
    body = b'{"url": "http://127.0.0.2/a.wav", "pad": "' + b"x" * 100_000 + b'"}'
    response = _post(client, "/v1/listen", body, "application/json")
    assert response.status_code == 413 and response.json()["code"] == "FILE_TOO_LARGE"


@pytest.mark.parametrize("content_type", ["audio/wav", "application/octet-stream"])
def test_a_playlist_upload_never_reads_server_files(client: TestClient, engine: FakeEngine, content_type: str) -> None:
    body = b"ffconcat version 1.0\nfile " + str(JFK_FLAC.resolve()).encode() + b"\n"
    response = _post(client, "/v1/listen", body, content_type)
    assert response.status_code == 415 and response.json()["code"] == "UNSUPPORTED_FORMAT"
    assert engine.calls == []


def _paced_post(tmp_path: Any, blocks: list[bytes], pause_s: float) -> Any:
    """POST a body that arrives as `blocks` with `pause_s` between them, through a streaming ASGI transport."""
    import asyncio

    from httpx import ASGITransport, AsyncClient

    ingress = make_ingress(FakeEngine(), tmp_path, {"body_idle_s": 0.5, "body_min_bytes_per_s": 1000})

    async def body() -> Any:
        for block in blocks:
            yield block
            await asyncio.sleep(pause_s)

    async def run() -> Any:
        transport = ASGITransport(app=ingress.__serve_build_asgi_app__())
        async with AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.post("/v1/listen", headers={**AUTH, "Content-Type": "audio/flac"}, content=body())

    return asyncio.run(run())


def test_a_stalled_body_is_a_408(tmp_path: Any) -> None:
    response = _paced_post(tmp_path, [b"fLaC" * 100, b"x"], pause_s=2.0)
    assert response.status_code == 408 and response.json()["code"] == "REQUEST_TIMEOUT"


def test_a_trickling_body_is_a_408(tmp_path: Any) -> None:
    response = _paced_post(tmp_path, [b"x" * 10] * 40, pause_s=0.1)  # 100 bytes/s against 1000 owed
    assert response.status_code == 408 and response.json()["code"] == "REQUEST_TIMEOUT"


def test_a_body_at_a_fair_pace_is_read(tmp_path: Any) -> None:
    data = JFK_FLAC.read_bytes()
    blocks = [data[i : i + 50_000] for i in range(0, len(data), 50_000)]
    assert _paced_post(tmp_path, blocks, pause_s=0.1).status_code == 200


def test_oversized_headers_are_a_431(client: TestClient, engine: FakeEngine) -> None:
    response = client.post(
        "/v1/listen", headers={**AUTH, "Content-Type": "audio/flac", "X-Pad": "a" * 20_000}, content=JFK_FLAC.read_bytes()
    )
    assert response.status_code == 431 and response.json()["code"] == "HEADERS_TOO_LARGE"
    assert engine.calls == []


@pytest.mark.parametrize(
    "headers, query, sent",
    [
        ({"Content-Type": "text/x-canary-7f3e"}, "", "canary"),
        ({"Content-Type": "audio/flac"}, "?language=zq", "zq"),  # a well-formed code the model does not serve
    ],
)
def test_errors_never_echo_what_was_sent(client: TestClient, headers: dict, query: str, sent: str) -> None:
    response = client.post(f"/v1/listen{query}", headers={**AUTH, **headers}, content=JFK_FLAC.read_bytes())
    assert 400 <= response.status_code < 500 and response.json()["code"]
    assert sent not in response.text
