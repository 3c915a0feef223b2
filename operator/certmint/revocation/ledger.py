"""The durable ledger of an issuer's revocations, and when its CRL must be signed again.

The ledger is the published CRL itself (docs/revocation.md explains the choice): the
ConfigMap `<issuer>-crl` in the issuer's namespace (for a ClusterIssuer, the cluster
resource namespace) holds

- `ca.crl`: the CRL in PEM, what pods mount and what `/crls/...` serves as DER;
- `revoked-not-after`: each entry's certificate notAfter, in the CRL's entry order, so
  entries leave the CRL once their certificate has expired (a CRL has no field for it);

and the annotation `certmint.io/crl-number`. The CRL number of the next CRL is one more
than the largest of the published CRL's number, that annotation and the issuer's
`status.crl.number`, so it never repeats even when the ConfigMap is deleted or a write
is lost to a crash between the ConfigMap and the status patch.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509

from certmint.pki.crl import (
    CRLError,
    ParsedCRL,
    RevokedCertificate,
    build_crl,
    crl_der,
    crl_pem,
    parse_crl,
    signed_by,
    without_expired,
)
from certmint.pki.signing import CASigner
from certmint.pki.types import PKIError
from certmint.revocation.coverage import Problem, Revocation
from certmint.revocation.spec import IssuerKey

__all__ = [
    "COALESCE_DELAY",
    "CONFIGMAP_SUFFIX",
    "CRL_CONTENT_TYPE",
    "CRL_KEY",
    "CRL_LABEL",
    "CRL_NUMBER_ANNOTATION",
    "CRL_TOO_LARGE",
    "DEFAULT_VALIDITY",
    "MAX_CONFIGMAP_BYTES",
    "MINIMUM_VALIDITY",
    "MIN_PUBLISH_INTERVAL",
    "NOT_AFTER_KEY",
    "REFRESH_MARGIN",
    "CRLPlan",
    "Ledger",
    "Publication",
    "configmap_name",
    "configmap_namespace",
    "crl_configmap",
    "crl_problem",
    "crl_status",
    "desired_entries",
    "http_path",
    "issuer_of_http_path",
    "next_crl_number",
    "plan_crl",
    "publish",
    "read_ledger",
    "refresh_time",
]

CONFIGMAP_SUFFIX = "-crl"
#: The media type of a DER CRL (RFC 2585), for the HTTP route.
CRL_CONTENT_TYPE = "application/pkix-crl"
CRL_KEY = "ca.crl"
NOT_AFTER_KEY = "revoked-not-after"
CRL_NUMBER_ANNOTATION = "certmint.io/crl-number"
ISSUER_NAME_ANNOTATION = "certmint.io/issuer-name"
ISSUER_KIND_ANNOTATION = "certmint.io/issuer-kind"
#: On every CRL ConfigMap, so the operator can watch only its own with a label selector.
CRL_LABEL = "certmint.io/crl"

DEFAULT_VALIDITY = dt.timedelta(hours=24)
#: With less, the refresh (REFRESH_MARGIN before nextUpdate at the latest) and the alert
#: an hour before nextUpdate would crowd each other.
MINIMUM_VALIDITY = dt.timedelta(hours=3)
#: A CRL is re-signed at two thirds of its validity, and at least this long before its
#: nextUpdate, so a failing refresh leaves time to alert and act before verifiers that
#: check CRLs start rejecting every certificate.
REFRESH_MARGIN = dt.timedelta(hours=2)
#: How long the controller waits after a revocation event before signing, so revocations
#: applied together (kubectl apply of a directory) share one CRL and one ConfigMap write.
COALESCE_DELAY = dt.timedelta(seconds=1)
#: At most one CRL of an issuer per interval for new entries: a `kubectl apply` of 1,000
#: revocations takes several seconds, and makes a few CRLs rather than one a second.
MIN_PUBLISH_INTERVAL = dt.timedelta(seconds=5)
#: The API server refuses a ConfigMap whose data exceeds 1 MiB; what is left is for metadata.
MAX_CONFIGMAP_BYTES = 1024 * 1024 - 16 * 1024

CRL_TOO_LARGE = "CRLTooLarge"
_NOT_AFTER_HEADER = "# notAfter (Unix seconds) of each entry of CRL"


def configmap_name(issuer_name: str) -> str:
    return issuer_name + CONFIGMAP_SUFFIX


def configmap_namespace(issuer: IssuerKey, cluster_resource_namespace: str) -> str:
    return issuer.namespace if issuer.namespace is not None else cluster_resource_namespace


def http_path(issuer: IssuerKey) -> str:
    """Where the operator's HTTP server publishes issuer's CRL (DER, application/pkix-crl)."""
    if issuer.namespace is None:
        return f"/crls/{issuer.name}.crl"
    return f"/crls/{issuer.namespace}/{issuer.name}.crl"


def issuer_of_http_path(path: str) -> IssuerKey | None:
    """The issuer whose CRL a request path asks for, or None when the path is not a CRL's."""
    if not path.startswith("/crls/") or not path.endswith(".crl"):
        return None
    parts = path[len("/crls/"):-len(".crl")].split("/")
    if not all(parts) or any(p in (".", "..") for p in parts):
        return None
    if len(parts) == 1:
        return IssuerKey("ClusterIssuer", parts[0])
    if len(parts) == 2:
        return IssuerKey("Issuer", parts[1], parts[0])
    return None


