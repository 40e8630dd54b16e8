"""License key -> principal. Keys are verified offline against the configured issuer public keys,
then checked for expiry (with an injected clock) and against the revocation list, which is re-read
whenever its file changes so revocations reach a running server within seconds."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Collection, Protocol

from .errors import InvalidLicense, LicenseExpired
from .license import LicenseClaims, LicenseError, PublicKeys, iso, read_claims, utc

Clock = Callable[[], datetime]
_SCHEMES = ("token", "bearer")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Principal:
    claims: LicenseClaims

    @property
    def key_id(self) -> str:  # not secret: safe for logs and metrics
        return self.claims.kid


class Authenticator(Protocol):
    def authenticate(self, authorization: str | None) -> Principal: ...

    def describe(self) -> dict[str, int]:
        """Counts for /health?detailed=true: issuer keys trusted, keys revoked."""


def parse_authorization(header: str | None) -> str | None:
    """`Token KEY` or `Bearer KEY`, scheme case-insensitive; anything else is no key."""
    scheme, _, key = (header or "").strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() in _SCHEMES and key else None


def claimed_key_id(authorization: str | None) -> str | None:
    """The key id a rejected request claimed, for metering failed attempts; None if unreadable."""
    try:
        return read_claims(parse_authorization(authorization) or "").kid
    except LicenseError:
        return None


class RevocationList:
    """Revoked key ids, one per line (`#` comments allowed), re-read when the file's mtime changes."""

    def __init__(self, path: Path | None, check_every_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path, self.check_every_s, self.monotonic = path, check_every_s, monotonic
        self._ids: frozenset[str] = frozenset()
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")

    def __contains__(self, key_id: str) -> bool:
        self._refresh()
        return key_id in self._ids

    def __len__(self) -> int:
        self._refresh()
        return len(self._ids)

    def _refresh(self) -> None:
        now = self.monotonic()
        if self.path is None or now - self._checked < self.check_every_s:
            return
        self._checked = now
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._ids, self._stamp = frozenset(), None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            lines = (line.split("#", 1)[0].strip() for line in self.path.read_text().splitlines())
            self._ids, self._stamp = frozenset(line for line in lines if line), stamp


class LicenseAuthenticator:
    def __init__(
        self,
        public_keys: PublicKeys,
        revocations: RevocationList,
        clock: Clock = utcnow,
        environments: Collection[str] | None = None,
    ) -> None:
        self.public_keys, self.revocations, self.clock = public_keys, revocations, clock
        self.environments = None if environments is None else frozenset(environments)

    def describe(self) -> dict[str, int]:
        return {"issuer_keys": len(self.public_keys.by_id), "revoked_keys": len(self.revocations)}

    def authenticate(self, authorization: str | None) -> Principal:
        token = parse_authorization(authorization)
        if token is None:
            raise InvalidLicense(reason="missing" if not authorization else "malformed authorization header")
        try:
            claims = self.public_keys.verify(token)
        except LicenseError as exc:
            raise InvalidLicense(reason=exc.reason) from exc
        if claims.kid in self.revocations:
            raise InvalidLicense(reason="revoked")
        if self.environments is not None and claims.environment not in self.environments:
            raise InvalidLicense(reason=f"key is for {claims.environment}, this server accepts {sorted(self.environments)}")
        if utc(claims.expires_at) <= self.clock():
            raise LicenseExpired(expires_at=iso(claims.expires_at))
        return Principal(claims)
