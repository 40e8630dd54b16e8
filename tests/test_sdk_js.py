"""The JavaScript SDK (`clients/js`, `@smallest/client`): its own unit tests (node --test), the
seed's snippet and the SDK against the real server, and `npm pack`."""

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

SDK = Path(__file__).parent.parent / "clients" / "js"
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


def _node(tmp_path: Path, script: str, env: dict[str, str] | None = None) -> str:
    """Run `script` as an ES module that imports the SDK by its package name."""
    modules = tmp_path / "node_modules" / "@smallest"
    modules.mkdir(parents=True, exist_ok=True)
    if not (modules / "client").exists():
        (modules / "client").symlink_to(SDK, target_is_directory=True)
    (tmp_path / "main.mjs").write_text(script)
    done = subprocess.run(
        [NODE, "main.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sdk_unit_tests_pass() -> None:
    done = subprocess.run([NODE, "--test", "test/"], cwd=SDK, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout


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