@dataclass(frozen=True)
class Ledger:
    """What an issuer has published: its entries (notAfter filled in where known), and the
    largest CRL number in use. damaged says why the published CRL could not be read."""

    number: int = 0
    published: ParsedCRL | None = None
    entries: tuple[RevokedCertificate, ...] = ()
    damaged: str | None = None


def read_ledger(data: Mapping[str, str] | None, annotations: Mapping[str, str] | None = None,
                status_number: int | None = None) -> Ledger:
    """The ledger kept in a CRL ConfigMap's data and annotations (both None when it does not exist).

    status_number is the issuer's `status.crl.number`. The CRL's signature is not checked
    against the current CA on purpose: after a CA rotation the entries still stand, and
    plan_crl re-signs them with the new key.
    """
    numbers = [status_number or 0, _int((annotations or {}).get(CRL_NUMBER_ANNOTATION))]
    pem = (data or {}).get(CRL_KEY)
    if not pem:
        return Ledger(number=max(numbers))
    try:
        parsed = parse_crl(pem.encode())
    except PKIError as e:
        # Entries are lost from the ledger, not from the revocations' status: desired_entries
        # adds back every revocation still present.
        return Ledger(number=max(numbers), damaged=f"{CRL_KEY} could not be read: {e}")
    not_after = _decode_not_after((data or {}).get(NOT_AFTER_KEY), parsed)
    entries = tuple(replace(entry, not_after=moment) for entry, moment in zip(parsed.entries, not_after, strict=True))
    return Ledger(number=max([*numbers, parsed.number]), published=parsed, entries=entries)


def next_crl_number(ledger: Ledger) -> int:
    return ledger.number + 1


