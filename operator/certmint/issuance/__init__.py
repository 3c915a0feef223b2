"""Issuing: from a spec and a Ready issuer to the Secret's full contents. Pure, no I/O.

The controller decides *whether* to issue (certmint.policy); this module says *what*
the Secret holds afterwards, and the same functions tell the controller whether an
up-to-date Secret's metadata and extra outputs still match the spec.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certmint.model.certificate import CertificateSpec
from certmint.pki import (
    PKIError,
    bundle,
    check_name_constraints,
    combined_pem,
    describe,
    encode_private_key,
    generate_key,
    issue,
    key_matches_spec,
    load_private_key,
    parse_certificates,
    pkcs12_keystore,
    pkcs12_truststore,
    private_key_der,
)
from certmint.pki.keys import PrivateKey
from certmint.pki.types import IssuedCertificate, KeySpec, ReasonedError
from certmint.policy.types import (
    ALT_NAMES,
    CA_CERT,
    CERTIFICATE_NAME,
    COMMON_NAME,
    EMAIL_SANS,
    IP_SANS,
    ISSUER_GROUP,
    ISSUER_KIND,
    ISSUER_NAME,
    RENEW_HANDLED,
    REVISION,
    SUBJECT_ANNOTATIONS,
    TLS_CERT,
    TLS_KEY,
    IssuerState,
    SecretState,
    URI_SANS,
)

# notBefore is set this far in the past, so peers with a slightly slow clock accept a new certificate.
BACKDATE = dt.timedelta(minutes=1)

KEY_DER = "key.der"
COMBINED_PEM = "tls-combined.pem"
KEYSTORE_P12 = "keystore.p12"
TRUSTSTORE_P12 = "truststore.p12"


class IssuanceError(ReasonedError):
    """Issuance failed for a reason the user can fix."""


@dataclass(frozen=True)
class Issued:
    key_pem: bytes
    tls_crt: bytes
    ca_crt: bytes
    certificate: x509.Certificate
    clamped: bool


def issue_certificate(spec: CertificateSpec, issuer: IssuerState, previous: SecretState | None,
                      now: dt.datetime, new_key: Callable[[KeySpec], PrivateKey] = generate_key) -> Issued:
    """Sign a certificate for spec; reuse the previous key only under rotationPolicy Never. new_key
    makes a key when one is needed (the operator makes RSA keys in other processes)."""
    signer = issuer.signer
    if signer is not None:
        violations = check_name_constraints(signer, spec.template)
        if violations:
            raise IssuanceError("NameConstraintsViolation", "; ".join(violations))
    key = reusable_key(spec, previous) or new_key(spec.template.key)
    try:
        # A CA issuer's CRL and AIA URLs travel with its signer; a self-signed issuer's with its state.
        result = issue(spec.template, key, signer, now, backdate=BACKDATE,
                       options=signer.options if signer is not None else issuer.options)
    except PKIError as e:
        raise IssuanceError("SigningFailed", str(e)) from None
    tls_crt, ca_crt = bundle(result.certificate, signer)
    return Issued(encode_private_key(key, spec.template.key.encoding), tls_crt, ca_crt,
                  result.certificate, result.clamped)


def reusable_key(spec: CertificateSpec, previous: SecretState | None) -> PrivateKey | None:
    """The previous Secret's key under rotationPolicy Never, when it still fits the spec."""
    if spec.rotation_policy != "Never" or previous is None or not previous.data.get(TLS_KEY):
        return None
    try:
        key = load_private_key(previous.data[TLS_KEY])
    except PKIError:
        return None
    return key if key_matches_spec(key, spec.template.key) else None


def secret_labels(certificate_name: str, spec: CertificateSpec) -> dict[str, str]:
    return {**spec.secret_labels, CERTIFICATE_NAME: certificate_name}


def secret_annotations(certificate_name: str, spec: CertificateSpec, issued: IssuedCertificate) -> dict[str, str]:
    """cert-manager's Secret annotations, under certmint.io/, describing what the certificate holds.

    As cert-manager writes them: common-name and the DNS, IP and URI SAN lists always (empty
    when there are none); email-sans and each subject-* annotation only when the certificate
    has that field. Lists are joined as one CSV record, quoting values with commas or quotes.
    """
    ref = spec.issuer_ref
    annotations = {
        **spec.secret_annotations,
        CERTIFICATE_NAME: certificate_name,
        ISSUER_NAME: ref.name,
        ISSUER_KIND: ref.kind,
        ISSUER_GROUP: ref.group,
        COMMON_NAME: issued.subject.common_name or "",
        ALT_NAMES: join_csv(issued.dns_names),
        IP_SANS: join_csv(issued.ip_addresses),
        URI_SANS: join_csv(issued.uris),
    }
    if issued.email_addresses:
        annotations[EMAIL_SANS] = join_csv(issued.email_addresses)
    for attribute, annotation in SUBJECT_ANNOTATIONS.items():
        value: str | tuple[str, ...] | None = getattr(issued.subject, attribute)
        if value:
            annotations[annotation] = value if isinstance(value, str) else join_csv(value)
    return annotations


