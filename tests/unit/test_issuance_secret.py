"""What an issued Secret holds, byte for byte and annotation by annotation, as cert-manager writes it."""
from __future__ import annotations

import base64
import datetime as dt

import pytest

from certmint.issuance import COMBINED_PEM, KEY_DER, issue_certificate, issued_secret, join_csv
from certmint.issuers import issuer_state
from certmint.model import parse_certificate_spec, parse_issuer_spec
from certmint.policy.types import SECRET_ANNOTATION_NAMES, TLS_CERT, TLS_KEY, SecretState

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
SELF_SIGNED = issuer_state(parse_issuer_spec({"selfSigned": {}}), None, NOW)
BASE = {"secretName": "web-tls", "commonName": "web", "issuerRef": {"name": "selfsigned"}}
FULL_SUBJECT = {
    "organizations": ["Example Org", "Second, Org"],
    "organizationalUnits": ["Platform"],
    "countries": ["DE", "FR"],
    "provinces": ["Berlin"],
    "localities": ["Berlin"],
    "streetAddresses": ['1 "Main" Street'],
    "postalCodes": ["10115"],
    "serialNumber": "SN-0042",
}


def secret_for(spec: dict) -> SecretState:
    parsed = parse_certificate_spec({**BASE, **spec})
    return issued_secret(parsed.secret_name, "web", parsed, issue_certificate(parsed, SELF_SIGNED, None, NOW),
                         1, None, None)


def test_every_subject_field_has_its_annotation():
    annotations = secret_for({"subject": FULL_SUBJECT}).annotations
    assert {k: v for k, v in annotations.items() if "/subject-" in k} == {
        "certmint.io/subject-organizations": 'Example Org,"Second, Org"',
        "certmint.io/subject-organizationalunits": "Platform",
        "certmint.io/subject-countries": "DE,FR",
        "certmint.io/subject-provinces": "Berlin",
        "certmint.io/subject-localities": "Berlin",
        "certmint.io/subject-streetaddresses": '"1 ""Main"" Street"',
        "certmint.io/subject-postalcodes": "10115",
        "certmint.io/subject-serialnumber": "SN-0042",
    }


def test_only_the_subject_fields_present_are_annotated():
    annotations = secret_for({"subject": {"organizations": ["Example"]}}).annotations
    assert [k for k in annotations if "/subject-" in k] == ["certmint.io/subject-organizations"]
    assert not [k for k in secret_for({}).annotations if "/subject-" in k]


def test_email_sans_only_when_there_are_email_addresses():
    assert "certmint.io/email-sans" not in secret_for({}).annotations
    with_emails = secret_for({"emailAddresses": ["a@example.com", "b@example.com"]}).annotations
    assert with_emails["certmint.io/email-sans"] == "a@example.com,b@example.com"


def test_every_annotation_written_is_in_the_one_list_of_names():
    """The Secret cache compresses against SECRET_ANNOTATION_NAMES: a Secret with every optional
    annotation uses each name there, and no other."""
    parsed = parse_certificate_spec({**BASE, "subject": FULL_SUBJECT, "emailAddresses": ["a@example.com"]})
    secret = issued_secret(parsed.secret_name, "web", parsed, issue_certificate(parsed, SELF_SIGNED, None, NOW),
                           1, "renew-1", None)
    assert sorted(secret.annotations) == sorted(SECRET_ANNOTATION_NAMES)


def test_name_annotations_are_always_written_even_when_empty():
    annotations = secret_for({}).annotations
    assert {k: annotations[k] for k in ("certmint.io/common-name", "certmint.io/alt-names", "certmint.io/ip-sans",
                                        "certmint.io/uri-sans")} == {
        "certmint.io/common-name": "web", "certmint.io/alt-names": "", "certmint.io/ip-sans": "",
        "certmint.io/uri-sans": ""}


@pytest.mark.parametrize("values,joined", [
    ((), ""),
    (("a",), "a"),
    (("a", "b"), "a,b"),
    (("a,b",), '"a,b"'),
    (('say "hi"',), '"say ""hi"""'),
    ((" leading space",), '" leading space"'),
    (("line\nbreak",), '"line\nbreak"'),
    (("\\.",), '"\\."'),
])
def test_lists_are_joined_as_go_writes_a_csv_record(values, joined):
    assert join_csv(values) == joined


@pytest.mark.parametrize("private_key,header", [
    ({"algorithm": "RSA", "encoding": "PKCS1"}, b"RSA PRIVATE KEY"),
    ({"algorithm": "ECDSA", "encoding": "PKCS1"}, b"EC PRIVATE KEY"),
    ({"algorithm": "ECDSA", "encoding": "PKCS8"}, b"PRIVATE KEY"),
    ({"algorithm": "Ed25519"}, b"PRIVATE KEY"),
])
def test_key_der_and_combined_pem_match_tls_key(private_key, header):
    secret = secret_for({"privateKey": private_key,
                         "additionalOutputFormats": [{"type": "DER"}, {"type": "CombinedPEM"}]})
    key_pem, tls_crt = secret.data[TLS_KEY], secret.data[TLS_CERT]
    lines = key_pem.splitlines()
    assert lines[0] == b"-----BEGIN " + header + b"-----" and lines[-1] == b"-----END " + header + b"-----"
    assert secret.data[KEY_DER] == base64.b64decode(b"".join(lines[1:-1]))
    assert secret.data[COMBINED_PEM] == key_pem + b"\n" + tls_crt