def desired_entries(ledger: Ledger, revocations: Iterable[Revocation], issuer: IssuerKey,
                    default_not_after: dt.datetime | None) -> tuple[RevokedCertificate, ...]:
    """The entries issuer's next CRL lists, in serial order.

    - Append-only: what the ledger lists stays, whether or not its revocation still exists.
    - A certificateHold stays while a revocation with that hold exists; once none does, it
      is released (it leaves the CRL: removeFromCRL only exists in delta CRLs). A later
      revocation with a permanent reason turns a hold into that reason, keeping its date.
    - Among revocations of one serial, a permanent reason wins over a hold, then the earliest.
    - An entry whose certificate expired leaves after one published CRL listed it expired.
      default_not_after (the CA certificate's notAfter: nothing it signed outlives it)
      stands in for an unknown notAfter.

    revocations must be all of them, not a page: a hold whose revocation is missing from
    the list is released.
    """
    live: dict[int, RevokedCertificate] = {}
    for revocation in revocations:
        if revocation.coverage.revoked_at is None:
            continue
        for covered in revocation.coverage.serials:
            if covered.issuer != issuer:
                continue
            candidate = RevokedCertificate(covered.serial, revocation.coverage.revoked_at, revocation.reason,
                                           covered.not_after)
            current = live.get(covered.serial)
            if current is None or _precedence(candidate) < _precedence(current):
                live[covered.serial] = candidate
    out: dict[int, RevokedCertificate] = {}
    for entry in ledger.entries:
        wanted = live.get(entry.serial)
        if entry.reason == _HOLD:
            if wanted is None:
                continue  # released
            if wanted.reason != _HOLD:
                entry = replace(entry, reason=wanted.reason)
        out[entry.serial] = replace(entry, not_after=entry.not_after or (wanted.not_after if wanted else None))
    for serial, wanted in live.items():
        out.setdefault(serial, wanted)
    filled = (entry if entry.not_after is not None else replace(entry, not_after=default_not_after)
              for entry in sorted(out.values(), key=lambda e: e.serial))
    return without_expired(filled, ledger.published.this_update if ledger.published else None)


@dataclass(frozen=True)
class CRLPlan:
    """Whether to sign now (reason set) and with what; recheck_at is when to look again."""

    reason: str | None
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    recheck_at: dt.datetime

    @property
    def sign(self) -> bool:
        return self.reason is not None


def refresh_time(this_update: dt.datetime, next_update: dt.datetime) -> dt.datetime:
    """When a CRL is re-signed though nothing changed: at two thirds of its validity, and
    REFRESH_MARGIN before nextUpdate at the latest (24h: after 16h, 8h before nextUpdate)."""
    return min(this_update + (next_update - this_update) * 2 / 3, next_update - REFRESH_MARGIN)


def plan_crl(ledger: Ledger, desired: Iterable[RevokedCertificate], signer: CASigner,
             validity: dt.timedelta, now: dt.datetime) -> CRLPlan:
    """Whether the published CRL must be replaced now, and the next one's number and dates.

    Reasons, first match: NotPublished, Unreadable, IssuerChanged (a new CA key or name),
    EntriesChanged, ValidityChanged, Refresh (the refresh time has come).
    """
    now = now.astimezone(dt.timezone.utc).replace(microsecond=0)
    validity = dt.timedelta(seconds=int(validity.total_seconds()))
    this_update, next_update = now, now + validity
    planned = CRLPlan(None, next_crl_number(ledger), this_update, next_update, refresh_time(this_update, next_update))
    published = ledger.published
    if published is None:
        return replace(planned, reason="Unreadable" if ledger.damaged else "NotPublished")
    if not signed_by(published, signer):
        return replace(planned, reason="IssuerChanged")
    if _listing(ledger.entries) != _listing(desired):
        return replace(planned, reason="EntriesChanged")
    if published.next_update is None or published.next_update - published.this_update != validity:
        return replace(planned, reason="ValidityChanged")
    refresh = refresh_time(published.this_update, published.next_update)
    if now >= refresh:
        return replace(planned, reason="Refresh")
    return replace(planned, recheck_at=refresh)


def crl_configmap(issuer: IssuerKey, namespace: str, crl: x509.CertificateRevocationList,
                  entries: Iterable[RevokedCertificate], number: int) -> dict[str, Any]:
    """The CRL ConfigMap to apply (server-side) after signing crl from entries with number.

    Raises CRLError (reason CRLTooLarge) when it would exceed the API server's limit.
    """
    ordered = sorted(entries, key=lambda e: e.serial)  # build_crl's order
    data = {CRL_KEY: crl_pem(crl).decode(), NOT_AFTER_KEY: _encode_not_after(ordered, number)}
    size = sum(len(k) + len(v) for k, v in data.items())
    if size > MAX_CONFIGMAP_BYTES:
        raise CRLError(CRL_TOO_LARGE, f"the CRL of {issuer} lists {len(ordered)} certificates and would take {size:,} bytes, "
                       f"more than a ConfigMap holds ({MAX_CONFIGMAP_BYTES:,})")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(issuer.name),
            "namespace": namespace,
            "labels": {CRL_LABEL: "true", "app.kubernetes.io/managed-by": "certmint"},
            "annotations": {CRL_NUMBER_ANNOTATION: str(number), ISSUER_NAME_ANNOTATION: issuer.name,
                            ISSUER_KIND_ANNOTATION: issuer.kind},
        },
        "data": data,
    }


