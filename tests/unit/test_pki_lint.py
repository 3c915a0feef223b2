"""Certificates built by certmint.pki pass pkilint and zlint with no ERROR finding, for every key type,
CA and leaf; and the harness does see the errors it is there to catch."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from certmint.issuance import issue_certificate
from certmint.issuers import issuer_state
from certmint.model import parse_certificate_spec, parse_issuer_spec
from certmint.pki import (
    ECDSA,
    ED25519,
    RSA,
    CASigner,
    CertificateTemplate,
    KeySpec,
    SigningOptions,
    Subject,
    generate_key,
    issue,
)
from certmint.pki.usages import default_usages
from certmint.policy.types import SecretState
from pkilint_zlint import Finding, lint_certificate, lint_crl

NOW = dt.datetime.now(dt.timezone.utc)  # zlint judges some rules by the date a certificate was issued
KEYS = [(RSA, 2048), (RSA, 4096), (ECDSA, 256), (ECDSA, 384), (ECDSA, 521), (ED25519, None)]
URLS = SigningOptions(crl_distribution_points=("http://pki.example.com/ca.crl",),
                      ocsp_servers=("http://ocsp.example.com",),
                      issuing_certificate_urls=("http://pki.example.com/ca.crt",))
FULL_SUBJECT = Subject(common_name="app.example.com", organizations=("Example",), organizational_units=("Web",),
                       countries=("DE",), provinces=("Berlin",), localities=("Berlin",),
                       street_addresses=("Street 1",), postal_codes=("10115",), serial_number="42")


def ids(keys):
    return [f"{algorithm}-{size}" if size else algorithm for algorithm, size in keys]


NO_URLS = SigningOptions()


def ca(algorithm: str, size: int | None, parent: CASigner | None = None, options: SigningOptions = NO_URLS,
       ) -> CASigner:
    """A CA from a spec's defaults (usages and all), as `isCA: true` issues it."""
    key = generate_key(KeySpec(algorithm, size))
    template = CertificateTemplate(subject=Subject(common_name=f"{algorithm} CA"), is_ca=True, duration=dt.timedelta(days=365),
                                   usages=(*default_usages(algorithm, is_ca=True), "cert sign"), key=KeySpec(algorithm, size))
    certificate = issue(template, key, parent, NOW).certificate
    return CASigner(certificate, key, (parent.certificate, *parent.chain) if parent else (), options)


def leaf_template(algorithm: str, size: int | None, **changes) -> CertificateTemplate:
    fields = dict(subject=FULL_SUBJECT, dns_names=("app.example.com", "*.app.example.com"),
                  ip_addresses=("10.0.0.1", "2001:db8::1"), uris=("spiffe://cluster.local/ns/default/sa/app",),
                  email_addresses=("app@example.com",),
                  usages=(*default_usages(algorithm), "server auth", "client auth"), key=KeySpec(algorithm, size))
    fields.update(changes)
    return CertificateTemplate(**fields)


def assert_clean(certificate: x509.Certificate) -> None:
    findings = lint_certificate(certificate)
    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize("algorithm,size", KEYS, ids=ids(KEYS))
def test_self_signed_ca_from_defaults_lints_clean(algorithm, size):
    assert_clean(ca(algorithm, size).certificate)


@pytest.mark.parametrize("algorithm,size", KEYS, ids=ids(KEYS))
def test_intermediate_and_leaf_with_crl_and_aia_lint_clean(algorithm, size):
    root = ca(algorithm, size, options=URLS)
    intermediate = ca(algorithm, size, root, URLS)
    assert_clean(intermediate.certificate)
    leaf = issue(leaf_template(algorithm, size), generate_key(KeySpec(algorithm, size)), intermediate, NOW).certificate
    assert leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    assert_clean(leaf)


@pytest.mark.parametrize("algorithm,size", KEYS, ids=ids(KEYS))
def test_leaves_of_every_kind_lint_clean(algorithm, size):
    signer = ca(ECDSA, 256)
    client = leaf_template(algorithm, size, subject=Subject(common_name="client"), dns_names=(), ip_addresses=(),
                           email_addresses=(), usages=(*default_usages(algorithm), "client auth"))
    for template in (leaf_template(algorithm, size), client):
        assert_clean(issue(template, generate_key(KeySpec(algorithm, size)), signer, NOW).certificate)
        assert_clean(issue(template, generate_key(KeySpec(algorithm, size)), None, NOW).certificate)
    # Only a CA-signed leaf may have an empty subject (its SAN is then critical).
    sans_only = leaf_template(algorithm, size, subject=Subject(), dns_names=("only-a-san.example.com",))
    assert_clean(issue(sans_only, generate_key(KeySpec(algorithm, size)), signer, NOW).certificate)


