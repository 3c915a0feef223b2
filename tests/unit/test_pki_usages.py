"""cert-manager usage names: aliases, implicit usages, and the X.509 bits each one sets."""
from __future__ import annotations

import datetime as dt
import functools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certmint.pki import ALL_USAGES, ECDSA, CertificateTemplate, KeySpec, PKIError, Subject, generate_key, issue
from certmint.pki.usages import extended_key_usage_extension, key_usage_extension, normalise_usages, usages_of

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


@functools.cache
def _key():
    return generate_key(KeySpec(ECDSA, 256))


def _certificate(usages: tuple[str, ...], is_ca: bool = False) -> x509.Certificate:
    template = CertificateTemplate(subject=Subject(common_name="usages"), usages=usages, is_ca=is_ca)
    return issue(template, _key(), None, NOW).certificate


def test_all_of_cert_managers_usages_are_known():
    assert len(ALL_USAGES) == len(set(ALL_USAGES)) == 23
    assert set(normalise_usages(ALL_USAGES)) == set(ALL_USAGES) - {"signing", "s/mime"}  # the aliases


@pytest.mark.parametrize("usage", ALL_USAGES)
def test_each_usage_survives_issuance(usage):
    certificate = _certificate((usage,))
    assert usages_of(certificate) == normalise_usages((usage,))


@pytest.mark.parametrize("alias,name", [("signing", "digital signature"), ("s/mime", "email protection")])
def test_aliases_compare_equal(alias, name):
    assert normalise_usages([alias]) == normalise_usages([name]) == (name,)


def test_a_ca_always_gets_cert_sign():
    assert normalise_usages(["digital signature"], is_ca=True) == ("cert sign", "digital signature")
    assert usages_of(_certificate(("digital signature",), is_ca=True)) == ("cert sign", "digital signature")


@pytest.mark.parametrize("usage", ["encipher only", "decipher only"])
def test_encipher_and_decipher_only_bring_key_agreement(usage):
    assert normalise_usages([usage]) == tuple(sorted([usage, "key agreement"]))
    key_usage = key_usage_extension(normalise_usages([usage]))
    assert key_usage.key_agreement


def test_unknown_usage_is_refused():
    with pytest.raises(PKIError, match="unknown usage 'server'"):
        normalise_usages(["server"])


@pytest.mark.parametrize("usage,oid", [
    ("ipsec end system", "1.3.6.1.5.5.7.3.5"),
    ("ipsec tunnel", "1.3.6.1.5.5.7.3.6"),
    ("ipsec user", "1.3.6.1.5.5.7.3.7"),
    ("microsoft sgc", "1.3.6.1.4.1.311.10.3.3"),
    ("netscape sgc", "2.16.840.1.113730.4.1"),
    ("any", "2.5.29.37.0"),
    ("timestamping", "1.3.6.1.5.5.7.3.8"),
])
def test_extended_usage_oids(usage, oid):
    assert [o.dotted_string for o in extended_key_usage_extension([usage])] == [oid]


def test_no_extension_without_usages_of_its_kind():
    assert key_usage_extension(["server auth"]) is None
    assert extended_key_usage_extension(["digital signature"]) is None


def test_unnamed_extended_usage_shows_as_its_oid():
    builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
               .public_key(_key().public_key()).serial_number(1)
               .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.2.3.4")]), critical=False))
    assert usages_of(builder.sign(_key(), hashes.SHA256())) == ("1.2.3.4",)
