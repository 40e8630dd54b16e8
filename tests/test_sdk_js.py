"""The JavaScript SDK (`clients/js`, `@smallest/client`): its own unit tests (node --test, their live
streams against the ingress on a fake engine served here), the seed's snippet, the SDK and a live
stream against the real server, and `npm pack`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server
from .helpers import JFK_FLAC, FileServer, manifest, normalize, serving
from .support import JFK_PCM, KEY, FakeEngine, js_sdk_installed, make_ingress, served
from .support import JS_SDK as SDK

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js 18+ is needed (scripts/test.sh installs it)")

# The seed's JavaScript snippet, exactly; the test points its URLs and key at the test server.
SEED_SNIPPET = """import { SmallestClient } from '@smallest/client' ;
const client = new SmallestClient ({
apiUrl: 'http://localhost:7100' ,
licenseKey: 'your-license-key-here'
});
const result = await client . transcribeUrl ( 'https://example.com/audio.wav' );
console . log ( result . text );
"""

REAL_SERVER = """import { SmallestClient, InvalidLicenseError } from '@smallest/client';
const client = new SmallestClient({ apiUrl: process.env.API_URL });  // the key from LICENSE_KEY
const result = await client.transcribeFile(process.env.AUDIO_PATH, { timestamps: true });
const bad = await new SmallestClient({ apiUrl: process.env.API_URL, licenseKey: 'stt1.not-a-key' }).transcribeFile(process.env.AUDIO_PATH).catch((e) => e);
console.log(JSON.stringify({ text: result.text, duration: result.duration, first: result.words[0], invalid: bad instanceof InvalidLicenseError }));
"""


LIVE = """import { SmallestClient } from '@smallest/client';
import { readFile } from 'node:fs/promises';
const pcm = await readFile(process.env.PCM_PATH);  // the JFK clip, 16 kHz linear16
const client = new SmallestClient({ apiUrl: process.env.API_URL });
const stream = await client.listen({ encoding: 'linear16', sample_rate: 16000, language: 'en', interim_results: true });
let interims = 0;
stream.on('transcript', (r) => { if (!r.isFinal && r.text) interims += 1; });
const started = Date.now();
for (let k = 0; k * 3200 < pcm.length; k += 1) {  // 100 ms frames at the pace of speech
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + k * 100 - Date.now())));
  stream.send(pcm.subarray(k * 3200, (k + 1) * 3200));
}
const metadata = await stream.close();
console.log(JSON.stringify({ finals: stream.finals, interims, duration: metadata.duration }));
"""


def node_command(*args: str) -> list[str]:
    """`node` with a global WebSocket where the version has one behind a flag (Node 20, 21): the SDK's
    tests then stream through it as a browser would (Node 22 has it anyway; without it they use `ws`)."""
    assert NODE is not None
    major = int(subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout.lstrip("v").split(".")[0])
    return [NODE, *(["--experimental-websocket"] if major in (20, 21) else []), *args]


@pytest.fixture(scope="module")
def sdk_dependencies() -> None:
    js_sdk_installed()


@pytest.fixture(scope="module")
def fake_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ingress on the fake engine (every utterance is "Hello world."), on a real socket, with a
    2 s stream idle timeout (the SDK's KeepAlive test) and finals at every pause."""
    tmp = tmp_path_factory.mktemp("fake_service")
    ingress = make_ingress(FakeEngine(), tmp, {"stream": {"idle_timeout_s": 2, "min_final_speech_s": 0}})
    with served(ingress) as url:
        yield url


def _node(tmp_path: Path, script: str, env: dict[str, str] | None = None) -> str:
    """Run `script` as an ES module that imports the SDK by its package name."""
    modules = tmp_path / "node_modules" / "@smallest"
    modules.mkdir(parents=True, exist_ok=True)
    if not (modules / "client").exists():
        (modules / "client").symlink_to(SDK, target_is_directory=True)  # its own node_modules (ws) resolve from there
    (tmp_path / "main.mjs").write_text(script)
    done = subprocess.run(
        [NODE, "main.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sdk_unit_tests_pass(sdk_dependencies: None, fake_service: str, tmp_path: Path) -> None:
    (tmp_path / "jfk.pcm").write_bytes(JFK_PCM)
    env = {**os.environ, "STT_URL": fake_service, "STT_KEY": KEY, "STT_PCM": str(tmp_path / "jfk.pcm")}
    done = subprocess.run(node_command("--test", "test/"), cwd=SDK, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Nothing skipped: the live streams against the service ran too.
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout and "# skipped 0" in done.stdout


def test_npm_pack_has_the_module_and_its_types() -> None:
    done = subprocess.run(
        ["npm", "pack", "--dry-run", "--json"], cwd=SDK, capture_output=True, text=True, timeout=120, check=True
    )
    (package,) = json.loads(done.stdout)
    assert package["name"] == "@smallest/client"
    assert {"src/index.js", "src/index.d.ts", "README.md", "package.json"} <= {f["path"] for f in package["files"]}


@pytest.fixture(scope="module")
def storage() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {"/audio.wav": JFK_FLAC.read_bytes()})


@pytest.mark.e2e
def test_seed_snippet_prints_the_transcript(server: Server, storage: FileServer, tmp_path: Path) -> None:
    code = (
        SEED_SNIPPET.replace("http://localhost:7100", server.url)
        .replace("your-license-key-here", server.key)
        .replace("https://example.com/audio.wav", storage.url("/audio.wav"))
    )
    assert normalize(_node(tmp_path, code)) == normalize(manifest()["whisper_jfk.flac"]["text"])


@pytest.mark.e2e
def test_sdk_against_the_real_server(server: Server, tmp_path: Path) -> None:
    out = json.loads(
        _node(tmp_path, REAL_SERVER, {"API_URL": server.url, "LICENSE_KEY": server.key, "AUDIO_PATH": str(JFK_FLAC)})
    )
    assert normalize(out["text"]) == normalize(manifest()["whisper_jfk.flac"]["text"])
    assert out["duration"] == pytest.approx(11.0, abs=0.1) and out["first"]["word"] == "and" and out["invalid"] is True


@pytest.mark.e2e
def test_sdk_live_stream_against_the_real_server(server: Server, sdk_dependencies: None, tmp_path: Path) -> None:
    """The JFK clip streamed at the pace of speech: interims, then finals whose words are the clip's
    reference transcript, all of them before close() resolves with the closing Metadata."""
    (tmp_path / "jfk.pcm").write_bytes(JFK_PCM)
    out = json.loads(
        _node(tmp_path, LIVE, {"API_URL": server.url, "LICENSE_KEY": server.key, "PCM_PATH": str(tmp_path / "jfk.pcm")})
    )
    assert normalize(" ".join(out["finals"])) == normalize(manifest()["whisper_jfk.flac"]["text"])
    assert out["interims"] >= 1 and out["duration"] == pytest.approx(11.0, abs=0.05)
