"""Certificate revocation lists: build and sign an RFC 5280 v2 CRL, and read one back.

A CRL carries what RFC 5280 section 5 asks of a complete CRL from a CA: the issuer's name,
the Authority Key Identifier (equal to the CA's Subject Key Identifier, so verifiers find
the right key after a CA rotation), a CRL Number, thisUpdate and nextUpdate, and one entry
per revoked serial with its revocation date and, unless the reason is `unspecified`, a
reason code (section 5.3.1 says to omit the extension rather than write unspecified).

The published CRL doubles as the durable record of what was revoked (see
docs/revocation.md), so `parse_crl` returns exactly what `build_crl` was given, except for
each entry's `not_after`, which a CRL has no field for.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from certmint.pki.certificates import extension_value
from certmint.pki.signing import CASigner, signature_hash
from certmint.pki.types import PKIError

__all__ = [
    "CRL_SIGN_NOT_ALLOWED",
    "REASONS",
    "UNSPECIFIED",
    "CRLError",
    "ParsedCRL",
    "RevokedCertificate",
    "build_crl",
    "check_can_sign_crl",
    "crl_der",
    "crl_pem",
    "parse_crl",
    "signed_by",
    "without_expired",
]

UNSPECIFIED = "unspecified"
CRL_SIGN_NOT_ALLOWED = "CRLSignNotAllowed"

#: RFC 5280 reason names (as the CertificateRevocation's `reason` spells them) and their
#: code. removeFromCRL is absent: it only has a meaning in delta CRLs, and a released hold
#: simply leaves the next complete CRL (section 5.3.1).
REASONS: dict[str, x509.ReasonFlags] = {
    UNSPECIFIED: x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}
_REASON_NAMES = {flag: name for name, flag in REASONS.items()}

# RFC 5280 4.1.2.2: a serial number is a positive integer of at most 20 octets.
_MAX_SERIAL = 2 ** (20 * 8 - 1) - 1

E = TypeVar("E", bound=x509.ExtensionType)


class CRLError(PKIError):
    """A CRL cannot be published. reason is a CamelCase condition reason, message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, order=True)
class RevokedCertificate:
    """One CRL entry: the serial, when it was revoked, why, and when the certificate expires.

    not_after is the revoked certificate's own notAfter: once a CRL issued after it has
    listed the entry, the entry may leave (RFC 5280 5.1.2.6). None means unknown (the entry
    then stays). It is not part of the CRL itself.
    """

    serial: int
    revoked_at: dt.datetime
    reason: str = UNSPECIFIED
    not_after: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not 0 < self.serial <= _MAX_SERIAL:
            raise PKIError("a serial number must be a positive integer of at most 20 octets")
        if self.reason not in REASONS:
            raise PKIError(f"unknown revocation reason {self.reason!r}: use one of {', '.join(REASONS)}")
        for moment in (self.revoked_at, self.not_after):
            if moment is not None and moment.tzinfo is None:
                raise PKIError("revocation times must be timezone-aware")


@dataclass(frozen=True)
class ParsedCRL:
    """What a published CRL says. Entries come in the CRL's order, with not_after None."""

    number: int
    issuer: x509.Name
    authority_key_identifier: bytes | None
    this_update: dt.datetime
    next_update: dt.datetime | None
    entries: tuple[RevokedCertificate, ...]

    def serials(self) -> frozenset[int]:
        return frozenset(entry.serial for entry in self.entries)


def check_can_sign_crl(ca: x509.Certificate) -> None:
    """CRLError (CRLSignNotAllowed) unless ca may sign CRLs: verifiers (OpenSSL among them)
    reject a CRL whose issuer certificate has a keyUsage without cRLSign."""
    key_usage = extension_value(ca, x509.KeyUsage)
    if key_usage is not None and not key_usage.crl_sign:
        raise CRLError(CRL_SIGN_NOT_ALLOWED, "the CA certificate may not sign CRLs: its keyUsage lacks cRLSign "
                       '(add the "crl sign" usage to the CA\'s Certificate and re-issue it)')


