"""HTTPS served by Ray Serve's own proxy (`http_options.ssl_certfile` / `ssl_keyfile`), on 127.0.0.1
with a self-signed certificate made here: transcription works over TLS, and plain HTTP does not.
This server also runs the opt-in int8 decoder (`engine.linear: int8`), so that every CI machine
transcribes with it once."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import Licensing, ServeProcess
from .helpers import JFK_FLAC, manifest, normalize
from .ray_logs import all_log_text

pytestmark = pytest.mark.e2e


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (what `openssl req -x509` would make)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory, licensing: Licensing) -> Iterator[tuple[ServeProcess, str]]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(tmp)
    tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    process = ServeProcess(tmp, licensing, {}, args={"engine": {"linear": "int8"}}, http=tls)
    try:
        process.start()
        yield process, licensing.issuer.issue()
    finally:
        process.stop()


def test_transcription_over_https(https: tuple[ServeProcess, str]) -> None:
    process, key = https
    assert process.url.startswith("https://127.0.0.1:")
    assert requests.get(f"{process.url}/health", verify=process.verify, timeout=10).json() == {"status": "healthy"}
    response = requests.post(
        f"{process.url}/v1/listen",
        data=JFK_FLAC.read_bytes(),
        verify=process.verify,
        timeout=120,
        headers={"Authorization": f"Token {key}", "Content-Type": "audio/flac"},
    )
    assert response.status_code == 200, response.text
    assert normalize(response.json()["results"]["channels"][0]["alternatives"][0]["transcript"]) == normalize(
        manifest()["whisper_jfk.flac"]["text"]
    )


def test_the_engine_runs_int8_linear_layers(https: tuple[ServeProcess, str]) -> None:
    process, _ = https
    logs = all_log_text(str(process.tmp / "usage.sqlite3"))
    assert any("linear layers: int8" in text for text in logs.values()), "no engine log line about int8"


def test_plain_http_and_untrusted_clients_get_nothing(https: tuple[ServeProcess, str]) -> None:
    process, key = https
    plain = process.url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):  # the port speaks only TLS: no answer, let alone a transcript
        requests.post(f"{plain}/v1/listen", data=JFK_FLAC.read_bytes(), timeout=10, headers={"Authorization": f"Token {key}"})
    with pytest.raises(requests.exceptions.SSLError):  # a client that does not trust this certificate stops
        requests.get(f"{process.url}/health", timeout=10)
