"""Which certificates a CertificateRevocation covers, decided once and then kept in its status.

`revisions: Current` means the certificate the Certificate holds when the revocation is
first resolved; the re-issue that follows must not be covered as well. So the first
resolution is written to the revocation's status (`serials`, `revokedAt`) and every later
reconcile reads it back from there instead of resolving again. The status also keeps the
serials when the Certificate is deleted afterwards.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certmint.revocation.history import IssuanceRecord
from certmint.revocation.spec import (
    CURRENT,
    ISSUER_KINDS,
    IssuerKey,
    RevocationSpec,
    format_serial,
    parse_serial,
)

__all__ = [
    "CERTIFICATE_NOT_FOUND",
    "NOT_ISSUED",
    "NO_VALID_CERTIFICATE",
    "Coverage",
    "CoveredSerial",
    "Problem",
    "Revocation",
    "coverage_from_status",
    "coverage_status",
    "resolve_coverage",
    "revoked_serials",
]

CERTIFICATE_NOT_FOUND = "CertificateNotFound"
NOT_ISSUED = "NotIssued"
NO_VALID_CERTIFICATE = "NoValidCertificate"


@dataclass(frozen=True)
class Problem:
    """Why a revocation is not (yet) in effect: a CamelCase condition reason and a message."""

    reason: str
    message: str


@dataclass(frozen=True, order=True)
class CoveredSerial:
    issuer: IssuerKey
    serial: int
    not_after: dt.datetime | None = None  # unknown for a serial-number revocation
    revision: int | None = None  # the Certificate's revision, for a certificateName revocation


@dataclass(frozen=True)
class Coverage:
    """The serials a revocation covers and when it took effect; empty with a problem when
    there is nothing to revoke yet (the controller looks again when the Certificate changes)."""

    serials: tuple[CoveredSerial, ...]
    revoked_at: dt.datetime | None
    problem: Problem | None = None

    def issuers(self) -> frozenset[IssuerKey]:
        return frozenset(s.issuer for s in self.serials)


@dataclass(frozen=True)
class Revocation:
    """A resolved revocation, as the CRL of each issuer it covers needs it."""

    reason: str
    coverage: Coverage
    name: str = ""  # the CertificateRevocation's, for messages and events


def resolve_coverage(spec: RevocationSpec, namespace: str, status: Mapping[str, Any] | None,
                     history: Sequence[IssuanceRecord] | None, now: dt.datetime) -> Coverage:
    """The serials spec covers: those already in status when it has any, else from now.

    history is the named Certificate's issuance history (oldest first), or None when that
    Certificate does not exist; it is not used for a serial-number revocation.
    """
    recorded = coverage_from_status(status, namespace)
    if recorded is not None:
        return recorded
    now = now.astimezone(dt.timezone.utc).replace(microsecond=0)  # status keeps whole seconds
    if spec.serial is not None:
        issuer = spec.issuer(namespace)
        assert issuer is not None  # parse_revocation_spec guarantees issuerRef with serialNumber
        return Coverage((CoveredSerial(issuer, spec.serial),), now)
    if history is None:
        return Coverage((), None, Problem(CERTIFICATE_NOT_FOUND,
                                          f"Certificate {spec.certificate_name} does not exist in {namespace}"))
    if not history:
        return Coverage((), None, Problem(NOT_ISSUED, f"Certificate {spec.certificate_name} has not been issued "
                                                      "yet: there is nothing to revoke"))
    if spec.revisions == CURRENT:
        chosen = [max(history, key=lambda r: r.revision)]
    else:
        chosen = [r for r in history if r.not_after > now]
        if not chosen:
            return Coverage((), None, Problem(NO_VALID_CERTIFICATE, f"every certificate Certificate "
                                              f"{spec.certificate_name} was issued has expired"))
    serials = tuple(sorted(CoveredSerial(r.issuer, r.serial, r.not_after, r.revision) for r in chosen))
    return Coverage(serials, now)


def coverage_status(coverage: Coverage) -> dict[str, Any]:
    """The status fields that pin a resolved coverage: `revokedAt` and `serials`."""
    if coverage.revoked_at is None:
        return {}
    serials = []
    for s in coverage.serials:
        item: dict[str, Any] = {"serialNumber": format_serial(s.serial), "issuerRef": s.issuer.ref()}
        if s.not_after is not None:
            item["notAfter"] = _rfc3339(s.not_after)
        if s.revision is not None:
            item["revision"] = s.revision
        serials.append(item)
    return {"revokedAt": _rfc3339(coverage.revoked_at), "serials": serials}


def coverage_from_status(status: Mapping[str, Any] | None, namespace: str) -> Coverage | None:
    """The coverage pinned in a revocation's status, or None when it has not been resolved."""
    status = status or {}
    revoked_at, items = status.get("revokedAt"), status.get("serials")
    if not isinstance(revoked_at, str) or not isinstance(items, list) or not items:
        return None
    try:
        moment = _parse_time(revoked_at)
        serials = tuple(sorted(_covered(item, namespace) for item in items))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # unreadable: resolve again (for a serial-number revocation, the same answer)
    return Coverage(serials, moment)


def _covered(item: Mapping[str, Any], namespace: str) -> CoveredSerial:
    ref = item["issuerRef"]
    kind = ref.get("kind") or "Issuer"
    if kind not in ISSUER_KINDS or not ref.get("name"):
        raise ValueError("bad issuerRef")
    not_after = item.get("notAfter")
    revision = item.get("revision")
    return CoveredSerial(IssuerKey.of(kind, ref["name"], namespace), parse_serial(item["serialNumber"]),
                         _parse_time(not_after) if not_after else None,
                         revision if isinstance(revision, int) and not isinstance(revision, bool) else None)


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def revoked_serials(revocations: Iterable[Revocation], issuer: IssuerKey) -> frozenset[int]:
    """The serials of issuer that revocations cover, whatever the reason (a certificate on
    hold fails verification as well). The policy chain re-issues a Certificate whose
    current serial is in this set, with a new key."""
    return frozenset(s.serial for r in revocations for s in r.coverage.serials if s.issuer == issuer)
