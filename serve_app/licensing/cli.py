"""`stt-license`: the operator's license tool. Works offline; only `keygen` and `issue` touch the
private key, and the server never needs it.

  stt-license keygen  --private-key issuer.key --public-keys issuer.pub
  stt-license issue   --private-key issuer.key --customer acme --environment prod --days 90 \\
                      --requests-per-minute 60 --concurrent 4 --audio-hours-per-day 24
  stt-license inspect KEY [--public-keys issuer.pub] [--revocations revoked.txt]
  stt-license revoke  KEY_ID --revocations revoked.txt [--note "laptop stolen"]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import ServiceError
from .auth import LicenseAuthenticator, RevocationList
from .keys import LicenseClaims, LicenseError, Limits, PublicKeys, iso, issuer_id, new_key_id, public_key_bytes, read_claims, sign


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{path} is not an Ed25519 private key")
    return key


def keygen(args: argparse.Namespace) -> None:
    if args.private_key.exists():
        raise SystemExit(f"{args.private_key} exists; refusing to overwrite an issuing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(args.private_key, pem)
    public = base64.b64encode(public_key_bytes(key.public_key())).decode()
    with open(args.public_keys, "a") as f:  # appending keeps older issuers valid: rotation
        f.write(f"{public}  # issuer {issuer_id(key.public_key())} created {iso(datetime.now(timezone.utc))}\n")
    print(f"issuer {issuer_id(key.public_key())}: private key {args.private_key}, public key added to {args.public_keys}")


def issue(args: argparse.Namespace) -> None:
    key = load_private_key(args.private_key)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    expires = datetime.fromisoformat(args.expires_at) if args.expires_at else now + timedelta(days=args.days)
    claims = LicenseClaims(
        kid=new_key_id(),
        iss=issuer_id(key.public_key()),
        customer=args.customer,
        environment=args.environment,
        issued_at=now,
        expires_at=expires,
        limits=Limits(
            requests_per_minute=args.requests_per_minute,
            concurrent_requests=args.concurrent,
            audio_hours_per_day=args.audio_hours_per_day,
            audio_hours_per_month=args.audio_hours_per_month,
        ),
        features=args.feature or [],
    )
    print(sign(claims, key))


def inspect(args: argparse.Namespace) -> None:
    try:
        claims = read_claims(args.key.strip())
    except LicenseError as exc:
        raise SystemExit(f"not a license key: {exc.reason}") from None
    report: dict = {"claims": json.loads(claims.model_dump_json())}
    if args.public_keys:
        revocations = RevocationList(args.revocations) if args.revocations else RevocationList(None)
        auth = LicenseAuthenticator(PublicKeys.from_file(args.public_keys), revocations)
        try:
            auth.authenticate(f"Token {args.key.strip()}")
            report["status"] = "valid"
        except ServiceError as exc:
            report["status"] = exc.extra.get("reason") or exc.code.lower()
    print(json.dumps(report, indent=2))


def revoke(args: argparse.Namespace) -> None:
    note = f": {args.note}" if args.note else ""
    with open(args.revocations, "a") as f:
        f.write(f"{args.key_id}  # revoked {iso(datetime.now(timezone.utc))}{note}\n")
    print(f"revoked {args.key_id}; servers reading {args.revocations} refuse it within seconds")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stt-license", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("keygen", help="create an issuing key pair")
    k.add_argument("--private-key", type=Path, required=True)
    k.add_argument("--public-keys", type=Path, required=True, help="file the servers read; the key is appended")
    k.set_defaults(run=keygen)

    i = sub.add_parser("issue", help="issue a license key")
    i.add_argument("--private-key", type=Path, required=True)
    i.add_argument("--customer", required=True)
    i.add_argument("--environment", choices=["dev", "staging", "prod"], default="prod")
    when = i.add_mutually_exclusive_group()
    when.add_argument("--days", type=float, default=90, help="valid for this many days (default 90)")
    when.add_argument("--expires-at", help="ISO 8601 expiry, e.g. 2027-12-31T23:59:59Z")
    i.add_argument("--requests-per-minute", type=int)
    i.add_argument("--concurrent", type=int, help="concurrent requests")
    i.add_argument("--audio-hours-per-day", type=float)
    i.add_argument("--audio-hours-per-month", type=float)
    i.add_argument("--feature", action="append", help="repeatable")
    i.set_defaults(run=issue)

    s = sub.add_parser("inspect", help="show a key's claims, and whether it is valid")
    s.add_argument("key")
    s.add_argument("--public-keys", type=Path)
    s.add_argument("--revocations", type=Path)
    s.set_defaults(run=inspect)

    r = sub.add_parser("revoke", help="revoke a key id")
    r.add_argument("key_id")
    r.add_argument("--revocations", type=Path, required=True)
    r.add_argument("--note")
    r.set_defaults(run=revoke)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
