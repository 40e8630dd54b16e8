"""Autoscaling shown, not claimed: under a bounded load the engine deployment scales from 1 to 2
replicas, and back to 1 after the load ends. Replica counts come from Serve's own status (the
dashboard's REST API) every 2 s.

  .venv/bin/python -m tools.cluster.autoscale [--load-s 90] [--concurrency 12]

One Ray node on this machine (tools/cluster/multinode.py's Cluster, head only) serving configs/cpu.yaml
with autoscaling instead of one fixed engine replica. Prints a table and writes
docs/autoscaling/results.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tools import ROOT
from tools.cluster.multinode import Cluster, cpu_config, dev_key, write_config

AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 4,  # one engine holds ~16 chunks well; 12 concurrent requests ask for two
    "upscale_delay_s": 5,
    "downscale_delay_s": 30,
    "look_back_period_s": 10,
}


def config(cluster: Cluster, workdir: Path) -> Path:
    data = cpu_config(cluster, workdir)
    for deployment in data["applications"][0]["deployments"]:
        deployment["ray_actor_options"] = {"num_cpus": 0.5}  # two engines and the ingress fit two cores
        if deployment["name"] == "WhisperEngine":
            deployment.pop("num_replicas")
            deployment["autoscaling_config"] = AUTOSCALING
    return write_config(data, workdir / "autoscale.yaml")


def replicas(cluster: Cluster) -> dict[str, int]:
    """Replica counts of the engine by state (RUNNING, STARTING, STOPPING...)."""
    apps = cluster._get("/api/serve/applications/")["applications"]
    states: dict[str, int] = {}
    for replica in apps["stt"]["deployments"]["WhisperEngine"]["replicas"]:
        states[replica["state"]] = states.get(replica["state"], 0) + 1
    return states


def run(load_s: float, concurrency: int, settle_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="stt-autoscale-") as tmp:
        workdir = Path(tmp)
        key = dev_key(workdir)
        cluster = Cluster(workdir, {**os.environ, "STT_LICENSE_PUBLIC_KEYS": str(workdir / "issuer.pub")})
        samples: list[dict] = []
        statuses: dict[int, int] = {}
        try:
            cluster.start_head(cpus=2)
            cluster.deploy(config(cluster, workdir))
            cluster.wait_healthy("the application")
            audio = (ROOT / "tests" / "data" / "whisper_jfk.flac").read_bytes()
            headers = {"Authorization": f"Token {key}", "Content-Type": "audio/flac"}
            started = time.monotonic()
            load_ends = started + load_s
            lock = threading.Lock()

            def client() -> None:
                while time.monotonic() < load_ends:
                    status = requests.post(f"{cluster.url}/v1/listen", data=audio, headers=headers, timeout=300).status_code
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1

            with ThreadPoolExecutor(concurrency) as pool:
                for _ in range(concurrency):
                    pool.submit(client)
                while time.monotonic() < load_ends:
                    samples.append(_sample(cluster, started, True))
                    time.sleep(2)
            deadline = time.monotonic() + settle_s
            while time.monotonic() < deadline:
                samples.append(_sample(cluster, started, False))
                if samples[-1]["running"] == 1 and max(s["running"] for s in samples) >= 2 and not samples[-1]["other"]:
                    break
                time.sleep(2)
        finally:
            cluster.stop()
    return {
        "autoscaling_config": AUTOSCALING,
        "load_s": load_s,
        "concurrency": concurrency,
        "statuses": statuses,
        "samples": samples,
        "max_running": max(s["running"] for s in samples),
        "final_running": samples[-1]["running"],
    }


def _sample(cluster: Cluster, started: float, loading: bool) -> dict:
    states = replicas(cluster)
    running = states.get("RUNNING", 0)
    other = {k: v for k, v in states.items() if k != "RUNNING" and v}
    return {"t": round(time.monotonic() - started, 1), "loading": loading, "running": running, "other": other}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in result["samples"]]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.step(t, [s["running"] for s in result["samples"]], where="post", label="running engine replicas")
    ax.axvspan(0, result["load_s"], alpha=0.15, label=f"load: {result['concurrency']} concurrent clients")
    ax.set_xlabel("seconds")
    ax.set_yticks([0, 1, 2])
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-s", type=float, default=90)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--settle-s", type=float, default=180, help="longest wait for the scale-down after the load")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "autoscaling")
    args = parser.parse_args()
    result = run(args.load_s, args.concurrency, args.settle_s)
    print(f"{'t (s)':>7}  {'load':>4}  running  other")
    for s in result["samples"]:
        print(f"{s['t']:>7}  {'yes' if s['loading'] else 'no':>4}  {s['running']:>7}  {s['other'] or ''}")
    print(f"statuses: {result['statuses']}; most running: {result['max_running']}; at the end: {result['final_running']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "results.png")


if __name__ == "__main__":
    main()
