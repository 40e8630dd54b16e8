"""A two-node Ray cluster on one machine: a head node and an engine node, each its own `ray start`
with its own ports on 127.0.0.1. The application is deployed with the engine pinned to the second
node (a custom resource only that node has), then that node is stopped and started again.

  .venv/bin/python -m tools.cluster.multinode      # prints where replicas run, /health and a request at each step

tests/test_multinode.py drives the same `Cluster` and asserts what this prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from tools import ROOT

VENV_BIN = Path(sys.executable).parent
ENGINE_RESOURCE = "engine_node"  # only the second node has it: the engine replica can run nowhere else
HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Ports free right now and distinct from each other (all held open until every one is chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# Ray's workers take ports from a range per node; two nodes on one machine need ranges of their own
# (below Linux's ephemeral ports, where the ports above come from).
WORKER_PORTS = {"head": (21000, 21499), "worker": (21500, 21999)}
_COMPONENTS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)


def _node_ports(role: str) -> dict[str, int]:
    """Every port a Ray node opens, so that two nodes (and other clusters) never collide."""
    names = _COMPONENTS + (("--ray-client-server-port",) if role == "head" else ())
    low, high = WORKER_PORTS[role]
    return {**dict(zip(names, free_ports(len(names)))), "--min-worker-port": low, "--max-worker-port": high}


@dataclass
class Cluster:
    """Two `ray start --block` processes; stopping one by PID stops that node's processes."""

    workdir: Path
    env: dict[str, str]
    gcs_port: int = 0
    dashboard_port: int = 0
    http_port: int = 0
    head: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    ports: dict[str, dict[str, int]] = field(default_factory=dict)  # by node role

    def __post_init__(self) -> None:
        self.gcs_port, self.dashboard_port, self.http_port = free_ports(3)
        # Ray's token authentication, with a token of this cluster's own: its dashboard and GCS
        # answer only to processes given the token (ours are, through the environment).
        self.token = secrets.token_hex(32)
        self.env = {**self.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        # Ray's session folder holds Unix sockets, whose paths may not pass 107 bytes: a short one.
        self.ray_dir = Path(tempfile.mkdtemp(prefix="stt-ray-", dir="/tmp"))

    def _get(self, path: str, **params: str) -> dict:
        response = requests.get(
            f"{self.dashboard}{path}", params=params, timeout=10, headers={"Authorization": f"Bearer {self.token}"}
        )
        response.raise_for_status()
        return response.json()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def dashboard(self) -> str:
        return f"http://{HOST}:{self.dashboard_port}"

    def metrics(self, role: str) -> str:
        """The node's Prometheus scrape (Ray's metrics export): what a PodMonitor collects."""
        response = requests.get(f"http://{HOST}:{self.ports[role]['--metrics-export-port']}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def _ray_start(self, name: str, args: list[str]) -> subprocess.Popen:
        self.ports[name] = _node_ports(name)
        command = [
            str(VENV_BIN / "ray"),
            "start",
            "--block",
            "--disable-usage-stats",
            f"--node-ip-address={HOST}",
            *args,
            *(f"{option}={port}" for option, port in self.ports[name].items()),
        ]
        # Own process group: stopping the node signals `ray start` and everything it started, and nothing else.
        # The child keeps its own copy of the log's descriptor; ours closes when the with ends.
        with (self.workdir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def start_head(self, cpus: int = 1) -> None:
        self.head = self._ray_start(
            "head",
            [
                "--head",
                f"--port={self.gcs_port}",
                f"--num-cpus={cpus}",
                '--resources={"head_node": 1}',
                "--include-dashboard=true",
                f"--dashboard-host={HOST}",
                f"--dashboard-port={self.dashboard_port}",
                f"--temp-dir={self.ray_dir}",
            ],
        )
        self._wait(lambda: self._get("/api/version"), 120, "the head's dashboard", node="head")

    def start_worker(self, attempts: int = 2) -> None:
        """The engine node, started again (on fresh ports) if it has not joined in time.

        Once in CI the second node had not joined after 120 s, and nothing said why (its log is now in
        the error). A start that lost a port race or hung is cheap to repeat on new ports.
        """
        for attempt in range(1, attempts + 1):
            self.worker = self._ray_start(
                "worker",
                [
                    f"--address={HOST}:{self.gcs_port}",
                    "--num-cpus=1",
                    json.dumps({ENGINE_RESOURCE: 1}).join(["--resources=", ""]),
                ],
            )
            try:
                self._wait(lambda: self.engine_node_id() is not None, 180, "the engine node to join", node="worker")
                return
            except TimeoutError:
                self.stop_worker()
                if attempt == attempts:
                    raise

    def stop_worker(self) -> None:
        _stop(self.worker)
        self.worker = None

    def stop(self) -> None:
        for process in (self.worker, self.head):
            _stop(process)
        shutil.rmtree(self.ray_dir, ignore_errors=True)

    def deploy(self, config: Path, attempts: int = 4) -> None:
        """`serve deploy` to the dashboard, once its Serve API answers.

        The dashboard answers /api/version before its Serve module is up, and a deploy in that gap fails
        (seen once in CI); so wait for the Serve API, and try again a few times before giving up with
        what `serve` printed.
        """
        self._wait(lambda: self._get("/api/serve/applications/"), 120, "the dashboard's Serve API")
        for attempt in range(1, attempts + 1):
            done = subprocess.run(
                [str(VENV_BIN / "serve"), "deploy", str(config), "-a", self.dashboard],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode == 0:
                return
            if attempt == attempts:
                raise RuntimeError(f"serve deploy failed {attempts} times; last said:\n{done.stdout}{done.stderr}")
            time.sleep(5 * attempt)

    def nodes(self) -> list[dict]:
        return self._get("/api/v0/nodes", detail="1")["data"]["result"]["result"]

    def engine_node_id(self) -> str | None:
        alive = [n for n in self.nodes() if n["state"] == "ALIVE" and ENGINE_RESOURCE in n.get("resources_total", {})]
        return alive[0]["node_id"] if alive else None

    def replicas(self, deployment: str) -> list[dict]:
        """The deployment's live replica actors (Ray's state API on the dashboard): node_id, pid, ..."""
        actors = self._get(
            "/api/v0/actors",
            detail="1",
            filter_keys="class_name",
            filter_predicates="=",
            filter_values=f"ServeReplica:stt:{deployment}",
        )["data"]["result"]["result"]
        return [a for a in actors if a["state"] == "ALIVE"]

    def replica_nodes(self, deployment: str) -> list[str]:
        return [a["node_id"] for a in self.replicas(deployment)]

    def wait_healthy(self, what: str) -> None:
        self._wait(lambda: requests.get(f"{self.url}/health", timeout=5).ok, 300, what)

    def _wait(self, ready: object, timeout_s: float, what: str, node: str | None = None) -> None:
        """Poll `ready` each second; give up at the deadline, or at once if `node`'s `ray start` has exited.
        Either way the error carries the end of that node's log, which is all CI keeps of it."""
        process = {"head": self.head, "worker": self.worker}.get(node or "")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if ready():  # type: ignore[operator]
                    return
            except (requests.RequestException, KeyError, ValueError):
                pass
            if process is not None and process.poll() is not None:
                raise TimeoutError(f"{what}: `ray start` exited with {process.returncode}{self._log_tail(node)}")
            time.sleep(1)
        raise TimeoutError(f"{what}: not ready after {timeout_s:.0f} s{self._log_tail(node)}")

    def _log_tail(self, node: str | None, lines: int = 30) -> str:
        log = self.workdir / f"{node}.log"
        if node is None or not log.exists():
            return ""
        return f"\n--- last lines of {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen | None) -> None:
    """SIGTERM to the node's process group (ray start and what it started), SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def cpu_config(cluster: Cluster, workdir: Path) -> dict:
    """configs/cpu.yaml served on this cluster's HTTP port (127.0.0.1), its usage store in workdir."""
    config = yaml.safe_load((ROOT / "configs" / "cpu.yaml").read_text())
    config["http_options"] = {"host": HOST, "port": cluster.http_port, "request_timeout_s": 900}
    config["applications"][0]["args"]["usage"] = {"sqlite_path": str(workdir / "usage.sqlite3")}
    return config


def write_config(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def config_for(cluster: Cluster, workdir: Path) -> Path:
    """configs/cpu.yaml with the engine pinned to the engine node and the proxy on the head only."""
    config = cpu_config(cluster, workdir)
    for deployment in config["applications"][0]["deployments"]:
        options = deployment.setdefault("ray_actor_options", {})
        options["resources"] = {ENGINE_RESOURCE: 1} if deployment["name"] == "WhisperEngine" else {"head_node": 0.1}
    return write_config(config, workdir / "multinode.yaml")


@contextlib.contextmanager
def deployed(workdir: Path) -> Iterator[tuple[Cluster, str]]:
    """Both nodes up and the application healthy on them, with a license key for it; stopped after."""
    key = dev_key(workdir)
    env = {**os.environ, "STT_LICENSE_PUBLIC_KEYS": str(workdir / "issuer.pub"), "RAY_USAGE_STATS_ENABLED": "0"}
    cluster = Cluster(workdir, env)
    try:
        cluster.start_head()
        cluster.start_worker()
        print(f"head and engine node up; dashboard {cluster.dashboard}")
        cluster.deploy(config_for(cluster, workdir))
        cluster.wait_healthy("the application")
        yield cluster, key
    finally:
        cluster.stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="stt-multinode-") as tmp, deployed(Path(tmp)) as (cluster, key):
        show(cluster, key, "both nodes up")
        cluster.stop_worker()
        time.sleep(5)
        show(cluster, key, "engine node stopped")
        cluster.start_worker()
        cluster.wait_healthy("the application to recover")
        show(cluster, key, "engine node back")


def show(cluster: Cluster, key: str, step: str) -> None:
    engine_node = cluster.engine_node_id()
    replicas = cluster.replica_nodes("WhisperEngine")
    health = requests.get(f"{cluster.url}/health", timeout=30)
    started = time.monotonic()
    answer = requests.post(
        f"{cluster.url}/v1/listen",
        data=(ROOT / "tests/data/whisper_jfk.flac").read_bytes(),
        headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"},
        timeout=120,
    )
    print(
        f"[{step}] engine replica on the engine node: {bool(replicas) and replicas == [engine_node]}; "
        f"/health {health.status_code}; POST /v1/listen {answer.status_code} in {time.monotonic() - started:.1f} s: "
        f"{answer.text[:100]}"
    )


def dev_key(workdir: Path) -> str:
    """An issuer key pair (workdir/issuer.pub for the servers) and a key, through the operator's CLI."""
    cli = str(VENV_BIN / "stt-license")
    subprocess.run(
        [cli, "keygen", "--private-key", str(workdir / "issuer.key"), "--public-keys", str(workdir / "issuer.pub")],
        check=True,
        capture_output=True,
    )
    return subprocess.run(
        [
            cli,
            "issue",
            "--private-key",
            str(workdir / "issuer.key"),
            "--customer",
            "multinode",
            "--days",
            "1",
            "--audio-hours-per-day",
            "10",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


if __name__ == "__main__":
    main()
