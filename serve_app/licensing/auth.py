"""License key -> principal. Keys are verified offline against the configured issuer public keys,
then checked against the revocation list (re-read whenever its file changes, so revocations reach a
running server within seconds), the accepted environments, and their validity period (with an
injected clock).

A refused key is a `Refusal`: the client's error, a metric reason from a fixed set, and the key id
only when the key's signature verified. Claims of an unverified key are never trusted: anyone can
write them, so they must not name a usage row or a metrics label.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from ..errors import InvalidLicense, LicenseExpired, ServiceError, ServiceUnavailable
from .keys import LicenseClaims, LicenseError, PublicKeys, iso, utc

logger = logging.getLogger("ray.serve")

Clock = Callable[[], datetime]
_SCHEMES = ("token", "bearer")
# Every value the `stt_auth_failures{reason}` label can take: a fixed set, never free text.
FAILURE_REASONS = frozenset(
    {
        "missing",
        "malformed",
        "bad_signature",
        "not_yet_valid",
        "revoked",
        "wrong_environment",
        "expired",
        "revocations_unavailable",
        "throttled",
    }
)
UNVERIFIED = "(unverified)"  # the one usage-store bucket for failures whose key did not verify
CLOCK_SKEW = timedelta(minutes=5)  # how far in the future a key's issued_at may be (clocks differ)
REVOCATIONS_RETRY_S = 5  # retry_after while the revocation list cannot be read


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Principal:
    claims: LicenseClaims

    @property
    def key_id(self) -> str:  # not secret: safe for logs and metrics
        return self.claims.kid


@dataclass(frozen=True)
class Refusal:
    """A refused key: what the client is told, why (one of FAILURE_REASONS), and the key id only when
    the key's signature verified (expired, revoked, wrong environment, not yet valid)."""

    error: ServiceError
    reason: str
    key_id: str | None = None

    @property
    def client_fault(self) -> bool:
        """False when the server could not decide (its revocation list is unreadable)."""
        return self.error.status < 500


class Authenticator(Protocol):
    def check(self, authorization: str | None) -> Principal | Refusal: ...

    def describe(self) -> dict[str, Any]:
        """The license component for /health?detailed=true: status, issuer keys, revoked keys, reason."""


def parse_authorization(header: str | None) -> str | None:
    """`Token KEY` or `Bearer KEY`, scheme case-insensitive; anything else is no key."""
    scheme, _, key = (header or "").strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() in _SCHEMES and key else None


class RevocationsUnreadable(Exception):
    """The configured revocation file cannot be read: no key can be checked against it."""


