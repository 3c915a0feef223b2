"""Reading certificates back: parsing, describe, and every field template_mismatches compares."""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import pytest

from certmint.pki import (
    ECDSA,
    ED25519,
    RSA,
    CertificateTemplate,
    KeySpec,
    PKIError,
    Subject,
    certificate_matches_key,
    certificates_pem,
    describe,
    generate_key,
    issue,
    parse_certificates,
    template_mismatches,
)

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
SUBJECT = Subject(common_name="app", organizations=("Org",), organizational_units=("Unit",), countries=("DE",),
                  provinces=("Berlin",), localities=("Berlin",), street_addresses=("Street 1",),
                  postal_codes=("10115",), serial_number="7")
TEMPLATE = CertificateTemplate(
    subject=SUBJECT, dns_names=("app.example.com", "*.app.example.com"), ip_addresses=("10.0.0.1", "2001:db8::1"),
    uris=("spiffe://cluster.local/ns/default/sa/app",), email_addresses=("app@example.com",),
    usages=("signing", "key encipherment", "server auth"), key=KeySpec(ECDSA, 256),
)


@functools.cache
def key():
    return generate_key(KeySpec(ECDSA, 256))


@functools.cache
def issued():
    """The certificate TEMPLATE asks for, described."""
    return describe(issue(TEMPLATE, key(), None, NOW).certificate)


def test_parse_certificates_keeps_order():
    a = issue(TEMPLATE, key(), None, NOW).certificate
    b = issue(dataclasses.replace(TEMPLATE, subject=Subject(common_name="b")), key(), None, NOW).certificate
    assert parse_certificates(certificates_pem([a, b])) == [a, b]


@pytest.mark.parametrize("pem", [b"", b"junk", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_parse_certificates_refuses_junk(pem):
    with pytest.raises(PKIError, match="not a valid PEM certificate bundle"):
        parse_certificates(pem)


def test_describe():
    certificate = issue(TEMPLATE, key(), None, NOW).certificate
    described = describe(certificate)
    assert described.subject == SUBJECT
    assert described.dns_names == TEMPLATE.dns_names
    assert described.ip_addresses == ("10.0.0.1", "2001:db8::1")
    assert described.uris == TEMPLATE.uris and described.email_addresses == TEMPLATE.email_addresses
    assert described.usages == ("digital signature", "key encipherment", "server auth")
    assert not described.is_ca
    assert (described.key_algorithm, described.key_size) == (ECDSA, 256)
    assert described.serial_number == certificate.serial_number
    assert described.not_before == NOW - dt.timedelta(minutes=1)
    assert described.not_after == described.not_before + TEMPLATE.duration
    assert described.subject_dn == described.issuer_dn == certificate.subject.rfc4514_string()
    # RFC 4514 lists the RDNs last first: serialNumber follows CN in the DN, as in cert-manager's.
    assert described.subject_dn == ("2.5.4.5=7,CN=app,OU=Unit,O=Org,2.5.4.17=10115,STREET=Street 1,"
                                    "L=Berlin,ST=Berlin,C=DE")


def test_describe_normalises_ip_addresses():
    template = dataclasses.replace(TEMPLATE, ip_addresses=("2001:0db8:0000::0001", " 10.0.0.1"))
    assert describe(issue(template, key(), None, NOW).certificate).ip_addresses == ("2001:db8::1", "10.0.0.1")


def test_an_exact_match_has_no_mismatches():
    assert template_mismatches(TEMPLATE, issued()) == []


@pytest.mark.parametrize("change", [
    dict(duration=dt.timedelta(days=1)),  # the caller compares durations, allowing for clamping
    dict(dns_names=tuple(reversed(TEMPLATE.dns_names))),
    dict(ip_addresses=("2001:db8:0::1", "10.0.0.1")),
    dict(usages=("server auth", "digital signature", "key encipherment")),
    dict(subject=dataclasses.replace(SUBJECT, organizational_units=("Unit", ""))),  # "" is unset
    dict(key=KeySpec(ECDSA, None)),  # the default size
])
def test_equivalent_templates_match(change):
    assert template_mismatches(dataclasses.replace(TEMPLATE, **change), issued()) == []


@pytest.mark.parametrize("change,labels", [
    (dict(subject=dataclasses.replace(SUBJECT, common_name="other")), ["commonName"]),
    (dict(subject=dataclasses.replace(SUBJECT, common_name=None)), ["commonName"]),
    (dict(subject=dataclasses.replace(SUBJECT, organizations=("Org", "Other"))), ["organizations"]),
    (dict(subject=dataclasses.replace(SUBJECT, organizational_units=())), ["organizationalUnits"]),
    (dict(subject=dataclasses.replace(SUBJECT, countries=("FR",))), ["countries"]),
    (dict(subject=dataclasses.replace(SUBJECT, provinces=("Bavaria",))), ["provinces"]),
    (dict(subject=dataclasses.replace(SUBJECT, localities=("Munich",))), ["localities"]),
    (dict(subject=dataclasses.replace(SUBJECT, street_addresses=("Street 2",))), ["streetAddresses"]),
    (dict(subject=dataclasses.replace(SUBJECT, postal_codes=("80331",))), ["postalCodes"]),
    (dict(subject=dataclasses.replace(SUBJECT, serial_number="8")), ["serialNumber"]),
    (dict(dns_names=("app.example.com",)), ["dnsNames"]),
    (dict(ip_addresses=("10.0.0.2", "2001:db8::1")), ["ipAddresses"]),
    (dict(uris=()), ["uris"]),
    (dict(email_addresses=("other@example.com",)), ["emailAddresses"]),
    (dict(usages=("digital signature", "key encipherment")), ["usages"]),
    (dict(is_ca=True), ["usages", "isCA"]),  # a CA also gets cert sign
    (dict(key=KeySpec(ECDSA, 384)), ["privateKey.size"]),
    (dict(key=KeySpec(ED25519)), ["privateKey.algorithm", "privateKey.size"]),
    (dict(key=KeySpec(RSA, 2048)), ["privateKey.algorithm", "privateKey.size"]),
])
def test_each_differing_field_is_reported(change, labels):
    mismatches = template_mismatches(dataclasses.replace(TEMPLATE, **change), issued())
    assert [m.split(" ")[0] for m in mismatches] == labels


def test_mismatch_messages_are_plain():
    template = dataclasses.replace(TEMPLATE, dns_names=("a", "b"), is_ca=True,
                                   subject=dataclasses.replace(SUBJECT, common_name=None))
    certificate = issue(dataclasses.replace(TEMPLATE, dns_names=("a",)), key(), None, NOW).certificate
    assert template_mismatches(template, describe(certificate)) == [
        "commonName differs: certificate has app, spec wants none",
        "dnsNames differ: certificate has [a], spec wants [a, b]",
        "usages differ: certificate has [digital signature, key encipherment, server auth], "
        "spec wants [cert sign, digital signature, key encipherment, server auth]",
        "isCA differs: certificate has false, spec wants true",
    ]


def test_certificate_matches_key():
    certificate = issue(TEMPLATE, key(), None, NOW).certificate
    assert certificate_matches_key(certificate, key())
    assert not certificate_matches_key(certificate, generate_key(KeySpec(ECDSA, 256)))
