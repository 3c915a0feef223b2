"""What a certificate Secret holds: tls.crt and ca.crt, the combined PEM, and PKCS#12 stores."""
from __future__ import annotations

import datetime as dt
import functools
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from certmint.pki import (
    ECDSA,
    LEGACY_DES,
    LEGACY_RC2,
    MODERN_2023,
    PKCS8,
    RSA,
    CASigner,
    CertificateTemplate,
    KeySpec,
    PKIError,
    Subject,
    bundle,
    combined_pem,
    encode_private_key,
    generate_key,
    issue,
    parse_certificates,
    pkcs12_keystore,
    pkcs12_truststore,
    public_keys_equal,
)

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
PROFILES = [LEGACY_RC2, LEGACY_DES, MODERN_2023]
EC = KeySpec(ECDSA)


def signed(name: str, signer: CASigner | None, is_ca: bool = False, spec: KeySpec = EC) -> CASigner:
    """A certificate for name with a fresh key, as a CASigner so it can sign in turn when is_ca."""
    key = generate_key(spec)
    template = CertificateTemplate(subject=Subject(common_name=name), is_ca=is_ca)
    chain = (signer.certificate, *signer.chain) if signer else ()
    return CASigner(issue(template, key, signer, NOW).certificate, key, chain)


@functools.cache
def root() -> CASigner:
    return signed("root", None, is_ca=True)


@functools.cache
def intermediate() -> CASigner:
    return signed("intermediate", root(), is_ca=True)


@functools.cache
def leaf() -> CASigner:
    return signed("leaf", intermediate(), spec=KeySpec(RSA, 2048))


def test_self_signed_is_its_own_ca():
    certificate = signed("self", None).certificate
    tls_crt, ca_crt = bundle(certificate, None)
    assert parse_certificates(tls_crt) == parse_certificates(ca_crt) == [certificate]


def test_signed_by_a_root():
    certificate = signed("direct", root()).certificate
    tls_crt, ca_crt = bundle(certificate, root())
    assert parse_certificates(tls_crt) == [certificate]
    assert parse_certificates(ca_crt) == [root().certificate]


def test_intermediates_follow_the_leaf_and_the_root_is_ca_crt_only():
    tls_crt, ca_crt = bundle(leaf().certificate, intermediate())
    assert parse_certificates(tls_crt) == [leaf().certificate, intermediate().certificate]
    assert parse_certificates(ca_crt) == [root().certificate]


def test_combined_pem_is_the_key_a_newline_then_the_chain():
    """cert-manager's byte layout: tls.key (which ends in a newline), one more newline, tls.crt."""
    key_pem = encode_private_key(leaf().key, PKCS8)
    tls_crt, _ = bundle(leaf().certificate, intermediate())
    combined = combined_pem(key_pem, tls_crt)
    assert combined == key_pem + b"\n" + tls_crt
    assert b"-----END PRIVATE KEY-----\n\n-----BEGIN CERTIFICATE-----\n" in combined
    assert combined.count(b"\n\n") == 1 and combined.endswith(b"-----END CERTIFICATE-----\n")


@pytest.mark.parametrize("profile", PROFILES)
def test_keystore_loads_back(profile):
    data = pkcs12_keystore(leaf().key, leaf().certificate, [intermediate().certificate], root().certificate,
                           b"changeit", profile)
    loaded = pkcs12.load_pkcs12(data, b"changeit")
    assert public_keys_equal(loaded.key, leaf().key)
    assert loaded.cert.certificate == leaf().certificate
    assert [c.certificate for c in loaded.additional_certs] == [intermediate().certificate, root().certificate]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(data, b"wrong")


def test_keystore_of_a_self_signed_certificate_holds_it_once():
    self_signed = signed("self", None)
    data = pkcs12_keystore(self_signed.key, self_signed.certificate, [], self_signed.certificate, b"pw", LEGACY_RC2)
    loaded = pkcs12.load_pkcs12(data, b"pw")
    assert loaded.cert.certificate == self_signed.certificate and loaded.additional_certs == []


@pytest.mark.parametrize("profile,mac,cipher", [
    (LEGACY_RC2, "MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048"),
    (LEGACY_DES, "MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048"),
    (MODERN_2023, "MAC: sha256", "PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256"),
])
def test_keystore_algorithms_per_profile(tmp_path, profile, mac, cipher):
    (tmp_path / "keystore.p12").write_bytes(
        pkcs12_keystore(leaf().key, leaf().certificate, [], None, b"pw", profile))
    info = subprocess.run(["/usr/bin/openssl", "pkcs12", "-info", "-noout", "-passin", "pass:pw",
                           "-in", str(tmp_path / "keystore.p12")], capture_output=True, text=True, check=True)
    assert mac in info.stderr
    assert f"Shrouded Keybag: {cipher}" in info.stderr and f"PKCS7 Encrypted data: {cipher}" in info.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_truststore_loads_back(profile):
    data = pkcs12_truststore(root().certificate, b"changeit", profile)
    loaded = pkcs12.load_pkcs12(data, b"changeit")
    assert loaded.key is None and loaded.cert is None
    assert [c.certificate for c in loaded.additional_certs] == [root().certificate]


@pytest.mark.parametrize("password,profile,message", [
    (b"pw", "Legacy", "unknown PKCS#12 profile"),
    (b"", LEGACY_RC2, "must not be empty"),
])
def test_bad_store_options_are_refused(password, profile, message):
    with pytest.raises(PKIError, match=message):
        pkcs12_truststore(root().certificate, password, profile)
    with pytest.raises(PKIError, match=message):
        pkcs12_keystore(leaf().key, leaf().certificate, [], None, password, profile)
