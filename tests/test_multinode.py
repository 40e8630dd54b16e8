"""Two Ray nodes on this machine (scripts/multinode.py): the engine replica runs on the second node;
when that node stops, /health is unhealthy and requests get 503 with retry_after, quickly; when it
comes back, the service resumes by itself."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from serve_app.settings import ROOT

from .helpers import JFK_FLAC, manifest, normalize

sys.path.insert(0, str(ROOT / "scripts"))
from multinode import Cluster, config_for, dev_key  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    workdir = tmp_path_factory.mktemp("multinode")
    key = dev_key(workdir)
    env = {**os.environ, "STT_LICENSE_PUBLIC_KEYS": str(workdir / "issuer.pub"), "RAY_USAGE_STATS_ENABLED": "0"}
    cluster = Cluster(workdir, env)
    try:
        cluster.start_head()
        cluster.start_worker()
        cluster.deploy(config_for(cluster, workdir))
        cluster._wait(lambda: requests.get(f"{cluster.url}/health", timeout=5).ok, 300, "the application")
        yield cluster, key
    finally:
        cluster.stop()


def _listen(cluster: Cluster, key: str) -> requests.Response:
    return requests.post(f"{cluster.url}/v1/listen", data=JFK_FLAC.read_bytes(), timeout=120,
                         headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"})


def test_engine_on_the_second_node_then_node_loss_and_recovery(cluster: tuple[Cluster, str]) -> None:
    nodes, key = cluster
    expected = normalize(manifest()["whisper_jfk.flac"]["text"])
    engine_node = nodes.engine_node_id()
    assert nodes.replica_nodes("WhisperEngine") == [engine_node]
    assert engine_node not in nodes.replica_nodes("Ingress")
    assert normalize(_listen(nodes, key).json()["text"]) == expected

    nodes.stop_worker()
    deadline = time.monotonic() + 60
    while requests.get(f"{nodes.url}/health", timeout=30).status_code != 503:
        assert time.monotonic() < deadline, "/health still healthy a minute after the engine node stopped"
        time.sleep(1)
    assert requests.get(f"{nodes.url}/health", timeout=30).json()["status"] == "unhealthy"
    for _ in range(3):
        started = time.monotonic()
        response = _listen(nodes, key)
        assert response.status_code == 503 and time.monotonic() - started < 30, response.text  # no hang, no 500
        body = response.json()
        assert body["code"] == "SERVICE_UNAVAILABLE" and body["retry_after"] > 0 and response.headers["Retry-After"]

    nodes.start_worker()
    deadline = time.monotonic() + 300
    while requests.get(f"{nodes.url}/health", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "not healthy 5 minutes after the engine node came back"
        time.sleep(2)
    assert nodes.replica_nodes("WhisperEngine") == [nodes.engine_node_id()] != [engine_node]  # a new node id, the same role
    assert normalize(_listen(nodes, key).json()["text"]) == expected
