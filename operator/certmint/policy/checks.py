"""The re-issuance triggers: an ordered chain of small pure checks.

Each check looks at what was observed (and the Secret's parsed contents) and returns
None when it is satisfied, or Issue(reason, message) when the certificate must be
issued again. The chain stops at the first violation, so the order is the priority.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from certmint.model.certificate import renewal_time
from certmint.pki import (
    PKIError,
    certificate_matches_key,
    describe,
    key_encoding_of,
    key_matches_spec,
    load_private_key,
    parse_certificates,
    template_mismatches,
)
from certmint.pki.csr import as_decided_by_ca
from certmint.pki.keys import PrivateKey
from certmint.pki.types import ED25519, CertificateTemplate, IssuedCertificate
from certmint.pki.usages import RSA_DEFAULT_USAGES, normalise_usages
from certmint.policy.types import (
    CERTIFICATE_NAME,
    ISSUER_GROUP,
    ISSUER_CHANGED,
    ISSUER_KIND,
    ISSUER_NAME,
    RENEW_HANDLED,
    TLS_CERT,
    TLS_KEY,
    Issue,
    Observed,
    SecretState,
)

REVOKED = "Revoked"  # the trigger's reason; the issuance then makes a new key

# notAfter is notBefore + duration to the second, so an issued lifetime differs from
# spec.duration only by the fraction of a second a certificate cannot express.
DURATION_TOLERANCE = dt.timedelta(seconds=1)
# Before that rule, notAfter was counted from the unbackdated issuance time, so certificates
# issued then live one backdate (a minute) longer. They are accepted as they are and get the
# exact lifetime at their next renewal: counting them as changed would re-issue every
# certificate at once on upgrade.
LEGACY_EXTRA_LIFETIME = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Contents:
    """The Secret's certificate and key, parsed once for all checks."""

    secret: SecretState
    leaf: x509.Certificate
    issued: IssuedCertificate
    key: PrivateKey
    key_pem: bytes


Check = Callable[[Observed, Contents], Issue | None]


def parse_contents(obs: Observed) -> Contents | Issue:
    """Parse tls.crt and tls.key, or say why the Secret's data is unusable."""
    secret = obs.secret
    if secret is None:
        return Issue("DoesNotExist", f"Issuing certificate as Secret {obs.spec.secret_name} does not exist")
    cert_pem, key_pem = secret.data.get(TLS_CERT), secret.data.get(TLS_KEY)
    if not cert_pem or not key_pem:
        missing = " and ".join(k for k, v in ((TLS_CERT, cert_pem), (TLS_KEY, key_pem)) if not v)
        return Issue("MissingData", f"Issuing certificate as Secret does not contain {missing}")
    try:
        key = load_private_key(key_pem, written_by_us=secret.labels.get(CERTIFICATE_NAME) == obs.name)
    except PKIError:
        return Issue("InvalidKeyPair", "Issuing certificate as Secret contains an invalid private key")
    try:
        leaf = parse_certificates(cert_pem)[0]
        issued = describe(leaf)
    except PKIError:
        return Issue("InvalidCertificate", "Issuing certificate as Secret contains an invalid certificate")
    return Contents(secret, leaf, issued, key, key_pem)


def not_revoked(obs: Observed, c: Contents) -> Issue | None:
    """A revoked certificate is replaced at once, with a new key whatever the rotationPolicy: the
    revocation may be for a compromised key."""
    said = obs.revoked.get(c.leaf.serial_number)
    if said is not None:
        return Issue(REVOKED, f"Issuing certificate as its current certificate "
                              f"(serial {c.leaf.serial_number:x}) was revoked: {said}")
    return None


def key_pair_matches(obs: Observed, c: Contents) -> Issue | None:
    if not certificate_matches_key(c.leaf, c.key):
        return Issue("InvalidKeyPair", "Issuing certificate as Secret contains a private key that does not match the certificate")
    return None


def private_key_matches_spec(obs: Observed, c: Contents) -> Issue | None:
    want = obs.spec.template.key
    if not key_matches_spec(c.key, want):
        return Issue("SecretMismatch", f"Issuing certificate as Secret's private key is not {want.algorithm}"
                     + (f" {want.size}" if want.size and want.algorithm != ED25519 else ""))
    if want.algorithm != ED25519 and key_encoding_of(c.key_pem) != want.encoding:
        return Issue("SecretMismatch", f"Issuing certificate as Secret's private key is not encoded as {want.encoding}")
    return None


