"""Mutual TLS for Python services, from a certmint Secret mounted as a volume (or the MTLS_* variables).

    from certmint.tls import MTLS
    mtls = MTLS("/etc/tls")                                  # or MTLS.from_env()
    server_ctx = mtls.server_context(allowed_peers=["spiffe://example.org/ns/prod/*"])
    client_ctx = mtls.client_context()                       # ask again for each new connection

The directory holds the Secret's keys as files: tls.crt (leaf and intermediates), tls.key and ca.crt
(the trust anchors). MTLS watches it (inotify, or a 1 s poll) and, when the kubelet swaps in a
renewed Secret, serves every new connection from the new generation: key pair, anchors and CRL,
read from one generation and never a mix. Integrations, each importing its framework only when
imported itself: certmint.tls.uvicorn, certmint.tls.aiohttp, certmint.tls.httpx, certmint.tls.grpc.
certmint.tls.testing writes a Secret's files exactly as the kubelet does, for tests.

This package uses the standard library only: `pip install certmint` brings no dependency.
"""
from __future__ import annotations

from certmint.tls._core import (
    MTLS,
    CertificateReloader,
    Generation,
    client_context,
    fingerprint,
    server_context,
)
from certmint.tls._errors import (
    InvalidMaterial,
    MissingFile,
    PeerNotAllowed,
    TLSConfigError,
)
from certmint.tls._files import CA, CERT, KEY, TLSFiles
from certmint.tls._identity import (
    DNSName,
    Peer,
    PeerPolicy,
    Rule,
    SpiffeID,
    SpiffeTrustDomain,
    rule,
)

__all__ = [
    "CA",
    "CERT",
    "KEY",
    "MTLS",
    "CertificateReloader",
    "DNSName",
    "Generation",
    "InvalidMaterial",
    "MissingFile",
    "Peer",
    "PeerNotAllowed",
    "PeerPolicy",
    "Rule",
    "SpiffeID",
    "SpiffeTrustDomain",
    "TLSConfigError",
    "TLSFiles",
    "client_context",
    "fingerprint",
    "rule",
    "server_context",
]
