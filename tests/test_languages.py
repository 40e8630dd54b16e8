"""Languages with Whisper base through the real service, served from configs/cpu-multilingual.yaml:
`language=xx` transcribes in that language, `detect_language=true` / `language=multi` identifies it
(FLEURS clips), in files and in a live stream."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import jiwer
import pytest
import requests
import websockets.exceptions
import websockets.sync.client
import yaml

from serve_app.pipeline.decode import decode

from .conftest import ROOT, Licensing, ServeProcess, Server
from .helpers import DATA, manifest, normalize
from .support import paced

pytestmark = pytest.mark.e2e

CLIPS = {lang: f"fleurs-{lang}-000.ogg" for lang in ("de", "es", "fr", "pt")}


@pytest.fixture(scope="module")
def base_server(tmp_path_factory: pytest.TempPathFactory, licensing: Licensing) -> Iterator[Server]:
    # The shipped config itself, fitted encoder windows included (engine.window), in float32 (what
    # `dtype: auto` takes on a CPU without native bfloat16): every CI machine runs it, whatever its
    # CPU; the other servers run the defaults.
    config = yaml.safe_load((ROOT / "configs/cpu-multilingual.yaml").read_text())
    engine = config["applications"][0]["args"]["engine"]
    assert engine["window"]
    engine.update(dtype="float32")
    process = ServeProcess(tmp_path_factory.mktemp("base"), licensing, {}, config=config)
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


# FLEURS sentences are translations of one English set: each clip's English sentence carries these words.
TRANSLATIONS = {
    "de": ("hong kong", "island", "kowloon"),  # "...the best views of Hong Kong, leave the island and head to Kowloon"
    "es": ("travel", "risk", "weather"),  # "Travelers are strongly advised to be aware of any risk of severe weather..."
}


@pytest.mark.parametrize("lang", sorted(TRANSLATIONS))
def test_openai_sdk_translates_to_english(base_server: Server, lang: str) -> None:
    from openai import OpenAI

    client = OpenAI(api_key=base_server.key, base_url=f"{base_server.url}/v1", max_retries=0)
    with (DATA / CLIPS[lang]).open("rb") as f:
        result = client.audio.translations.create(file=f, model="whisper-1")
    text = normalize(result.text)
    missing = [word for word in TRANSLATIONS[lang] if word not in text]
    assert len(missing) <= 1, (missing, result.text)  # one key word may come out as a synonym
    spoken = set(normalize(manifest()[CLIPS[lang]]["text"]).split())
    assert len(spoken & set(text.split())) <= 2, text  # English, not the words spoken (names aside)


def test_listen_translates_and_reports_the_spoken_language(base_server: Server) -> None:
    body = _listen(base_server, CLIPS["de"], translate="en")
    assert body["language"] == "de" and "hong kong" in normalize(body["text"])


def test_a_live_stream_in_german_reads_like_the_file(base_server: Server) -> None:
    # Live finals and interims go through the fitted windows too: each interim in a window just
    # larger than the utterance so far. A looping first utterance (seen with tiny.en in 12 s windows)
    # would show up here as a far higher WER than the file's.
    pcm = (decode((DATA / CLIPS["de"]).read_bytes(), 60) * 32767).astype("<i2").tobytes()
    url = f"{base_server.url.replace('http', 'ws', 1)}/v1/listen?encoding=linear16&sample_rate=16000&language=de&interim_results=true"
    finals: list[str] = []
    with websockets.sync.client.connect(url, additional_headers=base_server.auth) as ws:
        sender = threading.Thread(target=lambda: (paced(ws.send, pcm), ws.send(json.dumps({"type": "CloseStream"}))))
        sender.start()
        while True:
            try:
                event = json.loads(ws.recv(timeout=20))  # a stuck stream fails here rather than hanging
            except websockets.exceptions.ConnectionClosedOK:
                break
            if event.get("type") == "Results" and event["is_final"]:
                finals.append(event["channel"]["alternatives"][0]["transcript"])
        sender.join()
    reference = normalize(manifest()[CLIPS["de"]]["text"])
    streamed = jiwer.wer(reference, normalize(" ".join(finals)))
    filed = jiwer.wer(reference, normalize(_listen(base_server, CLIPS["de"], language="de")["text"]))
    assert streamed <= max(0.3, filed + 0.1), (streamed, filed, finals)
