"""Live streaming benchmark: N concurrent real-time streams, time from the end of each utterance to
its final result, in each of the service's live protocols.

Each stream is a conversation built from the manifest's English clips with pauses between them,
sent at the pace a microphone delivers it (frame k leaves at (k+1) frames), in the protocol's own
framing (tools/bench/live_clients.py): Deepgram's `WS /v1/listen` and Pulse's
`WS /waves/v1/stt/live` 100 ms linear16 binary frames, Twilio's `WS /v1/twilio` a base64 8 kHz
mu-law `media` message every 20 ms, OpenAI's `WS /v1/realtime` base64 24 kHz pcm16 appends of
100 ms. An utterance ends where Silero VAD hears the last speech of its clip; its latency is from
that moment (in the paced stream's wall time) to the arrival of the final result that covers it.
It includes the pause that makes a final by design: that is what a user waits for (the server's
default endpointing, 300 ms, on Deepgram, Pulse and Twilio; OpenAI's `silence_duration_ms`, 500 ms,
on realtime, which also sends no interims). At each level every protocol runs in turn on the same
conversations; levels rise until every protocol's median passes the target (or all of them run,
`--all-levels`). The report gives each
protocol's median as a ratio to Deepgram's at the same level, and the 1-minute load average at the
start of each row (the machine may be shared).

    .venv/bin/python -m tools.bench.stream                     # starts configs/cpu.yaml itself
    .venv/bin/python -m tools.bench.stream --url http://127.0.0.1:7100 --key "$LICENSE_KEY"
    .venv/bin/python -m tools.bench.stream --protocols deepgram,realtime --levels 1,3 --seconds 40
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
from tools.bench.live_clients import ADAPTERS, adapter, covered, percentile

GAP_S = (1.0, 2.5)  # silence between utterances: a turn-taking pause
PROTOCOLS = ",".join(ADAPTERS)


@dataclass(frozen=True)
class Conversation:
    audio: np.ndarray  # 16 kHz float: each protocol encodes it its own way
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
    return Conversation(np.clip(np.concatenate(pieces), -1, 1), ends, " ".join(texts))


def stream(
    url: str, key: str, talk: Conversation, out: dict, interims: bool, pace: float = 1.0, protocol: str = "deepgram"
) -> None:
    """One paced stream in `protocol`, `pace` times real time; records the utterances' latencies
    and the finals' text in `out`. Latencies mean something only at pace 1; the text does not
    depend on the pace (the server segments on audio time). `interims` where the protocol lets the
    client choose (Deepgram, Twilio; Pulse always sends them, OpenAI's realtime never)."""
    client = adapter(protocol)
    pcm, size = client.encode(talk.audio), client.frame_bytes()
    finals: list[tuple[float, float | None, str]] = []  # (arrival, covered until, text)
    interim_count, errors = 0, []
    with websockets.sync.client.connect(client.url(url, interims), additional_headers=client.headers(key), max_size=None) as ws:
        for message in client.opening(key, interims):
            ws.send(message)
        t0 = time.monotonic()

        def send() -> None:
            for k, at in enumerate(range(0, len(pcm), size)):
                time.sleep(max(0.0, t0 + (k + 1) * client.frame_s / pace - time.monotonic()))
                ws.send(client.frame(pcm[at : at + size]))
            for message in client.closing():
                ws.send(message)

        sender = threading.Thread(target=send)
        sender.start()
        for raw in ws:
            heard = client.read(json.loads(raw))
            interim_count += heard.interim
            if heard.error is not None:
                errors.append(heard.error)
            if heard.final is not None:
                finals.append((time.monotonic() - t0, heard.until, heard.final))
            if heard.last:
                break
        sender.join()
    latencies = [round(arrival - end, 3) for end in talk.ends if (arrival := covered(finals, end)) is not None]
    out.update(
        latencies=latencies,
        missing=len(talk.ends) - len(latencies),
        interims=interim_count,
        errors=errors,
        hypothesis=" ".join(t for _, _, t in finals if t),
        reference=talk.text,
    )


def level(
    url: str, key: str, clips: list, n: int, seconds: float, seed: int, interims: bool = True, protocol: str = "deepgram"
) -> dict:
    load = round(os.getloadavg()[0], 2)
    outs: list[dict] = [{} for _ in range(n)]
    talks = [conversation(clips, seconds, random.Random(seed + i)) for i in range(n)]
    threads = []
    for i in range(n):
        threads.append(threading.Thread(target=stream, args=(url, key, talks[i], outs[i], interims, 1.0, protocol)))
        threads[-1].start()
        time.sleep(random.Random(seed).uniform(0.1, 0.5))  # streams do not start in step
    for t in threads:
        t.join()
    latencies = sorted(x for o in outs for x in o.get("latencies", []))
    import jiwer

    wer = jiwer.wer([normalize(o["reference"]) for o in outs if o], [normalize(o["hypothesis"]) for o in outs if o])
    errors = [e for o in outs for e in o.get("errors", [])]
    return {
        "streams": n,
        "utterances": len(latencies),
        "missing_finals": sum(o.get("missing", 0) for o in outs),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": percentile(latencies, 0.95),
        "max_s": latencies[-1] if latencies else None,
        "interims_per_stream_min": round(sum(o.get("interims", 0) for o in outs) / n / (seconds / 60), 1),
        "wer": round(wer, 3),
        "errors": errors[:5],  # the first few: a protocol error is the adapter's or the server's bug
        "load_1m": load,
    }


def vs_deepgram(protocols: dict[str, dict]) -> None:
    """Each row's median as a ratio to Deepgram's at the same level, in place."""
    base = {r["streams"]: r["p50_s"] for r in protocols.get("deepgram", {}).get("levels", [])}
    for result in protocols.values():
        for r in result["levels"]:
            ref = base.get(r["streams"])
            r["p50_vs_deepgram"] = round(r["p50_s"] / ref, 2) if ref and r["p50_s"] is not None else None


def table(protocols: dict[str, dict]) -> str:
    lines = [
        "| protocol | streams | utterances | p50 s | p95 s | max s | p50 vs Deepgram | interims/stream/min | WER | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in protocols.items():
        for r in result["levels"]:
            ratio = f"{r['p50_vs_deepgram']:.2f}x" if r.get("p50_vs_deepgram") is not None else "-"
            lines.append(
                f"| {name} | {r['streams']} | {r['utterances']} | {r['p50_s']} | {r['p95_s']} | {r['max_s']} | {ratio} "
                f"| {r['interims_per_stream_min']} | {r['wer']} | {r['load_1m']} |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a running service (http://...); default: start configs/cpu.yaml")
    p.add_argument("--key", default=os.environ.get("LICENSE_KEY"))
    p.add_argument("--protocols", default=PROTOCOLS, help=f"of {PROTOCOLS}; each runs alone at every level, in turn")
    p.add_argument("--levels", default="1,2,4,6,8,12,16")
    p.add_argument("--seconds", type=float, default=60, help="audio per stream at each level")
    p.add_argument("--finals-only", action="store_true", help="ask for no interim results (Deepgram, Twilio)")
    p.add_argument("--warmup-s", type=float, default=15, help="one unmeasured stream of each protocol first")
    p.add_argument("--target-s", type=float, default=1.0, help="the median latency a level must stay under")
    p.add_argument("--all-levels", action="store_true", help="run every level, also past the target (a shared machine)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "streaming.json")
    args = p.parse_args()
    names = args.protocols.split(",")
    for name in names:
        adapter(name)  # an unknown name fails now, not after the service started

    loaded = load_clips(args.manifest, 2, 12, None)
    chosen = [c for c in loaded if Path(c.path).parent.name in ("ljspeech", "arctic", "harvard", "classic")] or loaded
    clips = []
    for clip in chosen[:40]:
        audio = decode(Path(clip.path).read_bytes(), 60)
        clips.append((clip, audio, speech_end(audio)))
    print(f"{len(clips)} clips; protocols {args.protocols}; levels {args.levels}; {args.seconds:g} s per stream", flush=True)

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
    interims = not args.finals_only
    protocols: dict[str, dict] = {name: {"levels": []} for name in names}
    started = time.monotonic()
    try:
        for name in names:  # warm-up, not measured: the engine's first batches, each route's first stream
            level(ws_url, key, clips, 1, args.warmup_s, seed=999, interims=interims, protocol=name)
        for n in [int(x) for x in args.levels.split(",")]:
            for name in names:  # in turn at each level: a change in the machine's load falls on all of them
                row = level(ws_url, key, clips, n, args.seconds, seed=n * 100, interims=interims, protocol=name)
                protocols[name]["levels"].append(row)
                print(name, json.dumps(row), flush=True)
            if not args.all_levels and all(
                r[-1]["p50_s"] is None or r[-1]["p50_s"] > args.target_s for r in (v["levels"] for v in protocols.values())
            ):
                break
    finally:
        if service is not None:
            service.stop()
        tmp.cleanup()
    for result in protocols.values():
        held = [r["streams"] for r in result["levels"] if r["p50_s"] is not None and r["p50_s"] <= args.target_s]
        result["streams_held"] = max(held, default=0)
    vs_deepgram(protocols)
    print("\n" + table(protocols))
    for name, result in protocols.items():
        print(f"{name}: real-time streams held under a {args.target_s:g} s median: {result['streams_held']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                "workload": {
                    "seconds_per_stream": args.seconds,
                    "frame_s": {name: ADAPTERS[name].frame_s for name in names},
                    "gap_s": GAP_S,
                    "clips": len(clips),
                    "interims": interims,
                    "wall_s": round(time.monotonic() - started),
                },
                "target_p50_s": args.target_s,
                "protocols": protocols,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
