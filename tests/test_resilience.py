"""Faults and upgrades under load (tools/cluster/resilience.py, shorter): a killed engine replica costs
503s with retry_after until Serve replaces it, never a hang; a changed config deployed under load
fails no request, and a live stream on a replaced ingress replica gets every final it was owed and
close 1012; a killed ingress replica loses only what it held in flight."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from tools.cluster.resilience import AUDIO, TIMEOUT_S, Cluster, kill_replica, start, upgrade

pytestmark = pytest.mark.e2e
SECONDS, CONCURRENCY = 20.0, 4


def _engine_processes(nodes: Cluster) -> list[psutil.Process]:
    """vLLM's EngineCore processes of this cluster (they inherit its Ray token in their environment)."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"].startswith("VLLM::EngineCor") and proc.environ().get("RAY_AUTH_TOKEN") == nodes.token:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _vllm_processes(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"].startswith("VLLM::") and proc.environ().get("RAY_AUTH_TOKEN") == token:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _settled(count: Callable[[], int], expected: Callable[[], int], timeout_s: float = 60) -> tuple[int, int]:
    """(engine processes, engine replicas) once there are no more processes than replicas, or as they
    stand after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while (found := count()) > (want := expected()) and time.monotonic() < deadline:
        time.sleep(1)
    return found, want


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, str, Path]]:
    with tempfile.TemporaryDirectory(prefix="stt-resilience-") as tmp:
        nodes, key = start(Path(tmp))
        try:
            yield nodes, key, Path(tmp)
        finally:
            nodes.stop()
        # No engine process outlives the cluster that started it.
        assert _settled(lambda: len(_vllm_processes(nodes.token)), lambda: 0, 30) == (0, 0)


@pytest.fixture(autouse=True)
def one_engine_per_replica(cluster: tuple[Cluster, str, Path]) -> Iterator[None]:
    """After each fault or upgrade there are no more EngineCore processes than running engine replicas:
    none survives the replica it belonged to. (Fewer can be seen while a replacement's engine starts.)"""
    yield
    nodes = cluster[0]
    found, replicas = _settled(lambda: len(_engine_processes(nodes)), lambda: len(nodes.replicas("WhisperEngine")))
    assert found <= replicas, f"{found} EngineCore processes for {replicas} engine replicas"


def _transcribes(nodes: Cluster, key: str) -> bool:
    response = requests.post(
        f"{nodes.url}/v1/listen",
        data=AUDIO,
        timeout=TIMEOUT_S,
        headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"},
    )
    return response.status_code == 200 and "country" in response.json()["text"]


def test_killed_engine_replica_means_503s_then_recovery(cluster: tuple[Cluster, str, Path]) -> None:
    nodes, key, _ = cluster
    result = kill_replica(nodes, key, "WhisperEngine", SECONDS, CONCURRENCY)
    assert set(result["statuses"]) <= {"200", "503"}, result  # no 500, and every request answered
    assert result["503_without_retry_after"] == 0 and "503" in result["statuses"]
    assert result["max_seconds"] < TIMEOUT_S and result["recovered_s"] is not None, result
    assert set(result["after_recovery"]) == {"200"}, result  # requests sent after recovery all succeed
    assert _transcribes(nodes, key)


def test_config_deployed_under_load_fails_nothing(cluster: tuple[Cluster, str, Path]) -> None:
    nodes, key, workdir = cluster
    result = upgrade(nodes, key, workdir, SECONDS, CONCURRENCY, streams=1)
    assert result["statuses"] == {"200": result["requests"]} and result["recovered_s"] is not None, result
    live = result["streams"]  # the stream's replica was replaced: 1012 after its finals, then a new one
    assert "1012" in live["close_codes"] and set(live["close_codes"]) <= {"1000", "1012"}, live
    assert live["clips_delivered"] == live["clips_owed"], live  # every clip it took whole was answered
    assert result["after_recovery"].get("200", 0) > 0, result  # the load went on after the new replicas took over
    assert _transcribes(nodes, key)


def test_killed_ingress_replica_loses_only_its_requests_in_flight(cluster: tuple[Cluster, str, Path]) -> None:
    nodes, key, _ = cluster
    result = kill_replica(nodes, key, "Ingress", SECONDS, CONCURRENCY)
    # Serve's proxy answers 500 for a request whose replica process died under it (Ray's
    # http_util maps RayActorError to 500): at most the requests that replica held, nothing after.
    assert set(result["statuses"]) <= {"200", "500"} and result["statuses"].get("500", 0) <= CONCURRENCY, result
    assert result["max_seconds"] < TIMEOUT_S and result["recovered_s"] is not None, result
    assert set(result["after_recovery"]) == {"200"}, result  # requests sent after recovery all succeed
    assert _transcribes(nodes, key)
