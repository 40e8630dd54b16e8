"""The benchmark's report (tools/bench/report.py) with rounds: one row per engine and level, the
median round, every round listed, and the ratios taken between medians."""

from __future__ import annotations

from tools.bench.report import markdown


def _row(level: int, throughput: float, p50: float) -> dict:
    return {
        "level": level,
        "requests": 32,
        "throughput_x": throughput,
        "p50_s": p50,
        "p95_s": p50 * 2,
        "p99_s": p50 * 3,
        "wer": 0.08,
        "rss_peak_mb": 1000.0,
        "statuses": {"200": 32},
    }


RESULTS = {
    "machine": {"cpus": 2, "date": "2026-12-02 08:00 UTC"},
    "workload": {"clips": 3, "clip_audio_s": 30.0, "levels": [16], "rounds": 3, "min_requests": 32},
    "engines": {
        # rounds in the order measured; the medians are 50 (service) and 60 (bare vLLM)
        "service": {"cold_start_s": 50.0, "levels": [_row(16, 55.0, 2.0), _row(16, 40.0, 3.0), _row(16, 50.0, 2.5)]},
        "vllm": {"cold_start_s": 40.0, "levels": [_row(16, 80.0, 1.0), _row(16, 60.0, 1.5), _row(16, 45.0, 2.0)]},
    },
}


def test_a_level_is_its_median_round_with_every_round_listed() -> None:
    md = markdown(RESULTS)
    assert "| service (HTTP + Ray Serve + vLLM) | 16 | 32 | 50.00 | 55.0 / 40.0 / 50.0 | 2.500 |" in md
    assert "| bare vLLM | 16 | 32 | 60.00 | 80.0 / 60.0 / 45.0 | 1.500 |" in md
    assert md.count("| service (HTTP + Ray Serve + vLLM) | 16 |") == 1


def test_ratios_are_between_medians() -> None:
    # 50 / 60 throughput; the service's median p50 (2.5 s) over bare vLLM's (1.5 s): 1000 ms
    assert "| 16 | 0.83x | - | 1000 |" in markdown(RESULTS)


def test_cpu_per_request_sits_beside_bare_vllms() -> None:
    service = {**_row(16, 50.0, 2.5), "wall_s": 4.0, "cpu_s_by_process": {"VLLM::Worker": 6.4, "ProxyActor": 1.6}}
    bare = {**_row(16, 60.0, 1.5), "wall_s": 3.0, "cpu_s_by_process": {"VLLM::Worker": 4.8, "bare vLLM's process": 0.32}}
    md = markdown({**RESULTS, "engines": {"service": {"levels": [service]}, "vllm": {"levels": [bare]}}})
    # per request: 6.4 s / 32 = 200 ms against 4.8 s / 32 = 150 ms; a process one side lacks is "-"
    assert "| VLLM::Worker | 200.0 | 80% | 150.0 |" in md
    assert "| ProxyActor | 50.0 | 20% | - |" in md
    assert "| bare vLLM's process | - | - | 10.0 |" in md
    assert "| all | 250.0 | 100% | 160.0 |" in md


def test_cpu_per_request_of_the_service_alone() -> None:
    """`--engines service`: no bare vLLM to sit beside, its column is "-" (this once raised)."""
    service = {**_row(16, 50.0, 2.5), "wall_s": 4.0, "cpu_s_by_process": {"VLLM::Worker": 6.4, "ProxyActor": 1.6}}
    md = markdown({**RESULTS, "engines": {"service": {"levels": [service]}}})
    assert "| VLLM::Worker | 200.0 | 80% | - |" in md and "| all | 250.0 | 100% | - |" in md
