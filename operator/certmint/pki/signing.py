"""Issuing certificates, self-signed or by a CA, as RFC 5280 asks."""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import AuthorityInformationAccessOID

from certmint.pki.certificates import extension_value
from certmint.pki.keys import PrivateKey, PublicKey, key_spec_of
from certmint.pki.name_constraints import name_constraint_violations, name_constraints_extension
from certmint.pki.names import AltNames, x509_name
from certmint.pki.types import ED25519, RSA, CertificateTemplate, PKIError, SigningOptions
from certmint.pki.usages import extended_key_usage_extension, key_usage_extension, normalise_usages

SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
_EC_HASHES: dict[int | None, type[SignatureHash]] = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}


@dataclass(frozen=True)
class CASigner:
    """A CA that can sign: its certificate and key, and the certificates above it.

    chain starts with the CA's issuer and ends at the root; it is empty when the CA is the root.
    options are the CRL and AIA URLs its issuer publishes: every certificate it signs carries them.
    """

    certificate: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()
    options: SigningOptions = field(default_factory=SigningOptions)

    @property
    def root(self) -> x509.Certificate:
        """The top of the chain: what relying parties trust (ca.crt)."""
        return (self.certificate, *self.chain)[-1]

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The CA and the certificates above it except the root: what follows a leaf in tls.crt."""
        return (self.certificate, *self.chain)[:-1]


@dataclass(frozen=True)
class IssueResult:
    certificate: x509.Certificate
    clamped: bool  # notAfter was cut to the CA's notAfter, so the certificate is shorter than asked


def issue(template: CertificateTemplate, private_key: PrivateKey, signer: CASigner | None,
          now: dt.datetime, backdate: dt.timedelta = dt.timedelta(minutes=1),
          options: SigningOptions | None = None) -> IssueResult:
    """Sign a certificate for private_key's public key: by signer, or self-signed when signer is None.

    notBefore is backdated to absorb clock skew, and notAfter is notBefore + duration to the
    second, as cert-manager issues them, unless that would outlive the signer's certificate:
    then notAfter is the signer's notAfter. options (by default the signer's own, none for a
    self-signed certificate) add the CRL Distribution Points and Authority Information Access.
    """
    if now.tzinfo is None:
        raise PKIError("now must be timezone-aware")
    if options is None:
        options = signer.options if signer else SigningOptions()
    subject = x509_name(template.subject)
    alt_names = AltNames.of_template(template).extension()
    if not subject and alt_names is None:
        raise PKIError("a certificate needs a subject or at least one subject alternative name")
    # RFC 5280 4.1.2.4 and 4.1.2.6: an issuer name is never empty, so neither is the subject of a
    # CA or of a self-signed certificate (its own issuer). Verifiers such as Java's and Mozilla's reject them.
    if not subject and (signer is None or template.is_ca):
        what = "a CA certificate" if template.is_ca else "a self-signed certificate"
        raise PKIError(f"{what} needs a subject (commonName or subject fields): RFC 5280 forbids an empty "
                       "issuer name, and the subject is the issuer of the certificates it signs or of itself")
    not_before, not_after, clamped = _validity(now, backdate, template.duration, signer)
    issuer_key = signer.key if signer else private_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.certificate.subject if signer else subject)
        .public_key(private_key.public_key())
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in _extensions(template, private_key.public_key(), signer, subject, alt_names, options):
        builder = builder.add_extension(extension, critical)
    return IssueResult(builder.sign(issuer_key, signature_hash(issuer_key)), clamped)


def check_name_constraints(signer: CASigner, template: CertificateTemplate) -> list[str]:
    """Why the name constraints of the signer or any CA above it forbid the template's names."""
    names = AltNames.of_template(template)
    return [violation for ca in (signer.certificate, *signer.chain)
            for violation in name_constraint_violations(ca, names)]


def random_serial() -> int:
    """128 random bits with the top bit cleared: positive, at most 16 DER octets, never 0."""
    return (secrets.randbits(128) >> 1) or 1


