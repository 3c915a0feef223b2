"""Issuing: RFC 5280 properties, clamping to the CA, signature hashes, and a chain openssl accepts."""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from certmint.pki import (
    ECDSA,
    ED25519,
    RSA,
    CASigner,
    CertificateTemplate,
    KeySpec,
    NameConstraints,
    PKIError,
    SigningOptions,
    Subject,
    bundle,
    certificates_pem,
    check_name_constraints,
    generate_key,
    issue,
)
from certmint.pki.signing import random_serial

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
LEAF = CertificateTemplate(subject=Subject(common_name="leaf"), dns_names=("leaf.example.com",), duration=DAY)


@functools.cache
def key(algorithm: str = ECDSA, size: int | None = 256):
    return generate_key(KeySpec(algorithm, size))


def ca(name: str, parent: CASigner | None = None, duration: dt.timedelta = 365 * DAY,
       spec: tuple[str, int | None] = (ECDSA, 256), constraints: NameConstraints | None = None) -> CASigner:
    """A CA signed by parent (self-signed without one), with a key of its own."""
    ca_key = generate_key(KeySpec(*spec))
    template = CertificateTemplate(subject=Subject(common_name=name), is_ca=True, duration=duration,
                                   usages=("cert sign", "crl sign"), name_constraints=constraints)
    certificate = issue(template, ca_key, parent, NOW).certificate
    chain = (parent.certificate, *parent.chain) if parent else ()
    return CASigner(certificate, ca_key, chain)


@functools.cache
def root() -> CASigner:
    return ca("root")


def ext(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:
    return certificate.extensions.get_extension_for_class(kind)


def test_serial_is_random_positive_and_at_least_64_bits():
    serials = [issue(LEAF, key(), root(), NOW).certificate.serial_number for _ in range(8)]
    assert len(set(serials)) == 8
    assert all(0 < s < 2**127 for s in serials)
    assert max(s.bit_length() for s in serials) > 64
    assert all(0 < random_serial() < 2**127 for _ in range(1000))


def test_key_identifiers_link_the_leaf_to_its_issuer():
    leaf = issue(LEAF, key(), root(), NOW).certificate
    ski = ext(leaf, x509.SubjectKeyIdentifier)
    aki = ext(leaf, x509.AuthorityKeyIdentifier)
    assert not ski.critical and not aki.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key().public_key())
    assert aki.value.key_identifier == ext(root().certificate, x509.SubjectKeyIdentifier).value.digest
    leaf.verify_directly_issued_by(root().certificate)


def test_self_signed_certificate_identifies_itself():
    certificate = issue(LEAF, key(), None, NOW).certificate
    assert certificate.issuer == certificate.subject
    assert (ext(certificate, x509.AuthorityKeyIdentifier).value.key_identifier
            == ext(certificate, x509.SubjectKeyIdentifier).value.digest)
    certificate.verify_directly_issued_by(certificate)


def test_aki_falls_back_to_the_issuer_public_key_when_the_issuer_has_no_ski():
    issuer_key = key(ED25519, None)
    issuer = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-ski")]))
              .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-ski")]))
              .public_key(issuer_key.public_key()).serial_number(1)
              .not_valid_before(NOW - DAY).not_valid_after(NOW + 365 * DAY)
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(issuer_key, None))
    leaf = issue(LEAF, key(), CASigner(issuer, issuer_key), NOW).certificate
    assert (ext(leaf, x509.AuthorityKeyIdentifier).value
            == x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()))


@pytest.mark.parametrize("is_ca", [False, True])
def test_basic_constraints_and_key_usage_are_critical(is_ca):
    certificate = issue(dataclasses.replace(LEAF, is_ca=is_ca), key(), root(), NOW).certificate
    basic_constraints = ext(certificate, x509.BasicConstraints)
    assert basic_constraints.critical
    assert basic_constraints.value.ca is is_ca and basic_constraints.value.path_length is None
    key_usage = ext(certificate, x509.KeyUsage)
    assert key_usage.critical
    assert key_usage.value.digital_signature and key_usage.value.key_encipherment
    assert key_usage.value.key_cert_sign is is_ca


def test_extended_key_usage_only_when_asked_for():
    plain = issue(LEAF, key(), root(), NOW).certificate
    with pytest.raises(x509.ExtensionNotFound):
        ext(plain, x509.ExtendedKeyUsage)
    server = issue(dataclasses.replace(LEAF, usages=("digital signature", "server auth")), key(), root(), NOW)
    extended = ext(server.certificate, x509.ExtendedKeyUsage)
    assert not extended.critical
    assert list(extended.value) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]


