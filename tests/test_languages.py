"""Languages with the multilingual base model through the real service: `language=xx` transcribes in
that language, `detect_language=true` / `language=multi` identifies it (FLEURS clips)."""

from __future__ import annotations

from collections.abc import Iterator

import jiwer
import pytest
import requests

from .conftest import Licensing, ServeProcess, Server
from .helpers import DATA, manifest, normalize

pytestmark = pytest.mark.e2e

CLIPS = {lang: f"fleurs-{lang}-000.ogg" for lang in ("de", "es", "fr", "pt")}


@pytest.fixture(scope="module")
def base_server(tmp_path_factory: pytest.TempPathFactory, licensing: Licensing) -> Iterator[Server]:
    process = ServeProcess(tmp_path_factory.mktemp("base"), licensing, {}, {"engine": {"model": "models/whisper-base"}})
    try:
        process.start()
        yield Server(process.url, licensing.issuer.issue(), process.log, licensing)
    finally:
        process.stop()


def _listen(server: Server, name: str, **params: str) -> dict:
    response = requests.post(
        f"{server.url}/v1/listen",
        params=params,
        headers={**server.auth, "Content-Type": "audio/ogg"},
        data=(DATA / name).read_bytes(),
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("lang", sorted(CLIPS))
def test_detects_and_transcribes(base_server: Server, lang: str) -> None:
    body = _listen(base_server, CLIPS[lang], detect_language="true")
    assert body["language"] == body["results"]["channels"][0]["detected_language"] == lang
    assert 0.5 < body["language_confidence"] <= 1.0
    wer = jiwer.wer(normalize(manifest()[CLIPS[lang]]["text"]), normalize(body["text"]))
    assert wer <= 0.5, (wer, body["text"])


def test_named_language_is_used(base_server: Server) -> None:
    body = _listen(base_server, CLIPS["fr"], language="fr")
    assert body["language"] == "fr" and "language_confidence" not in body
    assert "accident" in normalize(body["text"])
    detected = _listen(base_server, CLIPS["fr"], language="multi")
    assert detected["language"] == "fr"


def test_unknown_language_is_400(base_server: Server) -> None:
    response = requests.post(
        f"{base_server.url}/v1/listen?language=xx",
        headers={**base_server.auth, "Content-Type": "audio/ogg"},
        data=(DATA / CLIPS["fr"]).read_bytes(),
        timeout=60,
    )
    assert response.status_code == 400 and response.json()["parameter"] == "language"
