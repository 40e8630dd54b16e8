"""Benchmark results -> Markdown tables (absolute figures and ratios to the peers) and a PNG plot."""

from __future__ import annotations

from pathlib import Path

NAMES = {"service": "service (HTTP + Ray Serve + vLLM)", "vllm": "bare vLLM", "faster-whisper": "faster-whisper int8"}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def _rounds(results: dict, engine: str) -> dict[int, list[dict]]:
    """An engine's rows by level: one per round, in the order measured."""
    by_level: dict[int, list[dict]] = {}
    for row in results["engines"].get(engine, {}).get("levels", []):
        by_level.setdefault(row["level"], []).append(row)
    return by_level


def _by_level(results: dict, engine: str) -> dict[int, dict]:
    """An engine's median round per level, by throughput (the upper one of an even count)."""
    return {
        level: sorted(rows, key=lambda r: r["throughput_x"])[len(rows) // 2] for level, rows in _rounds(results, engine).items()
    }


def markdown(results: dict) -> str:
    w, m = results["workload"], results["machine"]
    rounds = w.get("rounds", 1)
    lines = [
        f"Run {m['date']} on {m['cpus']} CPUs: {w['clips']} clips ({w['clip_audio_s']} s of speech), "
        f"requests per level = max(level, {w['min_requests']}), each level measured {rounds} time(s) in a row; "
        "a row is the median round by throughput, and every round's throughput is listed.",
        "",
        "| engine | concurrency | requests | throughput (x real time) | every round | p50 s | p95 s | p99 s | WER | peak RSS MB | statuses |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for engine in results["engines"]:
        rounds_by_level = _rounds(results, engine)
        for level, row in _by_level(results, engine).items():
            every = " / ".join(_fmt(r["throughput_x"], 1) for r in rounds_by_level[level])
            lines.append(
                f"| {NAMES.get(engine, engine)} | {level} | {row['requests']} | {_fmt(row['throughput_x'])} | {every} | "
                f"{_fmt(row['p50_s'], 3)} | {_fmt(row['p95_s'], 3)} | {_fmt(row['p99_s'], 3)} | {_fmt(row['wer'], 3)} | "
                f"{_fmt(row['rss_peak_mb'], 0)} | {row['statuses']} |"
            )
    lines += ["", "| engine | cold start s (command to first result) |", "|---|---|"]
    for engine, data in results["engines"].items():
        lines.append(f"| {NAMES.get(engine, engine)} | {_fmt(data.get('cold_start_s'), 1)} |")
    service, vllm, fw = (_by_level(results, e) for e in ("service", "vllm", "faster-whisper"))
    if service and (vllm or fw):
        lines += [
            "",
            "Service as a ratio to its peers (throughput: higher is better; p50: the service's extra latency):",
            "",
            "| concurrency | throughput vs bare vLLM | throughput vs faster-whisper | p50 over bare vLLM, ms | WER service / faster-whisper | RSS vs bare vLLM |",
            "|---|---|---|---|---|---|",
        ]
        for level, row in service.items():
            v, f = vllm.get(level, {}), fw.get(level, {})
            extra = None if not v or row["p50_s"] is None else (row["p50_s"] - v["p50_s"]) * 1000
            lines.append(
                f"| {level} | {_ratio(row['throughput_x'], v.get('throughput_x'))} | {_ratio(row['throughput_x'], f.get('throughput_x'))} | "
                f"{_fmt(extra, 0)} | {_ratio(row['wer'], f.get('wer'))} | {_ratio(row['rss_peak_mb'], v.get('rss_peak_mb'))} |"
            )
    busiest = max(service.values(), key=lambda r: r["level"]) if service else None
    if busiest and busiest.get("cpu_s_by_process"):
        lines += _cpu_table(busiest, vllm.get(busiest["level"], {}), results["machine"]["cpus"])
    if busiest and busiest.get("rss_mb_by_process"):
        lines += [
            "",
            f"The service's resident memory by process after concurrency {busiest['level']}:",
            "",
            "| process | RSS MB |",
            "|---|---|",
        ]
        lines += [f"| {role} | {mb:.0f} |" for role, mb in busiest["rss_mb_by_process"].items() if mb >= 1]
    return "\n".join(lines) + "\n"


def _cpu_table(service: dict, vllm: dict, cpus: int) -> list[str]:
    """CPU milliseconds per request by process, the service beside bare vLLM at the same level: what
    the service spends that bare vLLM does not, and how much more its vLLM worker burns beside it."""
    total = sum(service["cpu_s_by_process"].values()) or 1
    bare = vllm.get("cpu_s_by_process", {})
    per = lambda seconds, row: seconds / row["requests"] * 1000  # noqa: E731
    lines = [
        "",
        f"Where the CPU time went at concurrency {service['level']}: the service {total:.1f} CPU s in {service['wall_s']:.1f} s"
        + (f", bare vLLM {sum(bare.values()):.1f} CPU s in {vllm['wall_s']:.1f} s" if bare else "")
        + f", on {cpus} CPUs. Per request, by process:",
        "",
        "| process | service ms | share | bare vLLM ms |",
        "|---|---|---|---|",
    ]
    for role in [*service["cpu_s_by_process"], *(r for r in bare if r not in service["cpu_s_by_process"])]:
        mine, theirs = service["cpu_s_by_process"].get(role), bare.get(role)
        if max(mine or 0, theirs or 0) >= 0.05:
            lines.append(
                f"| {role} | {_fmt(mine and per(mine, service), 1)} | {'-' if mine is None else f'{mine / total:.0%}'} | "
                f"{_fmt(theirs and per(theirs, vllm), 1)} |"
            )
    lines.append(f"| all | {per(total, service):.1f} | 100% | {_fmt(per(sum(bare.values()), vllm) if bare else None, 1)} |")
    return lines


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for engine in results["engines"]:
        rows = sorted(_by_level(results, engine).values(), key=lambda r: r["level"])
        levels = [r["level"] for r in rows]
        ax1.plot(levels, [r["throughput_x"] for r in rows], marker="o", label=NAMES.get(engine, engine))
        ax2.plot(levels, [r["p95_s"] for r in rows], marker="o", label=NAMES.get(engine, engine))
    for ax, title, unit in ((ax1, "Throughput", "audio seconds per wall second"), (ax2, "p95 latency", "seconds")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax1.legend()
    fig.suptitle(f"Whisper tiny.en on {results['machine']['cpus']} CPUs, {results['machine']['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
