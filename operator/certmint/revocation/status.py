"""The status of a CertificateRevocation: what it covers, and whether a published CRL lists it.

Two conditions with the same value and reason: `Revoked` says what happened to the
certificates, `Ready` lets `kubectl wait --for=condition=Ready` treat revocations like
every other certmint object. They are True (reason Revoked) once every covered serial is
on its issuer's published CRL, and False otherwise, with one of the reasons below.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from certmint.model.issuer import SELF_SIGNED, IssuerSpec
from certmint.revocation.coverage import Coverage, Problem, coverage_status
from certmint.revocation.ledger import Ledger
from certmint.revocation.spec import IssuerKey, RevocationSpec, format_serial

__all__ = [
    "CRL_NOT_ENABLED",
    "CRL_PUBLISHED",
    "INVALID_SPEC",
    "ISSUER_CANNOT_PUBLISH_CRL",
    "ISSUER_NOT_FOUND",
    "PENDING",
    "READY",
    "REVOKED",
    "IssuerCRL",
    "crl_condition_problem",
    "crl_published_condition",
    "issuer_crl",
    "publication_problem",
    "revocation_status",
    "self_signed_problem",
]

READY = "Ready"
REVOKED = "Revoked"  # the condition type, and its reason when True

PENDING = "Pending"
ISSUER_NOT_FOUND = "IssuerNotFound"
ISSUER_CANNOT_PUBLISH_CRL = "IssuerCannotPublishCRL"
CRL_NOT_ENABLED = "CRLNotEnabled"
INVALID_SPEC = "InvalidSpec"

#: The issuer's condition about its CRL, beside Ready (which says whether it can sign
#: certificates: a CRL that cannot be published does not stop issuance).
CRL_PUBLISHED = "CRLPublished"


@dataclass(frozen=True)
class IssuerCRL:
    """What the revocations covering one issuer need to know about it."""

    kind: str  # IssuerSpec.kind: SelfSigned | CA | ...
    crl_enabled: bool
    published: frozenset[int] = frozenset()  # the serials its published CRL lists
    number: int | None = None  # that CRL's number
    problem: Problem | None = None  # why its CRL cannot be published, e.g. the CA lacks cRLSign


def issuer_crl(spec: IssuerSpec, ledger: Ledger | None, problem: Problem | None = None) -> IssuerCRL:
    """The IssuerCRL of an issuer with spec whose CRL ConfigMap reads as ledger (None: not read)."""
    published = ledger.published if ledger is not None else None
    return IssuerCRL(kind=spec.kind, crl_enabled=spec.crl_validity is not None,
                     published=published.serials() if published else frozenset(),
                     number=published.number if published else None, problem=problem)


def crl_published_condition(crl_status: Mapping[str, Any] | None, problem: Problem | None
                            ) -> tuple[str, str, str]:
    """(status, reason, message) of an issuer's CRLPublished condition.

    crl_status is the issuer's status.crl (crl_status of the last publication), problem why
    the last attempt failed (crl_problem of the CRLError, or the CA Secret's CAError).
    """
    if problem is not None:
        return "False", problem.reason, problem.message
    if not crl_status:
        return "False", "NotPublished", "no CRL has been published yet"
    message = (f"CRL number {crl_status['number']} lists {crl_status['revokedCertificates']} revoked certificates, "
               f"valid until {crl_status['nextUpdate']}; published in ConfigMap {crl_status['configMap']} (ca.crl)")
    return "True", "Published", message


def crl_condition_problem(issuer_status: Mapping[str, Any] | None) -> Problem | None:
    """The problem the issuer's CRLPublished condition reports, for issuer_crl's problem."""
    for condition in (issuer_status or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == CRL_PUBLISHED \
                and condition.get("status") == "False" and condition.get("reason") != "NotPublished":
            return Problem(str(condition.get("reason")), str(condition.get("message") or ""))
    return None


def self_signed_problem(issuer: IssuerKey) -> Problem:
    return Problem(ISSUER_CANNOT_PUBLISH_CRL,
                   f"{issuer} is self-signed and cannot publish a CRL: each certificate it signs is its own trust "
                   "anchor, so no CRL can revoke it. Remove the certificate from the trust stores that hold it, "
                   "or issue from a CA issuer with spec.ca.crl")


def publication_problem(coverage: Coverage, issuers: Mapping[IssuerKey, IssuerCRL | None],
                        now: dt.datetime) -> Problem | None:
    """Why coverage is not fully published yet, or None once every issuer's CRL lists it.

    issuers maps each issuer coverage names to its state, None when it does not exist.
    A serial that has expired counts as published: its CRL may already have dropped it.
    """
    if coverage.problem is not None:
        return coverage.problem
    for issuer in sorted(coverage.issuers()):
        state = issuers.get(issuer)
        if state is None:
            return Problem(ISSUER_NOT_FOUND, f"{issuer} does not exist")
        if state.kind == SELF_SIGNED:
            return self_signed_problem(issuer)
        if not state.crl_enabled:
            return Problem(CRL_NOT_ENABLED, f"{issuer} does not publish a CRL: set spec.ca.crl (for example "
                                            "{validity: 24h}) to publish one")
        if state.problem is not None:
            return state.problem
        missing = [s for s in coverage.serials if s.issuer == issuer and s.serial not in state.published
                   and not (s.not_after is not None and s.not_after < now)]
        if missing:
            return Problem(PENDING, f"waiting for the CRL of {issuer} to list serial "
                                    f"{', '.join(format_serial(s.serial) for s in missing)}")
    return None


def revocation_status(spec: RevocationSpec | None, spec_error: str | None, coverage: Coverage | None,
                      issuers: Mapping[IssuerKey, IssuerCRL | None], status: Mapping[str, Any] | None,
                      generation: int, now: dt.datetime) -> dict[str, Any]:
    """The revocation's complete new status (the controller patches it when it differs).

    Pass spec_error (and spec None) when the spec cannot be read, else the coverage from
    resolve_coverage; its serials and revokedAt are pinned here on first resolution.
    """
    out: dict[str, Any] = dict(status or {})
    problem: Problem | None
    if spec is None or coverage is None:
        problem = Problem(INVALID_SPEC, spec_error or "the spec cannot be read")
    else:
        out.update(coverage_status(coverage))
        problem = publication_problem(coverage, issuers, now)
    if problem is None:
        assert spec is not None and coverage is not None
        numbers = [state.number for i in coverage.issuers() if (state := issuers.get(i)) and state.number]
        if numbers and "crlNumber" not in out:
            out["crlNumber"] = max(numbers)  # the first CRL that listed everything, kept
        value, reason = "True", REVOKED
        message = f"{spec.target()} revoked ({spec.reason}): " + "; ".join(
            f"serial {format_serial(s.serial)} on the CRL of {s.issuer}" for s in coverage.serials)
    else:
        value, reason, message = "False", problem.reason, problem.message
    for kind in (READY, REVOKED):
        out = _with_condition(out, kind, value, reason, message, generation, now)
    return out


def _with_condition(status: dict[str, Any], kind: str, value: str, reason: str, message: str,
                    generation: int, now: dt.datetime) -> dict[str, Any]:
    """status with one condition set; lastTransitionTime moves only when the value flips."""
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    old = next((c for c in conditions if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == value and old.get("lastTransitionTime") \
        else now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": kind, "status": value, "reason": reason, "message": message,
                 "lastTransitionTime": since, "observedGeneration": generation}
    others = [c for c in conditions if c.get("type") != kind]
    return {**status, "conditions": sorted([*others, condition], key=lambda c: (c["type"] != READY, c["type"]))}
