"""SSL contexts that follow a mounted Secret through renewals and CA rotations.

An ssl.SSLContext can swap its key pair (load_cert_chain again) and add trust anchors, but it can
never forget one. So each generation of the files gets contexts of its own, and connections are
pointed at the newest:

- a server hands its framework one *front* context, whose SNI callback runs on every ClientHello
  (with or without a server name) and moves the connection onto the current generation's context
  (`ssl_object.context = current`) before a certificate is chosen or a chain verified;
- a client asks for the current context for each new connection (the integrations do it for you).

Peer identity is checked right after the handshake by the SSLObject/SSLSocket classes the contexts
hand out: a peer whose certificate verified but whose identity matches no rule gets PeerNotAllowed
from the handshake, and the connection is closed before any application data is exchanged.
"""
from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from certmint.tls._der import pem_certificates, serial_and_not_after
from certmint.tls._errors import InvalidMaterial, TLSConfigError
from certmint.tls._files import Snapshot, TLSFiles, read_snapshot
from certmint.tls._identity import PeerPolicy, RuleLike
from certmint.tls._watch import Watcher

log = logging.getLogger("certmint.tls")

_RETRY_SECONDS = 5.0   # how long to chase a writer that keeps swapping while we read


@dataclass(frozen=True)
class Generation:
    """One consistent set of files, loaded."""
    name: str                 # the kubelet's timestamped directory; "" outside that layout
    digest: str               # sha256 over the files' bytes
    serial: str               # of tls.crt's leaf, upper-case hex as getpeercert() spells it
    not_after: datetime
    anchors: int              # certificates in ca.crt
    crl: bool
    loaded_at: float          # time.time()
    snapshot: Snapshot = field(repr=False, compare=False)

    @property
    def cert_pem(self) -> bytes:
        return self.snapshot.data["cert"]

    @property
    def ca_pem(self) -> bytes:
        return self.snapshot.data["ca"]

    def describe(self) -> str:
        where = f"generation {self.name}" if self.name else f"digest {self.digest[:12]}"
        return (f"{where}: serial {self.serial}, not after {self.not_after:%Y-%m-%dT%H:%M:%SZ}, "
                f"{self.anchors} trust anchor{'s' if self.anchors != 1 else ''}{', CRL' if self.crl else ''}")


def _load_crl(ctx: ssl.SSLContext, path: Path, data: bytes) -> None:
    if b"-----BEGIN X509 CRL-----" in data:
        ctx.load_verify_locations(cafile=str(path))
    else:
        # A DER CRL (the form CRL distribution points publish): the stdlib loads CRLs only from PEM
        # files, so wrap it in a temporary one (a CRL is public data).
        pem = b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(data) + b"-----END X509 CRL-----\n"
        with tempfile.NamedTemporaryFile(suffix=".crl.pem") as f:
            f.write(pem)
            f.flush()
            ctx.load_verify_locations(cafile=f.name)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _material_context(files: TLSFiles, snap: Snapshot, server_side: bool) -> ssl.SSLContext:
    """A context holding one generation's key pair, anchors and CRL, loaded from the generation's own
    paths (immutable in the kubelet's layout). Errors name files, never contents."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(snap.paths["cert"]), str(snap.paths["key"]))
    except ssl.SSLError as e:
        raise InvalidMaterial(f"cannot load the key pair {files.cert_path} ({files.source('cert')}) and "
                              f"{files.key_path} ({files.source('key')}): {e.reason or e.strerror}") from None
    try:
        ctx.load_verify_locations(cadata=snap.data["ca"].decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as e:
        raise InvalidMaterial(f"cannot load the trust anchors {files.ca_path} ({files.source('ca')}): "
                              f"{getattr(e, 'reason', None) or e}") from None
    if "crl" in snap.data:
        try:
            _load_crl(ctx, snap.paths["crl"], snap.data["crl"])
        except ssl.SSLError as e:
            raise InvalidMaterial(f"cannot load the CRL {files.crl_path} ({files.source('crl')}): "
                                  f"{e.reason or e}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _checked_classes(policy: PeerPolicy) -> tuple[type[ssl.SSLObject], type[ssl.SSLSocket]]:
    """SSLObject (asyncio, anyio, memory BIOs) and SSLSocket (blocking sockets) classes that check the
    peer's identity the moment the handshake completes."""

    class CheckedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            policy.enforce(self.getpeercert())

    class CheckedSSLSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            policy.enforce(self.getpeercert())

    return CheckedSSLObject, CheckedSSLSocket