def test_subject_alternative_names_of_every_kind():
    template = CertificateTemplate(
        dns_names=("example.com", "*.example.com"), ip_addresses=("10.0.0.1", "2001:db8::1"),
        uris=("spiffe://cluster.local/ns/default/sa/app",), email_addresses=("admin@example.com",))
    san = ext(issue(template, key(), root(), NOW).certificate, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.com", "*.example.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1", "2001:db8::1"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/default/sa/app"]
    assert san.get_values_for_type(x509.RFC822Name) == ["admin@example.com"]


@pytest.mark.parametrize("subject,critical", [(Subject(), True), (Subject(common_name="named"), False)])
def test_san_is_critical_exactly_when_the_subject_is_empty(subject, critical):
    template = CertificateTemplate(subject=subject, dns_names=("example.com",))
    certificate = issue(template, key(), root(), NOW).certificate
    assert ext(certificate, x509.SubjectAlternativeName).critical is critical
    assert len(certificate.subject) == (0 if critical else 1)


def test_subject_attributes_in_cert_manager_order():
    subject = Subject(common_name="cn", organizations=("o1", "o2"), organizational_units=("ou",), countries=("DE",),
                      provinces=("st",), localities=("l",), street_addresses=("street",), postal_codes=("12345",),
                      serial_number="42")
    certificate = issue(CertificateTemplate(subject=subject), key(), root(), NOW).certificate
    assert [(a.oid, a.value) for a in certificate.subject] == [
        (NameOID.COUNTRY_NAME, "DE"), (NameOID.STATE_OR_PROVINCE_NAME, "st"), (NameOID.LOCALITY_NAME, "l"),
        (NameOID.STREET_ADDRESS, "street"), (NameOID.POSTAL_CODE, "12345"), (NameOID.ORGANIZATION_NAME, "o1"),
        (NameOID.ORGANIZATION_NAME, "o2"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "ou"), (NameOID.COMMON_NAME, "cn"),
        (NameOID.SERIAL_NUMBER, "42"),
    ]


@pytest.mark.parametrize("critical", [False, True])
def test_name_constraints_on_a_ca(critical):
    constraints = NameConstraints(critical=critical, permitted_dns=("example.com",),
                                  permitted_ip_ranges=("10.0.0.0/8",), excluded_emails=("example.org",),
                                  excluded_uri_domains=(".evil.example",))
    certificate = ca("constrained", root(), constraints=constraints).certificate
    extension = ext(certificate, x509.NameConstraints)
    assert extension.critical is critical
    assert [str(n.value) for n in extension.value.permitted_subtrees] == ["example.com", "10.0.0.0/8"]
    assert [n.value for n in extension.value.excluded_subtrees] == ["example.org", ".evil.example"]


def test_no_name_constraints_on_a_leaf():
    template = dataclasses.replace(LEAF, name_constraints=NameConstraints(permitted_dns=("example.com",)))
    with pytest.raises(x509.ExtensionNotFound):
        ext(issue(template, key(), root(), NOW).certificate, x509.NameConstraints)


def test_validity_is_backdated_and_lasts_the_duration():
    result = issue(LEAF, key(), root(), NOW, backdate=dt.timedelta(minutes=5))
    assert not result.clamped
    assert result.certificate.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    assert result.certificate.not_valid_after_utc == NOW - dt.timedelta(minutes=5) + DAY


def lifetime(certificate: x509.Certificate) -> dt.timedelta:
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc


@pytest.mark.parametrize("signer", ["self-signed", "root CA", "intermediate CA"])
@pytest.mark.parametrize("duration", [dt.timedelta(hours=1), dt.timedelta(hours=896), dt.timedelta(hours=2160),
                                      dt.timedelta(hours=1, minutes=2, seconds=3)])
def test_lifetime_is_exactly_the_duration(signer, duration):
    """notAfter - notBefore == duration to the second (not duration + the backdate), for every kind of issuer."""
    by = {"self-signed": lambda: None, "root CA": root, "intermediate CA": lambda: ca("intermediate", root())}[signer]()
    at = NOW + dt.timedelta(microseconds=654321)  # sub-second time of issue: still exact
    result = issue(dataclasses.replace(LEAF, duration=duration), key(), by, at)
    assert not result.clamped
    assert lifetime(result.certificate) == duration
    assert result.certificate.not_valid_before_utc == NOW - dt.timedelta(minutes=1)


def test_a_fraction_of_a_second_in_the_duration_is_dropped():
    result = issue(dataclasses.replace(LEAF, duration=dt.timedelta(hours=1, microseconds=900_000)), key(), None, NOW)
    assert lifetime(result.certificate) == dt.timedelta(hours=1)


