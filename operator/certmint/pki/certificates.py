"""Small helpers over certificates: one extension, a de-duplicated list, a PEM bundle."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

E = TypeVar("E", bound=x509.ExtensionType)


def extension_value(certificate: x509.Certificate, kind: type[E]) -> E | None:
    """The value of the certificate's extension of this kind, or None when it has none."""
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def unique_certificates(certificates: Iterable[x509.Certificate],
                        besides: x509.Certificate | None = None) -> tuple[x509.Certificate, ...]:
    """certificates in order, each once, leaving out besides (certificates compare by DER)."""
    return tuple(dict.fromkeys(c for c in certificates if c != besides))


def certificates_pem(certificates: Iterable[x509.Certificate]) -> bytes:
    """The certificates as one PEM bundle, in order."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
