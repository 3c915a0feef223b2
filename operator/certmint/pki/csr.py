"""Certificate signing requests, for issuers whose signing key lives elsewhere.

An external CA (step-ca) signs a CSR: the private key never leaves certmint, only its
public half and the names the requester asks for. The CA decides everything else (validity,
key usages, extensions) from its own templates and policy, so the CSR carries the subject
and the subject alternative names and nothing more.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cryptography import x509

from certmint.pki.keys import PrivateKey
from certmint.pki.names import AltNames, x509_name
from certmint.pki.signing import signature_hash
from certmint.pki.types import CertificateTemplate, IssuedCertificate, PKIError

__all__ = ["RequestedNames", "as_decided_by_ca", "build_csr", "requested_names"]


def build_csr(template: CertificateTemplate, private_key: PrivateKey) -> x509.CertificateSigningRequest:
    """A CSR for private_key's public key with the template's subject and SANs, signed by
    private_key (the CA checks this signature as proof of possession).

    The SAN extension is critical when the subject is empty, as RFC 5280 asks of a
    certificate whose only identity is its alternative names."""
    subject = x509_name(template.subject)
    alt_names = AltNames.of_template(template).extension()
    if not subject and alt_names is None:
        raise PKIError("a certificate request needs a subject or at least one subject alternative name")
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if alt_names is not None:
        builder = builder.add_extension(alt_names, critical=not subject)
    return builder.sign(private_key, signature_hash(private_key))


@dataclass(frozen=True)
class RequestedNames:
    """The identities a CSR asks for, as strings in the forms step-ca compares them in."""

    common_name: str | None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()  # compressed form
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()

    @property
    def sans(self) -> tuple[str, ...]:
        """Every SAN, DNS names first, then IPs, emails and URIs."""
        return (*self.dns_names, *self.ip_addresses, *self.email_addresses, *self.uris)


def requested_names(csr: x509.CertificateSigningRequest) -> RequestedNames:
    """The common name and the SANs a CSR asks for."""
    common_names = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common_name = str(common_names[0].value) if common_names else None
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return RequestedNames(common_name)
    return RequestedNames(
        common_name=common_name,
        dns_names=tuple(san.get_values_for_type(x509.DNSName)),
        ip_addresses=tuple(ip.compressed for ip in san.get_values_for_type(x509.IPAddress)),
        uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
        email_addresses=tuple(san.get_values_for_type(x509.RFC822Name)),
    )


def as_decided_by_ca(template: CertificateTemplate, issued: IssuedCertificate) -> CertificateTemplate:
    """The template a certificate signed from a CSR by an external CA is compared with.

    Such a CA (step-ca) builds the certificate from its own template: it takes the SANs and
    the public key from the request and decides the subject (the common name it is given,
    else the first SAN, and no other attributes), the key usages and the CA flag itself. Those
    are therefore taken as issued, so a certificate is not re-issued forever for a difference
    no request can change; the SANs, the key, a requested common name and the lifetime still
    have to match the spec."""
    common_name = template.subject.common_name or issued.subject.common_name
    return dataclasses.replace(template, subject=dataclasses.replace(issued.subject, common_name=common_name),
                               usages=issued.usages, is_ca=issued.is_ca)
