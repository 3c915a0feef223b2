"""build_csr / requested_names: a CSR carries the template's subject and SANs, signed by the key."""
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certmint.pki import generate_key
from certmint.pki.csr import RequestedNames, as_decided_by_ca, build_csr, requested_names
from certmint.pki.types import (
    ECDSA, ED25519, RSA, CertificateTemplate, IssuedCertificate, KeySpec, PKIError, Subject,
)

TEMPLATE = CertificateTemplate(
    subject=Subject(common_name="api.example.test", organizations=("Example",)),
    dns_names=("api.example.test", "api"),
    ip_addresses=("10.0.0.1", "2001:db8:0::1"),
    uris=("spiffe://example.test/ns/default/sa/api",),
    email_addresses=("ops@example.test",),
)


@pytest.mark.parametrize("spec, hash_name", [
    (KeySpec(ECDSA, 256), "sha256"), (KeySpec(ECDSA, 384), "sha384"), (KeySpec(RSA, 2048), "sha256"),
    (KeySpec(ED25519), None),
])
def test_csr_holds_the_template_and_proves_the_key(spec, hash_name):
    key = generate_key(spec)
    csr = build_csr(TEMPLATE, key)
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()
    assert (csr.signature_hash_algorithm.name if csr.signature_hash_algorithm else None) == hash_name
    assert csr.subject.rfc4514_string() == "CN=api.example.test,O=Example"  # RFC 4514 prints the last RDN first
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical is False  # the subject is not empty
    assert requested_names(csr) == RequestedNames(
        common_name="api.example.test",
        dns_names=("api.example.test", "api"),
        ip_addresses=("10.0.0.1", "2001:db8::1"),
        uris=("spiffe://example.test/ns/default/sa/api",),
        email_addresses=("ops@example.test",),
    )
    assert requested_names(csr).sans == (
        "api.example.test", "api", "10.0.0.1", "2001:db8::1", "ops@example.test",
        "spiffe://example.test/ns/default/sa/api")
    # only the names: usages and validity are the CA's decision
    assert [e.oid for e in csr.extensions] == [x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME]


def test_san_is_critical_without_a_subject():
    csr = build_csr(CertificateTemplate(dns_names=("only.example.test",)), generate_key(KeySpec(ECDSA, 256)))
    assert csr.subject == x509.Name([])
    assert csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical is True
    assert requested_names(csr) == RequestedNames(None, dns_names=("only.example.test",))


def test_common_name_only():
    csr = build_csr(CertificateTemplate(subject=Subject(common_name="cn-only")), generate_key(KeySpec(ECDSA, 256)))
    assert requested_names(csr) == RequestedNames("cn-only")
    with pytest.raises(x509.ExtensionNotFound):
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_nothing_to_name_is_an_error():
    with pytest.raises(PKIError, match="needs a subject or at least one subject alternative name"):
        build_csr(CertificateTemplate(), generate_key(KeySpec(ECDSA, 256)))


def test_hash_follows_the_key():
    csr = build_csr(TEMPLATE, generate_key(KeySpec(ECDSA, 521)))
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA512)


def test_as_decided_by_ca_takes_subject_usages_and_ca_flag_as_issued():
    issued = IssuedCertificate(
        subject=Subject(common_name="api.example.test"), dns_names=("api.example.test",), ip_addresses=(),
        uris=(), email_addresses=(), is_ca=False, usages=("client auth", "digital signature", "server auth"),
        key_algorithm=ECDSA, key_size=256, serial_number=1, not_before=None, not_after=None,  # type: ignore[arg-type]
        issuer_dn="CN=intermediate", subject_dn="CN=api.example.test")
    template = CertificateTemplate(subject=Subject(organizations=("Example",)), dns_names=("api.example.test",),
                                   usages=("digital signature",), key=KeySpec(ECDSA, 256))
    decided = as_decided_by_ca(template, issued)
    assert decided.subject == Subject(common_name="api.example.test")
    assert decided.usages == issued.usages and decided.is_ca is False
    assert decided.dns_names == template.dns_names and decided.key == template.key
    # a common name the spec asks for is kept, so changing it still shows as a difference
    named = as_decided_by_ca(CertificateTemplate(subject=Subject(common_name="other")), issued)
    assert named.subject.common_name == "other"
