"""An embedded local control plane: a real etcd and kube-apiserver on 127.0.0.1.

It is what `make run`, `make cluster` and the test suite use when no cluster is
configured. The binaries are built from source by hack/build-tools.sh; nothing here
downloads anything. Authentication is by client certificates minted at start, and
authorization is RBAC, so permissions behave as on a real cluster.

    python hack/localcluster.py up [--dir DIR]     start (idempotent), print the kubeconfig export
    python hack/localcluster.py down [--dir DIR]   stop and remove all data

For failure tests a Cluster can also kill and restart its kube-apiserver (same port,
certificates and etcd) and freeze and thaw etcd.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from certmint.pki import CASigner, encode_private_key, generate_key, issue
from certmint.pki.types import ECDSA, PKCS8, RSA, CertificateTemplate, KeySpec, Subject
from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO / ".cache" / "cluster"
DEFAULT_BIN_DIR = REPO / ".cache" / "bin"
STATE_FILE = "state.json"
START_TIMEOUT = 120.0


class ClusterError(RuntimeError):
    """The control plane could not be started; the message says why and where the logs are."""


def binary(name: str) -> str:
    """Path of a control-plane binary: $CERTMINT_BIN_DIR, then .cache/bin, then PATH."""
    for directory in (os.environ.get("CERTMINT_BIN_DIR"), str(DEFAULT_BIN_DIR)):
        if directory and os.access(os.path.join(directory, name), os.X_OK):
            return os.path.join(directory, name)
    found = shutil.which(name)
    if not found:
        raise ClusterError(f"{name} not found: run `make tools` (hack/build-tools.sh) to build it")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the process that started it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Cluster:
    """A running local control plane, described by the files in its directory."""

    directory: Path
    server: str
    pids: list[int]  # etcd, then kube-apiserver
    # how each process was started, so it can be started again the same way
    commands: dict[str, list[str]] = field(default_factory=dict)
    tie_to_parent: bool = False

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    def env(self) -> dict[str, str]:
        """The environment for a process that talks to this cluster (kubectl, the operator)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def ssl_context(self) -> ssl.SSLContext:
        """An admin TLS context for raw HTTPS requests (e.g. reading /metrics)."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def get(self, path: str, timeout: float = 10.0) -> str:
        with urllib.request.urlopen(self.server + path, context=self.ssl_context(), timeout=timeout) as r:
            return r.read().decode()

    def ready(self) -> bool:
        try:
            return self.get("/readyz", timeout=3) == "ok"
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the processes (apiserver first, so it doesn't outlive its storage) and wait for them."""
        for pid in self.pids:  # a frozen process would only take its SIGTERM once thawed
            _signal(pid, signal.SIGCONT)
        for pid in reversed(self.pids):
            _terminate(pid)
        self.pids = []

    # --- fault injection, for tests and benchmarks ------------------------------------------

    @property
    def etcd_pid(self) -> int:
        return self.pids[0]

    @property
    def apiserver_pid(self) -> int | None:
        return self.pids[1] if len(self.pids) > 1 else None

    def stop_apiserver(self, kill: bool = True) -> None:
        """Stop kube-apiserver, by default with SIGKILL as in a crash (no graceful drain of its
        connections), and wait until it is gone. etcd keeps running with all the data."""
        pid = self.apiserver_pid
        if pid is None:
            return
        if kill:
            _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            _terminate(pid)
        del self.pids[1:]
        self._record_state()

    def start_apiserver(self, timeout: float = START_TIMEOUT) -> None:
        """Start kube-apiserver again with the same port, certificates and etcd, and wait for /readyz."""
        if self.apiserver_pid is not None and _alive(self.apiserver_pid):
            raise ClusterError("kube-apiserver is already running")
        if "kube-apiserver" not in self.commands:
            raise ClusterError("this cluster was not started by this module: no kube-apiserver command recorded")
        log = self.directory / "logs" / "kube-apiserver.log"
        deadline = time.monotonic() + timeout
        while True:
            apiserver = _spawn(self.commands["kube-apiserver"], log, self.tie_to_parent)
            self.pids[1:] = [apiserver.pid]
            self._record_state()
            try:
                _wait("kube-apiserver", self.ready, apiserver, log, timeout=max(1.0, deadline - time.monotonic()))
                return
            except ClusterError:
                # The port the killed server listened on can take a moment to be free again;
                # anything else (or running out of time) is a real failure.
                if apiserver.poll() is None or time.monotonic() > deadline or \
                        "address already in use" not in log.read_text(errors="replace")[-2000:]:
                    raise
                time.sleep(0.5)

    def restart_apiserver(self, kill: bool = True) -> float:
        """Kill (or stop) and start kube-apiserver; returns the seconds it was unavailable."""
        stopped = time.monotonic()
        self.stop_apiserver(kill=kill)
        self.start_apiserver()
        return time.monotonic() - stopped

    def freeze_etcd(self) -> None:
        """SIGSTOP etcd: requests hang rather than fail, as with a stalled disk or a partition."""
        _signal(self.etcd_pid, signal.SIGSTOP)

    def thaw_etcd(self) -> None:
        _signal(self.etcd_pid, signal.SIGCONT)

    def _record_state(self) -> None:
        (self.directory / STATE_FILE).write_text(json.dumps(
            {"server": self.server, "pids": self.pids, "commands": self.commands}))


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, grace: float = 10.0) -> None:
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _write_pem(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _mint_pki(pki: Path) -> None:
    """Cluster CA, apiserver serving certificate, admin client certificate, service-account keys."""
    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    year = dt.timedelta(days=365)
    ec = KeySpec(ECDSA, 256, PKCS8)

    ca_key = generate_key(ec)
    ca_cert = issue(
        CertificateTemplate(subject=Subject(common_name="certmint-local-ca"), is_ca=True,
                            usages=("cert sign", "crl sign", "digital signature"), duration=year, key=ec),
        ca_key, None, now).certificate
    ca = CASigner(ca_cert, ca_key, ())

    def leaf(name: str, template: CertificateTemplate) -> None:
        key = generate_key(ec)
        cert = issue(template, key, ca, now).certificate
        _write_pem(pki / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        _write_pem(pki / f"{name}.key", encode_private_key(key, PKCS8), private=True)

    leaf("apiserver", CertificateTemplate(
        subject=Subject(common_name="kube-apiserver"), duration=year, key=ec,
        dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        ip_addresses=("127.0.0.1", "10.0.0.1"), usages=("digital signature", "server auth")))
    leaf("admin", CertificateTemplate(
        subject=Subject(common_name="admin", organizations=("system:masters",)), duration=year, key=ec,
        usages=("digital signature", "client auth")))
    _write_pem(pki / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_pem(pki / "ca.key", encode_private_key(ca_key, PKCS8), private=True)

    sa_key = generate_key(KeySpec(RSA, 2048, PKCS8))
    _write_pem(pki / "sa.key", encode_private_key(sa_key, PKCS8), private=True)
    _write_pem(pki / "sa.pub", sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _kubeconfig(server: str, pki: Path) -> str:
    import base64

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "certmint-local", "cluster": {
            "server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")}}],
        "contexts": [{"name": "certmint-local", "context": {"cluster": "certmint-local", "user": "admin"}}],
        "current-context": "certmint-local",
    }
    return json.dumps(config, indent=2)  # JSON is valid YAML, and kubectl reads it


