"""Names in a certificate: the subject DN and the subject alternative names.

One table per kind of name serves both directions (template -> X.509 and certificate ->
values), so building and describing a certificate cannot drift apart.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from certmint.pki.certificates import extension_value
from certmint.pki.types import CertificateTemplate, PKIError, Subject


@dataclass(frozen=True)
class SubjectField:
    """One attribute of Subject: its OID, its attribute name, and cert-manager's field name."""

    oid: x509.ObjectIdentifier
    attribute: str
    label: str
    single: bool = False  # a str | None in Subject rather than a tuple

    def values(self, subject: Subject) -> tuple[str, ...]:
        """The field's non-empty values; cert-manager treats an empty string as unset."""
        value = getattr(subject, self.attribute)
        return tuple(v for v in ((value,) if self.single else value) if v)

    def shaped(self, values: tuple[str, ...]) -> str | None | tuple[str, ...]:
        """values in Subject's shape: the first one or None for a single field, else all of them."""
        if not self.single:
            return values
        return values[0] if values else None

    def comparable(self, subject: Subject) -> str | None | tuple[str, ...]:
        """The field's value with empty strings dropped, so "" and None compare equal."""
        return self.shaped(self.values(subject))


# In the order the attributes appear in the DN, as cert-manager (Go's pkix.Name) writes them:
# C, ST, L, street, postalCode, O, OU, CN, serialNumber, so DN strings compare equal across the two.
SUBJECT_FIELDS: tuple[SubjectField, ...] = (
    SubjectField(NameOID.COUNTRY_NAME, "countries", "countries"),
    SubjectField(NameOID.STATE_OR_PROVINCE_NAME, "provinces", "provinces"),
    SubjectField(NameOID.LOCALITY_NAME, "localities", "localities"),
    SubjectField(NameOID.STREET_ADDRESS, "street_addresses", "streetAddresses"),
    SubjectField(NameOID.POSTAL_CODE, "postal_codes", "postalCodes"),
    SubjectField(NameOID.ORGANIZATION_NAME, "organizations", "organizations"),
    SubjectField(NameOID.ORGANIZATIONAL_UNIT_NAME, "organizational_units", "organizationalUnits"),
    SubjectField(NameOID.COMMON_NAME, "common_name", "commonName", single=True),
    SubjectField(NameOID.SERIAL_NUMBER, "serial_number", "serialNumber", single=True),
)


def x509_name(subject: Subject) -> x509.Name:
    """The subject DN, one attribute per RDN, in SUBJECT_FIELDS order."""
    try:
        return x509.Name([
            x509.NameAttribute(f.oid, value) for f in SUBJECT_FIELDS for value in f.values(subject)
        ])
    except ValueError as e:  # e.g. a country that is not a two-letter code
        raise PKIError(f"invalid subject: {e}") from None


def subject_of(name: x509.Name) -> Subject:
    """The Subject a DN holds (attributes certmint does not model are left out)."""
    fields: dict[str, Any] = {
        f.attribute: f.shaped(tuple(str(a.value) for a in name.get_attributes_for_oid(f.oid)))
        for f in SUBJECT_FIELDS
    }
    return Subject(**fields)


def normalise_ip(value: str) -> str:
    """The compressed form of an IPv4 or IPv6 address, so spellings of one address compare equal."""
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        raise PKIError(f"invalid IP address {value!r}") from None


@dataclass(frozen=True)
class AltNames:
    """The subject alternative names, IP addresses normalised."""

    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()

    @classmethod
    def of_template(cls, template: CertificateTemplate) -> AltNames:
        return cls(template.dns_names, tuple(map(normalise_ip, template.ip_addresses)),
                   template.uris, template.email_addresses)

    @classmethod
    def of_certificate(cls, certificate: x509.Certificate) -> AltNames:
        san = extension_value(certificate, x509.SubjectAlternativeName)
        if san is None:
            return cls()
        return cls(
            tuple(san.get_values_for_type(x509.DNSName)),
            tuple(ip.compressed for ip in san.get_values_for_type(x509.IPAddress)),
            tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
            tuple(san.get_values_for_type(x509.RFC822Name)),
        )

    def extension(self) -> x509.SubjectAlternativeName | None:
        """The SubjectAlternativeName extension, or None when there are no names."""
        try:
            names: list[x509.GeneralName] = [
                *map(x509.DNSName, self.dns_names),
                *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.ip_addresses),
                *map(x509.UniformResourceIdentifier, self.uris),
                *map(x509.RFC822Name, self.email_addresses),
            ]
        except ValueError as e:  # e.g. a non-ASCII name
            raise PKIError(f"invalid subject alternative name: {e}") from None
        return x509.SubjectAlternativeName(names) if names else None