def issuer_annotations_match(obs: Observed, c: Contents) -> Issue | None:
    ref, annotations = obs.spec.issuer_ref, c.secret.annotations
    expected = {ISSUER_NAME: ref.name, ISSUER_KIND: ref.kind, ISSUER_GROUP: ref.group}
    wrong = [k for k, v in expected.items() if annotations.get(k) != v]
    if wrong:
        return Issue("IncorrectIssuer", f"Issuing certificate as Secret was previously issued by "
                     f"{annotations.get(ISSUER_KIND, '?')}/{annotations.get(ISSUER_NAME, '?')}, "
                     f"not {ref.kind}/{ref.name}")
    return None


def certificate_matches_spec(obs: Observed, c: Contents) -> Issue | None:
    differences = template_mismatches(_template_for(obs, c), c.issued)
    lifetime = c.issued.not_after - c.issued.not_before
    if not _lifetime_matches(lifetime, obs.spec.template.duration) and not _clamped_by_issuer(obs, c):
        differences.append(f"duration differs: certificate lives {lifetime}, spec wants {obs.spec.template.duration}")
    if differences:
        return Issue("RequestChanged", "Issuing certificate as the certificate no longer matches the spec: "
                     + "; ".join(differences))
    return None


def _lifetime_matches(lifetime: dt.timedelta, duration: dt.timedelta) -> bool:
    return any(abs(lifetime - wanted) < DURATION_TOLERANCE for wanted in (duration, duration + LEGACY_EXTRA_LIFETIME))


def _template_for(obs: Observed, c: Contents) -> CertificateTemplate:
    """The template the certificate is compared with.

    A spec without usages once meant digital signature and key encipherment for every key;
    now an ECDSA or Ed25519 key gets digital signature alone. A certificate issued with the
    old default still matches such a spec (it gets the new default at its next renewal), so an
    upgrade does not re-issue every ECDSA and Ed25519 certificate at once.
    """
    template = obs.spec.template
    if obs.issuer.external:
        return as_decided_by_ca(template, c.issued)
    if obs.spec.usages_defaulted:
        legacy = (*RSA_DEFAULT_USAGES, *(("cert sign",) if template.is_ca else ()))
        if c.issued.usages == normalise_usages(legacy, template.is_ca):
            return dataclasses.replace(template, usages=legacy)
    return template


def _clamped_by_issuer(obs: Observed, c: Contents) -> bool:
    """A certificate cut short to its CA's notAfter is as good as the issuer allows."""
    signer = obs.issuer.signer
    return signer is not None and c.issued.not_after == signer.certificate.not_valid_after_utc


def manual_renewal(obs: Observed, c: Contents) -> Issue | None:
    if obs.renew_request and obs.renew_request != c.secret.annotations.get(RENEW_HANDLED):
        return Issue("ManuallyTriggered", "Issuing certificate as renewal was requested "
                     f"with the certmint.io/renew annotation ({obs.renew_request})")
    return None


def not_expired(obs: Observed, c: Contents) -> Issue | None:
    if obs.now >= c.issued.not_after:
        return Issue("Expired", f"Issuing certificate as it expired at {c.issued.not_after.isoformat()}")
    return None


def signed_by_current_ca(obs: Observed, c: Contents) -> Issue | None:
    """The certificate was signed by the key its issuer's CA holds now. After a CA rotation (its
    CA certificate re-issued with a new key, or its Secret replaced), certificates signed by the
    previous key are re-issued, so the previous root can leave the trust bundles."""
    signer = obs.issuer.signer
    if signer is None or obs.issuer.external:
        return None
    try:
        c.leaf.verify_directly_issued_by(signer.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return Issue(ISSUER_CHANGED, "Issuing certificate as it was signed by a previous key of its issuer's CA "
                     f"({signer.certificate.subject.rfc4514_string()}): the CA has a new key")
    return None


def not_due_for_renewal(obs: Observed, c: Contents) -> Issue | None:
    due = renewal_time(c.issued.not_before, c.issued.not_after, obs.spec)
    if obs.now >= due:
        return Issue("Renewing", f"Renewing certificate as renewal was scheduled at {due.isoformat()}")
    return None


TRIGGERS: tuple[Check, ...] = (
    not_revoked,
    key_pair_matches,
    private_key_matches_spec,
    issuer_annotations_match,
    certificate_matches_spec,
    manual_renewal,
    not_expired,
    signed_by_current_ca,
    not_due_for_renewal,
)


def first_trigger(obs: Observed, contents: Contents) -> Issue | None:
    for check in TRIGGERS:
        violation = check(obs, contents)
        if violation:
            return violation
    return None
