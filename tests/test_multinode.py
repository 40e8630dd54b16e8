"""Two Ray nodes on this machine (tools/cluster/multinode.py): the engine replica runs on the second node;
when that node stops, /health is unhealthy and requests get 503 with retry_after, quickly; when it
comes back, the service resumes by itself."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
import requests

from serve_app.settings import ROOT, IngressArgs
from tools.cluster.multinode import Cluster, deployed

from .helpers import JFK_FLAC, manifest, normalize

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    with deployed(tmp_path_factory.mktemp("multinode")) as running:
        yield running


LISTEN_TIMEOUT_S = 120
assert LISTEN_TIMEOUT_S < IngressArgs().engine_timeout_s / 2  # a 503 in time was not the engine call timing out


def _listen(cluster: Cluster, key: str) -> requests.Response:
    return requests.post(
        f"{cluster.url}/v1/listen",
        data=JFK_FLAC.read_bytes(),
        timeout=LISTEN_TIMEOUT_S,
        headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"},
    )


def _metric_names(cluster: Cluster) -> set[str]:
    text = cluster.metrics("head") + cluster.metrics("worker")
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_of_the_grafana_dashboard_is_exported(cluster: tuple[Cluster, str]) -> None:
    """A live scrape of both nodes' metrics export ports (what the PodMonitor collects) has every
    metric the dashboard queries: the service's, Serve's and vLLM's."""
    nodes, key = cluster
    assert _listen(nodes, key).status_code == 200
    assert requests.post(f"{nodes.url}/v1/listen", data=b"x", headers={"Authorization": "Token nope"}).status_code == 401
    dashboard = json.loads((ROOT / "kuberay/grafana/stt-dashboard.json").read_text())
    wanted = {
        name for panel in dashboard["panels"] for target in panel["targets"] for name in re.findall(r"\bray_\w+", target["expr"])
    }
    assert {
        "ray_stt_stage_seconds_bucket",
        "ray_vllm_num_requests_waiting",
        "ray_vllm_request_queue_time_seconds_bucket",
    } <= wanted
    deadline = time.monotonic() + 90  # Ray exports metrics every few seconds
    while not wanted <= (names := _metric_names(nodes)) and time.monotonic() < deadline:
        time.sleep(3)
    assert wanted <= names, f"not exported: {sorted(wanted - names)}"
    scrape = nodes.metrics("head")
    for stage in ("decode", "engine"):
        assert f'stage="{stage}"' in scrape
    assert re.search(r'ray_stt_requests_total\{[^}]*route="listen"[^}]*status="200"', scrape)


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
        # No wall-clock bound of its own: _listen's read timeout, far under the engine timeout, fails a call
        # that waited for the engine instead of being answered by the replica check (no hang, no 500).
        response = _listen(nodes, key)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["code"] == "SERVICE_UNAVAILABLE" and body["retry_after"] > 0 and response.headers["Retry-After"]

    nodes.start_worker()
    deadline = time.monotonic() + 300
    while requests.get(f"{nodes.url}/health", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "not healthy 5 minutes after the engine node came back"
        time.sleep(2)
    assert nodes.replica_nodes("WhisperEngine") == [nodes.engine_node_id()] != [engine_node]  # a new node id, the same role
    assert normalize(_listen(nodes, key).json()["text"]) == expected
