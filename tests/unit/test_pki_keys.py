"""Private keys: every type and size, both encodings, loading, and no key bytes in errors."""
from __future__ import annotations

import base64
import functools
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448

from certmint.pki import (
    ECDSA,
    ED25519,
    PKCS1,
    PKCS8,
    RSA,
    KeySpec,
    PKIError,
    encode_private_key,
    encode_private_key_der,
    expected_encoding,
    generate_key,
    key_encoding_of,
    key_matches_spec,
    key_spec_of,
    load_private_key,
    private_key_der,
    public_keys_equal,
)

# Larger RSA keys get one test per size (below): they take seconds to generate and to load.
SPECS = [(RSA, 2048), (ECDSA, 256), (ECDSA, 384), (ECDSA, 521), (ED25519, None)]
LARGE_RSA_SIZES = [3072, 4096, 8192]
HEADERS = {
    (RSA, PKCS1): b"-----BEGIN RSA PRIVATE KEY-----",
    (ECDSA, PKCS1): b"-----BEGIN EC PRIVATE KEY-----",
    (ED25519, PKCS1): b"-----BEGIN PRIVATE KEY-----",  # Ed25519 has no PKCS#1 form
}
PKCS8_HEADER = b"-----BEGIN PRIVATE KEY-----"


@functools.cache
def key_for(algorithm: str, size: int | None):
    """One key per type and size for the whole module."""
    return generate_key(KeySpec(algorithm, size))


@pytest.mark.parametrize("algorithm,size", SPECS)
def test_generated_key_has_the_requested_type_and_size(algorithm, size):
    key = key_for(algorithm, size)
    assert key_spec_of(key) == (algorithm, size)
    assert key_spec_of(key.public_key()) == (algorithm, size)
    assert key_matches_spec(key, KeySpec(algorithm, size))


@pytest.mark.parametrize("algorithm,size", SPECS)
@pytest.mark.parametrize("encoding", [PKCS1, PKCS8])
def test_pem_round_trip(algorithm, size, encoding):
    key = key_for(algorithm, size)
    pem = encode_private_key(key, encoding)
    assert pem.startswith(HEADERS.get((algorithm, encoding), PKCS8_HEADER))
    assert key_encoding_of(pem) == expected_encoding(KeySpec(algorithm, size, encoding))
    loaded = load_private_key(pem)
    assert public_keys_equal(loaded, key)
    assert key_spec_of(loaded) == (algorithm, size)


@pytest.mark.parametrize("size", LARGE_RSA_SIZES)
def test_large_rsa_key(size):
    """Loaded back from PKCS#1 only: validating an 8192-bit key on load takes seconds."""
    key = generate_key(KeySpec(RSA, size))
    assert key_spec_of(key) == (RSA, size) and key_matches_spec(key, KeySpec(RSA, size))
    assert key_encoding_of(encode_private_key(key, PKCS8)) == PKCS8
    pem = encode_private_key(key, PKCS1)
    assert pem.startswith(HEADERS[RSA, PKCS1])
    assert public_keys_equal(load_private_key(pem), key)


# What openssl asn1parse shows first in each DER form: PKCS#1 RSAPrivateKey opens with version 0
# and the modulus, SEC1 ECPrivateKey with version 1 and the private key octets, PKCS#8 with
# version 0 and the algorithm identifier.
DER_FORMS = {"PKCS#1": ("INTEGER           :00", "INTEGER           :"),
             "SEC1": ("INTEGER           :01", "OCTET STRING"),
             "PKCS#8": ("INTEGER           :00", "SEQUENCE")}


@pytest.mark.parametrize("algorithm,size,encoding,form", [
    (RSA, 2048, PKCS1, "PKCS#1"), (RSA, 2048, PKCS8, "PKCS#8"),
    (ECDSA, 256, PKCS1, "SEC1"), (ECDSA, 384, PKCS1, "SEC1"), (ECDSA, 521, PKCS8, "PKCS#8"),
    (ED25519, None, PKCS8, "PKCS#8"),
])
def test_key_der_is_the_body_of_tls_key(algorithm, size, encoding, form):
    """key.der is tls.key without its PEM armour: PKCS#1 or SEC1 under PKCS1, PKCS#8 under PKCS8, as cert-manager."""
    key = key_for(algorithm, size)
    pem = encode_private_key(key, encoding)
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
    der = private_key_der(pem)
    assert der == base64.b64decode(body)
    assert der == encode_private_key_der(key, encoding)
    assert public_keys_equal(serialization.load_der_private_key(der, password=None), key)
    parsed = subprocess.run(["openssl", "asn1parse", "-inform", "DER"], input=der, capture_output=True,
                            check=True).stdout.decode().splitlines()
    version, second = DER_FORMS[form]
    assert "SEQUENCE" in parsed[0] and version in parsed[1] and second in parsed[2], parsed[:3]
    if form == "PKCS#1":
        assert "SEQUENCE" not in parsed[2]


