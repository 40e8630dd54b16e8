"""Live streaming benchmark: N concurrent real-time streams, time from the end of each utterance to
its final result.

Each stream is a conversation built from the manifest's English clips with pauses between them,
sent as 100 ms linear16 frames at the pace a microphone delivers them (frame k leaves at (k+1)
x 100 ms), to `WS /v1/listen` with interim results on. An utterance ends where Silero VAD hears the
last speech of its clip; its latency is from that moment (in the paced stream's wall time) to the
arrival of the final result that covers it. It includes the endpointing pause (the server's
default, 300 ms) by design: that is what a user waits for. Levels rise until the median passes
the target; the report names the most streams that stay under it, and each level's median as a
ratio to one stream's. Streams without interim results run too, as the same run's peer: what the
optional re-decoding costs.

    .venv/bin/python -m tools.bench.stream                     # starts configs/cpu.yaml itself
    .venv/bin/python -m tools.bench.stream --url http://127.0.0.1:7100 --key "$LICENSE_KEY"
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import websockets.sync.client

from serve_app.pipeline.decode import decode
from serve_app.types import SAMPLE_RATE
from tools import ROOT
from tools.bench.benchmark import Service
from tools.bench.common import DEFAULT_MANIFEST, Clip, load_clips, normalize

FRAME_S = 0.1
GAP_S = (1.0, 2.5)  # silence between utterances: a turn-taking pause


@dataclass(frozen=True)
class Conversation:
    pcm: bytes
    ends: list[float]  # where each utterance's speech ends, in stream seconds
    text: str


def speech_end(audio: np.ndarray) -> float:
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    found = get_speech_timestamps(torch.from_numpy(audio), load_silero_vad(), sampling_rate=SAMPLE_RATE)
    return found[-1]["end"] / SAMPLE_RATE if found else audio.size / SAMPLE_RATE


def conversation(clips: list[tuple[Clip, np.ndarray, float]], seconds: float, rng: random.Random) -> Conversation:
    pieces, ends, texts, at = [], [], [], 0.0
    order = clips[:]
    rng.shuffle(order)
    for clip, audio, end in order:
        gap = np.zeros(int(rng.uniform(*GAP_S) * SAMPLE_RATE), np.float32)
        pieces += [gap, audio]
        at += gap.size / SAMPLE_RATE
        ends.append(at + end)
        texts.append(clip.text)
        at += audio.size / SAMPLE_RATE
        if at >= seconds:
            break
    pieces.append(np.zeros(int(1.5 * SAMPLE_RATE), np.float32))  # the last utterance's pause
    audio = np.concatenate(pieces)
    return Conversation((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(), ends, " ".join(texts))


def stream(url: str, key: str, talk: Conversation, out: dict, interims: bool, pace: float = 1.0) -> None:
    """One paced stream, `pace` times real time; records (utterance end, latency) and the finals' text
    in `out`. Latencies mean something only at pace 1; the text does not depend on the pace (the
    server segments on audio time)."""
    frame = int(FRAME_S * SAMPLE_RATE) * 2
    finals: list[tuple[float, float, str]] = []  # (arrival, covered until, text)
    interim_count = 0
    with websockets.sync.client.connect(
        f"{url}/v1/listen?encoding=linear16&sample_rate=16000&interim_results={str(interims).lower()}",
        additional_headers={"Authorization": f"Token {key}"},
        max_size=None,
    ) as ws:
        t0 = time.monotonic()

        def send() -> None:
            for k, at in enumerate(range(0, len(talk.pcm), frame)):
                time.sleep(max(0.0, t0 + (k + 1) * FRAME_S / pace - time.monotonic()))
                ws.send(talk.pcm[at : at + frame])
            ws.send(json.dumps({"type": "CloseStream"}))

        sender = threading.Thread(target=send)
        sender.start()
        for raw in ws:
            message = json.loads(raw)
            if message.get("type") != "Results":
                continue
            if not message["is_final"]:
                interim_count += 1
                continue
            text = message["channel"]["alternatives"][0]["transcript"]
            finals.append((time.monotonic() - t0, message["start"] + message["duration"], text))
        sender.join()
    latencies = []
    for end in talk.ends:
        covering = next((arrival for arrival, until, _ in finals if until >= end - 0.05), None)
        if covering is not None:
            latencies.append(round(covering - end, 3))
    out.update(
        latencies=latencies,
        missing=len(talk.ends) - len(latencies),
        interims=interim_count,
        hypothesis=" ".join(t for _, _, t in finals if t),
        reference=talk.text,
    )


def level(url: str, key: str, clips: list, n: int, seconds: float, seed: int, interims: bool = True) -> dict:
    outs: list[dict] = [{} for _ in range(n)]
    talks = [conversation(clips, seconds, random.Random(seed + i)) for i in range(n)]
    threads = []
    for i in range(n):
        threads.append(threading.Thread(target=stream, args=(url, key, talks[i], outs[i], interims)))
        threads[-1].start()
        time.sleep(random.Random(seed).uniform(0.1, 0.5))  # streams do not start in step
    for t in threads:
        t.join()
    latencies = sorted(x for o in outs for x in o.get("latencies", []))
    import jiwer

    wer = jiwer.wer([normalize(o["reference"]) for o in outs if o], [normalize(o["hypothesis"]) for o in outs if o])
    return {
        "streams": n,
        "utterances": len(latencies),
        "missing_finals": sum(o.get("missing", 0) for o in outs),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p90_s": round(latencies[int(0.9 * (len(latencies) - 1))], 3) if latencies else None,
        "max_s": latencies[-1] if latencies else None,
        "interims_per_stream_min": round(sum(o.get("interims", 0) for o in outs) / n / (seconds / 60), 1),
        "wer": round(wer, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running service (http://...); default: start configs/cpu.yaml")
    p.add_argument("--key", default=os.environ.get("LICENSE_KEY"))
    p.add_argument("--levels", default="1,2,4,6,8,12,16")
    p.add_argument("--seconds", type=float, default=60, help="audio per stream at each level")
    p.add_argument(
        "--modes", default="interim,finals-only", help="streams with interim results, and without (the same run's peer)"
    )
    p.add_argument("--warmup-s", type=float, default=15, help="one unmeasured stream first")
    p.add_argument("--target-s", type=float, default=1.0, help="the median latency a level must stay under")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "streaming.json")
    args = p.parse_args()

    loaded = load_clips(args.manifest, 2, 12, None)
    chosen = [c for c in loaded if Path(c.path).parent.name in ("ljspeech", "arctic", "harvard", "classic")] or loaded
    clips = []
    for clip in chosen[:40]:
        audio = decode(Path(clip.path).read_bytes(), 60)
        clips.append((clip, audio, speech_end(audio)))
    print(f"{len(clips)} clips; levels {args.levels}; {args.seconds:g} s per stream", flush=True)

    service = None
    url, key = args.url, args.key
    tmp = tempfile.TemporaryDirectory(prefix="stt-stream-bench-")
    if url is None:
        service = Service(Path(tmp.name), ROOT / "configs" / "cpu.yaml")
        print(f"==> starting the service: {service.start(clips[0][0]):.0f} s", flush=True)
        url, key = service.url, service.key
    if not key:
        raise SystemExit("--url needs --key (or LICENSE_KEY)")
    ws_url = url.replace("http", "ws", 1)
    modes = {}
    try:
        level(ws_url, key, clips, 1, args.warmup_s, seed=999)  # warm-up, not measured
        for mode in args.modes.split(","):
            rows = []
            for n in [int(x) for x in args.levels.split(",")]:
                rows.append(level(ws_url, key, clips, n, args.seconds, seed=n * 100, interims=mode == "interim"))
                print(mode, json.dumps(rows[-1]), flush=True)
                if rows[-1]["p50_s"] is None or rows[-1]["p50_s"] > args.target_s:
                    break
            held = max((r["streams"] for r in rows if r["p50_s"] is not None and r["p50_s"] <= args.target_s), default=0)
            modes[mode] = {"streams_held": held, "levels": rows}
    finally:
        if service is not None:
            service.stop()
        tmp.cleanup()
    base = modes[next(iter(modes))]["levels"][0]["p50_s"] or 1.0
    print(
        "\n| results | streams | utterances | p50 s | p90 s | max s | p50 vs 1 stream with interims | interims/stream/min | WER |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, result in modes.items():
        for r in result["levels"]:
            print(
                f"| {mode} | {r['streams']} | {r['utterances']} | {r['p50_s']} | {r['p90_s']} | {r['max_s']} | {r['p50_s'] / base:.2f}x | {r['interims_per_stream_min']} | {r['wer']} |"
            )
    for mode, result in modes.items():
        print(f"{mode}: real-time streams held under a {args.target_s:g} s median: {result['streams_held']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                "workload": {"seconds_per_stream": args.seconds, "frame_s": FRAME_S, "gap_s": GAP_S, "clips": len(clips)},
                "target_p50_s": args.target_s,
                "modes": modes,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
