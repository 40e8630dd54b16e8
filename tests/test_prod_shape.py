"""The production config, served: configs/prod.yaml with only the hardware overrides of
configs/overrides/prod-on-cpu.yaml (CPU model, dtype, no GPU, small reservations, replica floors
for two cores). Its own Redis usage store, prod-only keys, word timestamps on every request and two
ingress replicas answer a real transcription, refuse a dev key, serve a live stream and hold a small
quota under parallel requests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psutil
import pytest
import redis
import requests
import websockets.exceptions
import websockets.sync.client

from serve_app import overlay
from serve_app.licensing.keys import read_claims
from serve_app.settings import ROOT

from .conftest import Licensing, ServeProcess, Server
from .helpers import JFK_FLAC, normalize
from .support import FRAME, JFK_PCM, parallel_quota_burst

pytestmark = pytest.mark.e2e
JFK_TEXT = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory, licensing: Licensing, redis_url: str) -> Iterator[tuple[Server, ServeProcess]]:
    config = overlay.load(ROOT / "configs/prod.yaml", ROOT / "configs/overrides/prod-on-cpu.yaml")
    process = ServeProcess(tmp_path_factory.mktemp("prod"), licensing, {"STT_REDIS_URL": redis_url}, config=config)
    try:
        process.start()
        yield Server(process.url, licensing.issuer.issue(environment="prod"), process.log, licensing), process
    finally:
        process.stop()


def _post(server: Server, key: str, query: str = "") -> requests.Response:
    return requests.post(
        f"{server.url}/v1/listen{query}",
        data=JFK_FLAC.read_bytes(),
        timeout=120,
        headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"},
    )


def test_transcribes_with_model_aligned_word_times_by_default(prod: tuple[Server, ServeProcess]) -> None:
    server, _ = prod
    aligned = _post(server, server.key)
    assert aligned.status_code == 200, aligned.text
    assert normalize(aligned.json()["text"]) == JFK_TEXT
    spread = _post(server, server.key, "?timestamps=false").json()  # a request may still opt out
    times = lambda body: [(w["start"], w["end"]) for w in body["words"]]  # noqa: E731
    assert len(times(aligned.json())) == len(times(spread)) and times(aligned.json()) != times(spread)


def test_a_dev_key_is_refused(prod: tuple[Server, ServeProcess], licensing: Licensing) -> None:
    server, _ = prod
    response = _post(server, licensing.issuer.issue(environment="dev"))
    assert response.status_code == 401 and response.json()["code"] == "INVALID_LICENSE"


def test_usage_is_kept_in_redis(prod: tuple[Server, ServeProcess], redis_url: str) -> None:
    server, _ = prod
    assert _post(server, server.key).status_code == 200
    kid = read_claims(server.key).kid
    assert redis.Redis.from_url(redis_url).keys(f"stt:usage:{kid}:*")


def test_two_ingress_replicas_run(prod: tuple[Server, ServeProcess]) -> None:
    _, process = prod
    marker = process.env["STT_USAGE_DB"]  # every process of this server has it in its environment
    names = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.environ().get("STT_USAGE_DB") == marker:
                names.append(proc.info["name"])
        except psutil.Error:
            continue
    assert sum("ServeReplica:stt:Ingress" in name for name in names) == 2, names


def test_a_live_stream(prod: tuple[Server, ServeProcess]) -> None:
    server, _ = prod
    url = server.url.replace("http", "ws", 1) + "/v1/listen?encoding=linear16&sample_rate=16000"
    finals = []
    with websockets.sync.client.connect(url, additional_headers={"Authorization": f"Token {server.key}"}) as ws:
        for at in range(0, len(JFK_PCM), FRAME):
            ws.send(JFK_PCM[at : at + FRAME])
        ws.send(json.dumps({"type": "CloseStream"}))
        while True:  # each read bounded: a missing message fails here, not at the server's 10 s idle close
            try:
                body = json.loads(ws.recv(timeout=8.0))
            except TimeoutError:
                raise AssertionError(f"no message or close within 8 s; finals so far: {finals}") from None
            except websockets.exceptions.ConnectionClosedOK:
                break
            if body.get("type") == "Results" and body["is_final"]:
                finals.append(body["channel"]["alternatives"][0]["transcript"])
    assert normalize(" ".join(finals)) == JFK_TEXT


def test_a_small_quota_holds_under_parallel_requests_on_redis(prod: tuple[Server, ServeProcess], licensing: Licensing) -> None:
    server, _ = prod
    parallel_quota_burst(server, licensing.issuer.issue(environment="prod", audio_hours_per_day=0.01))