def _apply_policy(ctx: ssl.SSLContext, policy: PeerPolicy | None) -> None:
    if policy is not None:
        ctx.sslobject_class, ctx.sslsocket_class = _checked_classes(policy)


@dataclass
class _State:
    generation: Generation
    server: ssl.SSLContext
    clients: dict[Any, ssl.SSLContext] = field(default_factory=dict)


class MTLS:
    """A mounted Secret (or MTLS_* files), watched, handing out contexts that follow its renewals.

        mtls = MTLS("/etc/tls")                     # or MTLS.from_env()
        server_ctx = mtls.server_context(allowed_peers=["spiffe://example.org/ns/prod/*"])
        client_ctx = mtls.client_context(server_identity="spiffe://example.org/ns/prod/sa/api")

    The files are loaded at once: a missing or unreadable file raises here (MissingFile names the path
    and where it was configured). Afterwards a bad update (a half-written file, a key that does not
    match) is logged and the previous generation stays in service until a good one arrives.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, cert_path: str | os.PathLike[str] | None = None,
                 key_path: str | os.PathLike[str] | None = None, ca_path: str | os.PathLike[str] | None = None,
                 crl_path: str | os.PathLike[str] | None = None, files: TLSFiles | None = None, watch: bool = True,
                 poll_interval: float = 1.0, inotify: bool = True):
        if files is None:
            if directory is not None:
                files = TLSFiles.from_directory(directory, crl_path=crl_path)
            elif cert_path and key_path and ca_path:
                files = TLSFiles.from_paths(cert_path, key_path, ca_path, crl_path)
            else:
                raise TLSConfigError("MTLS needs a directory holding tls.crt, tls.key and ca.crt, or cert_path, "
                                     "key_path and ca_path")
        self.files = files
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Generation], None]] = []
        self._client_policies: dict[Any, PeerPolicy | None] = {None: None}
        self._last_error: str | None = None
        self._state = self._load()
        log.info("mTLS material loaded from %s, %s", self._where(), self._state.generation.describe())
        self._watcher: Watcher | None = None
        if watch:
            self._watcher = Watcher(files.directories(), self.reload, poll_interval=poll_interval,
                                    inotify=inotify).start()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> MTLS | None:
        """From MTLS_ENABLED, MTLS_DIR or MTLS_CERT_PATH/MTLS_KEY_PATH/MTLS_CA_CERT_PATH (or MTLS_CA_PATH),
        and MTLS_CRL_PATH. None when MTLS_ENABLED is false."""
        files = TLSFiles.from_env(environ)
        if files is None:
            log.warning("mTLS disabled (MTLS_ENABLED=false)")
            return None
        return cls(files=files, **kwargs)

    # --- what the integrations use --------------------------------------------------------------

    @property
    def generation(self) -> Generation:
        return self._state.generation

    @property
    def watch_mode(self) -> str:
        """"inotify", "poll", or "off" (reload() only when called)."""
        return self._watcher.mode if self._watcher else "off"

    def server_context(self, *, allowed_peers: RuleLike | Sequence[RuleLike] | None = None,
                       require_client_cert: bool = True,
                       alpn_protocols: Sequence[str] | None = None) -> ssl.SSLContext:
        """The one context to give a server. It stays the same object; every new connection is served
        with the current generation's certificate and verified against its anchors and CRL.

        allowed_peers admits only clients whose certificate matches one of the rules (SpiffeID,
        SpiffeTrustDomain, DNSName, or their spellings "spiffe://td/path", "spiffe://td/prefix/*",
        "dns:name"); None admits any client the CA signed."""
        policy = PeerPolicy.of(allowed_peers, "client")
        if policy is not None and not require_client_cert:
            raise TLSConfigError("allowed_peers needs require_client_cert=True: without a certificate there is "
                                 "no identity to check")
        front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        front.minimum_version = ssl.TLSVersion.TLSv1_2
        # No session resumption: a resumed session skips certificate verification, so a client whose
        # CA was dropped from ca.crt (or whose certificate was revoked) could keep coming back on a
        # ticket issued before. Every new connection is verified against the current generation.
        front.num_tickets = 0
        front.options |= ssl.OP_NO_TICKET
        front.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
        if self.files.crl_path is not None:
            # Verification flags are the connection's, copied from the front context when it is
            # made; the CRL itself is in the current generation's store.
            front.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if alpn_protocols:
            front.set_alpn_protocols(list(alpn_protocols))
        _apply_policy(front, policy)

        def use_current_generation(ssl_object: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            # OpenSSL runs this for every ClientHello, with or without a server name, before the
            # certificate is chosen. The front context holds no key pair of its own: it keeps the
            # verify mode and flags, ALPN and the identity check, and the current generation's
            # context brings the key pair, the anchors and the CRL (OpenSSL verifies against the
            # store of the context the connection ends up on).
            ssl_object.context = self._state.server

        front.sni_callback = use_current_generation
        return front

    def client_context(self, *, server_identity: RuleLike | Sequence[RuleLike] | None = None) -> ssl.SSLContext:
        """The current generation's client context: presents tls.crt, verifies the server against ca.crt
        and its host name, and with server_identity also its SPIFFE ID or DNS name. Ask again for every
        new connection: the object changes when the files do (and is the same object until then, so
        connection pools keyed by context keep working)."""
        policy = PeerPolicy.of(server_identity, "server")
        key = policy.rules if policy else None
        state = self._state
        ctx = state.clients.get(key)
        if ctx is None:
            with self._lock:
                self._client_policies[key] = policy
                state = self._state
                ctx = state.clients.get(key)
                if ctx is None:
                    ctx = self._new_client_locked(policy)
        return ctx

    def _new_client_locked(self, policy: PeerPolicy | None) -> ssl.SSLContext:
        # A context for an identity first asked for now. Its files may be gone (the kubelet deletes a
        # superseded generation): then the current files are read, and if they changed, they become
        # the new generation, with this identity's context built alongside the others.
        key = policy.rules if policy else None
        try:
            ctx = self._client_for(self._state.generation.snapshot, policy)
        except FileNotFoundError:
            state = self._read_and_build(None)
            assert state is not None
            if state.generation.digest != self._state.generation.digest:
                self._swap_locked(state)
            else:
                self._state.clients[key] = state.clients[key]
            return self._state.clients[key]
        self._state.clients[key] = ctx
        return ctx

    def on_reload(self, callback: Callable[[Generation], None]) -> None:
        """callback(generation) after each new generation is in service (from the watcher's thread)."""
        self._listeners.append(callback)

    def reload(self) -> bool:
        """Load the files now if they changed; True when a new generation went into service. A bad
        update is logged (once per distinct problem) and leaves the current generation in service."""
        with self._lock:
            try:
                state = self._read_and_build(self._state.generation.digest)
            except (OSError, TLSConfigError) as e:
                self._report(f"keeping {self._state.generation.describe()}: {e}")
                return False
            if state is None:
                return False
            self._swap_locked(state)
        for callback in list(self._listeners):
            try:
                callback(state.generation)
            except Exception:
                log.exception("reload listener failed")
        return True

    def _swap_locked(self, state: _State) -> None:
        previous, self._state, self._last_error = self._state.generation, state, None
        log.info("mTLS material reloaded from %s: %s (was serial %s)", self._where(), state.generation.describe(),
                 previous.serial)

    def close(self) -> None:
        if self._watcher:
            self._watcher.stop()
            self._watcher = None

    def __enter__(self) -> MTLS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------------

    def _where(self) -> str:
        dirs = sorted({str(d) for d in self.files.directories()})
        return ", ".join(dirs)

    def _report(self, message: str) -> None:
        if message != self._last_error:
            log.warning("%s", message)
            self._last_error = message

    def _client_for(self, snap: Snapshot, policy: PeerPolicy | None) -> ssl.SSLContext:
        ctx = _material_context(self.files, snap, server_side=False)
        ctx.check_hostname = True
        _apply_policy(ctx, policy)
        return ctx

    def _read_and_build(self, unless_digest: str | None) -> _State | None:
        """Read the files as one generation and build its contexts; None when their digest is
        unless_digest (nothing changed).

        In the kubelet's layout one resolution of ..data per read guarantees one generation; a
        generation directory deleted under us (superseded while we read or load) is retried with
        the new one. Outside that layout the files are read again after loading and must not have
        changed, so the contexts hold exactly the bytes that were read."""
        last: Exception | None = None
        deadline = time.monotonic() + _RETRY_SECONDS
        while time.monotonic() < deadline:
            try:
                snap = read_snapshot(self.files)
                if snap.digest == unless_digest:
                    return None
                state = self._build(snap)
                if snap.generation or read_snapshot(self.files).digest == snap.digest:
                    return state
                last = TLSConfigError("the files changed while being read")
                time.sleep(0.01)  # a writer in the middle of replacing files in place: let it finish
            except FileNotFoundError as e:
                # Either a configured file is really gone (check_exist says which, and who configured
                # it), or the generation we resolved was superseded and deleted while we read it:
                # then ..data already names the next one, so try again at once.
                self.files.check_exist()
                last = e
        raise last if last else TLSConfigError("the files could not be read")

    def _build(self, snap: Snapshot) -> _State:
        ders = pem_certificates(snap.data["cert"])
        if not ders:
            raise InvalidMaterial(f"{self.files.cert_path} ({self.files.source('cert')}) holds no PEM certificate")
        anchors = pem_certificates(snap.data["ca"])
        if not anchors:
            raise InvalidMaterial(f"{self.files.ca_path} ({self.files.source('ca')}) holds no PEM certificate")
        try:
            serial, not_after = serial_and_not_after(ders[0])
        except (ValueError, IndexError):
            raise InvalidMaterial(f"{self.files.cert_path} ({self.files.source('cert')}) is not a certificate") \
                from None
        server = _material_context(self.files, snap, server_side=True)
        # Client contexts for every identity asked for so far are built now, while the generation's
        # files are certain to exist (the kubelet deletes a superseded generation).
        clients = {key: self._client_for(snap, policy) for key, policy in self._client_policies.items()}
        generation = Generation(snap.generation, snap.digest, serial, not_after, len(anchors), "crl" in snap.data,
                                time.time(), snap)
        return _State(generation, server, clients)

    def _load(self) -> _State:
        self.files.check_exist()
        state = self._read_and_build(None)
        assert state is not None
        return state


# --- the original module-level API, kept working ---------------------------------------------------


def server_context(directory: str | os.PathLike[str], require_client_cert: bool = True) -> ssl.SSLContext:
    """A server context presenting tls.crt; with require_client_cert (mTLS), clients must present a
    certificate that chains to ca.crt. Built once: pair it with CertificateReloader, or use MTLS."""
    mtls = MTLS(directory, watch=False)
    ctx = mtls._state.server
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    return ctx


def client_context(directory: str | os.PathLike[str]) -> ssl.SSLContext:
    """A client context presenting tls.crt and verifying the server (and its host name) against
    ca.crt. Built once: pair it with CertificateReloader, or use MTLS."""
    return MTLS(directory, watch=False).client_context()


def fingerprint(directory: str | os.PathLike[str]) -> str:
    """A digest of the mounted files, read through one generation: it changes exactly when the
    Secret's contents change."""
    try:
        return read_snapshot(TLSFiles.from_directory(directory)).digest
    except FileNotFoundError:
        return "missing"


class CertificateReloader:
    """Keeps one existing SSLContext's key pair and anchors in step with the mounted Secret.

    For contexts built elsewhere. It can add the new ca.crt's anchors but never drop an old one (an
    SSLContext cannot forget a CA): MTLS.server_context()/client_context() swap whole contexts and
    can. It wakes on inotify events, checking at least every `interval` seconds."""

    def __init__(self, context: ssl.SSLContext, directory: str | os.PathLike[str], interval: float = 30.0):
        self.context, self.directory, self.interval = context, directory, interval
        self.files = TLSFiles.from_directory(directory)
        self._seen = fingerprint(directory)
        self._watcher: Watcher | None = None

    def reload_if_changed(self) -> bool:
        """Reload when the files changed; a half-written update is retried on the next call."""
        try:
            snap = read_snapshot(self.files)
        except FileNotFoundError as e:
            log.warning("not reloading the TLS key pair from %s yet: %s", self.directory, e)
            return False
        if snap.digest == self._seen:
            return False
        try:
            self.context.load_cert_chain(str(snap.paths["cert"]), str(snap.paths["key"]))
            self.context.load_verify_locations(cadata=snap.data["ca"].decode("ascii"))
        except (ssl.SSLError, OSError, ValueError) as e:
            log.warning("not reloading the TLS key pair from %s yet: %s", self.directory, e)
            return False
        self._seen = snap.digest
        log.info("reloaded the TLS key pair from %s", self.directory)
        return True

    def start(self) -> CertificateReloader:
        self._watcher = Watcher(self.files.directories(), self.reload_if_changed, poll_interval=min(self.interval, 1.0),
                                backstop=self.interval).start()
        return self

    def stop(self) -> None:
        if self._watcher:
            self._watcher.stop()