def test_not_after_is_clamped_to_the_signer():
    short_ca = ca("short", root(), duration=10 * DAY)
    result = issue(dataclasses.replace(LEAF, duration=90 * DAY), key(), short_ca, NOW)
    assert result.clamped
    assert result.certificate.not_valid_after_utc == short_ca.certificate.not_valid_after_utc
    assert result.certificate.not_valid_before_utc == NOW - dt.timedelta(minutes=1)
    assert lifetime(result.certificate) == 10 * DAY  # the CA's own lifetime: it was issued at NOW too


def test_a_lifetime_ending_one_second_before_the_signer_is_not_clamped():
    short_ca = ca("short", root(), duration=10 * DAY)
    room = short_ca.certificate.not_valid_after_utc - (NOW - dt.timedelta(minutes=1))
    result = issue(dataclasses.replace(LEAF, duration=room - dt.timedelta(seconds=1)), key(), short_ca, NOW)
    assert not result.clamped and lifetime(result.certificate) == room - dt.timedelta(seconds=1)
    clamped = issue(dataclasses.replace(LEAF, duration=room + dt.timedelta(seconds=1)), key(), short_ca, NOW)
    assert clamped.clamped and clamped.certificate.not_valid_after_utc == short_ca.certificate.not_valid_after_utc


@pytest.mark.parametrize("is_ca,signed_by_ca", [(False, False), (True, False), (True, True)])
def test_an_empty_subject_is_refused_where_it_would_be_an_issuer_name(is_ca, signed_by_ca):
    template = dataclasses.replace(LEAF, subject=Subject(), is_ca=is_ca)
    with pytest.raises(PKIError, match="needs a subject .*RFC 5280 forbids an empty issuer name"):
        issue(template, key(), root() if signed_by_ca else None, NOW)


def test_a_ca_signed_leaf_may_have_only_alternative_names():
    certificate = issue(dataclasses.replace(LEAF, subject=Subject()), key(), root(), NOW).certificate
    assert not certificate.subject and ext(certificate, x509.SubjectAlternativeName).critical


def test_self_signed_is_never_clamped():
    result = issue(dataclasses.replace(LEAF, duration=3650 * DAY), key(), None, NOW)
    assert not result.clamped and lifetime(result.certificate) == 3650 * DAY


@pytest.mark.parametrize("spec,hash_name", [
    ((RSA, 2048), "sha256"), ((ECDSA, 256), "sha256"), ((ECDSA, 384), "sha384"), ((ECDSA, 521), "sha512"),
    ((ED25519, None), None),
])
def test_signature_hash_fits_the_issuer_key(spec, hash_name):
    issuer = ca(f"{spec[0]} CA", spec=spec)
    leaf = issue(LEAF, key(), issuer, NOW).certificate
    assert (leaf.signature_hash_algorithm and leaf.signature_hash_algorithm.name) == hash_name
    leaf.verify_directly_issued_by(issuer.certificate)


@pytest.mark.parametrize("template,message", [
    (CertificateTemplate(), "subject or at least one subject alternative name"),
    (CertificateTemplate(ip_addresses=("10.0.0.300",)), "invalid IP address '10.0.0.300'"),
    (CertificateTemplate(subject=Subject(countries=("Germany",))), "invalid subject"),
    (CertificateTemplate(dns_names=("bücher.example",)), "invalid subject alternative name"),
    (CertificateTemplate(dns_names=("a",), usages=("server",)), "unknown usage"),
    (CertificateTemplate(subject=Subject(common_name="CA"), is_ca=True,
                         name_constraints=NameConstraints(permitted_ip_ranges=("x",))),
     "invalid name constraint"),
])
def test_invalid_templates_are_refused(template, message):
    with pytest.raises(PKIError, match=message):
        issue(template, key(), root(), NOW)


def test_now_must_be_timezone_aware():
    with pytest.raises(PKIError, match="timezone-aware"):
        issue(LEAF, key(), None, NOW.replace(tzinfo=None))


def test_a_certificate_that_would_end_before_it_starts_is_refused():
    with pytest.raises(PKIError, match="before it becomes valid"):
        issue(dataclasses.replace(LEAF, duration=-DAY), key(), None, NOW)


def test_signer_repr_hides_the_key():
    assert "key=" not in repr(root())


def openssl_verify(tmp_path: Path, ca_crt: bytes, untrusted: bytes | None, leaf: x509.Certificate,
                   *options: str) -> subprocess.CompletedProcess[str]:
    """The real `openssl verify -CAfile ca.crt [-untrusted untrusted] leaf`, at NOW."""
    (tmp_path / "ca.crt").write_bytes(ca_crt)
    (tmp_path / "leaf.crt").write_bytes(certificates_pem([leaf]))
    args = ["/usr/bin/openssl", "verify", "-attime", str(int(NOW.timestamp())), "-CAfile", str(tmp_path / "ca.crt"),
            *options]
    if untrusted is not None:
        (tmp_path / "untrusted.crt").write_bytes(untrusted)
        args += ["-untrusted", str(tmp_path / "untrusted.crt")]
    return subprocess.run([*args, str(tmp_path / "leaf.crt")], capture_output=True, text=True, check=False)


