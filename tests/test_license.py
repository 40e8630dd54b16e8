"""The key format, verified strictly: bounded length, three parts, canonical base64url, the
signature over the exact payload bytes before any JSON is parsed."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

import serve_app.licensing.keys as license_module
from serve_app.licensing.keys import MAX_KEY_CHARS, PREFIX, LicenseError, PublicKeys, _b64, read_claims, sign

from .helpers import Issuer

ISSUER = Issuer()
KEYS = PublicKeys.from_lines([ISSUER.public_line(), Issuer().public_line()])


def _parts(token: str) -> tuple[str, str, str]:
    prefix, payload, signature = token.split(".")
    return prefix, payload, signature


def _non_canonical(text: str) -> str:
    """The same bytes with unused trailing bits set: a lenient decoder reads it as `text`."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:-1] + alphabet[alphabet.index(text[-1]) | 1]


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4 or 4)  # "=" even where none is due: padding is refused either way


def _with_payload(token: str, change: Callable[[str], str]) -> str:
    prefix, payload, signature = _parts(token)
    return f"{prefix}.{change(payload)}.{signature}"


def _with_signature(token: str, change: Callable[[str], str]) -> str:
    prefix, payload, signature = _parts(token)
    return f"{prefix}.{payload}.{change(signature)}"


def test_keys_from_sign_verify() -> None:
    token = ISSUER.issue()
    assert KEYS.verify(token) == read_claims(token)
    assert KEYS.verify(token).kid == read_claims(token).kid


# Each of these decodes, with a lenient base64 decoder, to exactly the bytes of a genuine key
# (insertions are 4 characters: the padding such a decoder adds from the length stays right).
LENIENT_FORMS = {
    "junk characters in the payload": lambda t: _with_payload(t, lambda p: p[:10] + "!*!*" + p[10:]),
    "junk characters in the signature": lambda t: _with_signature(t, lambda s: s[:5] + "$$$$" + s[5:]),
    "whitespace in the payload": lambda t: _with_payload(t, lambda p: p[:20] + " \t \t" + p[20:]),
    "newlines in the signature": lambda t: _with_signature(t, lambda s: s[:30] + "\n\n\r\n" + s[30:]),
    "padded payload": lambda t: _with_payload(t, _padded),
    "padded signature": lambda t: _with_signature(t, _padded),
    "non-canonical signature bits": lambda t: _with_signature(t, _non_canonical),
}


@pytest.mark.parametrize("form", LENIENT_FORMS)
def test_lenient_base64_forms_of_a_genuine_key_are_malformed(form: str) -> None:
    token = ISSUER.issue()
    changed = LENIENT_FORMS[form](token)
    for original, lenient in zip(_parts(token)[1:], _parts(changed)[1:]):  # the case is meaningful:
        assert base64.urlsafe_b64decode(lenient + "==") == base64.urlsafe_b64decode(original + "==")
    assert changed != token
    with pytest.raises(LicenseError, match="^malformed$"):
        KEYS.verify(changed)
    with pytest.raises(LicenseError, match="^malformed$"):
        read_claims(changed)


def _key_of_length(low: int, high: int) -> str:
    """A genuinely signed key whose text is between `low` and `high` characters long."""
    for size in range(0, 2 * MAX_KEY_CHARS):
        claims = ISSUER.claims().model_copy(update={"features": ["x" * size]})
        token = sign(claims, ISSUER.private_key)
        if low <= len(token) <= high:
            return token
    raise AssertionError(f"no key between {low} and {high} characters")


def test_length_is_capped_before_any_work() -> None:
    assert KEYS.verify(_key_of_length(MAX_KEY_CHARS - 8, MAX_KEY_CHARS)).features  # up to the cap: valid
    over = _key_of_length(MAX_KEY_CHARS + 1, MAX_KEY_CHARS + 8)
    with pytest.raises(LicenseError, match="^malformed$"):
        KEYS.verify(over)
    with pytest.raises(LicenseError, match="^malformed$"):
        KEYS.verify(f"{PREFIX}." + "A" * 10_000_000 + ".AAAA")


@pytest.mark.parametrize(
    "token",
    [
        "",
        PREFIX,
        f"{PREFIX}..",
        f"{PREFIX}.AAAA",
        f"{PREFIX}.AAAA.AAAA.AAAA",
        "stt0.AAAA.AAAA",
        f"{PREFIX}.A.AAAA",
        f"{PREFIX}.{_b64(b'{}')}.{_b64(b'short')}",  # a signature that is not 64 bytes
    ],
)
def test_malformed_shapes(token: str) -> None:
    with pytest.raises(LicenseError, match="^malformed$"):
        KEYS.verify(token)


def _forged(claims_issuer: Issuer, signer: Issuer, **changes: object) -> str:
    claims = claims_issuer.claims().model_copy(update=changes)
    return sign(claims, signer.private_key)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: _with_payload(
                ISSUER.issue(), lambda p: _b64(read_claims(ISSUER.issue(days=3650)).model_dump_json().encode())
            ),
            id="payload swapped",
        ),
        pytest.param(lambda: _with_signature(ISSUER.issue(), lambda s: _b64(bytes(64))), id="zero signature"),
        pytest.param(lambda: Issuer().issue(), id="untrusted issuer"),
        pytest.param(lambda: _forged(ISSUER, Issuer()), id="claims a trusted issuer, signed by another"),
    ],
)
def test_forged_keys_are_bad_signatures(make: Callable[[], str]) -> None:
    with pytest.raises(LicenseError, match="^bad signature$"):
        KEYS.verify(make())


def test_claims_are_not_parsed_before_the_signature_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    real = license_module._parse

    def recording(payload: bytes):  # type: ignore[no-untyped-def]
        parsed.append(payload)
        return real(payload)

    monkeypatch.setattr(license_module, "_parse", recording)
    with pytest.raises(LicenseError):
        KEYS.verify(_forged(ISSUER, Issuer()))
    assert parsed == []
    KEYS.verify(ISSUER.issue())
    assert len(parsed) == 1


def test_signed_by_a_trusted_issuer_naming_another_is_malformed() -> None:
    other = Issuer()
    keys = PublicKeys.from_lines([ISSUER.public_line(), other.public_line()])
    with pytest.raises(LicenseError, match="^malformed$"):
        keys.verify(_forged(other, ISSUER))  # says `other`, signed by ISSUER
    assert keys.verify(_forged(other, other)).iss == read_claims(_forged(other, other)).iss


def test_a_signed_payload_that_is_not_claims_is_malformed() -> None:
    payload = b'{"kid": "k"}'
    token = f"{PREFIX}.{_b64(payload)}.{_b64(ISSUER.private_key.sign(payload))}"
    with pytest.raises(LicenseError, match="^malformed$"):
        KEYS.verify(token)
