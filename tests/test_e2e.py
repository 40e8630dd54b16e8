"""End to end: the real model through vLLM inside Ray Serve, over HTTP on 127.0.0.1."""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import jiwer
import numpy as np
import pytest
import requests

from serve_app.licensing.keys import read_claims, sign
from serve_app.pipeline.decode import decode

from .conftest import Server, stt_license
from .helpers import DATA, JFK_FLAC, JFK_MP3, LONG, STEREO, FileServer, Issuer, manifest, normalize, serving, wav_bytes
from .ray_logs import all_log_text

pytestmark = pytest.mark.e2e
JFK_TEXT = normalize(manifest()["whisper_jfk.flac"]["text"])


@pytest.fixture(scope="module")
def storage() -> Iterator[FileServer]:
    yield from serving("127.0.0.2", {"/jfk.flac": JFK_FLAC.read_bytes()})


@pytest.fixture
def canary() -> Iterator[FileServer]:
    yield from serving("127.0.0.1", {"/jfk.flac": JFK_FLAC.read_bytes()})


def listen(server: Server, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/v1/listen", headers={**server.auth, **kwargs.pop("headers", {})}, timeout=300, **kwargs)


def test_health(server: Server) -> None:
    assert requests.get(f"{server.url}/health", timeout=10).json() == {"status": "healthy"}
    detailed = requests.get(f"{server.url}/health?detailed=true", timeout=10).json()
    assert detailed["status"] == "healthy" and detailed["version"] and detailed["uptime_s"] > 0
    assert detailed["components"]["engine"] == {"status": "healthy", "model": "whisper-tiny.en", "replicas_running": 1}
    assert detailed["components"]["usage_store"]["kind"] == "sqlite" and detailed["components"]["license"]["issuer_keys"] >= 1


def test_jfk_through_each_input_mode(server: Server, storage: FileServer) -> None:
    earlier = len(storage.requests)  # the storage is the module's: other tests' fetches are not this test's
    responses = [
        listen(server, json={"url": storage.url("/jfk.flac")}),
        listen(server, data=JFK_FLAC.read_bytes(), headers={"Content-Type": "audio/flac"}),
        listen(server, files={"audio": ("jfk.flac", JFK_FLAC.read_bytes(), "audio/flac")}),
        listen(server, files={"file": ("jfk.mp3", JFK_MP3.read_bytes(), "audio/mpeg")}),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        body = response.json()
        assert normalize(body["text"]) == JFK_TEXT
        assert normalize(body["results"]["channels"][0]["alternatives"][0]["transcript"]) == JFK_TEXT
        assert body["duration"] == pytest.approx(11.0, abs=0.1) and body["language"] == "en"
    assert storage.requests[earlier:] == ["/jfk.flac"]  # one fetch, by the URL request only


def test_stereo_is_mixed_down(server: Server) -> None:
    # JFK on the left at full level and on the right at half level: the mix is still JFK.
    mono = (decode(JFK_FLAC.read_bytes(), 60) * 0.9 * 32767).astype(np.int16)
    stereo = np.stack([mono, mono // 2], axis=1)
    response = listen(server, data=wav_bytes(stereo), headers={"Content-Type": "audio/wav"})
    assert response.status_code == 200, response.text
    assert normalize(response.json()["text"]) == JFK_TEXT


def test_real_two_speaker_stereo_file(server: Server) -> None:
    # One speaker per channel, talking at once: mixed down, the louder left speaker comes through.
    response = listen(server, data=STEREO.read_bytes(), headers={"Content-Type": "audio/wav"})
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == pytest.approx(5.0, abs=0.05)
    assert "behind the curtain on the left" in normalize(response.json()["text"])


def test_multichannel_gives_each_speaker_their_channel(server: Server) -> None:
    texts = manifest()[STEREO.name]["channel_texts"]
    response = listen(server, data=STEREO.read_bytes(), headers={"Content-Type": "audio/wav"}, params={"multichannel": "true"})
    assert response.status_code == 200, response.text
    channels = response.json()["results"]["channels"]
    assert len(channels) == 2
    for channel, side in zip(channels, ("left", "right")):
        assert jiwer.wer(normalize(texts[side]), normalize(channel["alternatives"][0]["transcript"])) <= 0.2, channel


def test_no_repetition_loop_on_a_phone_call(server: Server) -> None:
    """Greedy decoding of this call's first window loops on "Hello." until the token limit; the
    compression-ratio fallback decodes it again and the conversation comes through."""
    name = "pyannote_sample.wav"
    response = listen(server, data=(DATA / name).read_bytes(), headers={"Content-Type": "audio/wav"})
    assert response.status_code == 200, response.text
    words = normalize(response.json()["text"]).split()
    assert words.count("hello") <= 6, response.json()["text"]
    assert jiwer.wer(normalize(manifest()[name]["text"]), " ".join(words)) <= 0.5


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(5 * 16000),  # digital silence: never decoded
        np.random.default_rng(0).normal(0, 0.01, 5 * 16000),  # hiss at -40 dBFS
        0.05 * np.sin(2 * np.pi * 60 * np.arange(5 * 16000) / 16000),  # mains hum
    ],
    ids=["silence", "hiss", "hum"],
)
def test_audio_without_speech_gives_no_words(server: Server, samples: np.ndarray) -> None:
    """Whisper writes "you" for each of these (measured: tiny.en without the no-speech rule)."""
    response = listen(server, data=wav_bytes(samples), headers={"Content-Type": "audio/wav"})
    assert response.status_code == 200, response.text
    alternative = response.json()["results"]["channels"][0]["alternatives"][0]
    assert alternative["transcript"] == "" and alternative["words"] == []
    assert response.json()["duration"] == pytest.approx(5.0)


def test_diarization_of_a_phone_call(server: Server) -> None:
    """Two people on the phone: two speakers found, and each one's introduction is theirs alone."""
    response = listen(
        server,
        data=(DATA / "pyannote_sample.wav").read_bytes(),
        headers={"Content-Type": "audio/wav"},
        params={"diarize": "true", "utterances": "true"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    words = body["results"]["channels"][0]["alternatives"][0]["words"]
    assert {w["speaker"] for w in words} == {0, 1}

    def speaker_of(phrase: str) -> set[int]:
        said = [normalize(w["word"]) for w in words]
        n = len(phrase.split())
        at = next(i for i in range(len(said)) if said[i : i + n] == phrase.split())
        return {w["speaker"] for w in words[at : at + n]}

    diane, sheila = speaker_of("this is diane"), speaker_of("sheila")
    assert len(diane) == 1 and len(sheila) == 1 and diane != sheila
    assert all(
        len({w["speaker"] for w in u["words"]}) == 1 and u["speaker"] == u["words"][0]["speaker"]
        for u in body["results"]["utterances"]
    )


def test_long_file_comes_back_whole(server: Server) -> None:
    entry = manifest()[LONG.name]
    response = listen(server, data=LONG.read_bytes(), headers={"Content-Type": "audio/flac"})
    assert response.status_code == 200, response.text
    hypothesis = normalize(response.json()["text"]).split()
    reference = normalize(entry["text"]).split()
    assert jiwer.wer(" ".join(reference), " ".join(hypothesis)) <= 0.12
    # Every sentence is there: most of its words align with the transcript, in order.
    matched = set()
    for block in difflib.SequenceMatcher(None, reference, hypothesis, autojunk=False).get_matching_blocks():
        matched.update(range(block.a, block.a + block.size))
    start = 0
    for segment in entry["segments"]:
        n = len(normalize(segment["text"]).split())
        found = sum(1 for i in range(start, start + n) if i in matched)
        assert found >= 0.6 * n, f"sentence missing: {segment['text']!r}"
        start += n
    assert start == len(reference)


def test_long_file_sentence_starts_are_timed(server: Server) -> None:
    """Word times come from the model: each sentence's first word (where the transcript has it)
    starts within 1 s of the sentence in the recording, with a median error of at most 0.25 s."""
    entry = manifest()[LONG.name]
    response = listen(server, data=LONG.read_bytes(), headers={"Content-Type": "audio/flac"}, params={"timestamps": "true"})
    assert response.status_code == 200, response.text
    words = response.json()["words"]
    assert all(w["start"] <= w["end"] for w in words) and [w["start"] for w in words] == sorted(w["start"] for w in words)
    predicted = [normalize(w["word"]) for w in words]
    reference = normalize(entry["text"]).split()
    to_predicted = {}
    for block in difflib.SequenceMatcher(None, reference, predicted, autojunk=False).get_matching_blocks():
        to_predicted.update({block.a + k: block.b + k for k in range(block.size)})
    errors, first = [], 0
    for segment in entry["segments"]:
        if first in to_predicted:
            errors.append(abs(words[to_predicted[first]]["start"] - segment["start"]))
        first += len(normalize(segment["text"]).split())
    assert len(errors) >= 0.8 * len(entry["segments"])
    assert float(np.median(errors)) <= 0.25 and max(errors) <= 1.0, sorted(errors)


def test_concurrent_requests_all_succeed(server: Server) -> None:
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: listen(server, data=JFK_MP3.read_bytes(), headers={"Content-Type": "audio/mpeg"}), range(8))
        )
    assert [r.status_code for r in responses] == [200] * 8
    assert {normalize(r.json()["text"]) for r in responses} == {JFK_TEXT}


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"data": b"", "headers": {"Content-Type": "audio/wav"}}, 400, "INVALID_REQUEST"),
        ({"data": b"\x13\x37garbage" * 64, "headers": {"Content-Type": "application/octet-stream"}}, 415, "UNSUPPORTED_FORMAT"),
        ({"data": b"just some text\n" * 20, "headers": {"Content-Type": "audio/mpeg"}}, 415, "UNSUPPORTED_FORMAT"),
        ({"data": b"abc", "headers": {"Content-Type": "application/xml"}}, 415, "UNSUPPORTED_FORMAT"),
        ({"json": {"link": "x"}}, 400, "MISSING_PARAMETER"),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "INVALID_REQUEST"),
        ({"data": b"\0" * 100_000_001, "headers": {"Content-Type": "audio/wav"}}, 413, "FILE_TOO_LARGE"),
    ],
)
def test_bad_inputs(server: Server, kwargs: dict, status: int, code: str) -> None:
    response = listen(server, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert listen(server, data=JFK_MP3.read_bytes(), headers={"Content-Type": "audio/mpeg"}).status_code == 200


def test_url_failures(server: Server, storage: FileServer, canary: FileServer) -> None:
    response = listen(server, json={"url": storage.url("/missing.flac")})
    assert response.status_code == 400 and response.json()["code"] == "URL_FETCH_FAILED"
    response = listen(server, json={"url": f"http://127.0.0.2:{storage.port + 1 if storage.port < 65535 else 1}/a.flac"})
    assert response.status_code == 400 and response.json()["code"] == "URL_FETCH_FAILED"
    response = listen(server, json={"url": canary.url("/jfk.flac")})
    assert response.status_code == 400 and response.json()["code"] == "URL_NOT_ALLOWED"
    assert canary.requests == []


def test_wrong_key(server: Server) -> None:
    response = requests.post(
        f"{server.url}/v1/listen", headers={"Authorization": "Token nope"}, json={"url": "http://127.0.0.2/x"}, timeout=30
    )
    assert response.status_code == 401
    body = response.json()
    assert (body["error"], body["code"], body["reason"]) == ("Invalid license key", "INVALID_LICENSE", "malformed")


def _refused_keys(server: Server) -> list[str]:
    """A revoked key, a forged key (the trusted issuer's name, a stranger's signature) and a genuine key
    with a broken signature, each refused with 401 by the running server."""
    lic = server.licensing
    revoked = lic.issuer.issue()
    stt_license("revoke", read_claims(revoked).kid, "--revocations", str(lic.revocations), "--note", "log test")
    stranger = Issuer()
    forged = sign(stranger.claims().model_copy(update={"iss": lic.issuer.claims().iss}), stranger.private_key)
    bad_signature = lic.issuer.issue()[:-6] + "AAAAAA"
    deadline = time.monotonic() + 10  # the revocation list is re-read while serving
    while (
        response := requests.post(f"{server.url}/v1/listen", headers={"Authorization": f"Token {revoked}"}, timeout=30)
    ).status_code != 401:
        assert time.monotonic() < deadline, "revocation not honoured within 10 s"
        time.sleep(0.5)
    for key in (forged, bad_signature):
        response = requests.post(f"{server.url}/v1/listen", headers={"Authorization": f"Token {key}"}, timeout=30)
        assert response.status_code == 401, response.text
    return [revoked, forged, bad_signature]


def test_keys_never_reach_the_logs(server: Server) -> None:
    """Neither after an accepted request nor after refused ones, in `serve run`'s output or any file of
    the server's Ray session logs (every replica, proxy, controller and worker)."""
    assert listen(server, data=JFK_MP3.read_bytes(), headers={"Content-Type": "audio/mpeg"}).status_code == 200
    keys = [server.key, *_refused_keys(server)]
    for _ in range(300):  # replicas' log lines reach the driver's file a moment later
        log = server.log.read_text(errors="replace")
        if "POST /v1/listen 200" in log:
            break
        time.sleep(0.1)
    assert "POST /v1/listen 200" in log  # the replicas' logs do reach this file
    files = {server.log: log, **all_log_text(str(server.log.parent / "usage.sqlite3"))}
    assert len(files) > 1  # the session's own files were read, not only `serve run`'s output
    for key in keys:
        for secret in (key, key.split(".")[2]):
            leaked = [str(path) for path, text in files.items() if secret in text]
            assert not leaked, f"a license key (or its signature) is in {leaked}"
