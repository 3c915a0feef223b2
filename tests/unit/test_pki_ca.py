"""load_ca: the chain it builds from a CA Secret, and the reason it gives when the CA cannot sign."""
from __future__ import annotations

import datetime as dt
import functools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certmint.pki import (
    ECDSA,
    PKCS1,
    CAError,
    CASigner,
    CertificateTemplate,
    KeySpec,
    PKIError,
    Subject,
    certificates_pem,
    encode_private_key,
    generate_key,
    issue,
    load_ca,
)

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
YEAR = dt.timedelta(days=365)


@functools.cache
def root() -> CASigner:
    key = generate_key(KeySpec(ECDSA, 256))
    template = CertificateTemplate(subject=Subject(common_name="root"), is_ca=True, duration=YEAR)
    return CASigner(issue(template, key, None, NOW).certificate, key)


@functools.cache
def intermediate() -> CASigner:
    key = generate_key(KeySpec(ECDSA, 256))
    template = CertificateTemplate(subject=Subject(common_name="intermediate"), is_ca=True, duration=YEAR)
    return CASigner(issue(template, key, root(), NOW).certificate, key, (root().certificate,))


def secret(signer: CASigner, *chain: x509.Certificate) -> tuple[bytes, bytes]:
    """(tls.crt, tls.key) of a CA Secret holding signer's certificate followed by chain."""
    return certificates_pem([signer.certificate, *chain]), encode_private_key(signer.key, PKCS1)


def pem(certificate: x509.Certificate) -> bytes:
    return certificates_pem([certificate])


def test_a_root_ca_has_an_empty_chain():
    signer = load_ca(*secret(root()), pem(root().certificate), NOW)
    assert signer.certificate == root().certificate and signer.chain == ()
    assert signer.root == root().certificate and signer.intermediates == ()


@pytest.mark.parametrize("root_in_tls_crt,ca_crt", [
    (False, lambda: pem(root().certificate)),
    (True, lambda: pem(root().certificate)),  # in both: once
    (True, lambda: None),
    (True, lambda: b""),  # an empty ca.crt is no ca.crt
], ids=["root-in-ca.crt", "root-in-both", "no-ca.crt", "empty-ca.crt"])
def test_the_chain_of_an_intermediate_ends_at_the_root(root_in_tls_crt, ca_crt):
    tls_crt, tls_key = secret(intermediate(), *([root().certificate] if root_in_tls_crt else []))
    signer = load_ca(tls_crt, tls_key, ca_crt(), NOW)
    assert signer.chain == (root().certificate,)
    assert signer.root == root().certificate and signer.intermediates == (intermediate().certificate,)


def test_the_loaded_signer_signs():
    signer = load_ca(*secret(intermediate(), root().certificate), None, NOW)
    leaf = issue(CertificateTemplate(dns_names=("a.example.com",)), generate_key(KeySpec(ECDSA)), signer, NOW)
    leaf.certificate.verify_directly_issued_by(intermediate().certificate)


def reason_and_message(tls_crt: bytes, tls_key: bytes, now: dt.datetime = NOW) -> tuple[str, str]:
    with pytest.raises(CAError) as caught:
        load_ca(tls_crt, tls_key, None, now)
    assert isinstance(caught.value, PKIError) and caught.value.message == str(caught.value)
    assert "PRIVATE KEY" not in caught.value.message and caught.value.__cause__ is None
    return caught.value.reason, caught.value.message


def test_unparseable_certificate():
    assert reason_and_message(b"junk", secret(root())[1])[0] == "InvalidKeyPair"


def test_unparseable_ca_crt():
    with pytest.raises(CAError, match="^ca.crt: ") as caught:
        load_ca(*secret(root()), b"junk", NOW)
    assert caught.value.reason == "InvalidKeyPair"


def test_unparseable_key():
    key_pem = secret(root())[1]
    assert reason_and_message(pem(root().certificate), key_pem[:100]) == (
        "InvalidKeyPair", "tls.key is not a valid PEM private key")


def test_key_of_another_certificate():
    reason, message = reason_and_message(pem(root().certificate), secret(intermediate())[1])
    assert reason == "InvalidKeyPair" and "does not match" in message


def test_a_leaf_is_not_a_ca():
    key = generate_key(KeySpec(ECDSA))
    leaf = issue(CertificateTemplate(subject=Subject(common_name="leaf")), key, root(), NOW).certificate
    assert reason_and_message(pem(leaf), encode_private_key(key, PKCS1))[0] == "NotACertificateAuthority"


def test_a_ca_whose_key_usage_lacks_cert_sign():
    key = generate_key(KeySpec(ECDSA))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no cert sign")])
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(NOW - YEAR).not_valid_after(NOW + YEAR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256()))
    reason, message = reason_and_message(pem(certificate), encode_private_key(key, PKCS1))
    assert reason == "NotACertificateAuthority" and "keyCertSign" in message


@pytest.mark.parametrize("now,reason", [
    (NOW + YEAR, "Expired"),
    (NOW + 2 * YEAR, "Expired"),
    (NOW - dt.timedelta(hours=1), "NotYetValid"),
])
def test_validity(now, reason):
    assert reason_and_message(*secret(root()), now=now)[0] == reason