def join_csv(values: tuple[str, ...]) -> str:
    """values as one CSV record without a line end, as Go's encoding/csv writes it for cert-manager."""
    return ",".join(_csv_field(value) for value in values)


def _csv_field(value: str) -> str:
    needs_quotes = value == "\\." or any(c in value for c in ',"\r\n') or (value[:1].isspace())
    return '"' + value.replace('"', '""') + '"' if needs_quotes else value


def extra_outputs(spec: CertificateSpec, key_pem: bytes, tls_crt: bytes, ca_crt: bytes,
                  pkcs12_password: bytes | None) -> dict[str, bytes]:
    """additionalOutputFormats and keystores, derived from the key and certificates."""
    out: dict[str, bytes] = {}
    formats = set(spec.additional_output_formats)
    if "DER" in formats:
        out[KEY_DER] = private_key_der(key_pem)  # tls.key's own encoding: PKCS#1, SEC1 or PKCS#8
    if "CombinedPEM" in formats:
        out[COMBINED_PEM] = combined_pem(key_pem, tls_crt)
    if spec.pkcs12 and spec.pkcs12.create and pkcs12_password is not None:
        key = load_private_key(key_pem)
        chain = parse_certificates(tls_crt)
        ca = parse_certificates(ca_crt)[0] if ca_crt else None
        out[KEYSTORE_P12] = pkcs12_keystore(key, chain[0], tuple(chain[1:]), ca, pkcs12_password, spec.pkcs12.profile)
        if ca is not None:
            out[TRUSTSTORE_P12] = pkcs12_truststore(ca, pkcs12_password, spec.pkcs12.profile)
    return out


def issued_secret(name: str, certificate_name: str, spec: CertificateSpec, issued: Issued, revision: int,
                  renew_handled: str | None, pkcs12_password: bytes | None) -> SecretState:
    """The Secret right after an issuance."""
    annotations = secret_annotations(certificate_name, spec, describe(issued.certificate))
    annotations[REVISION] = str(revision)
    if renew_handled:
        annotations[RENEW_HANDLED] = renew_handled
    data = {TLS_CERT: issued.tls_crt, TLS_KEY: issued.key_pem, CA_CERT: issued.ca_crt}
    data.update(extra_outputs(spec, issued.key_pem, issued.tls_crt, issued.ca_crt, pkcs12_password))
    return SecretState(name, data, secret_labels(certificate_name, spec), annotations)


def maintained_secret(current: SecretState, certificate_name: str, spec: CertificateSpec,
                      pkcs12_password: bytes | None, described: IssuedCertificate | None = None) -> SecretState:
    """An up-to-date Secret with metadata and extra outputs brought in line with the spec, no re-issuance.
    described is what its certificate says, when the caller has parsed it already.

    Derived outputs that still hold the same key and certificate are kept byte for byte
    (PKCS#12 files are salted, so regenerating them would change them on every pass).
    """
    key_pem, tls_crt, ca_crt = current.data[TLS_KEY], current.data[TLS_CERT], current.data.get(CA_CERT, b"")
    if described is None:
        described = describe(parse_certificates(tls_crt)[0])
    annotations = secret_annotations(certificate_name, spec, described)
    for kept in (REVISION, RENEW_HANDLED):
        if kept in current.annotations:
            annotations[kept] = current.annotations[kept]
    wanted = extra_outputs(spec, key_pem, tls_crt, ca_crt, pkcs12_password)
    data = {TLS_CERT: tls_crt, TLS_KEY: key_pem, CA_CERT: ca_crt}
    for k, v in wanted.items():
        old = current.data.get(k)
        data[k] = old if old is not None and _same_output(k, old, v, pkcs12_password) else v
    return SecretState(current.name, data, secret_labels(certificate_name, spec), annotations, current.type)


def _same_output(name: str, old: bytes, new: bytes, password: bytes | None) -> bool:
    if name not in (KEYSTORE_P12, TRUSTSTORE_P12):
        return old == new
    try:
        a = pkcs12.load_pkcs12(old, password)
        b = pkcs12.load_pkcs12(new, password)
    except ValueError:
        return False

    def ders(p: pkcs12.PKCS12KeyAndCertificates) -> list[bytes]:
        certs = ([p.cert.certificate] if p.cert else []) + [c.certificate for c in p.additional_certs]
        return [c.public_bytes(serialization.Encoding.DER) for c in certs]

    def key_der(p: pkcs12.PKCS12KeyAndCertificates) -> bytes | None:
        if p.key is None:
            return None
        return p.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return ders(a) == ders(b) and key_der(a) == key_der(b)


def secret_differs(current: SecretState, wanted: SecretState) -> bool:
    """Whether writing `wanted` would change anything we manage (labels/annotations others add are theirs)."""
    return (dict(current.data) != dict(wanted.data)
            or any(current.labels.get(k) != v for k, v in wanted.labels.items())
            or any(current.annotations.get(k) != v for k, v in wanted.annotations.items())
            or current.type != wanted.type)
