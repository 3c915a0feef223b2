"""Mutual TLS for Python services, from a certmint Secret mounted as a volume.

    ctx = certmint.tls.server_context("/etc/tls")     # asks clients for a certificate, verifies it
    ctx = certmint.tls.client_context("/etc/tls")     # presents ours, verifies the server
    certmint.tls.CertificateReloader(ctx, "/etc/tls").start()

The directory holds the Secret's keys as files: tls.crt (leaf and intermediates), tls.key
and ca.crt (the trust anchor). When certmint renews the certificate, the kubelet swaps the
files; an ssl.SSLContext does not notice by itself, so CertificateReloader reloads the key
pair into the same context, and every handshake after that uses the new certificate. No
restart, no dropped connections.
"""
from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading

log = logging.getLogger(__name__)

CERT, KEY, CA = "tls.crt", "tls.key", "ca.crt"


def _paths(directory: str | os.PathLike) -> tuple[str, str, str]:
    d = os.fspath(directory)
    return os.path.join(d, CERT), os.path.join(d, KEY), os.path.join(d, CA)


def _context(purpose: ssl.Purpose, directory: str | os.PathLike) -> ssl.SSLContext:
    cert, key, ca = _paths(directory)
    ctx = ssl.create_default_context(purpose, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def server_context(directory: str | os.PathLike, require_client_cert: bool = True) -> ssl.SSLContext:
    """A server context presenting tls.crt; with require_client_cert (mTLS), clients must present a
    certificate that chains to ca.crt."""
    ctx = _context(ssl.Purpose.CLIENT_AUTH, directory)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    return ctx


def client_context(directory: str | os.PathLike) -> ssl.SSLContext:
    """A client context presenting tls.crt and verifying the server (and its host name) against ca.crt."""
    return _context(ssl.Purpose.SERVER_AUTH, directory)


def fingerprint(directory: str | os.PathLike) -> str:
    """A digest of the mounted files: it changes exactly when the Secret's contents change."""
    digest = hashlib.sha256()
    for path in _paths(directory):
        try:
            with open(path, "rb") as f:
                digest.update(f.read())
        except FileNotFoundError:
            digest.update(b"\0missing")
    return digest.hexdigest()


class CertificateReloader:
    """Keeps an SSLContext's key pair in step with the mounted Secret.

    Only the key pair is replaced: an SSLContext can add trust anchors but not drop them, so
    after a CA rotation the old root stays trusted until the process restarts, which is what
    the overlap in a rotation needs anyway.
    """

    def __init__(self, context: ssl.SSLContext, directory: str | os.PathLike, interval: float = 30.0):
        self.context, self.directory, self.interval = context, directory, interval
        self._seen = fingerprint(directory)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reload_if_changed(self) -> bool:
        """Reload when the files changed; a half-written update is retried on the next call."""
        current = fingerprint(self.directory)
        if current == self._seen:
            return False
        cert, key, ca = _paths(self.directory)
        try:
            self.context.load_cert_chain(cert, key)
            self.context.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as e:
            log.warning("not reloading the TLS key pair from %s yet: %s", self.directory, e)
            return False
        self._seen = current
        log.info("reloaded the TLS key pair from %s", self.directory)
        return True

    def start(self) -> "CertificateReloader":
        self._thread = threading.Thread(target=self._run, name="certmint-tls-reloader", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.reload_if_changed()