def _spawn(args: list[str], log: Path, tie_to_parent: bool) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent if tie_to_parent else None)


def _wait(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise ClusterError(f"{what} exited with code {proc.returncode}; last log lines ({log}):\n{tail}")
        if check():
            return
        time.sleep(0.2)
    raise ClusterError(f"{what} was not ready after {timeout:.0f} s; see {log}")


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return json.loads(r.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


def start(directory: Path = DEFAULT_DIR, tie_to_parent: bool = False) -> Cluster:
    """Start etcd and kube-apiserver with fresh data in DIRECTORY and wait until /readyz is ok.

    With tie_to_parent the processes are killed by the kernel when the caller dies, so a
    test session never leaves a control plane behind, even on SIGKILL.
    """
    etcd_bin, apiserver_bin = binary("etcd"), binary("kube-apiserver")
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "logs").mkdir(parents=True)
    pki = directory / "pki"
    _mint_pki(pki)

    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd_log = directory / "logs" / "etcd.log"
    etcd = _spawn([
        etcd_bin, "--name=local", f"--data-dir={directory / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=local=http://127.0.0.1:{peer_port}",
        "--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=8589934592",
    ], etcd_log, tie_to_parent)
    cluster = Cluster(directory, f"https://127.0.0.1:{api_port}", [etcd.pid], tie_to_parent=tie_to_parent)
    cluster.commands["etcd"] = [str(a) for a in etcd.args]
    try:
        _wait("etcd", lambda: _etcd_healthy(etcd_url), etcd, etcd_log)
        api_log = directory / "logs" / "kube-apiserver.log"
        cluster.commands["kube-apiserver"] = [
            apiserver_bin, f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false", "--profiling=false",
            f"--cert-dir={directory / 'apiserver-certs'}", "--v=0",
        ]
        apiserver = _spawn(cluster.commands["kube-apiserver"], api_log, tie_to_parent)
        cluster.pids.append(apiserver.pid)
        (directory / "kubeconfig").write_text(_kubeconfig(cluster.server, pki))
        _wait("kube-apiserver", cluster.ready, apiserver, api_log)
    except BaseException:
        cluster.stop()
        raise
    cluster._record_state()
    return cluster


def running(directory: Path = DEFAULT_DIR) -> Cluster | None:
    """The cluster recorded in DIRECTORY, if its processes are alive and it answers /readyz."""
    try:
        state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    cluster = Cluster(directory, state["server"], state["pids"], state.get("commands") or {})
    if len(cluster.pids) == 2 and all(_alive(pid) for pid in cluster.pids) and cluster.ready():
        return cluster
    return None


def up(directory: Path = DEFAULT_DIR) -> Cluster:
    """Idempotent start for interactive use: reuse a healthy cluster, else start anew."""
    cluster = running(directory)
    if cluster:
        return cluster
    stale = _recorded_pids(directory)
    for pid in reversed(stale):
        _terminate(pid)
    return start(directory)


def _recorded_pids(directory: Path) -> list[int]:
    try:
        return json.loads((directory / STATE_FILE).read_text())["pids"]
    except (OSError, ValueError, KeyError):
        return []


def down(directory: Path = DEFAULT_DIR) -> None:
    for pid in reversed(_recorded_pids(directory)):
        _terminate(pid)
    shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python hack/localcluster.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "down":
        down(args.dir)
        print(f"local control plane stopped; {args.dir} removed")
        return 0
    started = time.monotonic()
    try:
        cluster = up(args.dir)
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"local control plane ready at {cluster.server} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    print(f"export KUBECONFIG={cluster.kubeconfig.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