def test_key_der_of_something_else_is_refused_without_echoing_it():
    with pytest.raises(PKIError) as e:
        private_key_der(b"-----BEGIN CERTIFICATE-----\nc2VjcmV0\n-----END CERTIFICATE-----\n")
    assert "c2VjcmV0" not in str(e.value)


@pytest.mark.parametrize("spec,expected", [
    (KeySpec(), (RSA, 2048)),
    (KeySpec(RSA, None), (RSA, 2048)),
    (KeySpec(ECDSA, None), (ECDSA, 256)),
    (KeySpec(ED25519, None), (ED25519, None)),
    (KeySpec(ED25519, 256), (ED25519, None)),  # the size means nothing for Ed25519
])
def test_defaults(spec, expected):
    assert key_spec_of(generate_key(spec)) == expected


@pytest.mark.parametrize("spec", [
    KeySpec(RSA, 1024), KeySpec(RSA, 2047), KeySpec(ECDSA, 224), KeySpec(ECDSA, 2048), KeySpec("DSA", 2048),
])
def test_unsupported_specs_are_refused(spec):
    with pytest.raises(PKIError, match="unsupported"):
        generate_key(spec)


def test_unsupported_encoding_is_refused():
    with pytest.raises(PKIError, match="encoding"):
        encode_private_key(key_for(ECDSA, 256), "PEM")
    with pytest.raises(PKIError, match="encoding"):
        expected_encoding(KeySpec(RSA, 2048, "DER"))


def test_expected_encoding_is_pkcs8_for_ed25519_only():
    assert expected_encoding(KeySpec(ED25519, None, PKCS1)) == PKCS8
    assert expected_encoding(KeySpec(RSA, 2048, PKCS1)) == PKCS1
    assert expected_encoding(KeySpec(ECDSA, 256, PKCS8)) == PKCS8


def test_key_matches_spec_checks_algorithm_and_size():
    key = key_for(ECDSA, 256)
    assert key_matches_spec(key, KeySpec(ECDSA))
    assert key_matches_spec(key, KeySpec(ECDSA, 256, PKCS8))  # encoding is checked elsewhere
    assert not key_matches_spec(key, KeySpec(ECDSA, 384))
    assert not key_matches_spec(key, KeySpec(RSA))
    assert not key_matches_spec(key_for(RSA, 2048), KeySpec(RSA, 4096))


def test_public_keys_equal():
    a, b = key_for(ECDSA, 256), generate_key(KeySpec(ECDSA, 256))
    assert public_keys_equal(a, a.public_key())
    assert public_keys_equal(a.public_key(), a)
    assert not public_keys_equal(a, b)
    assert not public_keys_equal(a, key_for(ED25519, None))


def _unusable_pem(kind: str) -> bytes:
    good = encode_private_key(key_for(RSA, 2048), PKCS8)
    if kind == "encrypted":
        return key_for(ECDSA, 256).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"))
    return {"empty": b"", "junk": b"junk", "truncated": good[: len(good) // 2],
            "corrupted": good.replace(b"A", b"B", 5)}[kind]


@pytest.mark.parametrize("kind", ["empty", "junk", "truncated", "corrupted", "encrypted"])
def test_load_failure_is_plain_and_carries_no_key_bytes(kind):
    with pytest.raises(PKIError) as caught:
        load_private_key(_unusable_pem(kind))
    assert str(caught.value) == "tls.key is not a valid PEM private key"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "PRIVATE KEY" not in repr(caught.value)


@pytest.mark.parametrize("make", [
    lambda: dsa.generate_private_key(1024),
    lambda: ed448.Ed448PrivateKey.generate(),
    lambda: ec.generate_private_key(ec.SECP256K1()),
], ids=["DSA", "Ed448", "secp256k1"])
def test_key_types_certmint_cannot_issue_are_refused(make):
    pem = make().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    with pytest.raises(PKIError, match="unsupported") as caught:
        load_private_key(pem)
    assert "PRIVATE KEY" not in str(caught.value)


def test_key_encoding_of_refuses_non_keys():
    with pytest.raises(PKIError) as caught:
        key_encoding_of(b"-----BEGIN CERTIFICATE-----\n")
    assert "PRIVATE KEY" not in str(caught.value)