def test_root_intermediate_leaf_chain_verifies_with_openssl(tmp_path: Path):
    intermediate = ca("intermediate", ca("root", spec=(RSA, 2048)), spec=(ECDSA, 384))
    leaf = issue(dataclasses.replace(LEAF, usages=("digital signature", "server auth")),
                 key(ED25519, None), intermediate, NOW).certificate
    tls_crt, ca_crt = bundle(leaf, intermediate)
    intermediates = certificates_pem(intermediate.intermediates)
    ok = openssl_verify(tmp_path, ca_crt, intermediates, leaf, "-purpose", "sslserver")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert openssl_verify(tmp_path, ca_crt, tls_crt, leaf).returncode == 0
    assert openssl_verify(tmp_path, ca_crt, None, leaf).returncode != 0  # the intermediate is needed


def test_openssl_enforces_the_name_constraints_we_write(tmp_path: Path):
    constrained = ca("constrained", root(), constraints=NameConstraints(permitted_dns=("example.com",)))
    template = dataclasses.replace(LEAF, dns_names=("www.example.org",))
    leaf = issue(template, key(), constrained, NOW).certificate
    result = openssl_verify(tmp_path, certificates_pem([root().certificate]),
                            certificates_pem([constrained.certificate]), leaf)
    assert result.returncode != 0 and "subtree violation" in result.stderr
    assert check_name_constraints(constrained, template) == [
        "DNS name www.example.org is not permitted by the name constraints of CA CN=constrained"]


# --- the issuer's CRL and AIA URLs --------------------------------------------------------------------

URLS = SigningOptions(crl_distribution_points=("http://pki.example.com/a.crl", "ldap://pki.example.com/cn=CA"),
                      ocsp_servers=("http://ocsp.example.com",),
                      issuing_certificate_urls=("http://pki.example.com/ca.crt", "http://mirror.example.com/ca.crt"))


def test_a_signers_urls_are_in_what_it_signs():
    signer = dataclasses.replace(root(), options=URLS)
    leaf = issue(LEAF, key(), signer, NOW).certificate
    cdp = ext(leaf, x509.CRLDistributionPoints)
    assert not cdp.critical
    assert [[n.value for n in dp.full_name] for dp in cdp.value] == [["http://pki.example.com/a.crl"],
                                                                      ["ldap://pki.example.com/cn=CA"]]
    assert all(dp.reasons is None and dp.crl_issuer is None and dp.relative_name is None for dp in cdp.value)
    aia = ext(leaf, x509.AuthorityInformationAccess)
    assert not aia.critical
    assert [(d.access_method, d.access_location.value) for d in aia.value] == [
        (AuthorityInformationAccessOID.OCSP, "http://ocsp.example.com"),
        (AuthorityInformationAccessOID.CA_ISSUERS, "http://pki.example.com/ca.crt"),
        (AuthorityInformationAccessOID.CA_ISSUERS, "http://mirror.example.com/ca.crt")]


def test_without_urls_there_are_no_such_extensions():
    for signer in (root(), None):
        extensions = {type(e.value) for e in issue(LEAF, key(), signer, NOW).certificate.extensions}
        assert x509.CRLDistributionPoints not in extensions and x509.AuthorityInformationAccess not in extensions


def test_explicit_options_override_the_signers_and_work_self_signed():
    only_crl = SigningOptions(crl_distribution_points=("http://pki.example.com/self.crl",))
    certificate = issue(LEAF, key(), None, NOW, options=only_crl).certificate
    assert ext(certificate, x509.CRLDistributionPoints).value[0].full_name[0].value == "http://pki.example.com/self.crl"
    with pytest.raises(x509.ExtensionNotFound):
        ext(certificate, x509.AuthorityInformationAccess)


def test_only_ocsp_gives_an_aia_without_ca_issuers():
    leaf = issue(LEAF, key(), dataclasses.replace(root(), options=SigningOptions(ocsp_servers=("http://o.example",))),
                 NOW).certificate
    assert [d.access_method for d in ext(leaf, x509.AuthorityInformationAccess).value] == [
        AuthorityInformationAccessOID.OCSP]


def test_an_invalid_url_is_a_pki_error_naming_the_field():
    signer = dataclasses.replace(root(), options=SigningOptions(ocsp_servers=("http://bücher.example/ocsp",)))
    with pytest.raises(PKIError, match="ocspServers has an invalid URL"):
        issue(LEAF, key(), signer, NOW)
