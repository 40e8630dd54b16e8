"""Overload soak, bounded: requests arrive at twice the measured capacity for ten minutes (open
loop: arrivals do not wait for answers). Every request must end in 200, 429 or 503 with
retry_after before its timeout, and the service's resident memory must stay flat (growth under
10% from the first minute after warm-up to the last).

  .venv/bin/python -m tools.cluster.soak [--minutes 10] [--rate 9.4]

The default rate is twice the service's measured throughput on this machine (docs/benchmarks.md:
52x real time at saturation, 11 s clips: 4.7 requests per second). One Ray node on this machine
(tools/cluster/resilience.py's cluster: two ingress replicas, one engine). Prints a table per minute and
writes docs/resilience/soak.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from tools import ROOT
from tools.cluster.resilience import TIMEOUT_S, Cluster, Outcome, post, start


def cluster_rss_mb(cluster: Cluster) -> float:
    """Resident memory of every process of the Ray node (our `ray start` and all it started)."""
    assert cluster.head is not None
    total = 0
    root = psutil.Process(cluster.head.pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def soak(cluster: Cluster, key: str, minutes: float, rate: float) -> dict:
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    began = time.monotonic()

    def one(at_s: float) -> None:
        outcome = post(cluster.url, key, at_s)
        with lock:
            outcomes.append(outcome)

    memory: list[tuple[float, float]] = []
    end = began + minutes * 60
    # Enough threads that arrivals never wait for a free one: rate x the longest answer.
    with ThreadPoolExecutor(max_workers=int(rate * TIMEOUT_S) + 8) as pool:
        n = 0
        next_sample = began
        while (now := time.monotonic()) < end:
            if now >= next_sample:
                memory.append((round(now - began, 1), round(cluster_rss_mb(cluster), 1)))
                next_sample += 10
            pool.submit(one, now - began)
            n += 1
            time.sleep(max(0.0, began + n / rate - time.monotonic()))
    memory.append((round(time.monotonic() - began, 1), round(cluster_rss_mb(cluster), 1)))
    return {"outcomes": outcomes, "memory": memory}


def report(minutes: float, rate: float, outcomes: list[Outcome], memory: list[tuple[float, float]]) -> dict:
    per_minute = []
    print(f"{'minute':>6} {'sent':>5} {'statuses':40} {'p50 s':>6} {'max s':>6} {'RSS MB':>7}")
    for m in range(int(minutes + 0.999)):
        batch = sorted((o for o in outcomes if m * 60 <= o.at_s < (m + 1) * 60), key=lambda o: o.seconds)
        rss = [mb for t, mb in memory if m * 60 <= t < (m + 1) * 60]
        row = {
            "minute": m + 1,
            "sent": len(batch),
            "statuses": dict(sorted(Counter(str(o.status) for o in batch).items())),
            "p50_s": round(batch[len(batch) // 2].seconds, 2) if batch else None,
            "max_s": round(batch[-1].seconds, 2) if batch else None,
            "rss_mb": max(rss) if rss else None,
        }
        per_minute.append(row)
        print(
            f"{row['minute']:>6} {row['sent']:>5} {json.dumps(row['statuses']):40} {row['p50_s']!s:>6} {row['max_s']!s:>6} {row['rss_mb']!s:>7}"
        )
    warm = [mb for t, mb in memory if 60 <= t < 120] or [memory[0][1]]
    last = [mb for t, mb in memory if t >= memory[-1][0] - 60]
    growth = (sum(last) / len(last)) / (sum(warm) / len(warm)) - 1
    statuses = Counter(str(o.status) for o in outcomes)
    result = {
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "minutes": minutes,
        "rate_per_s": rate,
        "requests": len(outcomes),
        "statuses": dict(sorted(statuses.items())),
        "unexpected": sum(n for s, n in statuses.items() if s not in ("200", "429", "503")),
        "503_without_retry_after": sum(o.status == 503 and not o.retry_after for o in outcomes),
        "max_seconds": round(max(o.seconds for o in outcomes), 2),
        "timeout_s": TIMEOUT_S,
        "rss_growth": round(growth, 3),
        "per_minute": per_minute,
        "memory": memory,
    }
    print(
        f"{len(outcomes)} requests: {result['statuses']}; slowest {result['max_seconds']} s (timeout {TIMEOUT_S:g}); "
        f"RSS growth {growth:+.1%} (first minute after warm-up to the last)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=9.4, help="requests per second (twice the measured capacity)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stt-soak-") as tmp:
        cluster, key = start(Path(tmp))
        try:
            run = soak(cluster, key, args.minutes, args.rate)
        finally:
            cluster.stop()
    result = report(args.minutes, args.rate, run["outcomes"], run["memory"])
    out = ROOT / "docs" / "resilience" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
