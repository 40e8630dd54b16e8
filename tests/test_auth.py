from __future__ import annotations

import pytest

from serve_app.auth import KeyStore, hash_key, parse_authorization
from serve_app.errors import InvalidLicense


@pytest.mark.parametrize("header, key", [
    ("Token abc", "abc"), ("Bearer abc", "abc"), ("token abc", "abc"), ("BEARER  abc ", "abc"),
    ("Basic abc", None), ("Token", None), ("abc", None), ("", None), (None, None),
])
def test_parse_authorization(header, key) -> None:
    assert parse_authorization(header) == key


def test_keystore_accepts_only_configured_keys() -> None:
    store = KeyStore([hash_key("k1"), hash_key("k2")])
    assert store.authenticate("Token k2").key_id == hash_key("k2")[7:19]
    for header in ("Token k3", "Token K1", None, "Bearer"):
        with pytest.raises(InvalidLicense) as info:
            store.authenticate(header)
        assert info.value.body() == {"error": "Invalid license key", "code": "INVALID_LICENSE"}


def test_keystore_holds_no_plaintext() -> None:
    assert "secret-key" not in repr(KeyStore([hash_key("secret-key")]).__dict__)
