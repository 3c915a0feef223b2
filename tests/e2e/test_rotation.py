"""Root CA rotation with zero failed handshakes, end to end.

A self-signed root Issuer signs the root CA Certificate; a ClusterIssuer signs with it; an
intermediate CA Certificate and its Issuer sign a server and a client certificate; a Bundle
follows the root. The test plays the kubelet: it copies the Secrets and the Bundle's ConfigMap
into kubelet-layout directories (a timestamped directory and a `..data` symlink swap) whenever
they change. A server and a client built with certmint.tls from those files make mutual-TLS
connections over 127.0.0.1 while the root is re-issued with a new key and the chain follows:
no handshake may fail, and at the end every certificate chains to the new root and the old root
is gone from the bundle. At every step the files also pass an openssl s_server/s_client handshake.

On a control plane of its own, with an operator whose rotation window and propagation delay are
short (3 s and 2 s; in production 5 min and 2 min).
"""
from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

import localcluster
from certmint.kube.api import Api, load_configuration
from certmint.tls import MTLS
from certmint.tls.testing import SecretVolume, Traffic
from conftest import OPERATOR_NAMESPACE, api_writes, control_plane, run_kubectl, start_operator

APP = "rotation-app"
SPREAD, PROPAGATION = "3s", "2s"

MANIFEST = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {APP}, labels: {{trust: rotation}}}}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {{name: bootstrap, namespace: {OPERATOR_NAMESPACE}}}
spec: {{selfSigned: {{}}}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: root-ca, namespace: {OPERATOR_NAMESPACE}}}
spec:
  isCA: true
  commonName: Rotation Root CA
  secretName: root-ca
  duration: 8760h
  privateKey: {{algorithm: ECDSA, size: 256, rotationPolicy: Always}}
  issuerRef: {{name: bootstrap}}
---
apiVersion: certmint.io/v1
kind: ClusterIssuer
metadata: {{name: root}}
spec: {{ca: {{secretName: root-ca}}}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: intermediate-ca, namespace: {APP}}}
spec:
  isCA: true
  commonName: Rotation Intermediate CA
  secretName: intermediate-ca
  duration: 4380h
  privateKey: {{algorithm: ECDSA, size: 256, rotationPolicy: Always}}
  issuerRef: {{name: root, kind: ClusterIssuer}}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {{name: intermediate, namespace: {APP}}}
spec: {{ca: {{secretName: intermediate-ca}}}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: server, namespace: {APP}}}
spec:
  secretName: server-tls
  commonName: localhost
  dnsNames: [localhost]
  ipAddresses: [127.0.0.1]
  duration: 24h
  usages: [digital signature, server auth]
  privateKey: {{algorithm: ECDSA, size: 256, rotationPolicy: Always}}
  issuerRef: {{name: intermediate}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: client, namespace: {APP}}}
