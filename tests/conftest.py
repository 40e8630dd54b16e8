"""The `server` fixture: the real application (Ray Serve + vLLM + converted tiny.en) started with
`serve run` on the CPU config, on its own local Ray, listening on 127.0.0.1 only. It is stopped by
the PID (process group) this fixture started, never with `ray stop`."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from starlette.testclient import TestClient

from serve_app.settings import ROOT

# Shared checks (tests/support.py: parallel_quota_burst) report their values on failure like a test's
# own asserts; pytest can rewrite a module's asserts only if it is told before the module is imported.
pytest.register_assert_rewrite("tests.support")

from .helpers import Issuer, free_port  # noqa: E402
from .support import FakeEngine, make_ingress  # noqa: E402

STARTUP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Licensing:
    """What the operator's CLI makes: an issuing key, the public keys file, the revocation list."""

    dir: Path
    issuer: Issuer

    @property
    def public_keys(self) -> Path:
        return self.dir / "issuer.pub"

    @property
    def revocations(self) -> Path:
        return self.dir / "revoked.txt"

    @property
    def private_key(self) -> Path:
        return self.dir / "issuer.key"


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    log: Path
    licensing: Licensing

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.key}"}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `serve run` shuts Serve and its local Ray down on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of this process group is left
    except ProcessLookupError:
        pass


def _wait_until_free(port: int, timeout_s: float = 60) -> None:
    """Until nothing listens on 127.0.0.1:`port` (bound as uvicorn binds, with SO_REUSEADDR)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.5)


class ServeProcess:
    """`serve run --address local` on a copy of configs/cpu.yaml bound to 127.0.0.1, two ingress replicas."""

    def __init__(
        self,
        tmp: Path,
        licensing: Licensing,
        env: dict[str, str],
        args: dict | None = None,
        http: dict | None = None,
        config: dict | None = None,
    ) -> None:
        self.tmp, self.port = tmp, free_port()
        base = config is None
        config = yaml.safe_load((ROOT / "configs/cpu.yaml").read_text()) if base else config
        config["http_options"].update(host="127.0.0.1", port=self.port, **(http or {}))
        # HTTPS when given a certificate (Serve's ssl_* options); clients then trust that certificate.
        self.verify: str | bool = (http or {}).get("ssl_certfile", True)
        app = config["applications"][0]
        for section, values in (args or {}).items():
            app["args"].setdefault(section, {}).update(values)
        if base:  # two ingress replicas: limits and usage must hold across replicas, not per replica
            next(d for d in app["deployments"] if d["name"] == "Ingress")["num_replicas"] = 2
        (tmp / "config.yaml").write_text(yaml.safe_dump(config))
        self.env = {
            **os.environ,
            "STT_LICENSE_PUBLIC_KEYS": str(licensing.public_keys),
            "STT_LICENSE_REVOCATIONS": str(licensing.revocations),
            "STT_USAGE_DB": str(tmp / "usage.sqlite3"),
            # Tests serve audio URLs from 127.0.0.2 only; 127.0.0.1 stays refused (the canary lives there).
            "STT_URL_ALLOWLIST": "127.0.0.2/32",
            "RAY_USAGE_STATS_ENABLED": "0",
            **env,
        }
        self.url = f"{'https' if self.verify is not True else 'http'}://127.0.0.1:{self.port}"
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        _wait_until_free(self.port)  # a restart: the last run's proxy may still be letting go of it
        serve = Path(sys.executable).parent / "serve"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(serve), "run", "--address", "local", str(self.tmp / "config.yaml")],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"serve run exited with {self.proc.returncode}; log:\n{self.log.read_text()[-5000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=5, verify=self.verify).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"server not healthy after {STARTUP_TIMEOUT_S} s; log:\n{self.log.read_text()[-5000:]}")
            time.sleep(2)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis (Debian's redis-server) on 127.0.0.1 with a generated password and AOF on."""
    tmp = tmp_path_factory.mktemp("redis")
    port, password = free_port(), secrets.token_urlsafe(16)
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(tmp),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--requirepass",
            password,
            "--protected-mode",
            "yes",
        ],
        stdout=open(tmp / "redis.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    else:
        pytest.fail("redis-server did not start")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stt_license(*args: str) -> str:
    """The operator CLI, as its console entry point."""
    cli = Path(sys.executable).parent / "stt-license"
    return subprocess.run([str(cli), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def licensing(tmp_path_factory: pytest.TempPathFactory) -> Licensing:
    from serve_app.licensing.cli import load_private_key

    tmp = tmp_path_factory.mktemp("licensing")
    stt_license("keygen", "--private-key", str(tmp / "issuer.key"), "--public-keys", str(tmp / "issuer.pub"))
    (tmp / "revoked.txt").touch()
    return Licensing(tmp, Issuer(load_private_key(tmp / "issuer.key")))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, licensing: Licensing) -> Iterator[Server]:
    """The CPU config (with two ingress replicas, embedded usage store), started once."""
    # Short deadlines so the hostile-input tests (a dripping URL, a trickling body) finish quickly.
    args = {"ingress": {"url_timeout_s": 10, "body_idle_s": 5}}
    process = ServeProcess(tmp_path_factory.mktemp("server"), licensing, {}, args=args)
    try:
        process.start()
        yield Server(process.url, licensing.issuer.issue(), process.log, licensing)
    finally:
        process.stop()


@pytest.fixture
def engine() -> FakeEngine:
    """The fake engine behind `client` (no Ray, no model); a module overrides it to record what the
    ingress sends or to shape what comes back."""
    return FakeEngine()


@pytest.fixture
def client(engine: FakeEngine, tmp_path: Path) -> Iterator[TestClient]:
    """A test client on an ingress in this process whose live streams end an utterance at every pause,
    however little speech it holds, and close after 2 s of silence: the live stream modules' server."""
    ingress = make_ingress(engine, tmp_path, {"stream": {"idle_timeout_s": 2, "min_final_speech_s": 0}})
    with TestClient(ingress.__serve_build_asgi_app__()) as c:
        yield c
