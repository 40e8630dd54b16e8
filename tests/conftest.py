"""The `server` fixture: the real application (Ray Serve + vLLM + converted tiny.en) started with
`serve run` on the CPU config, on its own local Ray, listening on 127.0.0.1 only. It is stopped by
the PID (process group) this fixture started, never with `ray stop`."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from serve_app.settings import ROOT

from .helpers import free_port

STARTUP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    log: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.key}"}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # `serve run` shuts Serve and its local Ray down on Ctrl-C
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of this process group is left
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    config = yaml.safe_load((ROOT / "configs/cpu.yaml").read_text())
    config["http_options"].update(host="127.0.0.1", port=port)
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    key = "sk_test_" + secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "STT_LICENSE_KEYS": key,
        # Tests serve audio URLs from 127.0.0.2 only; 127.0.0.1 stays refused (the canary lives there).
        "STT_URL_ALLOWLIST": "127.0.0.2/32",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    log = tmp / "serve.log"
    serve = Path(sys.executable).parent / "serve"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(serve), "run", "--address", "local", str(tmp / "config.yaml")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve run exited with {proc.returncode}; log:\n{log.read_text()[-5000:]}")
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after {STARTUP_TIMEOUT_S} s; log:\n{log.read_text()[-5000:]}")
            time.sleep(2)
        yield Server(url, key, log)
    finally:
        _stop(proc)
