"""Faults and upgrades under load, with figures: clients post the JFK clip back to back while an
engine replica's process is killed, an ingress replica's process is killed, and a changed config
is deployed. Every request must end in 200 or 503 (with retry_after) within its timeout, Serve must
bring the replicas back, and an upgrade must fail no request. During the last two, live streams run
too (tools/cluster/streams.py): an upgrade must deliver every final owed and close them with 1012.

  .venv/bin/python -m tools.cluster.resilience [--seconds 60] [--concurrency 4] [--streams 4]

One Ray node on this machine (tools/cluster/multinode.py's Cluster, head only, its own ports and token)
serving configs/cpu.yaml with two ingress replicas. Prints a table and writes
docs/resilience/results.json. tests/test_resilience.py runs the same scenarios, shorter.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tools import ROOT
from tools.cluster.multinode import Cluster, cpu_config, dev_key, write_config
from tools.cluster.streams import Streams
from tools.cluster.streams import summary as stream_summary

AUDIO = (ROOT / "tests" / "data" / "whisper_jfk.flac").read_bytes()
TIMEOUT_S = 120.0  # a client's timeout: no request may take longer


@dataclass
class Outcome:
    at_s: float  # when it started, from the start of the load
    seconds: float
    status: int  # 0: no HTTP answer (connection dropped or timed out)
    code: str | None = None
    retry_after: bool = False


@dataclass
class Load:
    """`concurrency` clients posting back to back until stopped; every outcome kept."""

    url: str
    key: str
    concurrency: int
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.concurrency)]
        self._lock = threading.Lock()
        self.started = time.monotonic()

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT_S + 10)

    def answered_after(self, at_s: float) -> int:
        """How many requests sent after `at_s` (from the start of the load) have ended."""
        with self._lock:
            return sum(o.at_s > at_s for o in self.outcomes)

    def _client(self) -> None:
        while not self._stop.is_set():
            outcome = post(self.url, self.key, time.monotonic() - self.started)
            with self._lock:
                self.outcomes.append(outcome)
            if outcome.status == 503:
                time.sleep(0.5)  # a client honouring backpressure, briefly


def post(url: str, key: str, at_s: float) -> Outcome:
    """One transcription of the JFK clip, and how it ended."""
    began = time.monotonic()
    try:
        response = requests.post(
            f"{url}/v1/listen",
            data=AUDIO,
            timeout=TIMEOUT_S,
            headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"},
        )
    except requests.RequestException:
        return Outcome(at_s, time.monotonic() - began, 0)
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    return Outcome(
        at_s,
        time.monotonic() - began,
        response.status_code,
        body.get("code"),
        "retry_after" in body and "Retry-After" in response.headers,
    )


def summary(outcomes: list[Outcome], fault_at_s: float, recovered_s: float | None) -> dict[str, Any]:
    """Statuses and the slowest answer; and how requests fared once Serve had recovered."""
    after = [o for o in outcomes if recovered_s is not None and o.at_s > fault_at_s + recovered_s]
    return {
        "requests": len(outcomes),
        "statuses": dict(sorted(Counter(str(o.status) for o in outcomes).items())),
        "max_seconds": round(max((o.seconds for o in outcomes), default=0.0), 2),
        "503_without_retry_after": sum(o.status == 503 and not o.retry_after for o in outcomes),
        "after_recovery": dict(sorted(Counter(str(o.status) for o in after).items())),
    }


def config(cluster: Cluster, workdir: Path, **ingress_args: Any) -> Path:
    data = cpu_config(cluster, workdir)
    app = data["applications"][0]
    app["args"].setdefault("ingress", {}).update(ingress_args)
    for deployment in app["deployments"]:
        if deployment["name"] == "Ingress":
            deployment["num_replicas"] = 2  # one can die while the other serves
            deployment["ray_actor_options"] = {"num_cpus": 0.25}  # room for an upgrade's surge on two cores
    return write_config(data, workdir / "resilience.yaml")


def healthy(cluster: Cluster) -> bool:
    try:
        return requests.get(f"{cluster.url}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def wait(condition: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until `condition` held, or None if it did not within `timeout_s`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if condition():
            return round(time.monotonic() - began, 1)
        time.sleep(1)
    return None


def settle(load: Load, seconds: float, fault_at: float, recovered_s: float | None) -> None:
    """Keep the load on until `seconds` have passed, and for a third of that after recovery at least;
    then until as many requests sent after recovery as there are clients have ended (for at most
    TIMEOUT_S more): on a slow machine a third of `seconds` may end before any has."""
    time.sleep(max(seconds / 3, seconds - (time.monotonic() - load.started)))
    if recovered_s is None:
        return
    recovered_at, deadline = fault_at - load.started + recovered_s, time.monotonic() + TIMEOUT_S
    while load.answered_after(recovered_at) < load.concurrency and time.monotonic() < deadline:
        time.sleep(0.5)


def kill_replica(
    cluster: Cluster, key: str, deployment: str, seconds: float, concurrency: int, streams: int = 0
) -> dict[str, Any]:
    """SIGKILL one replica's process mid-load; Serve must replace it."""
    before = cluster.replicas(deployment)
    with Streams(cluster.url, key, streams) as live, Load(cluster.url, key, concurrency) as load:
        time.sleep(seconds / 3)
        victim = before[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        replaced = wait(
            lambda: len([r for r in cluster.replicas(deployment) if r["pid"] != victim]) == len(before) and healthy(cluster), 300
        )
        settle(load, seconds, killed_at, replaced)
    return {
        "scenario": f"kill {deployment} replica",
        "killed_pid": victim,
        "recovered_s": replaced,
        "at_s": round(killed_at - load.started, 1),
        **summary(load.outcomes, killed_at - load.started, replaced),
        **({"streams": stream_summary(live)} if streams else {}),
    }


def upgrade(cluster: Cluster, key: str, workdir: Path, seconds: float, concurrency: int, streams: int = 0) -> dict[str, Any]:
    """Deploy a changed config (the ingress's arguments) mid-load: Serve replaces the ingress replicas."""
    before = {r["pid"] for r in cluster.replicas("Ingress")}
    with Streams(cluster.url, key, streams) as live, Load(cluster.url, key, concurrency) as load:
        time.sleep(seconds / 3)
        cluster.deploy(config(cluster, workdir, url_timeout_s=31))
        deployed_at = time.monotonic()
        replaced = wait(lambda: not before & {r["pid"] for r in cluster.replicas("Ingress")} and healthy(cluster), 300)
        settle(load, seconds, deployed_at, replaced)
    return {
        "scenario": "deploy a changed config",
        "recovered_s": replaced,
        "at_s": round(deployed_at - load.started, 1),
        **summary(load.outcomes, deployed_at - load.started, replaced),
        **({"streams": stream_summary(live)} if streams else {}),
    }


def start(workdir: Path) -> tuple[Cluster, str]:
    key = dev_key(workdir)
    cluster = Cluster(
        workdir, {**os.environ, "STT_LICENSE_PUBLIC_KEYS": str(workdir / "issuer.pub"), "RAY_USAGE_STATS_ENABLED": "0"}
    )
    cluster.start_head(cpus=2)
    cluster.deploy(config(cluster, workdir))
    cluster.wait_healthy("the application")
    return cluster, key


def run(seconds: float, concurrency: int, streams: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="stt-resilience-") as tmp:
        cluster, key = start(Path(tmp))
        try:
            return [
                kill_replica(cluster, key, "WhisperEngine", seconds, concurrency),
                kill_replica(cluster, key, "Ingress", seconds, concurrency, streams),
                upgrade(cluster, key, Path(tmp), seconds, concurrency, streams),
            ]
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="load per scenario")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--streams", type=int, default=4, help="live streams during the ingress kill and the upgrade")
    args = parser.parse_args()
    results = run(args.seconds, args.concurrency, args.streams)
    print(f"{'scenario':28} {'requests':>8} {'statuses':24} {'max s':>6} {'recovered s':>11}")
    for r in results:
        print(
            f"{r['scenario']:28} {r['requests']:>8} {json.dumps(r['statuses']):24} {r['max_seconds']:>6} {str(r['recovered_s']):>11}"
        )
    print(f"{'streams during':28} {'conns':>5} {'sent s':>7} {'taken s':>7} {'owed':>5} {'delivered':>9} close codes")
    for r in (r for r in results if "streams" in r):
        live = r["streams"]
        print(
            f"{r['scenario']:28} {live['connections']:>5} {live['audio_sent_s']:>7} {live['audio_taken_s']:>7}"
            f" {live['clips_owed']:>5} {live['clips_delivered']:>9} {json.dumps(live['close_codes'])}"
        )
    out = ROOT / "docs" / "resilience" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "seconds": args.seconds,
                "concurrency": args.concurrency,
                "streams": args.streams,
                "run_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
