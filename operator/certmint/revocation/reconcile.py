"""The two decisions the controller makes for revocation, each one pure call over what it cached.

- `reconcile_revocation(obj, certificate, issuer_crl, now)`: for one CertificateRevocation,
  its new status (pinning what it covers on first sight), and the issuers whose CRL must be
  rebuilt.
- `reconcile_crl(issuer, spec, signer, configmap, issuer_status, revocations, now)`: for one CA
  issuer, whether to publish a new CRL and exactly what to write, its CRLPublished condition,
  the figures for the metrics, and when to look again.

The controller only reads the objects from its caches, calls these, and performs the writes
they return, in the order given in docs/revocation.md; it keeps no revocation state itself.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from certmint.model.errors import SpecError
from certmint.model.issuer import CA, IssuerSpec
from certmint.pki.crl import CRLError, crl_der
from certmint.pki.signing import CASigner
from certmint.revocation.coverage import (
    Problem,
    Revocation,
    coverage_from_status,
    resolve_coverage,
)
from certmint.revocation.history import parse_history
from certmint.revocation.ledger import (
    CRL_KEY,
    MIN_PUBLISH_INTERVAL,
    Publication,
    crl_problem,
    desired_entries,
    plan_crl,
    publish,
    read_ledger,
)
from certmint.revocation.spec import IssuerKey, parse_revocation_spec
from certmint.revocation.status import (
    IssuerCRL,
    crl_published_condition,
    revocation_status,
)

#: How soon a CRL that could not be published is tried again when nothing else changes: the
#: CRLPublished condition and the CRLNotRefreshed alert say so meanwhile.
RETRY_AFTER = dt.timedelta(minutes=10)

__all__ = [
    "RETRY_AFTER",
    "CRLOutcome",
    "RevocationOutcome",
    "current_certificate_revocation",
    "reconcile_crl",
    "reconcile_revocation",
    "revocation_of",
    "served_crl",
]


@dataclass(frozen=True)
class RevocationOutcome:
    """status: the revocation's complete new status (patch it when it differs from the stored one).
    revocation: its pinned coverage, once resolved (None before). issuers: the issuers whose CRL
    must be rebuilt now: enqueue them, which coalesces revocations arriving together."""

    status: dict[str, Any]
    revocation: Revocation | None
    issuers: frozenset[IssuerKey]


def reconcile_revocation(obj: Mapping[str, Any], certificate: Mapping[str, Any] | None,
                         issuer_crl: Callable[[IssuerKey], IssuerCRL | None], now: dt.datetime
                         ) -> RevocationOutcome:
    """One CertificateRevocation (the whole object, as cached).

    certificate is the Certificate its certificateName names (None when it does not exist or
    the revocation is by serial); issuer_crl looks an issuer up (None when it does not exist).
    The status is written before anything acts on the coverage: it pins which certificates
    `Current` meant before the re-issue that follows replaces them.
    """
    metadata = obj.get("metadata") or {}
    namespace, generation = metadata.get("namespace") or "", int(metadata.get("generation") or 0)
    stored = obj.get("status") or {}
    try:
        spec = parse_revocation_spec(obj.get("spec") or {})
    except SpecError as e:
        status = revocation_status(None, str(e), None, {}, stored, generation, now)
        return RevocationOutcome(status, None, frozenset())
    history = parse_history(certificate.get("status"), namespace) if certificate is not None else None
    coverage = resolve_coverage(spec, namespace, stored, history, now)
    issuers = {key: issuer_crl(key) for key in coverage.issuers()}
    status = revocation_status(spec, None, coverage, issuers, stored, generation, now)
    if coverage.revoked_at is None:
        return RevocationOutcome(status, None, frozenset())
    revocation = Revocation(spec.reason, coverage, metadata.get("name") or "")
    pending = frozenset(key for key, state in issuers.items()
                        if state is not None and state.crl_enabled
                        and not {s.serial for s in coverage.serials if s.issuer == key} <= state.published)
    return RevocationOutcome(status, revocation, pending)


def revocation_of(obj: Mapping[str, Any]) -> Revocation | None:
    """The revocation an object stands for on a CRL: only once its status pins its coverage."""
    metadata = obj.get("metadata") or {}
    try:
        spec = parse_revocation_spec(obj.get("spec") or {})
    except SpecError:
        return None
    coverage = coverage_from_status(obj.get("status"), metadata.get("namespace") or "")
    if coverage is None:
        return None
    return Revocation(spec.reason, coverage, metadata.get("name") or "")


def current_certificate_revocation(serial: int, issuer: IssuerKey, revocations: Iterable[Revocation]
                                   ) -> Revocation | None:
    """The revocation covering a Certificate's current certificate (serial, signed by issuer), if
    any: the policy chain's trigger to re-issue it at once, with a new key whatever the
    rotationPolicy (the old key may be compromised)."""
    for revocation in sorted(revocations, key=lambda r: r.name):
        if any(s.serial == serial and s.issuer == issuer for s in revocation.coverage.serials):
            return revocation
    return None


@dataclass(frozen=True)
class CRLOutcome:
    """What to do for one issuer's CRL.

    publication: when set, apply publication.configmap (server-side), then patch the issuer's
    status.crl with publication.status, then serve publication.der; in that order (the
    ConfigMap is the ledger; the status only keeps the number from ever going back).
    condition: (status, reason, message) of the issuer's CRLPublished condition, None when the
    issuer publishes no CRL. revoked, next_update: the published CRL's, for the metrics.
    recheck_at: reconcile the issuer again then if nothing else happens.
    """

    publication: Publication | None
    condition: tuple[str, str, str] | None
    revoked: int | None
    next_update: dt.datetime | None
    recheck_at: dt.datetime | None
    reason: str | None = None  # why the CRL is (re)signed: NotPublished, EntriesChanged, Refresh, ...


def reconcile_crl(issuer: IssuerKey, spec: IssuerSpec, signer: CASigner | None, ca_problem: Problem | None,
                  configmap: Mapping[str, Any] | None, issuer_status: Mapping[str, Any] | None,
                  revocations: Iterable[Revocation], namespace: str, now: dt.datetime) -> CRLOutcome:
    """One issuer's CRL. revocations must be all the revocations the operator knows of (those
    of other issuers are ignored), from caches that have completed their initial list.

    signer is the issuer's loaded CA, or None with ca_problem (the CAError's reason and
    message) when its Secret cannot be used; configmap the cached `<issuer>-crl` (None when
    absent); namespace where that ConfigMap lives (configmap_namespace).
    """
    if spec.kind != CA or spec.crl_validity is None:
        return CRLOutcome(None, None, None, None, None)
    stored_crl = (issuer_status or {}).get("crl") or {}
    number = stored_crl.get("number") if isinstance(stored_crl.get("number"), int) else None
    data = (configmap or {}).get("data")
    annotations = ((configmap or {}).get("metadata") or {}).get("annotations")
    ledger = read_ledger(data, annotations, number)
    published = ledger.published
    revoked, next_update = (len(published.entries), published.next_update) if published else (None, None)
    if signer is None:
        problem = ca_problem or Problem("CANotReady", "the CA cannot sign")
        return CRLOutcome(None, crl_published_condition(stored_crl, problem), revoked, next_update, None)
    desired = desired_entries(ledger, revocations, issuer, signer.certificate.not_valid_after_utc)
    plan = plan_crl(ledger, desired, signer, spec.crl_validity, now)
    if not plan.sign:
        return CRLOutcome(None, crl_published_condition(stored_crl, None), revoked, next_update, plan.recheck_at)
    if plan.reason == "EntriesChanged" and published is not None \
            and now < published.this_update + MIN_PUBLISH_INTERVAL:
        # the revocations wait (Pending) a few seconds and share the next CRL
        return CRLOutcome(None, crl_published_condition(stored_crl, None), revoked, next_update,
                          published.this_update + MIN_PUBLISH_INTERVAL)
    try:
        publication = publish(signer, issuer, namespace, desired, plan)
    except CRLError as e:
        # the last CRL stays published; try again when something changes, or at its refresh time
        retry = now + RETRY_AFTER
        return CRLOutcome(None, crl_published_condition(stored_crl, crl_problem(e)), revoked, next_update, retry,
                          plan.reason)
    return CRLOutcome(publication, crl_published_condition(publication.status, None), len(publication.entries),
                      publication.next_update, plan.recheck_at, plan.reason)


def served_crl(configmap: Mapping[str, Any] | None) -> bytes | None:
    """The DER to serve over HTTP for a cached CRL ConfigMap (after a restart, before any new
    publication), or None when it holds no readable CRL."""
    pem = ((configmap or {}).get("data") or {}).get(CRL_KEY)
    if not pem:
        return None
    try:
        return crl_der(x509.load_pem_x509_crl(pem.encode()))
    except ValueError:
        return None
