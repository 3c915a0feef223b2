"""The operator rides out control-plane failures without a restart: the API server killed and
started again, etcd frozen, watches cut while the operator itself was paused. On a control plane
of its own, since these tests kill and freeze it.

What a user sees is checked: certificates Ready, Secrets re-created, the metrics of every watched
namespace. The recovery times are printed; the bounds are generous convergence limits, not
performance targets (make bench --only recovery measures them)."""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import time

import pytest
from conftest import control_plane, openssl, run_kubectl, start_operator
from manifests import SELF_SIGNED_ISSUER, documents

RECOVERY_BOUND = 60.0  # seconds; the operator should need a few


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("recovery-cluster")) as c:
        yield c


def kubectl(cluster, *args, **kw):
    return run_kubectl(cluster, *args, **kw)


def certificates(namespace: str, n: int, prefix: str = "c") -> str:
    docs = [SELF_SIGNED_ISSUER]
    for i in range(n):
        docs.append(f"apiVersion: certmint.io/v1\nkind: Certificate\nmetadata: {{name: {prefix}{i}}}\n"
                    f"spec: {{secretName: {prefix}{i}, commonName: {prefix}{i}.{namespace}.test, "
                    "privateKey: {algorithm: ECDSA}, issuerRef: {name: self}}")
    return documents(*docs)


def list_json(cluster, path: str) -> list[dict]:
    """A direct GET (no kubectl process), quick enough to poll while issuance runs."""
    return json.loads(cluster.get(path, timeout=10))["items"]


def ready_count(cluster, namespace: str) -> int:
    items = list_json(cluster, f"/apis/certmint.io/v1/namespaces/{namespace}/certificates")
    return sum(1 for c in items for cond in (c.get("status") or {}).get("conditions") or []
               if cond["type"] == "Ready" and cond["status"] == "True")


def wait_ready(cluster, namespace: str, n: int, timeout: float, op=None) -> float:
    """Until N certificates of NAMESPACE are Ready; returns the monotonic time they were."""
    deadline = time.monotonic() + timeout
    count = 0
    while True:
        try:
            count = ready_count(cluster, namespace)
        except OSError:
            count = -1  # the API server is still coming back: not an answer yet
        if count >= n:
            return time.monotonic()
        if op is not None:
            assert op.proc.poll() is None, f"operator exited with {op.proc.returncode}:\n{op.log_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{count}/{n} Ready in {namespace} after {timeout:.0f} s" + (
            f"; operator log tail:\n{op.log_text()[-3000:]}" if op is not None else "")
        time.sleep(0.2)


def start_bulk_issuance(cluster, namespace: str, n: int, log, started: int = 10):
    """N certificates waiting to be issued, then the operator; returns it, and how many certificates
    were Ready, once at least STARTED are: the failure comes in the middle of the issuance, not
    while kubectl is still creating the certificates."""
    kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=certificates(namespace, n))
    op = start_operator(cluster, log, "--namespace", namespace, wait_ready=False)
    deadline = time.monotonic() + 120
    while (count := ready_count(cluster, namespace)) < started:
        assert op.proc.poll() is None, f"operator exited with {op.proc.returncode}:\n{op.log_text()[-3000:]}"
        if time.monotonic() > deadline:
            op.stop()
            raise AssertionError(f"issuance did not get going: {count} Ready")
        time.sleep(0.02)
    return op, count


def assert_issued_once_with_matching_keys(cluster, namespace: str, n: int) -> None:
    items = list_json(cluster, f"/apis/certmint.io/v1/namespaces/{namespace}/certificates")
    revisions = {c["metadata"]["name"]: (c.get("status") or {}).get("revision") for c in items}
    twice = {name: r for name, r in revisions.items() if r != 1}
    assert not twice, f"certificates issued more than once (or without a revision): {twice}"
    secrets = list_json(cluster, f"/api/v1/namespaces/{namespace}/secrets?labelSelector=certmint.io/certificate-name")
    assert len(secrets) == n, f"{len(secrets)} Secrets for {n} certificates"
    for s in secrets:
        crt, key = (base64.b64decode(s["data"][k]) for k in ("tls.crt", "tls.key"))
        assert openssl("pkey", "-pubout", input=key).stdout == \
            openssl("x509", "-noout", "-pubkey", input=crt).stdout, f"key and certificate differ in {s['metadata']}"


def watches(cluster, resource: str) -> int:
    """Watches of RESOURCE the API server is serving now, by its own apiserver_longrunning_requests."""
    total = 0
    found = False
    for line in cluster.get("/metrics").splitlines():
        if line.startswith("apiserver_longrunning_requests{"):
            found = True
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            if labels.get("verb") == "WATCH" and labels.get("resource") == resource:
                total += int(float(line.rsplit(" ", 1)[1]))
    assert found, "the API server exports no apiserver_longrunning_requests: cannot tell when watches resume"
    return total


def wait_watching(cluster, resource: str, n: int, timeout: float = RECOVERY_BOUND) -> None:
    """Until the API server serves N watches of RESOURCE: the operator has listed again and resumed."""
    deadline = time.monotonic() + timeout
    while (count := watches(cluster, resource)) < n:
        assert time.monotonic() < deadline, f"{count} watches of {resource} after {timeout:.0f} s, expected {n}"
        time.sleep(0.2)