def crl_problem(error: PKIError) -> Problem:
    """The Problem for a PKIError raised by publish: its reason when it has one."""
    return Problem(getattr(error, "reason", "CRLSigningFailed"), str(error))


@dataclass(frozen=True)
class Publication:
    """A signed CRL and everything the controller writes and serves for it."""

    der: bytes  # served at http_path(issuer) as application/pkix-crl
    configmap: dict[str, Any]  # applied server-side: the one write per CRL
    status: dict[str, Any]  # the issuer's status.crl, patched after the ConfigMap
    entries: tuple[RevokedCertificate, ...]
    next_update: dt.datetime


def publish(signer: CASigner, issuer: IssuerKey, namespace: str, entries: Iterable[RevokedCertificate],
            plan: CRLPlan) -> Publication:
    """Sign the CRL plan asks for (plan.sign must be true) and lay out its ConfigMap and status.

    CRLError when the CA may not sign CRLs (CRLSignNotAllowed) or the CRL outgrows a ConfigMap
    (CRLTooLarge); crl_problem turns it into the issuer's CRLPublished condition.
    """
    ordered = tuple(sorted(entries, key=lambda e: e.serial))
    crl = build_crl(signer, ordered, plan.number, plan.this_update, plan.next_update)
    configmap = crl_configmap(issuer, namespace, crl, ordered, plan.number)
    return Publication(crl_der(crl), configmap, crl_status(plan, len(ordered), configmap_name(issuer.name)),
                       ordered, plan.next_update)


def crl_status(plan: CRLPlan, revoked: int, configmap: str) -> dict[str, Any]:
    """The issuer's `status.crl`: the CRL number (read back by read_ledger), dates, count, where."""
    return {"number": plan.number, "thisUpdate": _rfc3339(plan.this_update),
            "nextUpdate": _rfc3339(plan.next_update), "revokedCertificates": revoked, "configMap": configmap}


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_HOLD = "certificateHold"


def _precedence(entry: RevokedCertificate) -> tuple[bool, dt.datetime, str]:
    return entry.reason == _HOLD, entry.revoked_at, entry.reason


def _listing(entries: Iterable[RevokedCertificate]) -> frozenset[tuple[int, str, dt.datetime]]:
    return frozenset((e.serial, e.reason, e.revoked_at.replace(microsecond=0)) for e in entries)


def _encode_not_after(ordered: list[RevokedCertificate], number: int) -> str:
    lines = [f"{_NOT_AFTER_HEADER} {number} ({len(ordered)} entries)"]
    lines += [str(int(e.not_after.timestamp())) if e.not_after is not None else "-" for e in ordered]
    return "\n".join(lines) + "\n"


def _decode_not_after(text: str | None, parsed: ParsedCRL) -> list[dt.datetime | None]:
    """One notAfter per entry of parsed; all unknown unless text was written for this very CRL."""
    unknown: list[dt.datetime | None] = [None] * len(parsed.entries)
    if not text:
        return unknown
    header, *lines = text.splitlines()
    if header != f"{_NOT_AFTER_HEADER} {parsed.number} ({len(parsed.entries)} entries)" \
            or len(lines) != len(parsed.entries):
        return unknown
    out: list[dt.datetime | None] = []
    for line in lines:
        try:
            out.append(None if line == "-" else dt.datetime.fromtimestamp(int(line), dt.timezone.utc))
        except (ValueError, OverflowError, OSError):
            out.append(None)
    return out


def _int(value: str | None) -> int:
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0
