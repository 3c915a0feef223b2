"""Revocation, pure: what a CertificateRevocation covers, what each issuer's CRL lists, when
to sign it again, and the status to report. No Kubernetes here; the controller reads the
objects, calls these functions and writes what they return (docs/revocation.md).

- `parse_revocation_spec(spec) -> RevocationSpec` (SpecError)
- `record_issuance(history, record, limit)`, `parse_history(status, ns)`, `history_status(history)`:
  the Certificate's `status.issuanceHistory`
- `resolve_coverage(spec, ns, status, history, now) -> Coverage`: the serials a revocation covers,
  pinned in its status on first resolution (`coverage_status`)
- `read_ledger(configmap data, annotations, status number) -> Ledger`,
  `desired_entries(ledger, revocations, issuer, ca_not_after)`,
  `plan_crl(ledger, desired, signer, validity, now) -> CRLPlan`,
  `publish(signer, issuer, namespace, entries, plan) -> Publication`
- `revocation_status(...)`, `issuer_crl(...)`, `self_signed_problem(issuer)`
- `revoked_serials(revocations, issuer)`: for the re-issue trigger of the policy chain
"""
from certmint.revocation.coverage import (
    CERTIFICATE_NOT_FOUND,
    NO_VALID_CERTIFICATE,
    NOT_ISSUED,
    Coverage,
    CoveredSerial,
    Problem,
    Revocation,
    coverage_from_status,
    coverage_status,
    resolve_coverage,
    revoked_serials,
)
from certmint.revocation.history import (
    DEFAULT_HISTORY_LIMIT,
    HISTORY_FIELD,
    MAX_HISTORY_LIMIT,
    IssuanceRecord,
    history_status,
    parse_history,
    record_issuance,
)
from certmint.revocation.ledger import (
    COALESCE_DELAY,
    CONFIGMAP_SUFFIX,
    CRL_KEY,
    CRL_LABEL,
    CRL_NUMBER_ANNOTATION,
    CRL_TOO_LARGE,
    DEFAULT_VALIDITY,
    MINIMUM_VALIDITY,
    NOT_AFTER_KEY,
    REFRESH_MARGIN,
    CRLPlan,
    Ledger,
    Publication,
    configmap_name,
    configmap_namespace,
    crl_configmap,
    crl_status,
    desired_entries,
    http_path,
    issuer_of_http_path,
    next_crl_number,
    plan_crl,
    publish,
    read_ledger,
    refresh_time,
    too_large_problem,
)
from certmint.revocation.spec import (
    ALL_VALID,
    CURRENT,
    REASONS,
    REVISIONS,
    SERIAL_PATTERN,
    IssuerKey,
    RevocationSpec,
    format_serial,
    parse_revocation_spec,
    parse_serial,
)
from certmint.revocation.status import (
    CRL_NOT_ENABLED,
    INVALID_SPEC,
    ISSUER_CANNOT_PUBLISH_CRL,
    ISSUER_NOT_FOUND,
    PENDING,
    READY,
    REVOKED,
    IssuerCRL,
    issuer_crl,
    publication_problem,
    revocation_status,
    self_signed_problem,
)

__all__ = [
    "ALL_VALID", "CERTIFICATE_NOT_FOUND", "COALESCE_DELAY", "CONFIGMAP_SUFFIX", "CRL_KEY", "CRL_LABEL",
    "CRL_NOT_ENABLED", "CRL_NUMBER_ANNOTATION", "CRL_TOO_LARGE", "CURRENT", "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_VALIDITY", "HISTORY_FIELD", "INVALID_SPEC", "ISSUER_CANNOT_PUBLISH_CRL", "ISSUER_NOT_FOUND",
    "MAX_HISTORY_LIMIT", "MINIMUM_VALIDITY", "NOT_AFTER_KEY", "NOT_ISSUED", "NO_VALID_CERTIFICATE", "PENDING",
    "READY", "REASONS", "REFRESH_MARGIN", "REVISIONS", "REVOKED", "SERIAL_PATTERN",
    "CRLPlan", "Coverage", "CoveredSerial", "IssuanceRecord", "IssuerCRL", "IssuerKey", "Ledger", "Problem",
    "Publication", "Revocation", "RevocationSpec",
    "configmap_name", "configmap_namespace", "coverage_from_status", "coverage_status", "crl_configmap",
    "crl_status", "desired_entries", "format_serial", "history_status", "http_path", "issuer_crl",
    "issuer_of_http_path", "next_crl_number", "parse_history", "parse_revocation_spec", "parse_serial",
    "plan_crl", "publication_problem", "publish", "read_ledger", "record_issuance", "refresh_time",
    "resolve_coverage", "revocation_status", "revoked_serials", "self_signed_problem", "too_large_problem",
]
