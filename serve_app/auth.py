"""License key -> principal. For now a configured set of keys, held only as SHA-256 hashes.

The full license system (signed keys, expiry, limits) replaces `KeyStore` behind the same
`Authenticator` protocol: `authenticate(header) -> Principal` or raise a `ServiceError`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

from .errors import InvalidLicense

_SCHEMES = ("token", "bearer")


@dataclass(frozen=True)
class Principal:
    key_id: str  # a short, non-secret fingerprint: safe to log


class Authenticator(Protocol):
    def authenticate(self, authorization: str | None) -> Principal: ...


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def read_key_hashes(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def parse_authorization(header: str | None) -> str | None:
    """`Token KEY` or `Bearer KEY`, scheme case-insensitive; anything else is no key."""
    scheme, _, key = (header or "").strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() in _SCHEMES and key else None


class KeyStore:
    def __init__(self, key_hashes: Iterable[str]) -> None:
        self._digests = [bytes.fromhex(h.removeprefix("sha256:")) for h in key_hashes]

    def authenticate(self, authorization: str | None) -> Principal:
        key = parse_authorization(authorization)
        if key is None:
            raise InvalidLicense()
        digest = hashlib.sha256(key.encode()).digest()
        # Compare against every stored hash in constant time, without an early exit.
        matched = False
        for stored in self._digests:
            matched |= hmac.compare_digest(digest, stored)
        if not matched:
            raise InvalidLicense()
        return Principal(key_id=digest.hex()[:12])
