"""Suite-wide fixtures: one real control plane per session, a namespace per test.

The control plane is etcd + kube-apiserver built from source (make tools), started on
127.0.0.1 by hack/localcluster.py. A missing binary or a failed start errors every
test that needs it, loudly: nothing is skipped.
"""
from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import localcluster

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "crds"
OPERATOR_NAMESPACE = "certmint-system"


@contextlib.contextmanager
def control_plane(directory: Path):
    """A started control plane with certmint's CRDs installed, stopped on exit."""
    c = localcluster.start(directory, tie_to_parent=True)
    try:
        run_kubectl(c, "apply", "--server-side", "-f", str(CRDS))
        run_kubectl(c, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        run_kubectl(c, "create", "namespace", OPERATOR_NAMESPACE)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def api_writes(cluster) -> Counter:
    """Write requests the API server has served, by resource, from its own apiserver_request_total.

    Leases are left out: the API server renews its own identity lease every few seconds.
    """
    writes: Counter = Counter()
    for line in cluster.get("/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") != "leases":
            resource = labels["resource"] + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            writes[resource] += int(float(line.rsplit(" ", 1)[1]))
    return writes


WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"}


def run_kubectl(cluster, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([localcluster.binary("kubectl"), *args], input=input, capture_output=True, text=True,
                            env=cluster.env(), timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def kubectl(cluster):
    def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120):
        return run_kubectl(cluster, *args, input=input, check=check, timeout=timeout)
    return kubectl


@pytest.fixture
def namespace(kubectl, request) -> str:
    """A fresh namespace per test. It is not deleted: the control plane has no namespace controller."""
    base = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")
    name = f"{''.join(ch for ch in base if ch.isalnum() or ch == '-')[:40].strip('-')}-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    return name


@dataclass
class OperatorProcess:
    proc: subprocess.Popen
    metrics_url: str
    log: Path

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url + "/metrics", timeout=10) as r:
            return r.read().decode()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_operator(cluster, log: Path, *extra: str, wait_ready: bool = True,
                   kubeconfig: Path | None = None, env: dict[str, str | None] | None = None) -> OperatorProcess:
    """`certmint operator` as a real process against the cluster, as a user runs it.

    env changes the process environment (which has KUBECONFIG set to the cluster's): a value
    of None removes the variable."""
    environment = {**cluster.env(), "PYTHONUNBUFFERED": "1"}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    port = localcluster.free_port()
    args = [sys.executable, "-m", "certmint.cli", "operator", "--kubeconfig", str(kubeconfig or cluster.kubeconfig),
            "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
            "--cluster-resource-namespace", OPERATOR_NAMESPACE, *extra]
    out = open(log, "ab")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=environment, preexec_fn=localcluster._die_with_parent)
    out.close()
    op = OperatorProcess(proc, f"http://127.0.0.1:{port}", log)
    if wait_ready:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"operator exited with {proc.returncode}:\n{op.log_text()[-4000:]}")
            try:
                with urllib.request.urlopen(op.metrics_url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return op
            except OSError:
                pass
            time.sleep(0.2)
        op.stop()
        raise AssertionError(f"operator not ready within 60 s:\n{op.log_text()[-4000:]}")
    return op


@pytest.fixture(scope="session")
def operator(cluster, tmp_path_factory):
    """One operator for the session, watching all namespaces."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = start_operator(cluster, log)
    yield op
    op.stop()
    if op.proc.returncode not in (0, -15):
        print(f"operator exited with {op.proc.returncode}; log tail:\n{op.log_text()[-4000:]}", file=sys.stderr)


def pytest_runtest_makereport(item, call):
    """On an e2e failure, attach the session operator's log tail: it usually says why."""
    if call.when == "call" and call.excinfo is not None and "operator" in item.fixturenames:
        op = item.funcargs.get("operator")
        if op is not None:
            item.add_report_section("call", "operator log", op.log_text()[-6000:])


# --- helpers the e2e tests share -----------------------------------------------------------------


def get_json(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def secret_data(kubectl, namespace: str, name: str) -> dict[str, bytes]:
    secret = get_json(kubectl, "secret", "-n", namespace, name, "--show-managed-fields")
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    record_issued_certificates(secret, data, f"{namespace}/{name}")
    return data


# --- every certificate the operator issues is linted -------------------------------------------------
# secret_data records the tls.crt and ca.crt the operator wrote (by managedFields: not what a test
# planted or tampered with), and the end of the session lints each distinct certificate with
# pkilint and zlint (tests/pkilint_zlint.py). Any ERROR finding fails the run.

OPERATOR_FIELD_MANAGER = "certmint"
ISSUED_CERTIFICATES: dict[bytes, str] = {}  # DER -> the first Secret key it was read from


def record_issued_certificates(secret: dict, data: dict[str, bytes], where: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    owned: set[str] = set()
    for entry in secret.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == OPERATOR_FIELD_MANAGER:
            owned |= set(((entry.get("fieldsV1") or {}).get("f:data") or {}))
    for key in ("tls.crt", "ca.crt"):
        if f"f:{key}" in owned and data.get(key):
            for certificate in x509.load_pem_x509_certificates(data[key]):
                ISSUED_CERTIFICATES.setdefault(certificate.public_bytes(serialization.Encoding.DER),
                                               f"{where} {key} ({certificate.subject.rfc4514_string()})")


_LINT_REPORT: list[str] = []


def pytest_sessionfinish(session, exitstatus):
    if not ISSUED_CERTIFICATES:
        return
    from pkilint_zlint import lint_certificate

    linted = [(where, lint_certificate(der)) for der, where in ISSUED_CERTIFICATES.items()]
    failures = [(where, findings) for where, findings in linted if findings]
    _LINT_REPORT.append(f"pkilint and zlint: {len(linted)} issued certificates linted, "
                        f"{sum(len(findings) for _, findings in failures)} ERROR findings")
    for where, findings in failures:
        _LINT_REPORT.extend(f"  {where}: {finding}" for finding in findings)
    if failures:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _LINT_REPORT:
        terminalreporter.section("certificate lint")
        for line in _LINT_REPORT:
            terminalreporter.write_line(line)


def write_secret_files(kubectl, namespace: str, name: str, directory: Path) -> dict[str, Path]:
    """The Secret's keys as files, the way a pod sees a mounted Secret."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, value in secret_data(kubectl, namespace, name).items():
        path = directory / key
        path.write_bytes(value)
        files[key] = path
    return files


def openssl(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["openssl", *args], input=input, capture_output=True)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{result.stderr.decode(errors='replace')}")
    return result


def apply(kubectl, namespace: str, manifest: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def wait_for_events(kubectl, namespace: str | None, satisfied, timeout: float = 20) -> list[dict]:
    """Events (of one namespace, or all with None) once satisfied(events) holds: the operator records
    events in the background, so they may land a moment after the status they accompany."""
    scope = ("-n", namespace) if namespace else ("-A",)
    deadline = time.monotonic() + timeout
    while True:
        events = json.loads(kubectl("get", "events", *scope, "-o", "json").stdout)["items"]
        if satisfied(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"expected events did not arrive within {timeout} s; events: "
                                 + json.dumps([(e["involvedObject"]["name"], e["reason"], e.get("action"))
                                               for e in events]))
        time.sleep(0.2)


def wait_ready(kubectl, namespace: str, kind_name: str, timeout: str = "60s") -> None:
    kubectl("wait", "-n", namespace, "--for=condition=Ready", f"--timeout={timeout}", kind_name, timeout=200)