def signature_hash(issuer_key: PrivateKey) -> SignatureHash | None:
    """The digest matching the issuer key's strength; Ed25519 signs without a separate digest."""
    algorithm, size = key_spec_of(issuer_key)
    if algorithm == ED25519:
        return None
    return hashes.SHA256() if algorithm == RSA else _EC_HASHES[size]()


def _validity(now: dt.datetime, backdate: dt.timedelta, duration: dt.timedelta,
              signer: CASigner | None) -> tuple[dt.datetime, dt.datetime, bool]:
    # X.509 times have whole seconds: truncating notBefore first makes the encoded lifetime
    # exactly the duration (a duration with a fraction of a second loses the fraction).
    not_before = (now - backdate).replace(microsecond=0)
    not_after, clamped = not_before + whole_seconds(duration), False
    if signer is not None and not_after > signer.certificate.not_valid_after_utc:
        not_after, clamped = signer.certificate.not_valid_after_utc, True
    if not_after <= not_before:
        raise PKIError(f"the certificate would expire ({not_after.isoformat()}) before it becomes valid")
    return not_before, not_after, clamped


def whole_seconds(duration: dt.timedelta) -> dt.timedelta:
    """duration without its fraction of a second: the lifetime a certificate can express."""
    return dt.timedelta(seconds=int(duration.total_seconds()))


def _extensions(template: CertificateTemplate, public_key: PublicKey, signer: CASigner | None,
                subject: x509.Name, alt_names: x509.SubjectAlternativeName | None, options: SigningOptions,
                ) -> list[tuple[x509.ExtensionType, bool]]:
    """(extension, critical) pairs; the SAN is critical when it is the only identity (empty subject)."""
    usages = normalise_usages(template.usages, template.is_ca)
    extensions: list[tuple[x509.ExtensionType | None, bool]] = [
        (x509.BasicConstraints(ca=template.is_ca, path_length=None), True),
        (key_usage_extension(usages), True),
        (extended_key_usage_extension(usages), False),
        (alt_names, not subject),
        (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        (_authority_key_identifier(signer, public_key), False),
        (crl_distribution_points_extension(options.crl_distribution_points), False),
        (authority_information_access_extension(options.ocsp_servers, options.issuing_certificate_urls), False),
    ]
    if template.is_ca and template.name_constraints:
        constraints = template.name_constraints
        extensions.append((name_constraints_extension(constraints), constraints.critical))
    return [(extension, critical) for extension, critical in extensions if extension is not None]


def crl_distribution_points_extension(urls: tuple[str, ...]) -> x509.CRLDistributionPoints | None:
    """One distribution point per URL (each a full name), as Go's x509 writes cert-manager's; None without URLs."""
    if not urls:
        return None
    return x509.CRLDistributionPoints([
        x509.DistributionPoint(full_name=[_uri(url, "crlDistributionPoints")], relative_name=None,
                               reasons=None, crl_issuer=None)
        for url in urls
    ])


def authority_information_access_extension(ocsp_servers: tuple[str, ...], issuing_certificate_urls: tuple[str, ...],
                                           ) -> x509.AuthorityInformationAccess | None:
    """OCSP responders, then where the issuer's certificate is published (caIssuers); None without URLs."""
    descriptions = [
        *(x509.AccessDescription(AuthorityInformationAccessOID.OCSP, _uri(url, "ocspServers"))
          for url in ocsp_servers),
        *(x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, _uri(url, "issuingCertificateURLs"))
          for url in issuing_certificate_urls),
    ]
    return x509.AuthorityInformationAccess(descriptions) if descriptions else None


def _uri(url: str, field_name: str) -> x509.UniformResourceIdentifier:
    try:
        return x509.UniformResourceIdentifier(url)
    except ValueError as e:  # e.g. a host name that is not ASCII
        raise PKIError(f"the issuer's {field_name} has an invalid URL {url!r}: {e}") from None


def _authority_key_identifier(signer: CASigner | None, public_key: PublicKey) -> x509.AuthorityKeyIdentifier:
    """From the issuer's SKI when it has one, so AKI always equals the issuer's SKI as RFC 5280 asks."""
    if signer is None:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    ski = extension_value(signer.certificate, x509.SubjectKeyIdentifier)
    if ski is not None:
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key())  # the CA's own key
