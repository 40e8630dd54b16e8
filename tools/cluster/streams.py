"""Live streams for tools/cluster/resilience.py: `count` Deepgram-protocol streams, each sending the
JFK clip then 2 s of silence, over and over, paced in real time, while a fault or an upgrade happens.
A stream the server closes (1012 from a replica being replaced, 1006 from one killed) is reopened at
once, as a Deepgram client does, and starts a clip again (it resends nothing); each connection is one
record.

Per connection: audio sent, audio taken (its Metadata's duration: none when the replica died), the
clips it was owed (sent whole, and taken whole when the server says how much it took) and delivered
(JFK says "country" twice per clip: the finals' count of it, halved), and the close code.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from serve_app.pipeline.decode import decode
from tools import ROOT

RATE, FRAME_S = 16000, 0.1
CLIP = (decode((ROOT / "tests" / "data" / "whisper_jfk.flac").read_bytes(), 60) * 32767).astype("<i2").tobytes()
CLIP_S = len(CLIP) / 2 / RATE
PERIOD = CLIP + bytes(2 * RATE * 2)  # a pause longer than merge_pause_ms: each clip ends its utterances
PERIOD_S = len(PERIOD) / 2 / RATE
QUERY = "encoding=linear16&sample_rate=16000&channels=1"


@dataclass
class Connection:
    at_s: float  # opened, from the start of the load
    sent_s: float = 0.0
    taken_s: float | None = None  # the Metadata's duration
    close: int | None = None  # 1006: no close frame
    finals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def owed(self) -> int:
        """Clips sent whole; with Metadata, only those the server took whole (what came after the
        drain began was not taken, and the client knows it from the duration)."""
        upto = self.sent_s if self.taken_s is None else min(self.sent_s, self.taken_s)
        return int((upto + PERIOD_S - CLIP_S) // PERIOD_S)

    @property
    def delivered(self) -> int:
        text = " ".join(f["channel"]["alternatives"][0]["transcript"] for f in self.finals).lower()
        return text.count("country") // 2


@dataclass
class Streams:
    url: str
    key: str
    count: int
    connections: list[Connection] = field(default_factory=list)
    refused: int = 0  # handshakes that failed (503 while replicas change, no replica reachable)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._stream, daemon=True) for _ in range(self.count)]
        self._lock = threading.Lock()
        self.started = time.monotonic()

    def __enter__(self) -> Streams:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _stream(self) -> None:
        """Connections one after another until stopped."""
        while not self._stop.is_set():
            record = Connection(round(time.monotonic() - self.started, 1))
            opened = self._connection(record)
            with self._lock:
                if opened:
                    self.connections.append(record)
                else:
                    self.refused += 1
            if not opened:
                time.sleep(0.5)  # and try again

    def _connection(self, record: Connection) -> bool:
        ws_url = self.url.replace("http://", "ws://") + f"/v1/listen?{QUERY}"
        try:
            ws = connect(ws_url, additional_headers={"Authorization": f"Token {self.key}"}, open_timeout=30, max_size=None)
        except Exception:  # noqa: BLE001 - counted as a connection that never opened
            return False
        reader = threading.Thread(target=_read, args=(ws, record), daemon=True)
        reader.start()
        frame, began, offset = int(FRAME_S * RATE) * 2, time.monotonic(), 0
        try:
            while not self._stop.is_set() and reader.is_alive():
                chunk = PERIOD[offset : offset + frame]
                ws.send(chunk)
                offset = (offset + frame) % len(PERIOD)
                record.sent_s = round(record.sent_s + len(chunk) / 2 / RATE, 1)
                time.sleep(max(0.0, began + record.sent_s - time.monotonic()))  # real time
            if reader.is_alive():
                ws.send(json.dumps({"type": "CloseStream"}))
        except ConnectionClosed:
            pass
        reader.join(60)
        ws.close()
        return True


def _read(ws: ClientConnection, record: Connection) -> None:
    try:
        for message in ws:
            body = json.loads(message)
            if body.get("type") == "Results" and body.get("is_final"):
                record.finals.append(body)
            elif body.get("type") == "Metadata":
                record.taken_s = float(body["duration"])
    except ConnectionClosed as exc:
        record.close = exc.rcvd.code if exc.rcvd is not None else 1006
        return
    record.close = ws.close_code or 1006


def summary(streams: Streams) -> dict[str, Any]:
    connections = streams.connections
    return {
        "connections": len(connections),
        "refused_handshakes": streams.refused,
        "audio_sent_s": round(sum(c.sent_s for c in connections), 1),
        "audio_taken_s": round(sum(c.taken_s or 0.0 for c in connections), 1),
        "clips_owed": sum(c.owed for c in connections),
        "clips_delivered": sum(min(c.delivered, c.owed) for c in connections),
        "close_codes": dict(sorted(Counter(str(c.close) for c in connections).items())),
        "by_connection": [
            {"at_s": c.at_s, "sent_s": c.sent_s, "taken_s": c.taken_s, "owed": c.owed, "delivered": c.delivered, "close": c.close}
            for c in connections
        ],
    }
