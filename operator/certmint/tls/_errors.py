"""The exceptions certmint.tls raises. None of them ever carries key material: messages name files,
variables and certificate fields only."""
from __future__ import annotations

import ssl


class TLSConfigError(Exception):
    """The mTLS configuration cannot be used: a variable is missing or invalid, a file is missing or
    does not hold what it should."""


class MissingFile(TLSConfigError):
    """A configured file does not exist. `path` is the file, `source` where its path came from (an
    environment variable such as MTLS_CERT_PATH, or the argument / directory it was derived from)."""

    def __init__(self, path: str, source: str):
        self.path, self.source = path, source
        super().__init__(f"{path} does not exist (set by {source})")


class InvalidMaterial(TLSConfigError):
    """A file exists but cannot be loaded: not PEM, a key that does not match the certificate, an
    empty file left by a writer that has not finished."""


class PeerNotAllowed(ssl.SSLCertVerificationError):
    """The peer's certificate verified, but its identity matches none of the rules.

    A subclass of ssl.SSLCertVerificationError (so of OSError), raised from the handshake: asyncio and
    the socket layer treat it as the failed handshake it is and close the connection."""
