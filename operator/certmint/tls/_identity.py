"""Peer identity: who is on the other end of a verified connection, and the rules that admit it.

Chain verification says the peer holds a certificate from our CA; these rules say which of the
CA's certificates may talk to us. A SPIFFE ID (https://github.com/spiffe/spiffe, the URI SAN
`spiffe://<trust domain>/<path>`) names a workload; a DNS name names a service.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from certmint.tls._errors import PeerNotAllowed

log = logging.getLogger("certmint.tls")


@dataclass(frozen=True)
class Peer:
    """A verified peer certificate, as the standard library reports it (ssl.SSLSocket.getpeercert())."""
    spiffe_id: str | None          # the certificate's SPIFFE ID: its only spiffe:// URI SAN
    uris: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    subject: str                   # e.g. "CN=api.default.svc"
    serial: str                    # upper-case hex, as getpeercert() spells it

    @classmethod
    def from_getpeercert(cls, cert: dict[str, Any] | None) -> Peer:
        cert = cert or {}
        sans = cert.get("subjectAltName", ())
        uris = tuple(v for k, v in sans if k == "URI")
        dns = tuple(v for k, v in sans if k == "DNS")
        ips = tuple(v.strip() for k, v in sans if k == "IP Address")
        subject = ",".join(f"{_SHORT.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
        return cls(_spiffe_id(uris), uris, dns, ips, subject, cert.get("serialNumber", ""))

    @classmethod
    def from_san_values(cls, values: Iterable[str], subject: str = "", serial: str = "") -> Peer:
        """From SAN values given without their types (gRPC's auth context): URIs have a scheme, IP
        addresses parse as such, the rest are DNS names."""
        uris, dns, ips = [], [], []
        for v in values:
            if "://" in v:
                uris.append(v)
            elif _is_ip(v):
                ips.append(v)
            else:
                dns.append(v)
        return cls(_spiffe_id(uris), tuple(uris), tuple(dns), tuple(ips), subject, serial)

    def describe(self) -> str:
        names = [self.spiffe_id] if self.spiffe_id else []
        names += [f"DNS:{d}" for d in self.dns_names] + [f"IP:{i}" for i in self.ip_addresses]
        if not names:
            names = [self.subject or "no names"]
        return f"{', '.join(names)} (serial {self.serial or 'unknown'})"


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C"}


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _spiffe_id(uris: Iterable[str]) -> str | None:
    # An X.509 SVID carries exactly one URI SAN; a certificate with two SPIFFE IDs names no one.
    ids = [u for u in uris if u.lower().startswith("spiffe://")]
    return ids[0] if len(ids) == 1 else None


def _split_spiffe(value: str) -> tuple[str, str]:
    """(trust domain, path) of a well-formed SPIFFE ID, else ValueError."""
    parts = urlsplit(value)
    if parts.scheme != "spiffe" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"not a SPIFFE ID: {value!r} (expected spiffe://<trust domain>/<path>)")
    if parts.netloc != parts.netloc.lower() or "@" in parts.netloc or ":" in parts.netloc:
        raise ValueError(f"not a SPIFFE ID: {value!r} (the trust domain is lower case, with no port or user)")
    return parts.netloc, parts.path


class Rule:
    """One way a peer may be admitted."""

    def matches(self, peer: Peer) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class SpiffeID(Rule):
    """Exactly this SPIFFE ID, e.g. spiffe://x0tta6bl4.mesh/ns/prod/sa/proxy-api."""
    id: str

    def __post_init__(self) -> None:
        _split_spiffe(self.id)

    def matches(self, peer: Peer) -> bool:
        return peer.spiffe_id == self.id

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class SpiffeTrustDomain(Rule):
    """Any SPIFFE ID in this trust domain whose path starts with path_prefix, segment by segment:
    path_prefix "/ns/prod" admits /ns/prod and /ns/prod/sa/api, not /ns/production."""
    trust_domain: str
    path_prefix: str = "/"

    def __post_init__(self) -> None:
        _split_spiffe(f"spiffe://{self.trust_domain}{self.path_prefix if self.path_prefix != '/' else ''}")
        if not self.path_prefix.startswith("/"):
            raise ValueError(f"path_prefix must start with '/': {self.path_prefix!r}")

    def matches(self, peer: Peer) -> bool:
        if peer.spiffe_id is None:
            return False
        try:
            domain, path = _split_spiffe(peer.spiffe_id)
        except ValueError:
            return False
        prefix = self.path_prefix.rstrip("/")
        return domain == self.trust_domain and (not prefix or path == prefix or path.startswith(prefix + "/"))

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}{self.path_prefix.rstrip('/')}/*"


@dataclass(frozen=True)
class DNSName(Rule):
    """A certificate with this DNS SAN (compared case-insensitively, no wildcards)."""
    name: str

    def matches(self, peer: Peer) -> bool:
        return any(d.lower() == self.name.lower() for d in peer.dns_names)

    def __str__(self) -> str:
        return f"dns:{self.name}"


RuleLike = Rule | str


def rule(value: RuleLike) -> Rule:
    """A Rule from its short spelling: "spiffe://td/path" (exact), "spiffe://td/path/*" (trust domain
    and path prefix), "dns:name"."""
    if isinstance(value, Rule):
        return value
    if value.startswith("dns:"):
        return DNSName(value[4:])
    if value.startswith("spiffe://"):
        if value.endswith("/*"):
            domain, path = _split_spiffe(value[:-2] or value)
            return SpiffeTrustDomain(domain, path or "/")
        return SpiffeID(value)
    raise ValueError(f"not a peer rule: {value!r} (use spiffe://td/path, spiffe://td/path/*, or dns:name)")


@dataclass(frozen=True)
class PeerPolicy:
    """Admit a peer when any rule matches. `role` says what the peer is ("client" for a server's rules,
    "server" for a client's pin), for the log line."""
    rules: tuple[Rule, ...]
    role: str = "client"

    @classmethod
    def of(cls, rules: RuleLike | Sequence[RuleLike] | None, role: str) -> PeerPolicy | None:
        if rules is None:
            return None
        if isinstance(rules, (str, Rule)):
            rules = [rules]
        parsed = tuple(rule(r) for r in rules)
        if not parsed:
            raise ValueError("an empty list of peer rules would refuse every peer; pass None to admit any "
                             "peer the CA signed")
        return cls(parsed, role)

    def admits(self, peer: Peer) -> bool:
        return any(r.matches(peer) for r in self.rules)

    def enforce(self, cert: dict[str, Any] | None) -> Peer:
        """The peer, when admitted; otherwise log who was refused and by which rules, and raise."""
        peer = Peer.from_getpeercert(cert)
        self.check(peer)
        return peer

    def check(self, peer: Peer) -> None:
        if self.admits(peer):
            return
        allowed = ", ".join(str(r) for r in self.rules)
        log.warning("refused %s %s: not allowed by the rule%s %s", self.role, peer.describe(),
                    "s" if len(self.rules) > 1 else "", allowed)
        raise PeerNotAllowed(f"{self.role} {peer.describe()} is not allowed by {allowed}")
