"""Test support: a Secret volume written exactly as the kubelet writes it, and a small CA.

SecretVolume needs only the standard library. TestCA needs `cryptography` (imported when a TestCA is
made), which a service's test environment brings; certmint.tls itself never imports it.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certmint.tls._files import CA, CERT, DATA_LINK, KEY


class SecretVolume:
    """A directory updated the way the kubelet updates a mounted Secret (its AtomicWriter):

        ..2026_11_30_12_00_00.123456789/   the generation: every key, written before anything points at it
        ..data -> ..2026_11_30_12_00_00.123456789   swapped by renaming ..data_tmp over it (atomic)
        tls.crt -> ..data/tls.crt           one symlink per key, created once, never rewritten
        tls.key -> ..data/tls.key
        ca.crt  -> ..data/ca.crt

    The previous generation directory is deleted after the swap, as the kubelet does, so a reader
    still holding its path sees it vanish.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, files: Mapping[str, bytes], mode: int = 0o644) -> str:
        """Publish a new generation holding exactly these keys; returns its directory name."""
        generation = self._new_generation_directory()
        for name, data in files.items():
            path = generation / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)
        data_link = self.directory / DATA_LINK
        previous = os.readlink(data_link) if data_link.is_symlink() else None
        tmp = self.directory / (DATA_LINK + "_tmp")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(generation.name)
        os.rename(tmp, data_link)
        for name in files:
            top = name.split("/", 1)[0]
            link = self.directory / top
            if not link.is_symlink():
                link.symlink_to(f"{DATA_LINK}/{top}")
        for entry in self.directory.iterdir():
            if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in \
                    {n.split("/", 1)[0] for n in files}:
                entry.unlink()
        if previous and previous != generation.name:
            shutil.rmtree(self.directory / previous, ignore_errors=True)
        return generation.name

    def _new_generation_directory(self) -> Path:
        # The kubelet's name: os.MkdirTemp(dir, "..2006_01_02_15_04_05."), a random decimal suffix.
        stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
        while True:
            path = self.directory / f"{stamp}{random.randrange(10**9)}"
            try:
                path.mkdir(mode=0o755)
                return path
            except FileExistsError:
                continue

    @property
    def generation(self) -> str:
        return os.readlink(self.directory / DATA_LINK)


@dataclass
class Issued:
    """A leaf certificate and its key, as a Secret holds them."""
    cert_pem: bytes                       # leaf, then the intermediates
    key_pem: bytes = field(repr=False)
    ca_pem: bytes                         # the root
    serial: str                           # upper-case hex, as getpeercert() spells it

    def secret(self, ca_pem: bytes | None = None, **extra: bytes) -> dict[str, bytes]:
        """The Secret's files: tls.crt, tls.key, ca.crt (ca_pem overrides the anchors)."""
        return {CERT: self.cert_pem, KEY: self.key_pem, CA: ca_pem if ca_pem is not None else self.ca_pem, **extra}


