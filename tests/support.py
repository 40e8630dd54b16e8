"""Fakes and drivers that several test modules share, so that no test module imports another: the
ingress on a fake engine (the fast tests' service, also served on a real socket), paced live audio,
the SDK clients pointed at a server, and the parallel-quota check that two end-to-end suites run. Kept apart from helpers.py,
which conftest.py imports for every run: this module loads the ingress (Ray Serve) and PyAV."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import json
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import av
import numpy as np
import pytest
import requests
import uvicorn

from serve_app.ingress import Ingress
from serve_app.licensing.auth import LicenseAuthenticator, RevocationList
from serve_app.licensing.keys import PublicKeys
from serve_app.licensing.limits import Limiter
from serve_app.licensing.usage import SqliteStore
from serve_app.metrics import NoMetrics
from serve_app.pipeline.decode import decode
from serve_app.pipeline.fetch import UrlPolicy
from serve_app.stream.audio_in import END, MULAW, ContainerInput
from serve_app.stream.protocol import FINALIZE
from serve_app.types import SAMPLE_RATE, ChunkTranscript, EngineInfo, Token, Turn
from tools.bench.live_clients import g711, resampled

from .helpers import JFK_FLAC, Issuer

if TYPE_CHECKING:  # conftest.py imports helpers.py; only the type is needed here
    from deepgram import DeepgramClient
    from smallestai import SmallestAI
    from starlette.testclient import TestClient

    from .conftest import Server

ISSUER = Issuer()
KEY = ISSUER.issue()
AUTH = {"Authorization": f"Token {KEY}"}


def make_ingress(engine: Any, tmp_path: Any, args: dict | None = None) -> Ingress:
    auth = LicenseAuthenticator(PublicKeys.from_lines([ISSUER.public_line()]), RevocationList(None))
    limiter = Limiter(SqliteStore(tmp_path / "usage.sqlite3"))
    return Ingress(engine, args or {}, auth, limiter, UrlPolicy(["127.0.0.2/32"]), NoMetrics())


@contextmanager
def served(ingress: Ingress, port: int = 0) -> Iterator[str]:
    """The ingress's app on a real socket on 127.0.0.1 (uvicorn, as Serve's proxy runs it), for clients
    that need one (the SDKs' WebSockets); its http:// URL. `port` 0: a free one."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    # The "websockets" protocol sends refused handshakes' HTTP answers (the denial extension) as Serve does.
    config = uvicorn.Config(ingress.__serve_build_asgi_app__(), ws="websockets", log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


class Stopping:
    """Serve's controller's answer to a replica with live streams, "is it being stopped?"
    (`Ingress.drain.stopping`), as the test decides it; counts the questions."""

    def __init__(self) -> None:
        self.now = threading.Event()
        self.asked = 0

    async def __call__(self) -> bool:
        self.asked += 1
        return self.now.is_set()


def until(condition: Callable[[], Any], timeout_s: float = 20) -> None:
    """Waits (polling) until `condition()` holds; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Method:
    """A deployment handle's method, called in-process: `.remote(...)` runs `fn`."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        return self.fn(*args)


class FakeEngine:
    """Answers like WhisperEngine; records the chunks it was sent."""

    def __init__(self, languages: tuple[str, ...] = ("en",)) -> None:
        self.calls: list[tuple[int, str]] = []
        self.aligned: list[bool] = []
        self.previous: list[str] = []  # the context each chunk was decoded with
        self.translated: list[bool] = []  # whether each chunk was decoded with the translate task
        self.live: list[bool] = []  # whether each chunk was a live stream's utterance
        self.info = Method(self._info)
        self.transcribe = Method(self._transcribe)
        self.detect_language = Method(self._detect)
        self.diarize = Method(self._diarize)
        self.diarized: list[tuple[int, int | None]] = []
        self.languages = languages

    async def _info(self) -> EngineInfo:
        return EngineInfo("fake-whisper", len(self.languages) > 1, list(self.languages), 30.0)

    async def _detect(self, audio: np.ndarray) -> tuple[str, float]:
        return (self.languages[-1], 0.8) if len(self.languages) > 1 else ("en", 1.0)

    async def _diarize(self, audio: np.ndarray, num_speakers: int | None = None) -> list[Turn]:
        self.diarized.append((audio.size, num_speakers))
        return [Turn(0.0, 0.8, 0), Turn(0.8, 2.0, 1)]  # "Hello" is speaker 0, "world." speaker 1

    async def _transcribe(
        self,
        audio: np.ndarray,
        language: str,
        align: bool = False,
        previous: str = "",
        translate: bool = False,
        live: bool = False,
    ) -> ChunkTranscript:
        await self.arrive()
        self.calls.append((audio.size, language))
        self.aligned.append(align)
        self.previous.append(previous)
        self.translated.append(translate)
        self.live.append(live)
        return self.answer(align)

    async def arrive(self) -> None:
        """Each chunk first comes here: a subclass makes it wait, or refuses it."""

    def answer(self, align: bool) -> ChunkTranscript:
        """What every chunk says: "Hello world." (a subclass says something else)."""
        times = [(0.5, 0.9), (0.9, 1.4), (1.4, 1.5)] if align else [(None, None)] * 3
        tokens = [Token(text, lp, *t) for (text, lp), t in zip([(" Hello", -0.1), (" world", -0.2), (".", -0.3)], times)]
        return ChunkTranscript(" Hello world.", tokens, aligned=align)


JFK_S = 11.0  # the JFK clip's duration
JFK_AUDIO = decode(JFK_FLAC.read_bytes(), 60)
JFK_PCM = (JFK_AUDIO * 32767).astype("<i2").tobytes()
FRAME = 3200  # 100 ms of 16 kHz 16-bit mono


def paced(send: Callable[[bytes], Any], data: bytes = JFK_PCM, frame: int = FRAME) -> None:
    """100 ms frames (`frame` bytes each) at the pace of speech, as a microphone would send them."""
    started = time.monotonic()
    for k, at in enumerate(range(0, len(data), frame)):
        time.sleep(max(0.0, started + k * 0.1 - time.monotonic()))
        send(data[at : at + frame])


JFK_LINEAR = np.frombuffer(JFK_PCM, "<i2").astype(np.float32) / 32768.0  # the clip as linear16 streams carry it
TWILIO_FRAME = 160  # bytes: 20 ms of 8 kHz mu-law, what Twilio puts in each media message


def jfk_mulaw() -> bytes:
    """The JFK clip as 8 kHz mu-law: Twilio's `audio/x-mulaw`, OpenAI's `g711_ulaw`."""
    return g711(resampled(JFK_LINEAR, 8000), MULAW)


def jfk_pcm24() -> bytes:
    """The JFK clip as 24 kHz linear16: OpenAI realtime's `pcm16` (`audio/pcm`)."""
    return (resampled(JFK_LINEAR, 24000) * 32767).astype("<i2").tobytes()


def realtime_appends(data: bytes, piece: int = 4800) -> list[str]:
    """`data` as OpenAI realtime `input_audio_buffer.append` events (`piece` bytes each: 100 ms of pcm16)."""
    return [
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data[at : at + piece]).decode()})
        for at in range(0, len(data), piece)
    ]


