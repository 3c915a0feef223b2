"""Reading certificates back: parse PEM, describe what a certificate says, compare it with a template."""
from __future__ import annotations

from dataclasses import fields

from cryptography import x509

from certmint.pki.certificates import extension_value
from certmint.pki.keys import PrivateKey, key_spec_of, public_keys_equal, resolved_spec
from certmint.pki.names import SUBJECT_FIELDS, AltNames, subject_of
from certmint.pki.types import CertificateTemplate, IssuedCertificate, PKIError
from certmint.pki.usages import normalise_usages, usages_of

_Value = str | bool | int | None | tuple[str, ...]
_ALT_NAME_LABELS = {"dns_names": "dnsNames", "ip_addresses": "ipAddresses",
                    "uris": "uris", "email_addresses": "emailAddresses"}


def parse_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order; PKIError when there is none or one is broken."""
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise PKIError("not a valid PEM certificate bundle") from None


def describe(certificate: x509.Certificate) -> IssuedCertificate:
    """What the certificate says about itself, in the terms of a CertificateTemplate."""
    alt_names = AltNames.of_certificate(certificate)
    basic_constraints = extension_value(certificate, x509.BasicConstraints)
    algorithm, size = key_spec_of(certificate.public_key())
    return IssuedCertificate(
        subject=subject_of(certificate.subject),
        dns_names=alt_names.dns_names,
        ip_addresses=alt_names.ip_addresses,
        uris=alt_names.uris,
        email_addresses=alt_names.email_addresses,
        is_ca=basic_constraints is not None and basic_constraints.ca,
        usages=usages_of(certificate),
        key_algorithm=algorithm,
        key_size=size,
        serial_number=certificate.serial_number,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issuer_dn=certificate.issuer.rfc4514_string(),
        subject_dn=certificate.subject.rfc4514_string(),
    )


def template_mismatches(template: CertificateTemplate, issued: IssuedCertificate) -> list[str]:
    """Why the certificate no longer fits the template ([] when it does). Lists compare unordered.

    Duration is not compared: a certificate clamped to its CA's lifetime is still a match.
    """
    mismatches = [
        _differ(f.label, f.comparable(issued.subject), f.comparable(template.subject)) for f in SUBJECT_FIELDS
    ]
    wanted_names, issued_names = AltNames.of_template(template), _alt_names_of(issued)
    mismatches += [
        _differ(label, getattr(issued_names, attribute), getattr(wanted_names, attribute))
        for attribute, label in _ALT_NAME_LABELS.items()
    ]
    algorithm, size = resolved_spec(template.key)
    mismatches += [
        _differ("usages", issued.usages, normalise_usages(template.usages, template.is_ca)),
        _differ("isCA", issued.is_ca, template.is_ca),
        _differ("privateKey.algorithm", issued.key_algorithm, algorithm),
        _differ("privateKey.size", issued.key_size, size),
    ]
    return [mismatch for mismatch in mismatches if mismatch]


def certificate_matches_key(certificate: x509.Certificate, key: PrivateKey) -> bool:
    """Whether the certificate was issued for this private key."""
    return public_keys_equal(certificate.public_key(), key)


def _alt_names_of(issued: IssuedCertificate) -> AltNames:
    return AltNames(**{f.name: getattr(issued, f.name) for f in fields(AltNames)})


def _differ(label: str, has: _Value, wants: _Value) -> str | None:
    """A "label differs: certificate has X, spec wants Y" reason, or None when they agree."""
    if _unordered(has) == _unordered(wants):
        return None
    verb = "differ" if isinstance(has, tuple) else "differs"
    return f"{label} {verb}: certificate has {_show(has)}, spec wants {_show(wants)}"


def _unordered(value: _Value) -> _Value:
    return tuple(sorted(value)) if isinstance(value, tuple) else value


def _show(value: _Value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)
