"""Issuer specs to signing: an issuer's CRL and AIA URLs reach every certificate it signs."""
from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from certmint.issuance import issue_certificate
from certmint.issuers import issuer_state, signing_options
from certmint.model import parse_certificate_spec, parse_issuer_spec
from certmint.pki import SigningOptions
from certmint.policy.types import SecretState

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
CA_SPEC = {"secretName": "ca", "commonName": "CA", "isCA": True, "privateKey": {"algorithm": "ECDSA"},
           "issuerRef": {"name": "self"}}
LEAF_SPEC = {"secretName": "leaf", "dnsNames": ["leaf.example.com"], "privateKey": {"algorithm": "ECDSA"},
             "issuerRef": {"name": "ca"}}
URLS = {"crlDistributionPoints": ["http://pki.example.com/ca.crl"], "ocspServers": ["http://ocsp.example.com"],
        "issuingCertificateURLs": ["http://pki.example.com/ca.crt"]}


def extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def ca_secret() -> SecretState:
    ca = issue_certificate(parse_certificate_spec(CA_SPEC), issuer_state(parse_issuer_spec({"selfSigned": {}}), None, NOW),
                           None, NOW)
    return SecretState("ca", {"tls.crt": ca.tls_crt, "tls.key": ca.key_pem, "ca.crt": ca.ca_crt})


def test_signing_options_of_each_kind():
    assert signing_options(parse_issuer_spec({"ca": {"secretName": "ca", **URLS}})) == SigningOptions(
        ("http://pki.example.com/ca.crl",), ("http://ocsp.example.com",), ("http://pki.example.com/ca.crt",))
    assert signing_options(parse_issuer_spec({"selfSigned": {"crlDistributionPoints": ["http://x.example/s.crl"]}})) \
        == SigningOptions(crl_distribution_points=("http://x.example/s.crl",))
    assert signing_options(parse_issuer_spec({"ca": {"secretName": "ca"}})) == SigningOptions()


def test_a_ca_issuers_urls_are_in_the_certificates_it_signs():
    state = issuer_state(parse_issuer_spec({"ca": {"secretName": "ca", **URLS}}), ca_secret(), NOW)
    assert state.ready and state.signer is not None and state.signer.options.ocsp_servers == ("http://ocsp.example.com",)
    leaf = issue_certificate(parse_certificate_spec(LEAF_SPEC), state, None, NOW).certificate
    cdp = extension(leaf, x509.CRLDistributionPoints)
    assert isinstance(cdp, x509.CRLDistributionPoints)
    assert [n.value for dp in cdp for n in dp.full_name] == ["http://pki.example.com/ca.crl"]
    aia = extension(leaf, x509.AuthorityInformationAccess)
    assert isinstance(aia, x509.AuthorityInformationAccess)
    assert [(d.access_method, d.access_location.value) for d in aia] == [
        (AuthorityInformationAccessOID.OCSP, "http://ocsp.example.com"),
        (AuthorityInformationAccessOID.CA_ISSUERS, "http://pki.example.com/ca.crt")]


def test_a_ca_issuer_without_urls_adds_neither_extension():
    state = issuer_state(parse_issuer_spec({"ca": {"secretName": "ca"}}), ca_secret(), NOW)
    leaf = issue_certificate(parse_certificate_spec(LEAF_SPEC), state, None, NOW).certificate
    assert extension(leaf, x509.CRLDistributionPoints) is None
    assert extension(leaf, x509.AuthorityInformationAccess) is None


def test_a_self_signed_issuers_crl_url_is_in_its_certificates_without_aia():
    state = issuer_state(parse_issuer_spec({"selfSigned": {"crlDistributionPoints": ["http://x.example/s.crl"]}}),
                         None, NOW)
    certificate = issue_certificate(parse_certificate_spec(CA_SPEC), state, None, NOW).certificate
    cdp = extension(certificate, x509.CRLDistributionPoints)
    assert isinstance(cdp, x509.CRLDistributionPoints)
    assert [n.value for dp in cdp for n in dp.full_name] == ["http://x.example/s.crl"]
    assert extension(certificate, x509.AuthorityInformationAccess) is None