def twilio_start(custom: dict[str, str] | None = None, tracks: tuple[str, ...] = ("inbound",), sid: str = "MZ0001") -> str:
    """Twilio's `start` message (its documented shape), `custom` as `customParameters`."""
    start = {
        "accountSid": "AC0001",
        "streamSid": sid,
        "callSid": "CA0001",
        "tracks": list(tracks),
        "customParameters": custom or {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    return json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": sid})


TWILIO_CONNECTED = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
TWILIO_STOP = json.dumps(
    {"event": "stop", "sequenceNumber": "999", "streamSid": "MZ0001", "stop": {"accountSid": "AC0001", "callSid": "CA0001"}}
)


def twilio_media(data: bytes, track: str = "inbound", k: int = 0, sid: str = "MZ0001") -> list[str]:
    """`data` as Twilio's `media` messages, 20 ms each, sequence numbers and timestamps from frame `k`."""
    messages = []
    for n, at in enumerate(range(0, len(data), TWILIO_FRAME), start=k):
        media = {
            "track": track,
            "chunk": str(n + 1),
            "timestamp": str(20 * n),
            "payload": base64.b64encode(data[at : at + TWILIO_FRAME]).decode(),
        }
        messages.append(json.dumps({"event": "media", "sequenceNumber": str(n + 2), "media": media, "streamSid": sid}))
    return messages


def encoded(container: str, codec: str, rate: int, comment: str | None = None) -> bytes:
    """The JFK clip encoded whole by FFmpeg: `codec` at `rate` in `container` (a tag in its header if `comment`)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if comment is not None:  # a tag in the header, before any audio
            stream.metadata["comment"] = comment
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(np.frombuffer(JFK_PCM, "<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def opus(container: str, comment: str | None = None) -> bytes:
    """The JFK clip as Opus in an `ogg` or `webm` container (what browsers record), whole."""
    return encoded(container, "libopus", 48000, comment)


def deepgram_client(server: Server) -> DeepgramClient:
    """`deepgram-sdk`'s client with every base URL on `server`."""
    from deepgram import DeepgramClient  # the SDKs load only where the end-to-end tests use them
    from deepgram.environment import DeepgramClientEnvironment

    ws = server.url.replace("http", "ws")
    env = DeepgramClientEnvironment(base=server.url, production=ws, agent=ws, agent_rest=server.url)
    return DeepgramClient(api_key=server.key, environment=env)


def deepgram_live(server: Server, **options: Any) -> list[Any]:
    """The JFK clip streamed by `deepgram-sdk`'s live client at the pace of speech, with `options` as
    its query, then CloseStream: every message it parsed, once the server closed the stream."""
    messages: list[Any] = []
    with deepgram_client(server).listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000, **options) as socket:
        reader = threading.Thread(target=lambda: messages.extend(socket))  # until the server closes
        reader.start()
        paced(socket.send_media)
        socket.send_close_stream()
        reader.join(timeout=60)
        assert not reader.is_alive(), "the server did not close the stream within 60 s of CloseStream"
    return messages


JS_SDK = Path(__file__).parent.parent / "clients" / "js"


def js_sdk_installed() -> Path:
    """clients/js with its dev dependency `ws` (Node's WebSocket that sends headers), installed from its
    package-lock.json if missing: what the SDK's live streams use in Node 18-21. Its path."""
    if not (JS_SDK / "node_modules" / "ws").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_SDK, capture_output=True, timeout=300, check=True)
    return JS_SDK


