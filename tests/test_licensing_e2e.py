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

from .conftest import Licensing, ServeProcess, Server, stt_license
from .helpers import JFK_MP3, LONG
from .ray_logs import ingress_replica_logs

pytestmark = pytest.mark.e2e


def post(url: str, key: str, path: Path = JFK_MP3) -> requests.Response:
    return requests.post(
        f"{url}/v1/listen",
        headers={"Authorization": f"Token {key}", "Content-Type": "audio/mpeg"},
        data=path.read_bytes(),
        timeout=300,
    )


def usage(url: str, key: str) -> dict:
    response = requests.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def listen_lines(server: Server) -> dict[int, int]:
    """Per ingress replica (pid), the `POST /v1/listen` access lines in that replica's own worker log
    files: a request counts for the replica that answered it, whatever its status."""
    replicas = ingress_replica_logs(str(server.log.parent / "usage.sqlite3"))
    assert len(replicas) == 2 and all(replicas.values()), replicas  # two replicas, each with its log files
    return {pid: sum(f.read_text(errors="replace").count("POST /v1/listen ") for f in files) for pid, files in replicas.items()}


def assert_both_replicas_answered(server: Server, before: dict[int, int], requests_sent: int) -> None:
    """Each replica logged at least one of the `requests_sent` requests sent since `before`."""
    grew: dict[int, int] = {}
    for _ in range(100):  # a replica's line reaches its file a moment after the answer
        grew = {pid: count - before.get(pid, 0) for pid, count in listen_lines(server).items()}
        if sum(grew.values()) >= requests_sent:
            break
        time.sleep(0.1)
    assert sum(grew.values()) >= requests_sent and all(n >= 1 for n in grew.values()), grew


def test_requests_per_minute_hold_across_two_ingress_replicas(server: Server) -> None:
    key = server.licensing.issuer.issue(requests_per_minute=5)
    before = listen_lines(server)
    start = time.monotonic()
    with ThreadPoolExecutor(6) as pool:  # at once: Serve's router spreads requests in flight over both replicas
        responses = list(pool.map(lambda _: post(server.url, key), range(6)))
    assert time.monotonic() - start < 60  # all inside one window
    assert sorted(r.status_code for r in responses) == [200] * 5 + [429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    retry_after = int(refused.headers["Retry-After"])
    assert retry_after == refused.json()["retry_after"] and 1 <= retry_after <= 60
    assert usage(server.url, key)["usage"]["requests_total"] == 5
    assert_both_replicas_answered(server, before, 6)  # the limit held over requests both replicas answered


def test_concurrent_request_limit_under_parallel_requests(server: Server) -> None:
    key = server.licensing.issuer.issue(concurrent_requests=2)
    before = listen_lines(server)
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: post(server.url, key, LONG), range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 429, 429, 429, 429], codes
    assert all(r.headers.get("Retry-After") for r in responses if r.status_code == 429)
    assert_both_replicas_answered(server, before, 6)


def test_cli_round_trip_issue_inspect_use_revoke(server: Server) -> None:
    lic = server.licensing
    key = stt_license(
        "issue",
        "--private-key",
        str(lic.private_key),
        "--customer",
        "acme",
        "--environment",
        "staging",
        "--days",
        "7",
        "--requests-per-minute",
        "100",
        "--audio-hours-per-month",
        "10",
    )
    report = stt_license("inspect", key, "--public-keys", str(lic.public_keys), "--revocations", str(lic.revocations))
    assert '"status": "valid"' in report and '"customer": "acme"' in report
    assert post(server.url, key).status_code == 200
    kid = read_claims(key).kid
    stt_license("revoke", kid, "--revocations", str(lic.revocations), "--note", "test")
    assert '"status": "revoked"' in stt_license(
        "inspect", key, "--public-keys", str(lic.public_keys), "--revocations", str(lic.revocations)
    )
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
        assert (
            requests.post(
                f"{process.url}/v1/listen", headers={"Authorization": "Token " + key[:-6] + "AAAAAA"}, timeout=30
            ).status_code
            == 401
        )
        before = usage(process.url, key)["usage"]
        process.stop()
        process.start()
        after = usage(process.url, key)["usage"]
    finally:
        process.stop()
    assert before["requests_total"] == after["requests_total"] == 1
    assert before["audio_seconds_total"] == after["audio_seconds_total"] == pytest.approx(11.0, abs=0.1)
