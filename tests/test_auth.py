"""License authentication, table-driven, with an injected clock for expiry."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from serve_app.auth import LicenseAuthenticator, RevocationList, claimed_key_id, parse_authorization
from serve_app.errors import InvalidLicense, LicenseExpired
from serve_app.license import PREFIX, PublicKeys, _b64, read_claims, sign

from .helpers import Issuer

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("header, key", [
    ("Token abc", "abc"), ("Bearer abc", "abc"), ("token abc", "abc"), ("BEARER  abc ", "abc"), ("  tOkEn   abc", "abc"),
    ("Basic abc", None), ("Token", None), ("abc", None), ("", None), (None, None),
])
def test_parse_authorization(header, key) -> None:
    assert parse_authorization(header) == key


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def auth(issuer: Issuer, tmp_path: Path) -> LicenseAuthenticator:
    other = Issuer()  # a second trusted issuer: rotation keeps both valid
    keys = PublicKeys.from_lines([f"# trusted issuers", issuer.public_line(), other.public_line() + "  # next"])
    return LicenseAuthenticator(keys, RevocationList(tmp_path / "revoked.txt", check_every_s=0), clock=lambda: NOW)


def _token(issuer: Issuer, **changes) -> str:
    claims = issuer.claims().model_copy(update={"issued_at": NOW - timedelta(days=1), "expires_at": NOW + timedelta(days=1), **changes})
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
}


@pytest.mark.parametrize("case", CASES_401)
def test_invalid_keys_are_401(auth: LicenseAuthenticator, issuer: Issuer, case: str) -> None:
    with pytest.raises(InvalidLicense) as info:
        auth.authenticate(CASES_401[case](issuer))
    body = info.value.body()
    assert body["error"] == "Invalid license key" and body["code"] == "INVALID_LICENSE" and body["reason"]
    assert info.value.status == 401


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


def test_revocation_file_is_reread_only_when_checked(tmp_path: Path) -> None:
    path = tmp_path / "revoked.txt"
    ticks = iter([0.0, 0.5, 2.0])
    revocations = RevocationList(path, check_every_s=1.0, monotonic=lambda: next(ticks))
    assert "k1" not in revocations  # t=0: read (no file)
    path.write_text("k1\n")
    assert "k1" not in revocations  # t=0.5: not checked again yet
    assert "k1" in revocations  # t=2: changed file re-read


def test_claimed_key_id_for_metering_failures(issuer: Issuer) -> None:
    token = _token(issuer)
    assert claimed_key_id(f"Token {token}") == read_claims(token).kid
    assert claimed_key_id("Token nonsense") is None and claimed_key_id(None) is None


def test_server_can_accept_only_some_environments(issuer: Issuer) -> None:
    auth = LicenseAuthenticator(PublicKeys.from_lines([issuer.public_line()]), RevocationList(None), clock=lambda: NOW, environments=["prod"])
    with pytest.raises(InvalidLicense, match="Invalid license key") as info:
        auth.authenticate(f"Token {_token(issuer)}")  # a dev key
    assert "dev" in info.value.body()["reason"]
    assert auth.authenticate(f"Token {_token(issuer, environment='prod')}").claims.environment == "prod"
