"""Loading a CA key pair from the contents of its Secret, with a reason for an Issuer condition when it cannot sign."""
from __future__ import annotations

import datetime as dt

from cryptography import x509

from certmint.pki.certificates import extension_value, unique_certificates
from certmint.pki.inspect import certificate_matches_key, parse_certificates
from certmint.pki.keys import load_private_key
from certmint.pki.signing import CASigner
from certmint.pki.types import PKIError, ReasonedError

INVALID_KEY_PAIR = "InvalidKeyPair"
NOT_A_CERTIFICATE_AUTHORITY = "NotACertificateAuthority"
EXPIRED = "Expired"
NOT_YET_VALID = "NotYetValid"


class CAError(ReasonedError, PKIError):
    """The CA cannot sign."""


def load_ca(tls_crt: bytes, tls_key: bytes, ca_crt: bytes | None, now: dt.datetime) -> CASigner:
    """The signer held by a CA Secret, checked to be a matching, valid CA key pair at now.

    The chain is the rest of tls.crt, then ca.crt's certificates, each once and without the CA itself.
    """
    certificates = _certificates(tls_crt, "tls.crt")
    try:
        key = load_private_key(tls_key)
    except PKIError as e:
        raise CAError(INVALID_KEY_PAIR, str(e)) from None
    ca = certificates[0]
    if not certificate_matches_key(ca, key):
        raise CAError(INVALID_KEY_PAIR, "tls.key does not match the first certificate in tls.crt")
    _check_is_ca(ca)
    _check_valid_at(ca, now)
    extra = _certificates(ca_crt, "ca.crt") if ca_crt else []
    return CASigner(ca, key, unique_certificates(certificates[1:] + extra, besides=ca))


def _certificates(pem: bytes, name: str) -> list[x509.Certificate]:
    try:
        return parse_certificates(pem)
    except PKIError as e:
        raise CAError(INVALID_KEY_PAIR, f"{name}: {e}") from None


def _check_is_ca(ca: x509.Certificate) -> None:
    basic_constraints = extension_value(ca, x509.BasicConstraints)
    if basic_constraints is None or not basic_constraints.ca:
        raise CAError(NOT_A_CERTIFICATE_AUTHORITY,
                      "the certificate in tls.crt is not a CA (no basicConstraints CA:TRUE)")
    key_usage = extension_value(ca, x509.KeyUsage)
    if key_usage is not None and not key_usage.key_cert_sign:
        raise CAError(NOT_A_CERTIFICATE_AUTHORITY,
                      "the certificate in tls.crt may not sign certificates (keyUsage lacks keyCertSign)")


def _check_valid_at(ca: x509.Certificate, now: dt.datetime) -> None:
    if now >= ca.not_valid_after_utc:
        raise CAError(EXPIRED, f"the CA certificate expired at {ca.not_valid_after_utc.isoformat()}")
    if now < ca.not_valid_before_utc:
        raise CAError(NOT_YET_VALID, f"the CA certificate is not valid before {ca.not_valid_before_utc.isoformat()}")

