"""Value types shared by the PKI functions: what to issue, and what was issued.

These are plain, immutable values with no Kubernetes in them; the model layer builds
them from custom resources and the policy layer compares them with issued certificates.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

RSA = "RSA"
ECDSA = "ECDSA"
ED25519 = "Ed25519"

PKCS1 = "PKCS1"
PKCS8 = "PKCS8"


class PKIError(Exception):
    """A key or certificate could not be built, parsed or used. The message never holds key material."""


class ReasonedError(Exception):
    """A failure the user can act on: `reason` is a CamelCase word for a condition or an event,
    `message` a sentence saying why. Neither ever holds key material, a password or a token."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class KeySpec:
    algorithm: str = RSA  # RSA | ECDSA | Ed25519
    size: int | None = None  # RSA bits or ECDSA curve size; None for Ed25519
    encoding: str = PKCS1  # PKCS1 | PKCS8 (Ed25519 is always PKCS8)


@dataclass(frozen=True)
class Subject:
    common_name: str | None = None
    organizations: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()
    street_addresses: tuple[str, ...] = ()
    postal_codes: tuple[str, ...] = ()
    serial_number: str | None = None


@dataclass(frozen=True)
class NameConstraints:
    critical: bool = False
    permitted_dns: tuple[str, ...] = ()
    permitted_ip_ranges: tuple[str, ...] = ()  # CIDR strings
    permitted_emails: tuple[str, ...] = ()
    permitted_uri_domains: tuple[str, ...] = ()
    excluded_dns: tuple[str, ...] = ()
    excluded_ip_ranges: tuple[str, ...] = ()
    excluded_emails: tuple[str, ...] = ()
    excluded_uri_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class SigningOptions:
    """What an issuer writes into every certificate it signs, whatever the request says.

    crl_distribution_points become the CRL Distribution Points extension; ocsp_servers and
    issuing_certificate_urls (where the issuer's own certificate can be fetched) become the
    Authority Information Access extension. Each is a list of URLs.
    """

    crl_distribution_points: tuple[str, ...] = ()
    ocsp_servers: tuple[str, ...] = ()
    issuing_certificate_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class CertificateTemplate:
    """Everything the requester decides about a certificate (the issuer decides the rest)."""

    subject: Subject = field(default_factory=Subject)
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()
    duration: dt.timedelta = dt.timedelta(hours=2160)
    is_ca: bool = False
    usages: tuple[str, ...] = ("digital signature", "key encipherment")  # cert-manager's usage names
    name_constraints: NameConstraints | None = None
    key: KeySpec = field(default_factory=KeySpec)


@dataclass(frozen=True)
class IssuedCertificate:
    """What an issued certificate says about itself, for comparison with a template."""

    subject: Subject
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]  # normalised with ipaddress (compressed form)
    uris: tuple[str, ...]
    email_addresses: tuple[str, ...]
    is_ca: bool
    usages: tuple[str, ...]  # cert-manager usage names, sorted
    key_algorithm: str
    key_size: int | None
    serial_number: int
    not_before: dt.datetime  # timezone-aware UTC
    not_after: dt.datetime
    issuer_dn: str
    subject_dn: str