class RevocationList:
    """Revoked key ids, one per line (`#` comments allowed), re-read when the file changes.

    Fails closed: while a configured file is missing or unreadable (also when it never existed),
    `revoked()` raises instead of answering "not revoked". Each change of that state is logged once.
    No file configured (`path=None`): nothing is revoked."""

    def __init__(self, path: Path | None, check_every_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path, self.check_every_s, self.monotonic = path, check_every_s, monotonic
        self._ids: frozenset[str] = frozenset()
        self._stamp: tuple[int, ...] | None = None
        self._checked = float("-inf")
        self._problem: str | None = None

    def revoked(self, key_id: str) -> bool:
        self._refresh()
        if self._problem is not None:
            raise RevocationsUnreadable(self._problem)
        return key_id in self._ids

    @property
    def problem(self) -> str | None:
        """Why the configured file cannot be read ("revocation file missing" or "... unreadable")."""
        self._refresh()
        return self._problem

    def __len__(self) -> int:
        self._refresh()
        return len(self._ids)

    def _refresh(self) -> None:
        now = self.monotonic()
        if self.path is None or now - self._checked < self.check_every_s:
            return
        self._checked = now
        try:
            self._read(self.path)
        except (OSError, UnicodeDecodeError) as exc:
            self._ids, self._stamp = frozenset(), None
            self._set_problem(
                "revocation file missing" if isinstance(exc, FileNotFoundError) else "revocation file unreadable", exc
            )
            return
        self._set_problem(None, None)

    def _read(self, path: Path) -> None:
        stat = os.stat(path)
        # ctime and inode too: a chmod or a replaced file changes them, not always the mtime.
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        if stamp != self._stamp:
            lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
            self._ids, self._stamp = frozenset(line for line in lines if line), stamp

    def _set_problem(self, problem: str | None, exc: Exception | None) -> None:
        if problem == self._problem:
            return  # logged when the state changed, not on every check
        if problem is not None:
            logger.error("license: %s (%s): every key is refused with 503 until it can be read: %s", problem, self.path, exc)
        else:
            logger.warning("license: revocation file %s is readable again: keys are accepted", self.path)
        self._problem = problem


class LicenseAuthenticator:
    def __init__(
        self,
        public_keys: PublicKeys,
        revocations: RevocationList,
        clock: Clock = utcnow,
        environments: Collection[str] | None = None,
        clock_skew: timedelta = CLOCK_SKEW,
    ) -> None:
        self.public_keys, self.revocations, self.clock, self.clock_skew = public_keys, revocations, clock, clock_skew
        self.environments = None if environments is None else frozenset(environments)

    def describe(self) -> dict[str, Any]:
        issuer_keys, problem = len(self.public_keys.by_id), self.revocations.problem
        part: dict[str, Any] = {"status": "healthy", "issuer_keys": issuer_keys, "revoked_keys": len(self.revocations)}
        if problem is None and not issuer_keys:
            problem = "no issuer public key loaded"  # no license key can be valid
        if problem is not None:
            part.update(status="unhealthy", reason=problem)
        return part

    def authenticate(self, authorization: str | None) -> Principal:
        """`check` for callers that only need the principal or the error (the CLI's `inspect`)."""
        result = self.check(authorization)
        if isinstance(result, Refusal):
            raise result.error
        return result

    def check(self, authorization: str | None) -> Principal | Refusal:
        token = parse_authorization(authorization)
        if token is None:
            if not authorization:
                return Refusal(InvalidLicense(reason="missing"), "missing")
            return Refusal(InvalidLicense(reason="malformed authorization header"), "malformed")
        try:
            claims = self.public_keys.verify(token)
        except LicenseError as exc:
            return Refusal(InvalidLicense(reason=exc.reason), exc.reason.replace(" ", "_"))
        return self._refusal(claims) or Principal(claims)

    def _refusal(self, claims: LicenseClaims) -> Refusal | None:
        """Why a genuine (verified) key is refused, if it is: such refusals carry its key id."""
        kid, now = claims.kid, self.clock()
        try:
            revoked = self.revocations.revoked(kid)
        except RevocationsUnreadable:
            error = ServiceUnavailable(
                "License check unavailable: the revocation list cannot be read", retry_after=REVOCATIONS_RETRY_S
            )
            return Refusal(error, "revocations_unavailable", kid)
        if revoked:
            return Refusal(InvalidLicense(reason="revoked"), "revoked", kid)
        if self.environments is not None and claims.environment not in self.environments:
            reason = f"key is for {claims.environment}, this server accepts {sorted(self.environments)}"
            return Refusal(InvalidLicense(reason=reason), "wrong_environment", kid)
        if utc(claims.issued_at) > now + self.clock_skew:
            return Refusal(InvalidLicense(reason="not yet valid"), "not_yet_valid", kid)
        if utc(claims.expires_at) <= now:
            return Refusal(LicenseExpired(expires_at=iso(claims.expires_at)), "expired", kid)
        return None


@dataclass
class _Window:
    start: float
    failures: int = 0


class FailureThrottle:
    """Failed authentications per client address, counted in one-minute windows that start at an
    address's first failure. An address with `per_minute` failures in its window is refused (429)
    before anything is verified until the window ends; successes are neither counted nor refused.

    In memory, per ingress replica: a client spread over N replicas gets up to N times the allowance,
    and a restart forgets. At most `max_addresses` are tracked; beyond that the address whose window
    started first is forgotten, so many addresses can only make the table forget, never grow."""

    WINDOW_S = 60.0

    def __init__(
        self, per_minute: int | None, max_addresses: int = 10_000, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute, self.max_addresses, self.monotonic = per_minute, max_addresses, monotonic
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # oldest window first

    def __len__(self) -> int:
        return len(self._windows)

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again; None when it is not throttled (or throttling is off)."""
        window = self._windows.get(_bucket(address))
        if self.per_minute is None or window is None or window.failures < self.per_minute:
            return None
        left = window.start + self.WINDOW_S - self.monotonic()
        return max(1, math.ceil(left)) if left > 0 else None

    def failed(self, address: str) -> None:
        if self.per_minute is None:
            return
        now, key = self.monotonic(), _bucket(address)
        self._forget_ended(now)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now)
            while len(self._windows) > self.max_addresses:
                self._windows.popitem(last=False)
        window.failures += 1

    def _forget_ended(self, now: float) -> None:
        # Windows were added in time order, so the ended ones are at the front.
        while self._windows:
            key, window = next(iter(self._windows.items()))
            if now < window.start + self.WINDOW_S:
                return
            del self._windows[key]


def _bucket(host: str) -> str:
    """What one client is: its IPv4 address, or its IPv6 /64 (a subscriber's usual allocation: a
    single client could otherwise try from as many addresses as it likes)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (e.g. a test client's name)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)
