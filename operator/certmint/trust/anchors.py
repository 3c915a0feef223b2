"""The CA certificates a Bundle takes from issuers, through rotations; and when a certificate under a
rotated CA may be re-issued.

A Bundle with an issuerRef source carries every root still in use below that issuer: the
current root of each CA issuer in the tree, and the root (ca.crt) of every certificate
Secret issued below it. A root stops being in use when the last certificate that chains
to it has been re-issued; it is then kept for one more propagation delay, so that a
workload whose Secret update the kubelet has not delivered yet still trusts its peers'
old chains, and its peers still trust its own. The Bundle's status records each such root
(`status.issuerCAs`): when it was first written to every target (`since`) and when it
stopped being in use (`unusedSince`), so the rule survives restarts.

A certificate whose issuer's CA has a new key is re-issued only after every Bundle that
follows the issuer (or an issuer above it) has held the new root for the propagation delay,
each certificate at its own offset inside the spread window, so workloads trust the new
root before any peer presents a certificate from it, and the re-issuance is no storm.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certmint.trust import fingerprint


@dataclass(frozen=True)
class TrackedCA:
    fingerprint: str
    pem: str
    not_after: dt.datetime
    since: dt.datetime | None = None  # first written to every target
    unused_since: dt.datetime | None = None  # no certificate chains to it any more


def _rfc3339(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def _parse_time(text: object) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def to_status(tracked: Sequence[TrackedCA]) -> list[dict]:
    out = []
    for t in tracked:
        entry: dict = {"fingerprint": t.fingerprint, "notAfter": _rfc3339(t.not_after), "pem": t.pem}
        if t.since:
            entry["since"] = _rfc3339(t.since)
        if t.unused_since:
            entry["unusedSince"] = _rfc3339(t.unused_since)
        out.append(entry)
    return out


def from_status(entries: object) -> tuple[TrackedCA, ...]:
    """What a previous reconcile recorded; entries that do not parse are ignored (they are rebuilt)."""
    out = []
    for e in entries if isinstance(entries, list) else []:
        if not isinstance(e, dict):
            continue
        not_after = _parse_time(e.get("notAfter"))
        if not (isinstance(e.get("fingerprint"), str) and isinstance(e.get("pem"), str) and not_after):
            continue
        out.append(TrackedCA(e["fingerprint"], e["pem"], not_after, _parse_time(e.get("since")),
                             _parse_time(e.get("unusedSince"))))
    return tuple(out)


def track(previous: Sequence[TrackedCA], in_use: Iterable[x509.Certificate], now: dt.datetime,
          grace: dt.timedelta) -> tuple[TrackedCA, ...]:
    """The issuer roots to put into the bundle now, sorted by fingerprint.

    In use: kept (with the time it was first synced, if it was). No longer in use: kept until
    `grace` after it was first seen unused, then dropped. Expired: dropped either way."""
    old = {t.fingerprint: t for t in previous}
    current: dict[str, TrackedCA] = {}
    for certificate in in_use:
        if certificate.not_valid_after_utc <= now:
            continue
        fp = fingerprint(certificate)
        before = old.get(fp)
        current[fp] = TrackedCA(fp, certificate.public_bytes(serialization.Encoding.PEM).decode(),
                                certificate.not_valid_after_utc, before.since if before else None)
    for fp, before in old.items():
        if fp in current or before.not_after <= now:
            continue
        unused_since = before.unused_since or now
        if now < unused_since + grace:
            current[fp] = TrackedCA(fp, before.pem, before.not_after, before.since, unused_since)
    return tuple(current[fp] for fp in sorted(current))


def synced(tracked: Sequence[TrackedCA], now: dt.datetime) -> tuple[TrackedCA, ...]:
    """After every target holds the bundle: the roots not marked yet are marked as synced now."""
    return tuple(t if t.since else TrackedCA(t.fingerprint, t.pem, t.not_after, now, t.unused_since)
                 for t in tracked)


def next_change(tracked: Sequence[TrackedCA], grace: dt.timedelta) -> dt.datetime | None:
    """When a retiring root leaves the bundle, or a root expires: the Bundle is looked at again then."""
    times = [t.not_after for t in tracked] + [t.unused_since + grace for t in tracked if t.unused_since]
    return min(times) if times else None


def trusted_since(bundles: Iterable[Mapping[str, TrackedCA]], root: str) -> tuple[bool, dt.datetime | None]:
    """(all trust it, since when): whether every given Bundle has written the root to all its targets,
    and the latest time one of them did. (True, None) when no Bundle follows the issuer."""
    latest: dt.datetime | None = None
    for tracked in bundles:
        entry = tracked.get(root)
        if entry is None or entry.since is None:
            return False, None
        latest = entry.since if latest is None or entry.since > latest else latest
    return True, latest


def spread_offset(identity: str, spread: dt.timedelta) -> dt.timedelta:
    """This certificate's stable place in the spread window: a hash of its namespace/name, so every
    reconcile (and every replica, and a restart) computes the same time."""
    if spread <= dt.timedelta(0):
        return dt.timedelta(0)
    fraction = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big") / 2 ** 64
    return spread * fraction


def rotation_time(identity: str, ca_issued: dt.datetime, trusted: tuple[bool, dt.datetime | None],
                  propagation: dt.timedelta, spread: dt.timedelta) -> dt.datetime | None:
    """When a certificate signed by a previous key of its CA may be re-issued by the new one: once the
    new root has been in every following Bundle for `propagation` (and the CA itself that long),
    at its offset in the spread window. None while some Bundle does not hold the new root yet."""
    ok, since = trusted
    if not ok:
        return None
    start = max(ca_issued, since) if since else ca_issued
    return start + propagation + spread_offset(identity, spread)
