"""Shared test helpers: the copied audio, its references, text normalisation, loopback servers."""

from __future__ import annotations

import base64
import http.server
import io
import json
import re
import socket
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from serve_app.licensing.keys import LicenseClaims, Limits, issuer_id, new_key_id, public_key_bytes, sign

DATA = Path(__file__).parent / "data"
JFK_FLAC = DATA / "whisper_jfk.flac"
JFK_MP3 = DATA / "whispercpp_jfk.mp3"
STEREO = DATA / "faster_whisper_stereo_diarization.wav"
LONG = DATA / "ljspeech_LJ001-0001_to_0032.flac"


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    """A 16-bit PCM WAV of `samples`, (n,) mono or (n, channels): int16 as they are, floats in [-1, 1]
    clipped and scaled."""
    pcm = samples if samples.dtype == np.int16 else (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1]), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


def manifest() -> dict[str, dict]:
    rows = (json.loads(line) for line in (DATA / "manifest.jsonl").read_text().splitlines() if line)
    return {row["path"]: row for row in rows}


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: what exact-transcript tests compare."""
    text = re.sub(r"[^\w\s']", " ", text.lower()).replace("'", "")
    return " ".join(text.split())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class FileServer:
    """A tiny HTTP server on a loopback address that records every request it receives."""

    host: str
    files: dict[str, bytes]
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    posted: list[tuple[str, bytes]] = field(default_factory=list)  # (path, body) of every POST
    posted_types: list[str] = field(default_factory=list)  # their Content-Type headers
    post_statuses: list[int] = field(default_factory=list)  # answers to POSTs in turn; then 200

    def __post_init__(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                server.posted.append((self.path, self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                server.posted_types.append(self.headers.get("Content-Type", ""))
                self.send_response(server.post_statuses.pop(0) if server.post_statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.end_headers()
                elif self.path in server.files:
                    body = server.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serving(host: str, files: dict[str, bytes], redirects: dict[str, str] | None = None) -> Iterator[FileServer]:
    server = FileServer(host, files, redirects or {})
    try:
        yield server
    finally:
        server.close()


class Issuer:
    """An issuing key pair for tests: issues signed license keys and gives its public key line."""

    def __init__(self, private_key: Ed25519PrivateKey | None = None) -> None:
        self.private_key = private_key or Ed25519PrivateKey.generate()

    def public_line(self) -> str:
        return base64.b64encode(public_key_bytes(self.private_key.public_key())).decode()

    def claims(self, days: float = 30, environment: str = "dev", **limits: float) -> LicenseClaims:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        return LicenseClaims(
            kid=new_key_id(),
            iss=issuer_id(self.private_key.public_key()),
            customer="test",
            environment=environment,
            issued_at=now,
            expires_at=now + timedelta(days=days),
            limits=Limits(**limits),
        )

    def issue(self, days: float = 30, environment: str = "dev", **limits: float) -> str:
        return sign(self.claims(days, environment, **limits), self.private_key)


@dataclass
class ScriptedServer:
    """An API stand-in on 127.0.0.1 that answers each request with the next scripted
    (status, JSON body, headers), then 200 with `final`; it records when each request came and its headers."""

    script: list[tuple[int, dict, dict]]
    final: dict = field(default_factory=lambda: {"text": "ok", "words": [], "confidence": 1.0, "duration": 1.0, "language": "en"})
    times: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.times.append(time.monotonic())
                server.headers.append(dict(self.headers))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body, headers = server.script.pop(0) if server.script else (200, server.final, {})
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = _answer  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


DRIP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: 60\r\n\r\n"


class Dripper:
    """A server on a loopback address that answers each connection at one byte a second for a minute: `head` at
    once (or, with drip_head, a byte a second too) and then 60 more bytes."""

    def __init__(self, head: bytes = DRIP_HEAD, drip_head: bool = False, host: str = "127.0.0.1") -> None:
        self.head, self.host = head, host
        self.drip_head = drip_head
        self.accepted = 0
        self.stop = threading.Event()
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def url(self, path: str = "/slow.wav") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request (or TLS ClientHello): one segment on loopback
            pieces = [self.head[i : i + 1] for i in range(len(self.head))] if self.drip_head else [self.head]
            pieces += [b"x"] * 60
            for i, piece in enumerate(pieces):
                if (i and self.stop.wait(1.0)) or not _send(conn, piece):
                    return

    def close(self) -> None:
        self.stop.set()
        self.acceptor.join()
        self.listener.close()


def _send(conn: socket.socket, data: bytes) -> bool:
    try:
        conn.sendall(data)
        return True
    except OSError:  # the client gave up
        return False
