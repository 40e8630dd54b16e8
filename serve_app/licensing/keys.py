"""Self-contained license keys that verify offline.

A key is `stt1.<payload>.<signature>`, both parts base64url without padding. The payload is JSON
(`LicenseClaims`); the signature is Ed25519 over the payload bytes by an issuing key. Servers hold
only public keys (any number, so the issuing key can be rotated: add the new public key, issue with
the new private key, retire the old one later). Nothing ever calls home.

Verification is strict and in this order: a bounded length, exactly three parts, canonical
base64url, then the signature over the exact payload bytes (tried with each trusted issuer key:
there are only a few), and only then is the JSON parsed. Untrusted text never reaches the parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PREFIX = "stt1"
# Keys sign() makes are ~400 characters; many limits and features still fit. Anything longer is
# refused before any decoding, so a huge header costs the server nothing.
MAX_KEY_CHARS = 2048
_SIGNATURE_BYTES = 64  # Ed25519
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class LicenseError(Exception):
    """A key that is not a valid license; `reason` ("malformed" or "bad signature") is safe to show to
    its holder and is one of a fixed set (it labels a metric)."""

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
    """Strict base64url: the urlsafe alphabet only (no padding, whitespace or other characters) and
    canonical (unused trailing bits zero), so exactly one text stands for given bytes."""
    if not _BASE64URL.fullmatch(text):
        raise LicenseError("malformed")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # a length no base64 text can have
        raise LicenseError("malformed") from exc
    if _b64(data) != text:
        raise LicenseError("malformed")
    return data


def _decode(token: str) -> tuple[bytes, bytes]:
    """(payload, signature) bytes of a well-formed key; LicenseError("malformed") otherwise."""
    if len(token) > MAX_KEY_CHARS:
        raise LicenseError("malformed")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise LicenseError("malformed")
    payload, signature = _unb64(parts[1]), _unb64(parts[2])
    if len(signature) != _SIGNATURE_BYTES:
        raise LicenseError("malformed")
    return payload, signature


def _parse(payload: bytes) -> LicenseClaims:
    try:
        return LicenseClaims.model_validate_json(payload)
    except (ValueError, ValidationError) as exc:
        raise LicenseError("malformed") from exc


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
    """The claims of a well-formed key WITHOUT checking its signature: for the operator's `inspect`
    only. Anyone can write these claims, so nothing that writes state (usage, metrics labels, logs
    that name a key) may use them; `PublicKeys.verify` is the way to trust a key."""
    return _parse(_decode(token)[0])


class PublicKeys:
    """The issuers this server trusts, by issuer id."""

    def __init__(self, keys: list[Ed25519PublicKey]) -> None:
        self.by_id = {issuer_id(k): k for k in keys}

    def __reduce__(self) -> tuple:
        # Key objects do not pickle; raw bytes do (this crosses into Serve replicas).
        return (_public_keys_from_raw, ([public_key_bytes(k) for k in self.by_id.values()],))

    @classmethod
    def from_lines(cls, lines: list[str]) -> PublicKeys:
        """One base64 raw Ed25519 public key per line; blank lines and `#` comments are skipped."""
        keys = []
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(line)))
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path) -> PublicKeys:
        return cls.from_lines(path.read_text().splitlines())

    def verify(self, token: str) -> LicenseClaims:
        """Claims of a genuine key; expiry and revocation are the caller's (they need a clock).

        The signature is checked before the claims are read, so an unknown issuer is "bad signature"
        too: which issuer a forged key names is not worth parsing it for."""
        payload, signature = _decode(token)
        issuer = self._signer(payload, signature)
        if issuer is None:
            raise LicenseError("bad signature")
        claims = _parse(payload)
        if claims.iss != issuer:  # signed by a trusted issuer that wrote another's id: its bug
            raise LicenseError("malformed")
        return claims

    def _signer(self, payload: bytes, signature: bytes) -> str | None:
        """The id of the trusted issuer whose key verifies `signature` over `payload`, if any."""
        for iss, key in self.by_id.items():
            try:
                key.verify(signature, payload)
            except InvalidSignature:
                continue
            return iss
        return None


def _public_keys_from_raw(raw: list[bytes]) -> PublicKeys:
    return PublicKeys([Ed25519PublicKey.from_public_bytes(b) for b in raw])


def utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def iso(dt: datetime) -> str:
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")
