"""A Certificate's issuance history: which serials it was issued, by whom, until when.

Revoking a Certificate by name needs its serial numbers, including those of earlier
revisions (`revisions: AllValid`). The history lives in the Certificate's status as
`issuanceHistory`, newest last, written by the status patch every issuance already makes
(no extra API write), and bounded by the spec's `revisionHistoryLimit`:

    issuanceHistory:
      - {revision: 3, serialNumber: 5F3A09..., notAfter: "2027-03-01T12:00:00Z",
         issuerRef: {name: agents-ca, kind: Issuer}}
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certmint.revocation.spec import (
    ISSUER_KINDS,
    IssuerKey,
    format_serial,
    parse_serial,
)

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "HISTORY_FIELD",
    "MAX_HISTORY_LIMIT",
    "IssuanceRecord",
    "history_status",
    "parse_history",
    "record_issuance",
]

HISTORY_FIELD = "issuanceHistory"
#: Kept when revisionHistoryLimit is unset. cert-manager keeps every CertificateRequest
#: then; a status cannot grow without bound, and ten revisions cover a year of 90-day
#: certificates renewed at two thirds twice over.
DEFAULT_HISTORY_LIMIT = 10
#: A hard cap whatever the spec says: each record is about 150 bytes of status, written
#: with every issuance.
MAX_HISTORY_LIMIT = 100


@dataclass(frozen=True, order=True)
class IssuanceRecord:
    revision: int
    serial: int
    not_after: dt.datetime
    issuer: IssuerKey


def record_issuance(history: Sequence[IssuanceRecord], record: IssuanceRecord,
                    limit: int | None) -> tuple[IssuanceRecord, ...]:
    """history with record appended (replacing one of the same revision), oldest trimmed to limit."""
    keep = min(limit or DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)
    merged = sorted([r for r in history if r.revision != record.revision] + [record], key=lambda r: r.revision)
    return tuple(merged[-keep:])


def history_status(history: Iterable[IssuanceRecord]) -> list[dict[str, Any]]:
    """The status field's value for history, newest last."""
    return [{"revision": r.revision, "serialNumber": format_serial(r.serial), "notAfter": _rfc3339(r.not_after),
             "issuerRef": r.issuer.ref()} for r in sorted(history, key=lambda r: r.revision)]


def parse_history(status: Mapping[str, Any] | None, namespace: str) -> tuple[IssuanceRecord, ...]:
    """The records of a Certificate's status (in namespace), oldest first.

    Records certmint cannot read (edited by hand, or from a future version) are left out
    rather than failing the Certificate: the history only serves revocations.
    """
    records = []
    for item in (status or {}).get(HISTORY_FIELD) or []:
        record = _record(item, namespace)
        if record is not None:
            records.append(record)
    return tuple(sorted(records, key=lambda r: r.revision))


def _record(item: Any, namespace: str) -> IssuanceRecord | None:
    if not isinstance(item, Mapping):
        return None
    revision, serial, not_after, ref = (item.get(k) for k in ("revision", "serialNumber", "notAfter", "issuerRef"))
    if isinstance(revision, bool) or not isinstance(revision, int) or not isinstance(ref, Mapping):
        return None
    kind, name = ref.get("kind") or "Issuer", ref.get("name")
    if kind not in ISSUER_KINDS or not isinstance(name, str) or not name:
        return None
    try:
        return IssuanceRecord(revision, parse_serial(serial), _parse_time(not_after), IssuerKey.of(kind, name, namespace))
    except (ValueError, TypeError):
        return None


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError("not a time")
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
