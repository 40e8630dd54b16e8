"""Licensing end to end on the real service (two ingress replicas, the real engine): limits that
hold across replicas, revocation through the operator CLI without a restart, and usage that survives
a full restart of the application with the embedded store and with Redis."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from serve_app.licensing.keys import read_claims

from .conftest import Licensing, Server, ServeProcess, stt_license
from .helpers import JFK_MP3, LONG

pytestmark = pytest.mark.e2e


def post(url: str, key: str, path: Path = JFK_MP3) -> requests.Response:
    return requests.post(
        f"{url}/v1/listen", headers={"Authorization": f"Token {key}", "Content-Type": "audio/mpeg"},
        data=path.read_bytes(), timeout=300,
    )


def usage(url: str, key: str) -> dict:
    response = requests.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_requests_per_minute_hold_across_two_ingress_replicas(server: Server) -> None:
    key = server.licensing.issuer.issue(requests_per_minute=5)
    start = time.monotonic()
    statuses = [post(server.url, key) for _ in range(5)]
    refused = post(server.url, key)
    assert time.monotonic() - start < 60  # all inside one window
    assert [r.status_code for r in statuses] == [200] * 5
    assert refused.status_code == 429 and refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    retry_after = int(refused.headers["Retry-After"])
    assert retry_after == refused.json()["retry_after"] and 1 <= retry_after <= 60
    assert usage(server.url, key)["usage"]["requests_total"] == 5


def test_concurrent_request_limit_under_parallel_requests(server: Server) -> None:
    key = server.licensing.issuer.issue(concurrent_requests=2)
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post(server.url, key, LONG), range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 429, 429, 429, 429], codes
    assert all(r.headers.get("Retry-After") for r in responses if r.status_code == 429)


def test_cli_round_trip_issue_inspect_use_revoke(server: Server) -> None:
    lic = server.licensing
    key = stt_license("issue", "--private-key", str(lic.private_key), "--customer", "acme", "--environment", "staging",
                      "--days", "7", "--requests-per-minute", "100", "--audio-hours-per-month", "10")
    report = stt_license("inspect", key, "--public-keys", str(lic.public_keys), "--revocations", str(lic.revocations))
    assert '"status": "valid"' in report and '"customer": "acme"' in report
    assert post(server.url, key).status_code == 200
    kid = read_claims(key).kid
    stt_license("revoke", kid, "--revocations", str(lic.revocations), "--note", "test")
    assert '"status": "revoked"' in stt_license("inspect", key, "--public-keys", str(lic.public_keys), "--revocations", str(lic.revocations))
    deadline = time.monotonic() + 10
    while (response := post(server.url, key)).status_code == 200:
        assert time.monotonic() < deadline, "revocation not honoured within 10 s"
        time.sleep(0.5)
    assert response.status_code == 401 and response.json()["reason"] == "revoked"


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_usage_survives_a_full_restart(store: str, tmp_path: Path, licensing: Licensing, request: pytest.FixtureRequest) -> None:
    env = {"STT_USAGE_STORE": store}
    if store == "redis":
        env["STT_REDIS_URL"] = request.getfixturevalue("redis_url")
    process = ServeProcess(tmp_path, licensing, env)
    key = licensing.issuer.issue()
    try:
        process.start()
        assert post(process.url, key).status_code == 200
        assert requests.post(f"{process.url}/v1/listen", headers={"Authorization": "Token " + key[:-6] + "AAAAAA"}, timeout=30).status_code == 401
        before = usage(process.url, key)["usage"]
        process.stop()
        process.start()
        after = usage(process.url, key)["usage"]
    finally:
        process.stop()
    assert before["requests_total"] == after["requests_total"] == 1
    assert before["audio_seconds_total"] == after["audio_seconds_total"] == pytest.approx(11.0, abs=0.1)