def build_crl(signer: CASigner, entries: Iterable[RevokedCertificate], number: int,
              this_update: dt.datetime, next_update: dt.datetime) -> x509.CertificateRevocationList:
    """A complete v2 CRL signed by signer's key, listing entries in ascending serial order.

    The caller chooses the CRL Number (it must grow with every CRL of this issuer) and
    decides which entries are due; expired ones are not dropped here (see without_expired).
    """
    if not 0 <= number <= _MAX_SERIAL:  # RFC 5280 5.2.3: a non-negative integer of at most 20 octets
        raise PKIError("a CRL number must be a non-negative integer of at most 20 octets")
    if this_update.tzinfo is None or next_update.tzinfo is None:
        raise PKIError("thisUpdate and nextUpdate must be timezone-aware")
    if next_update <= this_update:
        raise PKIError("nextUpdate must come after thisUpdate")
    check_can_sign_crl(signer.certificate)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.certificate.subject)
        .last_update(_whole_second(this_update))
        .next_update(_whole_second(next_update))
        .add_extension(_authority_key_identifier(signer), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    seen: set[int] = set()
    for entry in sorted(entries, key=lambda e: e.serial):
        if entry.serial in seen:
            raise PKIError(f"serial {entry.serial:X} is listed twice")
        seen.add(entry.serial)
        builder = builder.add_revoked_certificate(_revoked(entry))
    return builder.sign(signer.key, signature_hash(signer.key))


def without_expired(entries: Iterable[RevokedCertificate], last_published: dt.datetime | None
                    ) -> tuple[RevokedCertificate, ...]:
    """entries less those a CRL issued at last_published already listed after they expired.

    RFC 5280 5.1.2.6: an entry may be removed once it has appeared on one regularly
    scheduled CRL issued beyond the certificate's validity period. last_published is the
    thisUpdate of the CRL currently published (None when there is none: nothing drops).
    """
    return tuple(entry for entry in entries
                 if last_published is None or entry.not_after is None or entry.not_after >= last_published)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


def parse_crl(data: bytes, issuer: x509.Certificate | None = None) -> ParsedCRL:
    """Read a PEM or DER CRL. With issuer, PKIError unless issuer's key signed it for issuer's name.

    A CRL without a CRL Number is rejected: certmint never publishes one, and its number
    is what keeps the next one from repeating.
    """
    try:
        crl = x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
    except ValueError:
        raise PKIError("not a valid PEM or DER CRL") from None
    if issuer is not None:
        if crl.issuer != issuer.subject:
            raise PKIError("the CRL was issued by another name than the CA's")
        try:
            valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except (TypeError, ValueError, InvalidSignature):
            valid = False
        if not valid:
            raise PKIError("the CRL's signature does not verify with the CA's key")
    number = _extension(crl.extensions, x509.CRLNumber)
    if number is None:
        raise PKIError("the CRL has no CRL Number")
    aki = _extension(crl.extensions, x509.AuthorityKeyIdentifier)
    return ParsedCRL(
        number=number.crl_number,
        issuer=crl.issuer,
        authority_key_identifier=aki.key_identifier if aki is not None else None,
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        entries=tuple(_entry(revoked) for revoked in crl),
    )


def signed_by(parsed: ParsedCRL, signer: CASigner) -> bool:
    """Whether parsed names signer's CA as its issuer, by name and key identifier: a CA
    rotated to a new key (or renamed) needs a new CRL even when nothing was revoked."""
    return (parsed.issuer == signer.certificate.subject
            and parsed.authority_key_identifier == _authority_key_identifier(signer).key_identifier)


def _entry(revoked: x509.RevokedCertificate) -> RevokedCertificate:
    reason = _extension(revoked.extensions, x509.CRLReason)
    name = _REASON_NAMES.get(reason.reason, UNSPECIFIED) if reason is not None else UNSPECIFIED
    return RevokedCertificate(revoked.serial_number, revoked.revocation_date_utc, name)


def _revoked(entry: RevokedCertificate) -> x509.RevokedCertificate:
    builder = (x509.RevokedCertificateBuilder()
               .serial_number(entry.serial)
               .revocation_date(_whole_second(entry.revoked_at)))
    if entry.reason != UNSPECIFIED:
        builder = builder.add_extension(x509.CRLReason(REASONS[entry.reason]), critical=False)
    return builder.build()


def _authority_key_identifier(signer: CASigner) -> x509.AuthorityKeyIdentifier:
    """The CA's SKI when it has one (RFC 5280 5.2.1 wants AKI to match it), else from its key."""
    ski = extension_value(signer.certificate, x509.SubjectKeyIdentifier)
    if ski is not None:
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key())


def _extension(extensions: x509.Extensions, kind: type[E]) -> E | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _whole_second(moment: dt.datetime) -> dt.datetime:
    # UTCTime/GeneralizedTime in a CRL carry whole seconds; truncating here makes a parsed
    # entry compare equal to the one that was built.
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0)

