"""The browser demo (`GET /demo`, serve_app/api/demo.py): served with its Content-Security-Policy when
the config turns it on, absent otherwise; and driven in real headless Chromium, whose fake microphone
plays the JFK clip: the page records it with MediaRecorder (webm/opus), streams it over `WS /v1/listen`
with the key as subprotocol and shows the final text. Against the ingress on the fake engine here (every
utterance "Hello world."), and end to end against the real service (the clip's reference transcript).

Chromium is driven over the Chrome DevTools Protocol directly: its page target's WebSocket, with the
`websockets` library the service already uses (no WebDriver, no extra package). Debian's `chromium`
(scripts/test.sh installs it). The test starts it in a process group of its own and stops it by that
group's id: Browser.close first, then SIGKILL for whatever is left."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.testclient import TestClient
from websockets.sync.client import ClientConnection, connect

from .conftest import Server
from .helpers import manifest, normalize
from .support import JFK_PCM, KEY, FakeEngine, make_ingress, served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
JFK_TEXT = normalize(manifest()["whisper_jfk.flac"]["text"])
CLIP_S = len(JFK_PCM) / 32000


@pytest.fixture
def demo_client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_ingress(FakeEngine(), tmp_path, {"demo_page": True}).__serve_build_asgi_app__()) as client:
        yield client


def test_the_page_its_script_and_style_are_served_under_a_strict_policy(demo_client: TestClient) -> None:
    page = demo_client.get("/demo", headers={"Host": "stt.example:7100"})
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self' ws://stt.example:7100 wss://stt.example:7100"
    assert policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'none'"
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "no-referrer"
    # No inline script or style (the policy would block them), nothing from another origin.
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/demo/demo.js" defer>']
    assert "<style" not in page.text and " style=" not in page.text and "http" not in page.text
    assert 'type="password"' in page.text
    script = demo_client.get("/demo/demo.js")
    assert script.status_code == 200 and script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "['token', key]" in script.text and "console." not in script.text  # the key: a subprotocol, never logged
    assert demo_client.get("/demo/demo.css").headers["content-type"] == "text/css; charset=utf-8"
    assert demo_client.get("/demo/other.js").status_code == 404
    # A Host header that is not a host is left out of the policy, never copied into it.
    odd = demo_client.get("/demo", headers={"Host": "a b;script-src *"})
    assert odd.headers["content-security-policy"].split("connect-src ")[1].split(";")[0] == "'self'"


def test_the_page_is_off_unless_the_config_turns_it_on(tmp_path: Path) -> None:
    with TestClient(make_ingress(FakeEngine(), tmp_path).__serve_build_asgi_app__()) as client:
        for path in ("/demo", "/demo/demo.js"):
            answer = client.get(path)
            assert answer.status_code == 404 and answer.json()["code"] == "NOT_FOUND"


class Chromium:
    """Headless Chromium with the JFK clip as its microphone (`%noloop`: played once, then silence),
    driven over the DevTools protocol on a loopback port it picks itself."""

    def __init__(self, tmp: Path) -> None:
        assert CHROMIUM is not None
        clip = tmp / "jfk.wav"
        with wave.open(str(clip), "wb") as out:  # Chromium's fake capture reads 16-bit PCM WAV
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16000)
            out.writeframes(JFK_PCM)
        profile = tmp / "profile"
        args = [
            CHROMIUM,
            "--headless=new",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--use-fake-ui-for-media-stream",  # grants the microphone without asking
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={clip}%noloop",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",  # no calls home from the test's browser
            *(["--no-sandbox"] if os.geteuid() == 0 else []),  # Chromium's sandbox refuses to run as root
            "about:blank",
        ]
        self.log = tmp / "chromium.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ids = 0
        self.socket: ClientConnection | None = None  # the page target's, while the fixture holds it open
        try:
            self.target = self._page_target(profile / "DevToolsActivePort")
        except BaseException:
            self.close()
            raise

    def _page_target(self, port_file: Path) -> str:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert self.proc.poll() is None, f"chromium exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.socket is not None
        self.ids += 1
        self.socket.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:  # events in between are not needed
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self.ids:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"{expression} still false after {timeout_s} s; status: {self.status()}"
            time.sleep(0.2)
        return value

    def status(self) -> str:
        return str(self.evaluate("document.body.dataset.state + ': ' + document.getElementById('status').textContent"))

    def close(self) -> None:
        """Browser.close, then SIGKILL to whatever of its process group is left; safe to call twice."""
        with contextlib.suppress(Exception):  # a browser that does not close is killed below
            if self.socket is not None:
                self.call("Browser.close")
            self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is needed (scripts/test.sh installs it)")
    browser = Chromium(tmp_path)
    try:
        with connect(browser.target, max_size=None, open_timeout=10) as socket:
            browser.socket = socket
            yield browser
            browser.close()
    finally:
        browser.close()  # idempotent: after a failure too
    assert browser.proc.returncode is not None


def transcribe_with_the_page(browser: Chromium, url: str, key: str) -> tuple[str, list[str]]:
    """Open the page, enter the key, Start; Stop once the clip has played: the final text, and the
    interim texts seen while it played."""
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{url}/demo")
    browser.wait_for("document.readyState === 'complete' && !!document.getElementById('start')", 30)
    browser.evaluate(f"document.getElementById('key').value = {json.dumps(key)}")
    browser.evaluate("document.getElementById('start').click()")
    browser.wait_for("document.body.dataset.state === 'listening'", 30)
    interims: list[str] = []
    until = time.monotonic() + CLIP_S + 2  # the clip, then the silence after it
    while time.monotonic() < until:
        interim = browser.evaluate("document.getElementById('interim').textContent")
        if interim and interim not in interims:
            interims.append(interim)
        time.sleep(0.2)
    browser.evaluate("document.getElementById('stop').click()")
    browser.wait_for("document.body.dataset.state === 'closed'", 60)
    assert browser.status() == "closed: Done.", browser.status()
    return str(browser.evaluate("document.getElementById('final').textContent")), interims


def test_chromium_streams_the_microphone_through_the_page(chromium: Chromium, tmp_path: Path) -> None:
    """The ingress on the fake engine, served on 127.0.0.1: the page's mechanics (microphone,
    MediaRecorder, the subprotocol key, interims replaced, finals appended, a clean close)."""
    ingress = make_ingress(FakeEngine(), tmp_path, {"demo_page": True, "stream": {"min_final_speech_s": 0}})
    with served(ingress) as url:
        final, interims = transcribe_with_the_page(chromium, url, KEY)
    assert interims and set(interims) == {"Hello world."}
    said = final.split("Hello world.")
    assert len(said) >= 2 and not "".join(said).strip(), final  # only whole finals, appended


def test_chromium_with_a_wrong_key_is_told_so(chromium: Chromium, tmp_path: Path) -> None:
    with served(make_ingress(FakeEngine(), tmp_path, {"demo_page": True})) as url:
        chromium.call("Page.navigate", url=f"{url}/demo")
        # 'complete': the page's deferred script has run, so Start has its click handler
        chromium.wait_for("document.readyState === 'complete' && !!document.getElementById('start')", 30)
        chromium.evaluate("document.getElementById('key').value = 'stt1.not-a-key'")
        chromium.evaluate("document.getElementById('start').click()")
        chromium.wait_for("document.body.dataset.state === 'closed'", 30)
        # The browser cannot read a refused handshake; the server accepts, sends the error and closes with its code.
        assert chromium.status().startswith("closed: Stream ended: INVALID_LICENSE: "), chromium.status()


@pytest.mark.e2e
def test_chromium_transcribes_the_clip_through_the_real_service(chromium: Chromium, server: Server) -> None:
    final, interims = transcribe_with_the_page(chromium, server.url, server.key)
    assert normalize(final) == JFK_TEXT
    assert interims