def smallest_client(server: Server) -> SmallestAI:
    """`smallestai`'s client with every base URL on `server`."""
    from smallestai import SmallestAI
    from smallestai.environment import SmallestAIEnvironment

    ws = server.url.replace("http", "ws")
    env = SmallestAIEnvironment(atoms=server.url, waves=server.url, waves_ws=ws, payment=server.url)
    return SmallestAI(api_key=server.key, environment=env)


def parallel_quota_burst(server: Server, key: str, parallel: int = 8) -> None:
    """`parallel` uploads of the 11 s clip at once against a 36 s daily quota: at most three fit, the
    rest are 403 QUOTA_EXCEEDED, and the key is billed no more than its quota (the issue's bound is
    the quota plus one request; reserving before the engine runs gives the quota itself)."""
    headers = {"Authorization": f"Token {key}", "Content-Type": "audio/flac"}

    def upload(_: int) -> requests.Response:
        return requests.post(f"{server.url}/v1/listen", data=JFK_FLAC.read_bytes(), headers=headers, timeout=120)

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        responses = list(pool.map(upload, range(parallel)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 403} and statuses.count(200) <= 3 and statuses.count(200) >= 1, statuses
    assert all(r.json()["code"] == "QUOTA_EXCEEDED" for r in responses if r.status_code == 403)
    usage = requests.get(f"{server.url}/v1/usage", headers={"Authorization": f"Token {key}"}, timeout=30).json()
    assert usage["usage"]["audio_seconds_today"] <= 36.0 + 1e-6
    assert usage["usage"]["audio_seconds_today"] == pytest.approx(JFK_S * statuses.count(200), abs=0.05)


def received(ws: Any) -> tuple[list[dict], int]:
    """Every message of a test client's WebSocket until the server closes it, and the close code."""
    out = []
    while True:
        message = ws.receive()
        if message["type"] == "websocket.close":
            return out, message["code"]
        out.append(json.loads(message["text"]))


def settled_usage(client: TestClient, auth: dict) -> dict:
    """The key's usage once the server has settled its one stream. A stream bills 30 s blocks ahead
    as its audio arrives and is settled (one request, the unused block given back) just after its
    socket closes: read before that, the usage still holds the block."""
    for _ in range(100):
        usage = client.get("/v1/usage", headers=auth).json()["usage"]
        if usage["requests_today"]:
            break
        time.sleep(0.05)
    return usage


def whole_stream(client: TestClient, url: str, headers: dict | None = None) -> tuple[list[dict], int]:
    """The JFK clip sent at once in 100 ms frames, then CloseStream: every message and the close code."""
    with client.websocket_connect(url, headers=AUTH if headers is None else headers) as ws:
        for at in range(0, len(JFK_PCM), FRAME):
            ws.send_bytes(JFK_PCM[at : at + FRAME])
        ws.send_text('{"type": "CloseStream"}')
        return received(ws)


class Records(logging.Handler):
    """Keeps the records of a logger that may not propagate to pytest's capture (Ray's do not)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


H = TypeVar("H", bound=logging.Handler)


@contextmanager
def serve_log(handler: H) -> Iterator[H]:
    """`handler` on the service's logger ("ray.serve") while the block runs: Ray may stop that
    logger propagating to the root, where pytest's caplog listens."""
    logger = logging.getLogger("ray.serve")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def drained(make: Any, pieces: list[bytes], mark_after: int | None = None) -> list[Any]:
    """What a stream input (`make()`) hands out for `pieces` fed one by one, a Finalize after piece
    `mark_after`; reading stops at the first error, as a session does."""

    async def go() -> list[Any]:
        source = make()

        async def produce() -> None:
            for i, piece in enumerate(pieces):
                await source.feed(piece)
                if i == mark_after:
                    await source.mark(FINALIZE)
            await source.close()

        producer = asyncio.create_task(produce())  # alongside: the input holds a bounded amount
        items = []
        while (item := await asyncio.wait_for(source.get(), 10)) is not END:
            items.append(item)
            if isinstance(item, Exception):  # as a session does: the rest is not read
                producer.cancel()
                if isinstance(source, ContainerInput):
                    source.stop()
                break
        await asyncio.gather(producer, return_exceptions=True)
        return items

    return asyncio.run(go())