def expiration_namespaces(op) -> set[str]:
    namespaces = set()
    for line in op.metrics().splitlines():
        if line.startswith("certmanager_certificate_expiration_timestamp_seconds{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            namespaces.add(labels.get("namespace"))
    return namespaces


def wait_secret(cluster, namespace: str, name: str, timeout: float, op) -> float:
    deadline = time.monotonic() + timeout
    while True:
        got = kubectl(cluster, "get", "secret", "-n", namespace, name, "-o", "jsonpath={.data.tls\\.crt}",
                      check=False)
        if got.returncode == 0 and got.stdout:
            return time.monotonic()
        assert op.proc.poll() is None, f"operator exited with {op.proc.returncode}:\n{op.log_text()[-3000:]}"
        assert time.monotonic() < deadline, (f"Secret {namespace}/{name} not re-created within {timeout:.0f} s; "
                                             f"operator log tail:\n{op.log_text()[-3000:]}")
        time.sleep(0.5)


def test_every_watched_namespace_survives_an_api_server_restart(private, tmp_path):
    a, b = "recovery-a", "recovery-b"
    for ns in (a, b):
        kubectl(private, "create", "namespace", ns)
    op = start_operator(private, tmp_path / "operator.log", "--namespace", a, "--namespace", b)
    try:
        for ns in (a, b):
            kubectl(private, "apply", "-n", ns, "-f", "-", input=certificates(ns, 3))
        for ns in (a, b):
            wait_ready(private, ns, 3, RECOVERY_BOUND, op)
        deadline = time.monotonic() + 30
        while expiration_namespaces(op) < {a, b}:
            assert time.monotonic() < deadline, f"series before the restart: {expiration_namespaces(op)}"
            time.sleep(0.5)

        # The operator's watches, however it arranges them, come back after the restart: once the
        # API server serves as many as before, the operator has listed everything again.
        before = {resource: watches(private, resource) for resource in ("certificates", "secrets")}
        assert before["certificates"] >= 1, "the operator does not watch Certificates"
        print(f"\nAPI server down for {private.restart_apiserver():.1f} s; watches before: {before}")
        for resource, count in before.items():
            wait_watching(private, resource, count)
        time.sleep(2)  # let the listings be applied
        for _ in range(5):
            assert expiration_namespaces(op) >= {a, b}, \
                f"certificate series after the restart only for {expiration_namespaces(op)}"
            time.sleep(1)

        # and both namespaces still renew: a deleted Secret comes back
        for ns in (a, b):
            kubectl(private, "delete", "secret", "-n", ns, "c1")
        for ns in (a, b):
            wait_secret(private, ns, "c1", RECOVERY_BOUND, op)
        assert op.proc.poll() is None, "the operator restarted"
    finally:
        op.stop()


def test_a_secret_deleted_while_the_watch_was_down_is_recreated(private, tmp_path):
    ns = "recovery-gap"
    kubectl(private, "create", "namespace", ns)
    op = start_operator(private, tmp_path / "operator.log")
    try:
        kubectl(private, "apply", "-n", ns, "-f", "-", input=certificates(ns, 3))
        wait_ready(private, ns, 3, RECOVERY_BOUND, op)
        before = base64.b64decode(json.loads(private.get(f"/api/v1/namespaces/{ns}/secrets/c0"))["data"]["tls.crt"])

        # The operator sees none of this: its watches break while it is paused, and the deletion
        # happens before it can watch again, so only its next listing can tell.
        os.kill(op.proc.pid, signal.SIGSTOP)
        try:
            private.restart_apiserver()
            kubectl(private, "delete", "secret", "-n", ns, "c0")
        finally:
            os.kill(op.proc.pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_secret(private, ns, "c0", RECOVERY_BOUND, op)
        print(f"\nSecret re-created {time.monotonic() - resumed:.1f} s after the operator resumed")
        after = base64.b64decode(json.loads(private.get(f"/api/v1/namespaces/{ns}/secrets/c0"))["data"]["tls.crt"])
        assert after != before, "the re-created Secret holds a new certificate"
        assert op.proc.poll() is None, "the operator restarted"
    finally:
        op.stop()


def test_bulk_issuance_recovers_from_an_api_server_restart(private, tmp_path):
    ns, n = "recovery-apiserver", 150
    kubectl(private, "create", "namespace", ns)
    op, ready = start_bulk_issuance(private, ns, n, tmp_path / "operator.log")
    try:
        assert ready < n, "every certificate was Ready before the API server was killed: nothing was interrupted"
        down = private.restart_apiserver()
        back = time.monotonic()  # /readyz answers again
        done = wait_ready(private, ns, n, RECOVERY_BOUND, op)
        # The API server may serve requests a moment before /readyz says so: some certificates
        # can be Ready by then, and the figure can be near zero.
        print(f"\nAPI server killed with {ready}/{n} Ready, /readyz failing for {down:.1f} s; "
              f"all {n} Ready {done - back:.1f} s after /readyz answered again ({done - back + down:.1f} s "
              "after the kill)")
        assert_issued_once_with_matching_keys(private, ns, n)
        assert op.proc.poll() is None, "the operator restarted"
    finally:
        op.stop()


def test_bulk_issuance_recovers_from_a_frozen_etcd(private, tmp_path):
    ns, n, frozen_for = "recovery-etcd", 100, 15.0
    kubectl(private, "create", "namespace", ns)
    op, ready = start_bulk_issuance(private, ns, n, tmp_path / "operator.log")
    try:
        assert ready < n, "every certificate was Ready before etcd was frozen: nothing was interrupted"
        private.freeze_etcd()
        try:
            time.sleep(frozen_for)
        finally:
            private.thaw_etcd()
        thawed = time.monotonic()
        done = wait_ready(private, ns, n, RECOVERY_BOUND, op)
        print(f"\netcd frozen {frozen_for:.0f} s with {ready}/{n} Ready; "
              f"all {n} Ready {done - thawed:.1f} s after it resumed")
        assert_issued_once_with_matching_keys(private, ns, n)
        assert op.proc.poll() is None, "the operator restarted"
    finally:
        op.stop()