@pytest.mark.parametrize("algorithm", [RSA, ECDSA, ED25519])
def test_certificates_from_spec_defaults_lint_clean(algorithm):
    """The path a Certificate takes: its spec with defaults, a self-signed issuer with a CRL URL, a CA issuer with all URLs."""
    self_signed = issuer_state(parse_issuer_spec({"selfSigned": {"crlDistributionPoints": ["http://pki.example.com/root.crl"]}}),
                               None, NOW)
    root = issue_certificate(parse_certificate_spec({"secretName": "root", "commonName": "root", "isCA": True,
                                                     "privateKey": {"algorithm": algorithm},
                                                     "issuerRef": {"name": "self"}}), self_signed, None, NOW)
    assert_clean(root.certificate)
    ca_issuer = issuer_state(parse_issuer_spec({"ca": {"secretName": "root", **{
        "crlDistributionPoints": ["http://pki.example.com/root.crl"], "ocspServers": ["http://ocsp.example.com"],
        "issuingCertificateURLs": ["http://pki.example.com/root.crt"]}}}),
        SecretState("root", {"tls.crt": root.tls_crt, "tls.key": root.key_pem, "ca.crt": root.ca_crt}), NOW)
    leaf = issue_certificate(parse_certificate_spec({"secretName": "leaf", "dnsNames": ["leaf.example.com"],
                                                     "privateKey": {"algorithm": algorithm},
                                                     "issuerRef": {"name": "root"}}), ca_issuer, None, NOW)
    assert_clean(leaf.certificate)


# --- the harness itself: it must see what it is there to catch ---------------------------------------------


def handmade(key_encipherment: bool, uri: str | None = None) -> x509.Certificate:
    key = generate_key(KeySpec(ECDSA, 256))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "handmade")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW)
               .not_valid_after(NOW + dt.timedelta(days=1))
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=key_encipherment, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False))
    if uri:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
    return builder.sign(key, hashes.SHA256())


def codes(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.linter, f.code) for f in findings}


def test_key_encipherment_on_an_ecdsa_key_is_an_error_to_both_linters():
    assert lint_certificate(handmade(key_encipherment=False)) == []
    found = codes(lint_certificate(handmade(key_encipherment=True)))
    assert any(linter == "pkilint" for linter, _ in found), found
    assert any(linter == "zlint" for linter, _ in found), found


def test_only_a_leftmost_wildcard_or_a_single_label_is_allowed_past_pkilints_domain_check():
    signer = ca(ECDSA, 256)
    for names, allowed in ((("*.example.com",), True), (("localhost",), True), (("api",), True),
                           (("a.*.example.com",), False), (("*example.com",), False), (("*.com",), False),
                           (("-bad-",), False)):
        template = leaf_template(ECDSA, 256, dns_names=names, subject=Subject(common_name="wild"))
        found = codes(lint_certificate(issue(template, generate_key(KeySpec(ECDSA, 256)), signer, NOW).certificate))
        assert (("pkilint", "pkix.invalid_domain_name_syntax") not in found) == allowed, (names, found)


@pytest.mark.parametrize("usages,allowed", [
    (("digital signature", "key encipherment", "client auth"), True),
    (("key encipherment", "client auth"), False),  # nothing left for a TLS client to sign with
    (("digital signature", "key encipherment", "code signing"), False),
])
def test_only_a_signing_client_certificate_is_allowed_past_zlints_usage_table(usages, allowed):
    template = leaf_template(RSA, 2048, subject=Subject(common_name="client"), dns_names=(), ip_addresses=(),
                             uris=(), email_addresses=(), usages=usages)
    found = codes(lint_certificate(issue(template, generate_key(KeySpec(RSA, 2048)), ca(ECDSA, 256), NOW).certificate))
    assert (("zlint", "e_key_usage_and_extended_key_usage_inconsistent") not in found) == allowed, found


def test_only_a_spiffe_id_is_allowed_past_pkilints_uri_check():
    assert lint_certificate(handmade(False, "spiffe://cluster.local/ns/default/sa/app")) == []
    assert ("pkilint", "pkix.invalid_uri_syntax") in codes(lint_certificate(handmade(False, "urn:example:not-web")))
    assert ("pkilint", "pkix.invalid_uri_syntax") in codes(lint_certificate(handmade(False, "spiffe://Bad Domain/x")))


def test_a_crl_is_linted_by_both_linters():
    key = generate_key(KeySpec(ECDSA, 256))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")])
    good = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(NOW)
            .next_update(NOW + dt.timedelta(days=1)).add_extension(x509.CRLNumber(1), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False))
    assert lint_crl(good.sign(key, hashes.SHA256())) == []
    # RFC 5280 5.2.3: a conforming CRL carries a CRL number; both linters say so.
    bad = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(NOW)
           .next_update(NOW + dt.timedelta(days=1))
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False))
    found = codes(lint_crl(bad.sign(key, hashes.SHA256())))
    assert ("zlint", "e_crl_missing_crl_number") in found
    assert any(linter == "pkilint" for linter, _ in found), found