class TestCA:
    """A root (or, from .intermediate(), an intermediate) CA with ECDSA P-256 keys, for tests."""
    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "certmint test root", *, _parent: TestCA | None = None, days: int = 30):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes = x509, hashes
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.parent = _parent
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(self.name)
                   .issuer_name(_parent.name if _parent else self.name)
                   .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False))
        signer = _parent.key if _parent else self.key
        if _parent:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(_parent.key.public_key()), critical=False)
        self.cert = builder.sign(signer, hashes.SHA256())

    @property
    def cert_pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding
        return self.cert.public_bytes(Encoding.PEM)

    @property
    def root(self) -> TestCA:
        return self.parent.root if self.parent else self

    def intermediate(self, name: str = "certmint test intermediate") -> TestCA:
        return TestCA(name, _parent=self)

    def chain_pem(self) -> bytes:
        """This CA and its parents below the root (what follows a leaf in tls.crt)."""
        return b"" if self.parent is None else self.cert_pem + self.parent.chain_pem()

    def issue(self, common_name: str, *, dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (),
              uris: Sequence[str] = (), server: bool = True, client: bool = True,
              valid_for: dt.timedelta = dt.timedelta(days=1)) -> Issued:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans: list[Any] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
        sans += [x509.UniformResourceIdentifier(u) for u in uris]
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(self.name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + valid_for)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        serial = format(cert.serial_number, "X")
        return Issued(cert.public_bytes(Encoding.PEM) + self.chain_pem(),
                      key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
                      self.root.cert_pem, serial if len(serial) % 2 == 0 else "0" + serial)

    def crl(self, revoked_serials: Sequence[int | str] = (), *, der: bool = False) -> bytes:
        """A CRL signed by this CA revoking the serials (ints, or hex as getpeercert() spells them)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.serialization import Encoding

        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.name)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=1)))
        for s in revoked_serials:
            number = int(s, 16) if isinstance(s, str) else s
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(number).revocation_date(now - dt.timedelta(minutes=1))
                .build())
        crl = builder.sign(self.key, hashes.SHA256())
        return crl.public_bytes(Encoding.DER if der else Encoding.PEM)


@dataclass
class TrafficReport:
    ok: int
    failed: int
    seconds: float
    errors: list[str]

    @property
    def rate(self) -> float:
        return (self.ok + self.failed) / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return f"{self.ok + self.failed} requests in {self.seconds:.1f} s ({self.rate:.0f}/s), {self.failed} failed"


class Traffic:
    """Requests in a loop from a background thread, for proving a renewal drops nothing.

    request() makes one request and returns (the serial of our certificate as the server saw it,
    the serial of the server's certificate as we saw it). Traffic.threads runs a blocking request
    function in `concurrency` threads; Traffic.asyncio runs `request(client)` coroutines in
    `concurrency` tasks on an event loop of its own, sharing the client that `client()` (an async
    context manager factory) makes there.
    """

    def __init__(self) -> None:
        import threading
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[Any] = []
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.last: tuple[str, str] | None = None
        self.seen: set[tuple[str, str]] = set()
        self._started = self._stopped = 0.0

    def _record(self, result: tuple[str, str] | None, error: BaseException | None) -> None:
        with self._lock:
            if error is None and result is not None:
                self.ok += 1
                self.last = result
                self.seen.add(result)
            else:
                self.failed += 1
                if len(self.errors) < 10:
                    self.errors.append(repr(error))

    @classmethod
    def threads(cls, request: Any, concurrency: int = 2) -> "Traffic":
        import threading
        import time
        traffic = cls()

        def loop() -> None:
            while not traffic._stop.is_set():
                try:
                    result = request()
                except Exception as e:
                    traffic._record(None, e)
                else:
                    traffic._record(result, None)

        traffic._started = time.monotonic()
        traffic._threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
        for t in traffic._threads:
            t.start()
        return traffic

    @classmethod
    def asyncio(cls, client: Any, request: Any, concurrency: int = 2) -> "Traffic":
        import asyncio
        import threading
        import time
        traffic = cls()
        ready = threading.Event()

        async def main() -> None:
            async with client() as c:
                async def loop() -> None:
                    while not traffic._stop.is_set():
                        try:
                            result = await request(c)
                        except Exception as e:
                            traffic._record(None, e)
                        else:
                            traffic._record(result, None)
                traffic._started = time.monotonic()
                ready.set()
                await asyncio.gather(*(loop() for _ in range(concurrency)))

        def run() -> None:
            try:
                asyncio.run(main())
            except Exception as e:
                traffic._record(None, e)
            finally:
                ready.set()

        traffic._threads = [threading.Thread(target=run, daemon=True)]
        traffic._threads[0].start()
        ready.wait(30)
        return traffic

    def wait_for(self, client_serial: str, server_serial: str, timeout: float = 10.0) -> float:
        """Seconds until a request saw both new serials; AssertionError after timeout."""
        import time
        start = time.monotonic()
        while (client_serial, server_serial) not in self.seen:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"no request saw client {client_serial} and server {server_serial} within "
                                     f"{timeout} s; last seen {self.last}; errors {self.errors}")
            if not any(t.is_alive() for t in self._threads):
                raise AssertionError(f"the traffic stopped: {self.errors}")
            time.sleep(0.01)
        return time.monotonic() - start

    def stop(self) -> TrafficReport:
        import time
        self._stop.set()
        for t in self._threads:
            t.join(30)
        self._stopped = time.monotonic()
        return TrafficReport(self.ok, self.failed, self._stopped - self._started, list(self.errors))


class Renewals:
    """A server and a client volume with certificates from one CA, renewed the way certmint renews:
    a new key and certificate, published by the kubelet's swap."""

    def __init__(self, directory: str | os.PathLike[str], ca: "TestCA | None" = None, *,
                 server_uri: str = "spiffe://example.org/ns/test/sa/server",
                 client_uri: str = "spiffe://example.org/ns/test/sa/client"):
        self.ca = ca or TestCA()
        self.server_uri, self.client_uri = server_uri, client_uri
        self.server_volume = SecretVolume(Path(directory) / "server")
        self.client_volume = SecretVolume(Path(directory) / "client")
        self.server = self.renew_server()
        self.client = self.renew_client()

    def renew_server(self) -> Issued:
        self.server = self.ca.issue("server", dns_names=["localhost"], ip_addresses=["127.0.0.1"],
                                    uris=[self.server_uri])
        self.server_volume.write(self.server.secret())
        return self.server

    def renew_client(self, uri: str | None = None) -> Issued:
        self.client = self.ca.issue("client", uris=[uri or self.client_uri], server=False)
        self.client_volume.write(self.client.secret())
        return self.client

    def rotate(self, server: Any, client: Any, traffic: Traffic, *, rounds: int = 3, settle: float = 1.0,
               timeout: float = 10.0, log: Any = print) -> TrafficReport:
        """Renew the server's and then the client's certificate `rounds` times while traffic runs.
        server and client are the MTLS objects reading the two volumes. After each renewal a request
        must show the new client serial at the server and the new server serial at the client."""
        import time

        def reloaded(mtls: Any, serial: str) -> None:
            deadline = time.monotonic() + timeout
            while mtls.generation.serial != serial:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{mtls.files.cert_path} not reloaded within {timeout} s")
                time.sleep(0.005)

        for round_ in range(1, rounds + 1):
            time.sleep(settle)
            new_server = self.renew_server()
            reloaded(server, new_server.serial)
            new_client = self.renew_client()
            reloaded(client, new_client.serial)
            took = traffic.wait_for(new_client.serial, new_server.serial, timeout)
            log(f"renewal {round_}: server {new_server.serial[:12]}…, client {new_client.serial[:12]}… "
                f"seen by the peers {took * 1000:.0f} ms after the client's swap")
        time.sleep(settle)
        return traffic.stop()