spec:
  secretName: client-tls
  commonName: client
  uris: [spiffe://example.org/ns/{APP}/sa/client]
  duration: 24h
  usages: [digital signature, client auth]
  privateKey: {{algorithm: ECDSA, size: 256, rotationPolicy: Always}}
  issuerRef: {{name: intermediate}}
---
apiVersion: certmint.io/v1
kind: Bundle
metadata: {{name: root-trust}}
spec:
  sources: [{{issuerRef: {{name: root, kind: ClusterIssuer}}}}]
  target: {{configMap: {{key: ca.crt}}}}
  namespaceSelector: {{matchLabels: {{trust: rotation}}}}
"""


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("rotation-cluster")) as c:
        yield c


def certificates(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def fp(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def chains_to(chain_pem: bytes, root: x509.Certificate) -> bool:
    """tls.crt (leaf, then intermediates) verifies up to this root, signature by signature."""
    chain = [*certificates(chain_pem), root]
    try:
        for child, parent in zip(chain, chain[1:], strict=False):
            child.verify_directly_issued_by(parent)
    except Exception:
        return False
    return True


class Kubelet:
    """Copies the Secrets and the bundle ConfigMap to kubelet-layout directories when they change."""

    def __init__(self, api: Api, root: Path):
        self.api = api
        self.volumes = {
            "server-secret": ("secret", "server-tls"), "client-secret": ("secret", "client-tls"),
            "server-trust": ("configmap", "root-trust"), "client-trust": ("configmap", "root-trust"),
        }
        self.dirs = {name: root / name for name in self.volumes}
        self.writers = {name: SecretVolume(d) for name, d in self.dirs.items()}
        self.seen: dict[str, dict[str, bytes]] = {}
        self.steps = 0
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)

    def read(self, kind: str, name: str) -> dict[str, bytes] | None:
        import base64
        path = f"/api/v1/namespaces/{APP}/{'secrets' if kind == 'secret' else 'configmaps'}/{name}"
        obj = self.api.get_or_none(path)
        if obj is None:
            return None
        if kind == "secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()
                    if k in ("tls.crt", "tls.key", "ca.crt")}
        return {k: v.encode() for k, v in (obj.get("data") or {}).items()}

    def sync(self) -> bool:
        cache: dict[tuple[str, str], dict[str, bytes] | None] = {}
        changed = False
        for volume, source in self.volumes.items():
            if source not in cache:
                cache[source] = self.read(*source)
            files = cache[source]
            if files and files != self.seen.get(volume):
                self.writers[volume].write(files)
                self.seen[volume] = files
                changed = True
        if changed:
            with self.changed:
                self.steps += 1
                self.changed.notify_all()
        return changed

    def start(self) -> "Kubelet":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as e:  # an API hiccup: the kubelet retries too
                print(f"kubelet copy failed: {e!r}")
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Server:
    """A threaded mTLS echo server on 127.0.0.1 from certmint.tls; counts failed handshakes."""

    def __init__(self, mtls: MTLS):
        self.context = mtls.server_context(allowed_peers=[f"spiffe://example.org/ns/{APP}/sa/client"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.failed: list[str] = []
        self.ok = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert()
                tls.recv(16)
                tls.sendall(peer["serialNumber"].encode())
            self.ok += 1
        except (ssl.SSLError, OSError) as e:
            self.failed.append(repr(e))

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


def openssl_handshake(dirs: dict[str, Path], tmp: Path, step: int) -> str:
    """One openssl s_server/s_client mutual-TLS handshake from a copy of the files as they are now."""
    snap = tmp / f"step-{step}"
    snap.mkdir()
    for volume in ("server-secret", "client-secret"):
        for f in ("tls.crt", "tls.key"):
            (snap / f"{volume}-{f}").write_bytes((dirs[volume] / f).read_bytes())
    for volume in ("server-trust", "client-trust"):
        (snap / f"{volume}.pem").write_bytes((dirs[volume] / "ca.crt").read_bytes())
    port = localcluster.free_port()
    server = subprocess.Popen(
        # -cert takes the leaf only; -cert_chain sends the intermediate after it, as tls.crt holds both
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-cert",
         str(snap / "server-secret-tls.crt"), "-cert_chain", str(snap / "server-secret-tls.crt"),
         "-key", str(snap / "server-secret-tls.key"),
         "-CAfile", str(snap / "server-trust.pem"), "-Verify", "4", "-verify_return_error", "-rev"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        printed = b""
        while b"ACCEPT" not in printed:  # printed once it listens (after "verify depth is 4...")
            line = server.stdout.readline()
            assert line, f"openssl s_server exited: {printed!r}"
            printed += line
        client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-verify_return_error", "-verify_hostname",
             "localhost", "-CAfile", str(snap / "client-trust.pem"), "-cert", str(snap / "client-secret-tls.crt"),
             "-cert_chain", str(snap / "client-secret-tls.crt"),
             "-key", str(snap / "client-secret-tls.key"), "-brief"],
            input=b"ping\n", capture_output=True, timeout=20)
        out = server.communicate(timeout=10)[0].decode(errors="replace")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    text = client.stderr.decode(errors="replace") + client.stdout.decode(errors="replace")
    assert client.returncode == 0 and "Verification: OK" in text, f"step {step}: s_client failed:\n{text}\n{out}"
    assert "error" not in out.lower(), f"step {step}: s_server:\n{out}"
    return text


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s")


@pytest.mark.slow
def test_root_rotation_with_zero_failed_handshakes(private, tmp_path):
    op = start_operator(private, tmp_path / "operator.log", "--rotation-spread", SPREAD,
                        "--trust-propagation-delay", PROPAGATION)
    api = Api(load_configuration(str(private.kubeconfig)))
    try:
        run_kubectl(private, "apply", "-f", "-", input=MANIFEST)
        for name, ns in (("root-ca", OPERATOR_NAMESPACE), ("intermediate-ca", APP), ("server", APP), ("client", APP)):
            run_kubectl(private, "wait", "--for=condition=Ready", "--timeout=60s", "-n", ns, f"certificate/{name}")
        kubelet = Kubelet(api, tmp_path / "volumes")
        wait_until(lambda: kubelet.sync() or len(kubelet.seen) == 4, 30, "the bundle and the Secrets")
        kubelet.start()
        old_root = certificates(_secret(api, OPERATOR_NAMESPACE, "root-ca")["tls.crt"])[0]
        assert [fp(c) for c in certificates(kubelet.seen["server-trust"]["ca.crt"])] == [fp(old_root)]

        d = kubelet.dirs
        server_mtls = MTLS(cert_path=d["server-secret"] / "tls.crt", key_path=d["server-secret"] / "tls.key",
                           ca_path=d["server-trust"] / "ca.crt", poll_interval=0.2)
        client_mtls = MTLS(cert_path=d["client-secret"] / "tls.crt", key_path=d["client-secret"] / "tls.key",
                           ca_path=d["client-trust"] / "ca.crt", poll_interval=0.2)
        server = Server(server_mtls)

        def request() -> tuple[str, str]:
            ctx = client_mtls.client_context(server_identity="dns:localhost")
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"x")
                    seen_client = tls.recv(64).decode()
                    server_serial = tls.getpeercert()["serialNumber"]
            time.sleep(0.02)  # ~40 handshakes a second per thread: enough, and leaves the CPU to the operator
            return seen_client, server_serial

        # openssl at every step the kubelet publishes
        openssl_steps: list[int] = []
        openssl_errors: list[str] = []
        stop_openssl = threading.Event()

        def openssl_at_each_step() -> None:
            done = -1
            while not stop_openssl.is_set():
                with kubelet.changed:
                    kubelet.changed.wait_for(lambda d=done: kubelet.steps != d or stop_openssl.is_set(), timeout=0.5)
                    step = kubelet.steps
                if step == done:
                    continue
                try:
                    openssl_handshake(d, tmp_path, step)
                    openssl_steps.append(step)
                except (AssertionError, OSError, subprocess.SubprocessError) as e:
                    openssl_errors.append(str(e))
                done = step

        checker = threading.Thread(target=openssl_at_each_step, daemon=True)
        checker.start()
        traffic = Traffic.threads(request, concurrency=2)
        time.sleep(2)
        before_ok = traffic.ok
        assert before_ok > 20, f"traffic does not flow: {traffic.errors}"

        # --- rotate the root ---------------------------------------------------------------------
        writes_before = api_writes(private)
        started = time.monotonic()
        run_kubectl(private, "annotate", "certificate", "-n", OPERATOR_NAMESPACE, "root-ca",
                    f"certmint.io/renew={int(time.time())}", "--overwrite")
        new_root = wait_until(lambda: (lambda c: c if fp(c) != fp(old_root) else None)(
            certificates(_secret(api, OPERATOR_NAMESPACE, "root-ca")["tls.crt"])[0]), 30, "the new root")
        assert new_root.public_key().public_bytes(*_spki()) != old_root.public_key().public_bytes(*_spki())

        def bundle_roots() -> set[str]:
            cm = api.get(f"/api/v1/namespaces/{APP}/configmaps/root-trust")
            return {fp(c) for c in certificates(cm["data"]["ca.crt"].encode())}

        # first both roots (before any certificate from the new one), at the end only the new one
        wait_until(lambda: bundle_roots() == {fp(old_root), fp(new_root)}, 30, "both roots in the bundle")
        both_at = time.monotonic() - started
        for name in ("intermediate-ca", "server-tls", "client-tls"):
            assert chains_to(_secret(api, APP, name)["tls.crt"], old_root), f"{name} re-issued before the trust"

        def done() -> bool:
            return (bundle_roots() == {fp(new_root)}
                    and all(chains_to(_secret(api, APP, n)["tls.crt"], new_root)
                            for n in ("intermediate-ca", "server-tls", "client-tls"))
                    and all(fp(c) == fp(new_root) for v in ("server-trust", "client-trust")
                            for c in certificates(kubelet.seen[v]["ca.crt"])))
        wait_until(done, 120, "the whole chain under the new root, and the old root gone")
        rotation_seconds = time.monotonic() - started
        # both peers serve the new certificates
        new_server = format(certificates(_secret(api, APP, "server-tls")["tls.crt"])[0].serial_number, "X")
        wait_until(lambda: any(s.lstrip("0") == new_server.lstrip("0") for _, s in traffic.seen), 10,
                   "a handshake with the new server certificate")
        writes = api_writes(private) - writes_before
        writes.pop("events", None)

        # --- rotate the intermediate alone: the leaves follow it, the trust does not change ----------
        old_intermediate = fp(certificates(_secret(api, APP, "intermediate-ca")["tls.crt"])[0])
        writes_before = api_writes(private)
        started = time.monotonic()
        run_kubectl(private, "annotate", "certificate", "-n", APP, "intermediate-ca",
                    f"certmint.io/renew={int(time.time())}", "--overwrite")

        def leaves_follow() -> bool:
            chains = [certificates(_secret(api, APP, n)["tls.crt"]) for n in ("server-tls", "client-tls")]
            current = fp(certificates(_secret(api, APP, "intermediate-ca")["tls.crt"])[0])
            return current != old_intermediate and all(fp(c[1]) == current and chains_to(b"".join(
                x.public_bytes(_pem()) for x in c), new_root) for c in chains)
        wait_until(leaves_follow, 60, "the leaves under the new intermediate")
        intermediate_seconds = time.monotonic() - started
        new_server = format(certificates(_secret(api, APP, "server-tls")["tls.crt"])[0].serial_number, "X")
        wait_until(lambda: any(s.lstrip("0") == new_server.lstrip("0") for _, s in traffic.seen), 10,
                   "a handshake with the server certificate from the new intermediate")
        intermediate_writes = api_writes(private) - writes_before
        intermediate_writes.pop("events", None)
        assert intermediate_writes["configmaps"] == 0  # the bundle holds the root: nothing to change
        assert bundle_roots() == {fp(new_root)}

        time.sleep(1)
        report = traffic.stop()
        stop_openssl.set()
        checker.join(60)
        server.stop()
        kubelet.stop()

        print(f"\nrotation: both roots in the bundle after {both_at:.1f} s; chain re-issued and old root dropped "
              f"after {rotation_seconds:.1f} s")
        print(f"certmint.tls handshakes: {report}; server-side failures: {len(server.failed)}")
        print(f"openssl s_server/s_client: {len(openssl_steps)} steps checked, {len(openssl_errors)} failed")
        print(f"writes for the root rotation: {dict(writes)}")
        print(f"intermediate rotation: leaves re-issued after {intermediate_seconds:.1f} s; writes "
              f"{dict(intermediate_writes)}")
        assert report.failed == 0, report.errors
        assert not server.failed, server.failed[:5]
        assert report.rate >= 20, str(report)
        assert not openssl_errors, openssl_errors[:2]
        assert len(openssl_steps) >= 5  # initial, both roots, new chain, old root dropped, new intermediate

        # every certificate chains to the new root, checked by openssl too
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(api.get(f"/api/v1/namespaces/{APP}/configmaps/root-trust")["data"]["ca.crt"].encode())
        for name in ("intermediate-ca", "server-tls", "client-tls"):
            chain = tmp_path / f"{name}.pem"
            chain.write_bytes(_secret(api, APP, name)["tls.crt"])
            subprocess.run(["openssl", "verify", "-CAfile", str(bundle), "-untrusted", str(chain), str(chain)],
                           check=True, capture_output=True)
        # the re-issuance's reason, in the events
        events = json.loads(run_kubectl(private, "get", "events", "-n", APP, "-o", "json").stdout)["items"]
        changed = {e["involvedObject"]["name"] for e in events
                   if e["reason"] == "Issuing" and e.get("action") == "IssuerChanged"}
        assert changed >= {"intermediate-ca", "server", "client"}, changed
        for name in ("server", "client"):  # re-issued last by the intermediate's rotation, for the same reason
            status = json.loads(run_kubectl(private, "get", "certificate", "-n", APP, name, "-o", "json").stdout)
            issuing = next(c for c in status["status"]["conditions"] if c["type"] == "Issuing")
            assert "trigger IssuerChanged" in issuing["message"], issuing
        status = json.loads(run_kubectl(private, "get", "bundle", "root-trust", "-o", "json").stdout)["status"]
        assert [c["fingerprint"] for c in status["issuerCAs"]] == [fp(new_root)]
    finally:
        op.stop()


def _secret(api: Api, namespace: str, name: str) -> dict[str, bytes]:
    import base64
    obj = api.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def _pem():
    from cryptography.hazmat.primitives import serialization
    return serialization.Encoding.PEM


def _spki():
    from cryptography.hazmat.primitives import serialization
    return serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
