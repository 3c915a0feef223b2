"""The Secret a cert-manager manifest gets is the Secret cert-manager would have written: the exact
lifetime, key.der in tls.key's encoding, the combined PEM byte for byte, and the subject annotations,
checked with openssl on a real control plane. Also the issuer's CRL and AIA URLs in what it signs."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from conftest import apply, get_json, openssl, secret_data, wait_ready
from manifests import SELF_SIGNED_ISSUER, documents

DURATION = dt.timedelta(hours=896)
FULL_SUBJECT = """  subject:
    organizations: [Example Org, "Second, Org"]
    organizationalUnits: [Platform]
    countries: [DE]
    provinces: [Berlin]
    localities: [Berlin]
    streetAddresses: [Street 1]
    postalCodes: ["10115"]
    serialNumber: SN-0042"""
CA = documents(SELF_SIGNED_ISSUER, """apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: ca}
spec:
  isCA: true
  commonName: Example CA
  secretName: ca
  privateKey: {algorithm: ECDSA}
  issuerRef: {name: self}""", """apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: ca}
spec:
  ca:
    secretName: ca
    crlDistributionPoints: [http://pki.example.com/ca.crl]
    ocspServers: [http://ocsp.example.com]
    issuingCertificateURLs: [http://pki.example.com/ca.crt]""")


def certificate(name: str, spec: str) -> str:
    return f"""apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: {name}}}
spec:
  secretName: {name}
  issuerRef: {{name: ca}}
{spec}"""


def openssl_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text.strip(), "%b %d %H:%M:%S %Y GMT").replace(tzinfo=dt.timezone.utc)


def dates(tls_crt: bytes) -> tuple[dt.datetime, dt.datetime]:
    out = openssl("x509", "-noout", "-dates", input=tls_crt).stdout.decode()
    fields = dict(line.split("=", 1) for line in out.splitlines())
    return openssl_time(fields["notBefore"]), openssl_time(fields["notAfter"])


@pytest.fixture
def ca_namespace(kubectl, namespace, operator):
    apply(kubectl, namespace, CA)
    wait_ready(kubectl, namespace, "issuer/ca")
    return namespace


@pytest.mark.parametrize("private_key,der_form", [
    ("{algorithm: RSA}", "PKCS#1"),
    ("{algorithm: ECDSA}", "SEC1"),
    ("{algorithm: ECDSA, size: 384, encoding: PKCS8}", "PKCS#8"),
])
def test_full_subject_der_and_combined_pem_as_cert_manager_writes_them(kubectl, ca_namespace, tmp_path,
                                                                       private_key, der_form):
    ns = ca_namespace
    apply(kubectl, ns, certificate("full", f"""  commonName: full.example.com
  dnsNames: [full.example.com]
  emailAddresses: [ops@example.com]
  duration: 896h
  privateKey: {private_key}
  additionalOutputFormats: [{{type: DER}}, {{type: CombinedPEM}}]
{FULL_SUBJECT}"""))
    wait_ready(kubectl, ns, "certificate/full")
    data = secret_data(kubectl, ns, "full")
    secret = get_json(kubectl, "secret", "-n", ns, "full")

    # The lifetime is the duration, to the second: openssl -dates, and the status agrees.
    not_before, not_after = dates(data["tls.crt"])
    assert not_after - not_before == DURATION
    status = get_json(kubectl, "certificate", "-n", ns, "full")["status"]
    assert (status["notBefore"], status["notAfter"]) == (not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                         not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))

    # key.der is tls.key's DER body: the same key to openssl, in the same encoding.
    (tmp_path / "key.der").write_bytes(data["key.der"])
    (tmp_path / "tls.key").write_bytes(data["tls.key"])
    from_der = openssl("pkey", "-inform", "DER", "-in", str(tmp_path / "key.der"), "-outform", "PEM").stdout
    from_pem = openssl("pkey", "-in", str(tmp_path / "tls.key"), "-outform", "PEM").stdout
    assert from_der == from_pem
    key_body = b"".join(line for line in data["tls.key"].splitlines() if not line.startswith(b"-----"))
    assert openssl("base64", "-A", input=data["key.der"]).stdout == key_body
    structure = openssl("asn1parse", "-inform", "DER", input=data["key.der"]).stdout.decode().splitlines()
    first_integer = re.search(r"INTEGER\s+:(\S+)", structure[1]).group(1)
    assert {"PKCS#1": "00", "SEC1": "01", "PKCS#8": "00"}[der_form] == first_integer
    assert ("SEQUENCE" in structure[2]) == (der_form == "PKCS#8")  # PKCS#8's AlgorithmIdentifier

    # tls-combined.pem: the key, one newline, the chain.
    assert data["tls-combined.pem"] == data["tls.key"] + b"\n" + data["tls.crt"]

    # The subject, in cert-manager's (Go's) order: serialNumber after CN.
    subject = openssl("x509", "-noout", "-subject", "-nameopt", "sep_comma_plus,sname", input=data["tls.crt"])
    assert subject.stdout.decode().strip() == (
        "subject=C=DE,ST=Berlin,L=Berlin,street=Street 1,postalCode=10115,O=Example Org,O=Second, Org,"
        "OU=Platform,CN=full.example.com,serialNumber=SN-0042")

    annotations = secret["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("certmint.io/subject-")} == {
        "certmint.io/subject-organizations": 'Example Org,"Second, Org"',
        "certmint.io/subject-organizationalunits": "Platform",
        "certmint.io/subject-countries": "DE",
        "certmint.io/subject-provinces": "Berlin",
        "certmint.io/subject-localities": "Berlin",
        "certmint.io/subject-streetaddresses": "Street 1",
        "certmint.io/subject-postalcodes": "10115",
        "certmint.io/subject-serialnumber": "SN-0042",
    }
    assert annotations["certmint.io/email-sans"] == "ops@example.com"
    assert annotations["certmint.io/common-name"] == "full.example.com"


def test_a_plain_certificate_has_no_subject_or_email_annotations(kubectl, ca_namespace):
    ns = ca_namespace
    apply(kubectl, ns, certificate("plain", "  dnsNames: [plain.example.com]\n  duration: 2h"))
    wait_ready(kubectl, ns, "certificate/plain")
    data = secret_data(kubectl, ns, "plain")
    annotations = get_json(kubectl, "secret", "-n", ns, "plain")["metadata"]["annotations"]
    assert not [k for k in annotations if k.startswith("certmint.io/subject-") or k == "certmint.io/email-sans"]
    assert annotations["certmint.io/common-name"] == "" and annotations["certmint.io/alt-names"] == "plain.example.com"
    not_before, not_after = dates(data["tls.crt"])
    assert not_after - not_before == dt.timedelta(hours=2)


def test_the_ca_issuers_crl_and_aia_urls_are_in_every_certificate_it_signs(kubectl, ca_namespace):
    ns = ca_namespace
    apply(kubectl, ns, certificate("urls", "  dnsNames: [urls.example.com]\n  privateKey: {algorithm: Ed25519}"))
    wait_ready(kubectl, ns, "certificate/urls")
    leaf = secret_data(kubectl, ns, "urls")["tls.crt"]
    text = openssl("x509", "-noout", "-ext", "crlDistributionPoints,authorityInfoAccess", input=leaf).stdout.decode()
    assert re.search(r"X509v3 CRL Distribution Points:\s+Full Name:\s+URI:http://pki.example.com/ca.crl", text), text
    assert re.search(r"Authority Information Access:\s+OCSP - URI:http://ocsp.example.com\s+"
                     r"CA Issuers - URI:http://pki.example.com/ca.crt", text), text
    # The CA's own certificate, self-signed by an issuer without URLs, has neither.
    ca_text = openssl("x509", "-noout", "-text", input=secret_data(kubectl, ns, "ca")["tls.crt"]).stdout.decode()
    assert "CRL Distribution Points" not in ca_text and "Authority Information Access" not in ca_text
    assert json.loads(kubectl("get", "issuer", "-n", ns, "ca", "-o", "json").stdout)["spec"]["ca"]["ocspServers"] == [
        "http://ocsp.example.com"]


def test_a_self_signed_issuers_crl_url_is_in_its_certificates(kubectl, namespace, operator):
    apply(kubectl, namespace, documents("""apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: self-crl}
spec: {selfSigned: {crlDistributionPoints: [http://pki.example.com/self.crl]}}""", """apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: root}
spec:
  isCA: true
  commonName: Root with a CRL
  secretName: root
  privateKey: {algorithm: ECDSA}
  issuerRef: {name: self-crl}"""))
    wait_ready(kubectl, namespace, "certificate/root")
    text = openssl("x509", "-noout", "-text", input=secret_data(kubectl, namespace, "root")["tls.crt"]).stdout.decode()
    assert re.search(r"X509v3 CRL Distribution Points:\s+Full Name:\s+URI:http://pki.example.com/self.crl", text), text
    assert "Authority Information Access" not in text
