"""Benchmark the service against its peers on the same machine, weights and clips, in one run.

  .venv/bin/python -m tools.bench.benchmark                      # service + bare vLLM + faster-whisper int8
  .venv/bin/python -m tools.bench.benchmark --url URL --key KEY  # an already running service (no cold start)

For each engine and concurrency level it reports throughput (audio seconds per wall second),
latency p50/p95/p99, errors by status, word error rate against the references, cold start (command
to first 200) and the resident memory of all the engine's processes; then every figure as a ratio
to the peers. Writes results.json, results.md and results.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml
from tqdm import tqdm

from tools import ROOT
from tools.bench.common import (
    DEFAULT_MANIFEST,
    Clip,
    LevelResult,
    RssSampler,
    cpu_seconds_by_role,
    cpu_seconds_since,
    load_clips,
    result_json,
    rss_mb_by_role,
    schedule,
)
from tools.bench.report import markdown, plot

PYTHON = sys.executable
BIN = Path(sys.executable).parent


class Service:
    """`serve run` of a Serve config (configs/cpu.yaml by default) on 127.0.0.1, with a throwaway issuer and an unlimited key."""

    def __init__(self, workdir: Path, config_path: Path) -> None:
        self.workdir, self.port = workdir, _free_port()
        config = yaml.safe_load(config_path.read_text())
        config["http_options"].update(host="127.0.0.1", port=self.port)
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        subprocess.run(
            [BIN / "stt-license", "keygen", "--private-key", workdir / "issuer.key", "--public-keys", workdir / "issuer.pub"],
            check=True,
            capture_output=True,
        )
        self.key = subprocess.run(
            [
                BIN / "stt-license",
                "issue",
                "--private-key",
                workdir / "issuer.key",
                "--customer",
                "bench",
                "--environment",
                "dev",
                "--days",
                "1",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, first_clip: Clip) -> float:
        """Seconds from the command to the first 200 on /v1/listen."""
        env = {
            **os.environ,
            "STT_LICENSE_PUBLIC_KEYS": str(self.workdir / "issuer.pub"),
            "STT_USAGE_DB": str(self.workdir / "usage.db"),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        start = time.monotonic()
        with open(self.workdir / "serve.log", "wb") as log:
            self.proc = subprocess.Popen(
                [BIN / "serve", "run", "--address", "local", self.workdir / "config.yaml"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - start < 900:
            if self.proc.poll() is not None:
                raise SystemExit(f"service exited; see {self.workdir / 'serve.log'}")
            try:
                if post(self.url, self.key, first_clip)[0] == 200:
                    return time.monotonic() - start
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SystemExit("service did not answer within 900 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, key: str, clip: Clip) -> tuple[int, str | None]:
    response = requests.post(
        f"{url}/v1/listen",
        headers={"Authorization": f"Token {key}", "Content-Type": "application/octet-stream"},
        data=Path(clip.path).read_bytes(),
        timeout=600,
    )
    return response.status_code, response.json().get("text") if response.status_code == 200 else None


WARMUP_REQUESTS = 8


def drive_service(url: str, key: str, clips: list[Clip], levels: list[int], min_requests: int, pid: int | None) -> list[dict]:
    with ThreadPoolExecutor(WARMUP_REQUESTS) as pool:  # not measured: first batches pay one-off costs
        list(pool.map(lambda clip: post(url, key, clip), schedule(clips, WARMUP_REQUESTS, WARMUP_REQUESTS)))
    results = []
    for level in levels:
        plan = schedule(clips, level, min_requests)
        bar = tqdm(total=len(plan), desc=f"service  c={level:<3}", unit="req", leave=False)

        def one(clip: Clip, bar: tqdm = bar) -> tuple[float, int, str | None]:  # bar bound now: one per level
            t = time.monotonic()
            status, text = post(url, key, clip)
            bar.update()
            return time.monotonic() - t, status, text

        cpu_before = cpu_seconds_by_role(pid) if pid else {}
        with RssSampler(pid) if pid else _Nothing() as rss, ThreadPoolExecutor(level) as pool:
            t = time.monotonic()
            outcomes = list(pool.map(one, plan))
            wall = time.monotonic() - t
        cpu = cpu_seconds_since(pid, cpu_before) if pid else {}
        bar.close()
        statuses: dict[str, int] = {}
        for _, status, _ in outcomes:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        result = LevelResult(
            "service",
            level,
            len(plan),
            wall,
            sum(c.duration_s for c in plan),
            [o[0] for o in outcomes if o[1] == 200],
            statuses,
            [o[2] for o in outcomes],
            [c.text for c in plan],
            getattr(rss, "peak", 0.0),
        )
        by_cpu = lambda d: dict(sorted(d.items(), key=lambda kv: -kv[1]))  # noqa: E731
        results.append(
            {
                **result_json(result),
                "cpu_s_by_process": by_cpu(cpu),
                "rss_mb_by_process": by_cpu(rss_mb_by_role(pid)) if pid else {},
            }
        )
        print(f"  service level {level}: {result.summary()['throughput_x']}x real time", flush=True)
    return results


class _Nothing:
    peak = 0.0

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def run_peer(engine: str, plan: dict, workdir: Path) -> dict:
    (workdir / "plan.json").write_text(json.dumps(plan))
    out = workdir / f"{engine}.json"
    print(f"==> {engine}", flush=True)
    start = time.monotonic()
    subprocess.run(
        [PYTHON, "-m", "tools.bench.peers", engine, "--plan", workdir / "plan.json", "--out", out], check=True, cwd=ROOT
    )
    result = json.loads(out.read_text())
    result["process_s"] = round(time.monotonic() - start, 1)
    return result


def report(results: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    md = markdown(results)
    (out / "results.md").write_text(md)
    plot(results, out / "results.png")
    return md


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--min-s", type=float, default=5)
    p.add_argument("--max-s", type=float, default=15)
    p.add_argument("--clips", type=int, default=None, help="use at most this many clips")
    p.add_argument("--levels", default="1,4,16,64")
    p.add_argument(
        "--min-requests", type=int, default=48, help="requests per round: max(level, this); fewer are noisy on 2 cores"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure each level this many times in a row; the tables give the median round (one round can be 1.7x another on 2 cores)",
    )
    p.add_argument("--engines", default="service,vllm,faster-whisper")
    p.add_argument("--url", help="drive this running service instead of starting one")
    p.add_argument("--key", default=os.environ.get("LICENSE_KEY"))
    p.add_argument("--model", help="for bare vLLM: another checkpoint than the one the service's config serves")
    p.add_argument("--config", type=Path, default=ROOT / "configs/cpu.yaml", help="the service's Serve config")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = p.parse_args()

    clips = load_clips(
        args.manifest,
        args.min_s,
        args.max_s,
        args.clips,
        sets={"ljspeech", "classic", "librivox", "speechbrain_asr", "harvard", "arctic"}
        if args.manifest == DEFAULT_MANIFEST
        else None,
    )
    if not clips:
        raise SystemExit("no clips match")
    levels = [int(x) for x in args.levels.split(",")]
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    measured = [level for level in levels for _ in range(args.rounds)]  # the rounds of a level in a row
    engines = args.engines.split(",")
    # Bare vLLM runs with the very engine settings the service's config gives its engine.
    engine_args = yaml.safe_load(args.config.read_text())["applications"][0]["args"]["engine"]
    plan = {
        "clips": [c.__dict__ for c in clips],
        "levels": measured,
        "min_requests": args.min_requests,
        "engine": {**engine_args, "model": args.model or engine_args["model"]},
    }
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
        "workload": {
            "clips": len(clips),
            "clip_audio_s": round(sum(c.duration_s for c in clips), 1),
            "levels": levels,
            "rounds": args.rounds,
            "min_requests": args.min_requests,
        },
        "engines": {},
    }
    print(f"{len(clips)} clips, {results['workload']['clip_audio_s']} s of audio; levels {levels}", flush=True)
    with tempfile.TemporaryDirectory(prefix="stt-bench-") as tmp:
        workdir = Path(tmp)
        if "service" in engines:
            print("==> service", flush=True)
            if args.url:
                if not args.key:
                    raise SystemExit("--url needs --key (or LICENSE_KEY)")
                results["engines"]["service"] = {
                    "cold_start_s": None,
                    "levels": drive_service(args.url, args.key, clips, measured, args.min_requests, None),
                }
            else:
                service = Service(workdir, args.config)
                try:
                    cold = service.start(clips[0])
                    print(f"  cold start {cold:.1f} s", flush=True)
                    levels_out = drive_service(service.url, service.key, clips, measured, args.min_requests, service.proc.pid)
                finally:
                    service.stop()
                results["engines"]["service"] = {"cold_start_s": round(cold, 2), "levels": levels_out}
        for engine in ("vllm", "faster-whisper"):
            if engine in engines:
                results["engines"][engine] = run_peer(engine, plan, workdir)
    print(report(results, args.out))


if __name__ == "__main__":
    main()
