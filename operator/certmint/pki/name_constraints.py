"""X.509 name constraints: the extension a CA carries, and whether names obey a CA's constraints.

Matching follows RFC 5280 section 4.2.1.10. A DNS constraint covers the name and every name
below it ("example.com" covers example.com and a.example.com); with a leading dot only the names
below it (".example.com" covers a.example.com, not example.com), as Go and OpenSSL read it. An
email constraint is a mailbox ("a@example.com"), a host ("example.com") or the hosts below a
domain (".example.com"); a URI constraint is a host or, with a leading dot, the hosts below it.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from certmint.pki.certificates import extension_value
from certmint.pki.names import AltNames
from certmint.pki.types import NameConstraints, PKIError


def name_constraints_extension(constraints: NameConstraints) -> x509.NameConstraints | None:
    """The NameConstraints extension for a CA template, or None when it constrains nothing."""
    permitted = _subtrees(constraints.permitted_dns, constraints.permitted_ip_ranges,
                          constraints.permitted_emails, constraints.permitted_uri_domains)
    excluded = _subtrees(constraints.excluded_dns, constraints.excluded_ip_ranges,
                         constraints.excluded_emails, constraints.excluded_uri_domains)
    if not permitted and not excluded:
        return None
    return x509.NameConstraints(permitted_subtrees=permitted or None, excluded_subtrees=excluded or None)


def name_constraint_violations(ca: x509.Certificate, names: AltNames) -> list[str]:
    """Why the CA's NameConstraints forbid some of names ([] when it has none or all names pass)."""
    constraints = extension_value(ca, x509.NameConstraints)
    if constraints is None:
        return []
    ca_name = ca.subject.rfc4514_string() or f"serial {ca.serial_number:x}"
    violations = []
    for kind in _KINDS:
        permitted = _values_of(constraints.permitted_subtrees, kind.general_name)
        excluded = _values_of(constraints.excluded_subtrees, kind.general_name)
        for name in getattr(names, kind.attribute):
            if permitted and not any(kind.within(name, c) for c in permitted):
                violations.append(f"{kind.label} {name} is not permitted by the name constraints of CA {ca_name}")
            elif any(kind.within(name, c) for c in excluded):
                violations.append(f"{kind.label} {name} is excluded by the name constraints of CA {ca_name}")
    return violations


def _subtrees(dns: tuple[str, ...], ip_ranges: tuple[str, ...], emails: tuple[str, ...],
              uri_domains: tuple[str, ...]) -> list[x509.GeneralName]:
    try:
        return [
            *map(x509.DNSName, dns),
            # Like Go's net.ParseCIDR, host bits in a range are allowed and masked off.
            *(x509.IPAddress(ipaddress.ip_network(r.strip(), strict=False)) for r in ip_ranges),
            *map(x509.RFC822Name, emails),
            *map(x509.UniformResourceIdentifier, uri_domains),
        ]
    except ValueError as e:
        raise PKIError(f"invalid name constraint: {e}") from None


def _values_of(subtrees: list[x509.GeneralName] | None, general_name: type[x509.GeneralName]) -> list[Any]:
    return [subtree.value for subtree in subtrees or () if isinstance(subtree, general_name)]


def _dns_within(name: str, constraint: str) -> bool:
    name, constraint = name.lower().rstrip("."), constraint.lower().rstrip(".")
    if constraint.startswith("."):
        return name.endswith(constraint)
    return not constraint or name == constraint or name.endswith("." + constraint)


def _host_within(host: str, constraint: str) -> bool:
    constraint = constraint.lower()
    return host.endswith(constraint) if constraint.startswith(".") else host == constraint


def _email_within(email: str, constraint: str) -> bool:
    if "@" in constraint:
        return email.lower() == constraint.lower()
    return _host_within(email.rpartition("@")[2].lower(), constraint)


def _uri_within(uri: str, constraint: str) -> bool:
    try:
        host = urlsplit(uri).hostname  # lower-cased, without port or user info
    except ValueError:  # e.g. a malformed IPv6 literal: no host to match
        return False
    return host is not None and _host_within(host, constraint)


def _ip_within(ip: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return ipaddress.ip_address(ip) in network  # False across IP versions


@dataclass(frozen=True)
class _Kind:
    label: str
    attribute: str  # of AltNames
    general_name: type[x509.GeneralName]
    within: Callable[[str, Any], bool]


_KINDS = (
    _Kind("DNS name", "dns_names", x509.DNSName, _dns_within),
    _Kind("IP address", "ip_addresses", x509.IPAddress, _ip_within),
    _Kind("email address", "email_addresses", x509.RFC822Name, _email_within),
    _Kind("URI", "uris", x509.UniformResourceIdentifier, _uri_within),
)
