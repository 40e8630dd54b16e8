"""Self-contained license keys that verify offline.

A key is `stt1.<payload>.<signature>`, both parts base64url without padding. The payload is JSON
(`LicenseClaims`); the signature is Ed25519 over the payload bytes by an issuing key. Servers hold
only public keys (any number, so the issuing key can be rotated: add the new public key, issue with
the new private key, retire the old one later). Nothing ever calls home.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PREFIX = "stt1"


class LicenseError(Exception):
    """A key that is not a valid license; `reason` is safe to show to its holder."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int | None = Field(None, ge=1, description="None: unlimited")
    concurrent_requests: int | None = Field(None, ge=1)
    audio_hours_per_day: float | None = Field(None, gt=0)
    audio_hours_per_month: float | None = Field(None, gt=0)


class LicenseClaims(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kid: str = Field(description="key id: names the key in usage, logs, metrics and revocations")
    iss: str = Field(description="issuer id: fingerprint of the public key that verifies this key")
    customer: str
    environment: Literal["dev", "staging", "prod"]
    issued_at: datetime
    expires_at: datetime
    limits: Limits = Limits()
    features: list[str] = []


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def issuer_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key_bytes(key)).hexdigest()[:16]


def new_key_id() -> str:
    return secrets.token_hex(8)


def sign(claims: LicenseClaims, private_key: Ed25519PrivateKey) -> str:
    payload = claims.model_dump_json().encode()
    return f"{PREFIX}.{_b64(payload)}.{_b64(private_key.sign(payload))}"


def read_claims(token: str) -> LicenseClaims:
    """The claims of a well-formed key, without checking its signature (for inspection and logs)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise LicenseError("malformed")
    try:
        return LicenseClaims.model_validate_json(_unb64(parts[1]))
    except (ValueError, ValidationError) as exc:
        raise LicenseError("malformed") from exc


class PublicKeys:
    """The issuers this server trusts, by issuer id."""

    def __init__(self, keys: list[Ed25519PublicKey]) -> None:
        self.by_id = {issuer_id(k): k for k in keys}

    def __reduce__(self) -> tuple:
        # Key objects do not pickle; raw bytes do (this crosses into Serve replicas).
        return (_public_keys_from_raw, ([public_key_bytes(k) for k in self.by_id.values()],))

    @classmethod
    def from_lines(cls, lines: list[str]) -> "PublicKeys":
        """One base64 raw Ed25519 public key per line; blank lines and `#` comments are skipped."""
        keys = []
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(line)))
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path) -> "PublicKeys":
        return cls.from_lines(path.read_text().splitlines())

    def verify(self, token: str) -> LicenseClaims:
        """Claims of a genuine key; expiry and revocation are the caller's (they need a clock)."""
        claims = read_claims(token)
        key = self.by_id.get(claims.iss)
        if key is None:
            raise LicenseError("unknown issuer")
        _, payload, signature = token.split(".")
        try:
            key.verify(_unb64(signature), _unb64(payload))
        except (InvalidSignature, ValueError) as exc:
            raise LicenseError("bad signature") from exc
        return claims


def _public_keys_from_raw(raw: list[bytes]) -> PublicKeys:
    return PublicKeys([Ed25519PublicKey.from_public_bytes(b) for b in raw])


def utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def iso(dt: datetime) -> str:
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")
