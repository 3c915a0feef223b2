"""A typed, validated view of a CertificateRevocation's spec (certmint.io/v1, namespaced).

The spec names exactly one target:

- `certificateName`: a Certificate in the revocation's namespace, with `revisions`
  `Current` (the default: the certificate it holds when the revocation is first seen) or
  `AllValid` (every certificate it was issued that has not expired yet);
- `issuerRef: {name, kind}` and `serialNumber` (hex, as `openssl x509 -noout -serial`
  prints it, with or without colons): one certificate of one issuer.

and an RFC 5280 `reason`. The CRD's schema and CEL rules reject the same mistakes at
`kubectl apply`; this module checks them again for objects stored before a schema change.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from certmint.model._fields import DNS_SUBDOMAIN, get_map, get_str
from certmint.model.certificate import ISSUER_KINDS
from certmint.model.errors import SpecError
from certmint.pki.crl import REASONS as _CRL_REASONS

__all__ = [
    "ALL_VALID",
    "CURRENT",
    "ISSUER_KINDS",
    "REASONS",
    "REVISIONS",
    "IssuerKey",
    "RevocationSpec",
    "format_serial",
    "parse_revocation_spec",
    "parse_serial",
]

#: The reasons a user may give, in RFC 5280's order. removeFromCRL is not one: it is what
#: deleting a certificateHold revocation does.
REASONS: tuple[str, ...] = tuple(_CRL_REASONS)
CURRENT = "Current"
ALL_VALID = "AllValid"
REVISIONS = (CURRENT, ALL_VALID)

# Hex digits (1 to 40: a serial is at most 20 octets), or colon-separated octets as
# `openssl x509 -text` prints them.
SERIAL_PATTERN = "^([0-9a-fA-F]{1,40}|[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){0,19})$"
_SERIAL = re.compile(SERIAL_PATTERN)


@dataclass(frozen=True, order=True)
class IssuerKey:
    """One issuer: an Issuer of a namespace, or a ClusterIssuer (namespace None)."""

    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, kind: str, name: str, namespace: str) -> IssuerKey:
        """The issuer a namespaced object's issuerRef {kind, name} points at."""
        return cls(kind, name, None if kind == "ClusterIssuer" else namespace)

    def ref(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind}

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class RevocationSpec:
    reason: str
    certificate_name: str | None = None
    revisions: str = CURRENT
    issuer_kind: str | None = None
    issuer_name: str | None = None
    serial: int | None = None

    def issuer(self, namespace: str) -> IssuerKey | None:
        """The issuer named by a serial-number revocation created in namespace."""
        if self.issuer_name is None or self.issuer_kind is None:
            return None
        return IssuerKey.of(self.issuer_kind, self.issuer_name, namespace)

    def target(self) -> str:
        """What is revoked, in words for a condition message."""
        if self.certificate_name is not None:
            which = "current certificate" if self.revisions == CURRENT else "valid certificates"
            return f"the {which} of Certificate {self.certificate_name}"
        assert self.serial is not None
        return f"serial {format_serial(self.serial)} of {self.issuer_kind} {self.issuer_name}"


def parse_serial(text: object) -> int:
    """A serial number from hex, with or without colons; ValueError unless it is a valid serial."""
    if not isinstance(text, str) or not _SERIAL.fullmatch(text):
        raise ValueError(f'"{text}" is not a serial number in hex (like 5F3A09 or 5f:3a:09), at most 20 octets')
    value = int(text.replace(":", ""), 16)
    if value == 0:
        raise ValueError("a serial number is a positive integer, not 0")
    return value


def format_serial(serial: int) -> str:
    """Upper-case hex with an even number of digits, as `openssl x509 -noout -serial` prints it."""
    digits = f"{serial:X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def parse_revocation_spec(spec: Mapping[str, Any]) -> RevocationSpec:
    """Read a CertificateRevocation's `.spec`; SpecError naming the field at fault otherwise."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec must be an object")
    reason = get_str(spec, "reason", "reason")
    if reason is None:
        raise SpecError(f"reason is required: one of {', '.join(REASONS)}")
    if reason not in REASONS:
        raise SpecError(f'reason "{reason}" is not an RFC 5280 revocation reason: use one of {", ".join(REASONS)}')
    certificate_name = get_str(spec, "certificateName", "certificateName")
    issuer_ref = get_map(spec, "issuerRef", "issuerRef")
    serial_text = get_str(spec, "serialNumber", "serialNumber")
    revisions = get_str(spec, "revisions", "revisions")
    by_serial = issuer_ref is not None or serial_text is not None
    if (certificate_name is not None) == by_serial:
        raise SpecError("exactly one target: either certificateName, or issuerRef and serialNumber")
    if certificate_name is not None:
        _check_name(certificate_name, "certificateName")
        revisions = revisions or CURRENT
        if revisions not in REVISIONS:
            raise SpecError(f'revisions must be Current or AllValid, got "{revisions}"')
        return RevocationSpec(reason=reason, certificate_name=certificate_name, revisions=revisions)
    if revisions is not None:
        raise SpecError("revisions applies to certificateName only")
    if issuer_ref is None or serial_text is None:
        raise SpecError("a serial-number revocation needs both issuerRef and serialNumber")
    name = get_str(issuer_ref, "name", "issuerRef.name")
    if not name:
        raise SpecError("issuerRef.name is required")
    _check_name(name, "issuerRef.name")
    kind = get_str(issuer_ref, "kind", "issuerRef.kind") or "Issuer"
    if kind not in ISSUER_KINDS:
        raise SpecError(f'issuerRef.kind must be Issuer or ClusterIssuer, got "{kind}"')
    try:
        serial = parse_serial(serial_text)
    except ValueError as e:
        raise SpecError(f"serialNumber: {e}") from None
    return RevocationSpec(reason=reason, issuer_kind=kind, issuer_name=name, serial=serial)


def _check_name(name: str, path: str) -> None:
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        raise SpecError(f'{path}: "{name}" is not a valid object name')
