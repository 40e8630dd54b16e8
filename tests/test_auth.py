"""License authentication, table-driven, with injected clocks: verification, validity period,
revocation (failing closed), failure metering that never trusts an unverified claim, and the
per-address throttle of failed attempts (unit and through the ingress with a fake engine)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from serve_app.errors import InvalidLicense, LicenseExpired, ServiceUnavailable
from serve_app.ingress import Ingress
from serve_app.licensing.auth import (
    FAILURE_REASONS,
    UNVERIFIED,
    FailureThrottle,
    LicenseAuthenticator,
    Principal,
    Refusal,
    RevocationList,
    parse_authorization,
)
from serve_app.licensing.keys import PREFIX, PublicKeys, _b64, read_claims, sign

from .helpers import JFK_FLAC, Issuer
from .support import ISSUER, FakeEngine, make_ingress

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
STREAM = "/v1/listen?encoding=linear16&sample_rate=16000"


@pytest.mark.parametrize(
    "header, key",
    [
        ("Token abc", "abc"),
        ("Bearer abc", "abc"),
        ("token abc", "abc"),
        ("BEARER  abc ", "abc"),
        ("  tOkEn   abc", "abc"),
        ("Basic abc", None),
        ("Token", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_authorization(header, key) -> None:
    assert parse_authorization(header) == key


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def auth(issuer: Issuer, tmp_path: Path) -> LicenseAuthenticator:
    other = Issuer()  # a second trusted issuer: rotation keeps both valid
    keys = PublicKeys.from_lines(["# trusted issuers", issuer.public_line(), other.public_line() + "  # next"])
    (tmp_path / "revoked.txt").touch()
    return LicenseAuthenticator(keys, RevocationList(tmp_path / "revoked.txt", check_every_s=0), clock=lambda: NOW)


def _token(issuer: Issuer, **changes) -> str:
    claims = issuer.claims().model_copy(
        update={"issued_at": NOW - timedelta(days=1), "expires_at": NOW + timedelta(days=1), **changes}
    )
    return sign(claims, issuer.private_key)


def test_valid_key_both_schemes_any_case_and_spacing(auth: LicenseAuthenticator, issuer: Issuer) -> None:
    token = _token(issuer)
    for header in (f"Token {token}", f"Bearer {token}", f"token {token}", f"BEARER   {token}  "):
        assert auth.authenticate(header).key_id == read_claims(token).kid


def _tampered(issuer: Issuer) -> str:
    prefix, payload, signature = _token(issuer).split(".")
    forged = issuer.claims().model_copy(update={"expires_at": NOW + timedelta(days=3650)})
    return f"{prefix}.{_b64(forged.model_dump_json().encode())}.{signature}"


CASES_401 = {
    "missing": lambda i: None,
    "empty": lambda i: "",
    "no scheme": lambda i: _token(i),
    "basic scheme": lambda i: f"Basic {_token(i)}",
    "not a key": lambda i: "Token hello",
    "wrong prefix": lambda i: "Token " + _token(i).replace(PREFIX, "stt0", 1),
    "garbage payload": lambda i: f"Token {PREFIX}.!!!.AAAA",
    "json not claims": lambda i: f"Token {PREFIX}.{_b64(b'{}')}.AAAA",
    "tampered claims": lambda i: f"Token {_tampered(i)}",
    "bad signature": lambda i: "Token " + _token(i)[:-4] + "AAAA",
    "unknown issuer": lambda i: "Token " + _token(Issuer()),
    "junk inside the base64": lambda i: "Token " + _token(i).replace(".", ".~", 1),
    "padded": lambda i: "Token " + _token(i) + "==",
    "over-long": lambda i: "Token " + _token(i, features=["x" * 2048]),
}


@pytest.mark.parametrize("case", CASES_401)
def test_invalid_keys_are_401_and_name_no_key(auth: LicenseAuthenticator, issuer: Issuer, case: str) -> None:
    header = CASES_401[case](issuer)
    with pytest.raises(InvalidLicense) as info:
        auth.authenticate(header)
    body = info.value.body()
    assert body["error"] == "Invalid license key" and body["code"] == "INVALID_LICENSE" and body["reason"]
    assert info.value.status == 401
    refusal = auth.check(header)
    assert isinstance(refusal, Refusal) and refusal.key_id is None and refusal.reason in FAILURE_REASONS


def test_revoked_key_is_401_once_the_list_changes(auth: LicenseAuthenticator, issuer: Issuer, tmp_path: Path) -> None:
    token = _token(issuer)
    auth.authenticate(f"Token {token}")
    (tmp_path / "revoked.txt").write_text(f"# revoked keys\n{read_claims(token).kid}  # lost laptop\n")
    with pytest.raises(InvalidLicense) as info:
        auth.authenticate(f"Token {token}")
    assert info.value.body()["reason"] == "revoked"


@pytest.mark.parametrize("offset, expired", [(timedelta(seconds=-1), True), (timedelta(0), True), (timedelta(seconds=1), False)])
def test_expiry_against_the_injected_clock(auth: LicenseAuthenticator, issuer: Issuer, offset: timedelta, expired: bool) -> None:
    token = _token(issuer, expires_at=NOW + offset)
    if not expired:
        auth.authenticate(f"Token {token}")
        return
    with pytest.raises(LicenseExpired) as info:
        auth.authenticate(f"Token {token}")
    expires_at = (NOW + offset).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert info.value.status == 403
    assert info.value.body() == {"error": "License expired", "code": "LICENSE_EXPIRED", "expires_at": expires_at}


@pytest.mark.parametrize(
    "ahead, valid",
    [
        (timedelta(minutes=4), True),
        (timedelta(minutes=5), True),
        (timedelta(minutes=5, seconds=1), False),
        (timedelta(days=1), False),
    ],
)
def test_issued_in_the_future_beyond_the_clock_skew_is_not_yet_valid(
    auth: LicenseAuthenticator, issuer: Issuer, ahead: timedelta, valid: bool
) -> None:
    header = f"Token {_token(issuer, issued_at=NOW + ahead, expires_at=NOW + timedelta(days=2))}"
    if valid:
        assert isinstance(auth.check(header), Principal)
        return
    with pytest.raises(InvalidLicense) as info:
        auth.authenticate(header)
    assert info.value.status == 401 and info.value.body()["reason"] == "not yet valid"


def test_clock_skew_is_configurable(issuer: Issuer) -> None:
    strict = LicenseAuthenticator(
        PublicKeys.from_lines([issuer.public_line()]), RevocationList(None), clock=lambda: NOW, clock_skew=timedelta(0)
    )
    refusal = strict.check(f"Token {_token(issuer, issued_at=NOW + timedelta(seconds=1))}")
    assert isinstance(refusal, Refusal) and refusal.reason == "not_yet_valid"
    assert isinstance(strict.check(f"Token {_token(issuer, issued_at=NOW)}"), Principal)


def test_revocation_file_is_reread_only_when_checked(tmp_path: Path) -> None:
    path = tmp_path / "revoked.txt"
    path.write_text("")
    ticks = iter([0.0, 0.5, 2.0])
    revocations = RevocationList(path, check_every_s=1.0, monotonic=lambda: next(ticks))
    assert not revocations.revoked("k1")  # t=0: read (empty)
    path.write_text("k1\n")
    assert not revocations.revoked("k1")  # t=0.5: not checked again yet
    assert revocations.revoked("k1")  # t=2: changed file re-read


def _unreadable(path: Path, how: str) -> None:
    if how == "a directory":  # unreadable as a file whoever runs the tests (root ignores chmod)
        path.mkdir()
    elif how == "not text":
        path.write_bytes(b"\xff\xfe\x00revoked")


@pytest.mark.parametrize(
    "how, reason",
    [
        ("never created", "revocation file missing"),
        ("a directory", "revocation file unreadable"),
        ("not text", "revocation file unreadable"),
    ],
)
def test_an_unreadable_revocation_file_fails_closed(
    issuer: Issuer, tmp_path: Path, how: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "revoked.txt"
    _unreadable(path, how)
    auth = LicenseAuthenticator(
        PublicKeys.from_lines([issuer.public_line()]), RevocationList(path, check_every_s=0), clock=lambda: NOW
    )
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        for _ in range(3):
            with pytest.raises(ServiceUnavailable) as info:
                auth.authenticate(f"Token {_token(issuer)}")
            assert (
                info.value.status == 503
                and info.value.body()["code"] == "SERVICE_UNAVAILABLE"
                and info.value.body()["retry_after"] > 0
            )
        with pytest.raises(InvalidLicense):  # a forged key is still what it is
            auth.authenticate(f"Token {_token(Issuer())}")
        assert auth.describe() == {"status": "unhealthy", "issuer_keys": 1, "revoked_keys": 0, "reason": reason}
        if path.is_dir():
            path.rmdir()
        path.write_text("someone-else\n")
        assert auth.authenticate(f"Token {_token(issuer)}").claims.environment == "dev"
        assert auth.describe() == {"status": "healthy", "issuer_keys": 1, "revoked_keys": 1}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and reason in errors[0].getMessage()  # once per state change, not per request
    assert sum("readable again" in r.getMessage() for r in caplog.records) == 1


def test_a_revocation_file_that_disappears_refuses_keys_it_did_not_list(issuer: Issuer, tmp_path: Path) -> None:
    path = tmp_path / "revoked.txt"
    path.write_text("")
    auth = LicenseAuthenticator(
        PublicKeys.from_lines([issuer.public_line()]), RevocationList(path, check_every_s=0), clock=lambda: NOW
    )
    auth.authenticate(f"Token {_token(issuer)}")
    path.unlink()
    with pytest.raises(ServiceUnavailable):
        auth.authenticate(f"Token {_token(issuer)}")


def test_no_revocation_file_configured_revokes_nothing(issuer: Issuer) -> None:
    auth = LicenseAuthenticator(PublicKeys.from_lines([issuer.public_line()]), RevocationList(None), clock=lambda: NOW)
    assert isinstance(auth.check(f"Token {_token(issuer)}"), Principal)
    assert auth.describe() == {"status": "healthy", "issuer_keys": 1, "revoked_keys": 0}


def test_only_verified_refusals_carry_their_key_id(auth: LicenseAuthenticator, issuer: Issuer, tmp_path: Path) -> None:
    revoked, expired, early = _token(issuer), _token(issuer, expires_at=NOW), _token(issuer, issued_at=NOW + timedelta(hours=1))
    (tmp_path / "revoked.txt").write_text(read_claims(revoked).kid + "\n")
    for token, reason in ((revoked, "revoked"), (expired, "expired"), (early, "not_yet_valid")):
        refusal = auth.check(f"Token {token}")
        assert isinstance(refusal, Refusal) and (refusal.reason, refusal.key_id) == (reason, read_claims(token).kid)
    forged = auth.check(f"Token {_tampered(issuer)}")
    assert isinstance(forged, Refusal) and forged.key_id is None and forged.reason == "bad_signature"


def test_server_can_accept_only_some_environments(issuer: Issuer) -> None:
    auth = LicenseAuthenticator(
        PublicKeys.from_lines([issuer.public_line()]), RevocationList(None), clock=lambda: NOW, environments=["prod"]
    )
    with pytest.raises(InvalidLicense, match="Invalid license key") as info:
        auth.authenticate(f"Token {_token(issuer)}")  # a dev key
    assert "dev" in info.value.body()["reason"]
    refusal = auth.check(f"Token {_token(issuer)}")
    assert isinstance(refusal, Refusal) and refusal.reason == "wrong_environment" and refusal.key_id
    assert auth.authenticate(f"Token {_token(issuer, environment='prod')}").claims.environment == "prod"


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_refuses_an_address_until_its_minute_ends() -> None:
    ticks = Ticks()
    throttle = FailureThrottle(3, monotonic=ticks)
    for _ in range(3):
        assert throttle.retry_after("203.0.113.7") is None
        throttle.failed("203.0.113.7")
        ticks.now += 10
    assert throttle.retry_after("203.0.113.7") == 30  # the window began at the first failure, 30 s ago
    assert throttle.retry_after("203.0.113.8") is None  # another address is not affected
    ticks.now += 29.5
    assert throttle.retry_after("203.0.113.7") == 1
    ticks.now += 0.5
    assert throttle.retry_after("203.0.113.7") is None
    throttle.failed("203.0.113.7")  # a new window: one failure
    assert throttle.retry_after("203.0.113.7") is None and len(throttle) == 1


def test_throttle_tracks_a_bounded_number_of_addresses() -> None:
    ticks = Ticks()
    throttle = FailureThrottle(1, max_addresses=3, monotonic=ticks)
    for i in range(5):
        throttle.failed(f"198.51.100.{i}")
        ticks.now += 1
    assert len(throttle) == 3
    assert [throttle.retry_after(f"198.51.100.{i}") is not None for i in range(5)] == [False, False, True, True, True]
    ticks.now += 60
    throttle.failed("198.51.100.9")  # ended windows are forgotten first
    assert len(throttle) == 1


def test_throttle_counts_an_ipv6_slash_64_as_one_client() -> None:
    throttle = FailureThrottle(2, monotonic=Ticks())
    throttle.failed("2001:db8:1:2::1")
    throttle.failed("2001:db8:1:2:ffff::9")
    assert throttle.retry_after("2001:db8:1:2::42") is not None
    assert throttle.retry_after("2001:db8:1:3::1") is None
    throttle.failed("::ffff:192.0.2.1")
    throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is not None


def test_throttle_off() -> None:
    throttle = FailureThrottle(None, monotonic=Ticks())
    for _ in range(100):
        throttle.failed("192.0.2.1")
    assert throttle.retry_after("192.0.2.1") is None and len(throttle) == 0


# Through the ingress (fake engine): what a refused key writes, the throttle, the revocation file.


class RecordingMetrics:
    def __init__(self) -> None:
        self.requests: list[tuple[str, int, str]] = []
        self.failures: list[str] = []

    def request(self, route: str, status: int, key_id: str) -> None:
        self.requests.append((route, status, key_id))

    def auth_failure(self, reason: str) -> None:
        self.failures.append(reason)

    def stage(self, name: str, seconds: float) -> None: ...
    def audio(self, key_id: str, seconds: float) -> None: ...
    def quota_remaining(self, key_id: str, period: str, seconds: float) -> None: ...


def _ingress(tmp_path: Path, **args: Any) -> tuple[Ingress, RecordingMetrics]:
    ingress = make_ingress(FakeEngine(), tmp_path, args)
    ingress.metrics = metrics = RecordingMetrics()
    return ingress, metrics


def _client(ingress: Ingress, address: str = "203.0.113.7") -> TestClient:
    return TestClient(ingress.__serve_build_asgi_app__(), client=(address, 40000))


def _post(client: TestClient, key: str) -> Any:
    return client.post(
        "/v1/listen", headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"}, content=JFK_FLAC.read_bytes()
    )


def _metered_key_ids(tmp_path: Path) -> dict[str, float]:
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        return dict(db.execute("SELECT key_id, value FROM counters WHERE name = 'auth_failures' AND period = 'total'").fetchall())


def _forged_as(kid: str) -> str:
    """A key claiming `kid`, signed by an issuer the server does not trust."""
    stranger = Issuer()
    return sign(stranger.claims().model_copy(update={"kid": kid, "iss": ISSUER.claims().iss}), stranger.private_key)


def test_failed_authentications_never_meter_a_claimed_key_id(tmp_path: Path) -> None:
    ingress, metrics = _ingress(tmp_path)
    expired = ISSUER.issue(days=-1)
    with _client(ingress) as c:
        for i in range(3):
            assert _post(c, _forged_as(f"victim-{i}")).status_code == 401
        assert _post(c, "junk").status_code == 401
        assert _post(c, expired).status_code == 403  # genuine: counted under its own key id
        with pytest.raises(WebSocketDenialResponse):
            with c.websocket_connect(STREAM, headers={"Authorization": f"Token {_forged_as('victim-ws')}"}):
                pass
    assert _metered_key_ids(tmp_path) == {UNVERIFIED: 5, read_claims(expired).kid: 1}
    assert {key_id for _, status, key_id in metrics.requests if status >= 400} == {"none"}
    assert metrics.failures == ["bad_signature"] * 3 + ["malformed", "expired", "bad_signature"]


def test_failures_from_one_address_are_throttled_then_recover(tmp_path: Path) -> None:
    ingress, metrics = _ingress(tmp_path, auth_failures_per_minute=3)
    ticks = Ticks()
    ingress.auth_throttle = FailureThrottle(3, monotonic=ticks)
    key = ISSUER.issue()
    with _client(ingress) as c, _client(ingress, "198.51.100.1") as other:
        for _ in range(5):
            assert _post(c, key).status_code == 200  # successes are not counted
        for _ in range(3):
            assert _post(c, "junk").status_code == 401
        ticks.now += 15
        refused = _post(c, key)  # even a valid key: nothing is verified for this address now
        assert refused.status_code == 429 and refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
        assert refused.json()["retry_after"] == 45 and refused.headers["Retry-After"] == "45"
        assert _post(other, key).status_code == 200
        ticks.now += 45
        assert _post(c, key).status_code == 200
    assert _metered_key_ids(tmp_path) == {UNVERIFIED: 3}  # throttled requests write nothing
    assert metrics.failures == ["malformed"] * 3 + ["throttled"]


def test_throttled_stream_handshake_is_429(tmp_path: Path) -> None:
    ingress, _ = _ingress(tmp_path)
    ingress.auth_throttle = FailureThrottle(1, monotonic=Ticks())
    with _client(ingress) as c:
        assert _post(c, "junk").status_code == 401
        with pytest.raises(WebSocketDenialResponse) as denied:
            with c.websocket_connect(STREAM, headers={"Authorization": f"Token {ISSUER.issue()}"}):
                pass
    assert denied.value.status_code == 429 and denied.value.json()["code"] == "RATE_LIMIT_EXCEEDED"


def test_default_throttle_comes_from_the_settings(tmp_path: Path) -> None:
    assert _ingress(tmp_path)[0].auth_throttle.per_minute == 20
    assert _ingress(tmp_path, auth_failures_per_minute=None)[0].auth_throttle.per_minute is None


@pytest.fixture
def missing_revocations(tmp_path: Path) -> Iterator[tuple[Ingress, Path]]:
    ingress, _ = _ingress(tmp_path)
    path = tmp_path / "revoked.txt"  # configured, never created
    ingress.auth = LicenseAuthenticator(PublicKeys.from_lines([ISSUER.public_line()]), RevocationList(path, check_every_s=0))
    yield ingress, path


def test_missing_revocation_file_is_503_and_unhealthy(missing_revocations: tuple[Ingress, Path], tmp_path: Path) -> None:
    ingress, path = missing_revocations
    key = ISSUER.issue()
    with _client(ingress) as c:
        refused = _post(c, key)
        health = c.get("/health?detailed=true")
        path.write_text("")
        healed = c.get("/health?detailed=true")
        assert _post(c, key).status_code == 200
    assert refused.status_code == 503 and refused.json()["code"] == "SERVICE_UNAVAILABLE"
    assert refused.json()["retry_after"] > 0 and refused.headers["Retry-After"]
    assert health.status_code == 503 and health.json()["reason"] == "unhealthy: license"
    assert health.json()["components"]["license"] == {
        "status": "unhealthy",
        "issuer_keys": 1,
        "revoked_keys": 0,
        "reason": "revocation file missing",
    }
    assert healed.status_code == 200 and healed.json()["components"]["license"]["status"] == "healthy"
    assert _metered_key_ids(tmp_path) == {}  # the server's failure is not the client's
    assert ingress.auth_throttle.retry_after("203.0.113.7") is None and len(ingress.auth_throttle) == 0
