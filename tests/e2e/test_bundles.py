"""Bundles on the real API server: targets in every matching namespace and nowhere else, validation
that keeps the last good content, cleanup without a garbage collector, and the 1,000-namespace fan-out
(time and writes, and no write on restart) on a control plane of its own."""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from certmint.tls.testing import TestCA
from conftest import OPERATOR_NAMESPACE, api_writes, control_plane, get_json, run_kubectl, start_operator, wait_for_events


def wait_until(check, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


def configmap(kubectl, namespace: str, name: str) -> dict | None:
    result = kubectl("get", "configmap", "-n", namespace, name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def synced(kubectl, name: str) -> dict:
    status = get_json(kubectl, "bundle", name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Synced"), {})


def pem_subjects(text: str) -> list[str]:
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(text.encode())]


def selector_label() -> str:
    """A fresh label value; the letters in front keep YAML from reading it as a number (12345678, 1e345678)."""
    return f"sel-{uuid.uuid4().hex[:8]}"


def bundle_manifest(name: str, label: str, sources: str, target: str = "{configMap: {key: ca.crt}}") -> str:
    return (f"apiVersion: certmint.io/v1\nkind: Bundle\nmetadata: {{name: {name}}}\n"
            f"spec:\n  sources: {sources}\n  target: {target}\n"
            f"  namespaceSelector: {{matchLabels: {{bundle-test: {label}}}}}\n")


def test_bundle_reaches_matching_namespaces_only_and_follows_their_labels(kubectl, operator):
    label, name = selector_label(), f"trust-{uuid.uuid4().hex[:6]}"
    a, b = TestCA("Bundle Root A"), TestCA("Bundle Root B")
    kubectl("create", "secret", "generic", f"{name}-src", "-n", OPERATOR_NAMESPACE,
            f"--from-literal=ca.crt={b.cert_pem.decode()}")
    spaces = [f"{name}-{i}" for i in range(3)]
    for ns in spaces:
        kubectl("create", "namespace", ns)
    for ns in spaces[:2]:
        kubectl("label", "namespace", ns, f"bundle-test={label}")
    inline = json.dumps(a.cert_pem.decode() + a.cert_pem.decode())  # a duplicate: written once
    kubectl("apply", "-f", "-", input=bundle_manifest(
        name, label, f"[{{inLine: {inline}}}, {{secret: {{name: {name}-src, key: ca.crt}}}}, {{useDefaultCAs: true}}]",
        "{configMap: {key: ca.crt}, secret: {key: ca.crt}, additionalFormats: {pkcs12: {key: truststore.p12}}}"))

    cm = wait_until(lambda: configmap(kubectl, spaces[0], name), what="the target ConfigMap")
    subjects = pem_subjects(cm["data"]["ca.crt"])
    assert subjects.count("CN=Bundle Root A") == 1 and "CN=Bundle Root B" in subjects
    assert len(subjects) > 100  # certifi's public CAs
    assert cm["metadata"]["labels"]["certmint.io/bundle"] == name
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "Bundle"
    store = pkcs12.load_pkcs12(base64.b64decode(cm["binaryData"]["truststore.p12"]), None)
    assert len(store.additional_certs) == len(subjects)
    secret = get_json(kubectl, "secret", "-n", spaces[0], name)
    assert base64.b64decode(secret["data"]["ca.crt"]).decode() == cm["data"]["ca.crt"]
    wait_until(lambda: configmap(kubectl, spaces[1], name), what="the second target")
    assert configmap(kubectl, spaces[2], name) is None  # not selected

    wait_until(lambda: synced(kubectl, name).get("status") == "True", what="Synced")
    status = get_json(kubectl, "bundle", name)["status"]
    assert status["namespaces"] == 2 and status["certificates"] == len(subjects)
    columns = kubectl("get", "mintbundle", name).stdout
    assert "SYNCED" in columns and "True" in columns

    # a namespace gains the label: the target appears from the namespace watch, at once
    started = time.monotonic()
    kubectl("label", "namespace", spaces[2], f"bundle-test={label}")
    wait_until(lambda: configmap(kubectl, spaces[2], name), timeout=10, interval=0.05, what="the new target")
    print(f"\nlabelled namespace got the bundle in {time.monotonic() - started:.2f} s")
    # a brand-new namespace created with the label
    fresh = f"{name}-new"
    kubectl("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {fresh}, labels: "
                                       f"{{bundle-test: {label}}}}}\n")
    wait_until(lambda: configmap(kubectl, fresh, name), timeout=10, interval=0.05, what="the target in a new namespace")

    # a namespace loses the label: its targets go (ConfigMap and Secret)
    kubectl("label", "namespace", spaces[0], "bundle-test-")
    wait_until(lambda: configmap(kubectl, spaces[0], name) is None, what="the target's removal")
    assert kubectl("get", "secret", "-n", spaces[0], name, check=False).returncode != 0
    wait_until(lambda: get_json(kubectl, "bundle", name)["status"]["namespaces"] == 3, what="3 namespaces")

    # someone edits a target: put back
    kubectl("patch", "configmap", "-n", spaces[1], name, "--type=merge", "-p", '{"data": {"ca.crt": "tampered"}}')
    wait_until(lambda: (configmap(kubectl, spaces[1], name) or {}).get("data", {}).get("ca.crt") == cm["data"]["ca.crt"],
               what="the tampered target restored")

    # a namespace being deleted (it stays Terminating here: no namespace controller) takes no new
    # content and does not hold the others back
    kubectl("delete", "namespace", fresh, "--wait=false")
    c = TestCA("Bundle Root C")
    kubectl("patch", "bundle", name, "--type=json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/sources/-", "value": {"inLine": c.cert_pem.decode()}}]))
    for ns in spaces[1:]:
        wait_until(lambda ns=ns: "CN=Bundle Root C" in pem_subjects(configmap(kubectl, ns, name)["data"]["ca.crt"]),
                   what=f"the new content in {ns}")
    wait_until(lambda: get_json(kubectl, "bundle", name)["status"].get("namespaces") == 2, what="2 namespaces")
    assert synced(kubectl, name)["status"] == "True"

    # the Bundle is deleted: no target is left behind (this control plane runs no garbage collector)
    kubectl("delete", "bundle", name)
    for ns in [*spaces, fresh]:
        wait_until(lambda ns=ns: configmap(kubectl, ns, name) is None, what=f"cleanup in {ns}")
        assert kubectl("get", "secret", "-n", ns, name, check=False).returncode != 0


def test_invalid_sources_keep_the_last_good_content(kubectl, operator):
    label, name = selector_label(), f"keep-{uuid.uuid4().hex[:6]}"
    ca = TestCA("Keep Root")
    ns = f"{name}-ns"
    kubectl("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: "
                                       f"{{bundle-test: {label}}}}}\n")
    kubectl("create", "configmap", f"{name}-src", "-n", OPERATOR_NAMESPACE, f"--from-literal=roots={ca.cert_pem.decode()}")
    kubectl("apply", "-f", "-", input=bundle_manifest(name, label, f"[{{configMap: {{name: {name}-src, key: roots}}}}]"))
    good = wait_until(lambda: configmap(kubectl, ns, name), what="the target")["data"]["ca.crt"]
    assert pem_subjects(good) == ["CN=Keep Root"]

    # not PEM
    kubectl("patch", "configmap", "-n", OPERATOR_NAMESPACE, f"{name}-src", "--type=merge", "-p",
            '{"data": {"roots": "garbage"}}')
    kubectl("annotate", "bundle", name, f"poke={uuid.uuid4().hex}")  # ConfigMap sources are re-read on a change
    wait_until(lambda: synced(kubectl, name).get("reason") == "InvalidPEM", what="InvalidPEM")
    assert synced(kubectl, name)["status"] == "False"
    assert "keep their previous content" in synced(kubectl, name)["message"]
    wait_for_events(kubectl, "default", lambda events: any(
        e["reason"] == "InvalidPEM" and e["involvedObject"]["name"] == name for e in events))
    assert configmap(kubectl, ns, name)["data"]["ca.crt"] == good

    # a key that does not exist
    kubectl("patch", "bundle", name, "--type=merge", "-p",
            json.dumps({"spec": {"sources": [{"configMap": {"name": f"{name}-src", "key": "nope"}}]}}))
    wait_until(lambda: synced(kubectl, name).get("reason") == "KeyNotFound", what="KeyNotFound")
    assert configmap(kubectl, ns, name)["data"]["ca.crt"] == good

    # nothing valid left: an empty trust store is never written
    expired = TestCA("Expired Root", days=0)
    kubectl("patch", "bundle", name, "--type=merge", "-p",
            json.dumps({"spec": {"sources": [{"inLine": expired.cert_pem.decode()}]}}))
    wait_until(lambda: synced(kubectl, name).get("reason") == "EmptyBundle", what="EmptyBundle")
    assert configmap(kubectl, ns, name)["data"]["ca.crt"] == good

    # fixed: synced again
    other = TestCA("Other Root")
    kubectl("patch", "bundle", name, "--type=merge", "-p",
            json.dumps({"spec": {"sources": [{"inLine": other.cert_pem.decode()}]}}))
    wait_until(lambda: pem_subjects((configmap(kubectl, ns, name) or {})["data"]["ca.crt"]) == ["CN=Other Root"],
               what="the fixed content")
    wait_until(lambda: synced(kubectl, name).get("status") == "True", what="Synced again")
    kubectl("delete", "bundle", name)


@pytest.mark.parametrize("source, words", [
    ("{inLine: x, useDefaultCAs: true}", "exactly one of"),
    ("{useDefaultCAs: false}", "useDefaultCAs must be true"),
    ("{issuerRef: {name: x, kind: Certificate}}", "Unsupported value"),
])
def test_the_api_server_rejects_invalid_bundles(kubectl, source, words):
    result = kubectl("apply", "-f", "-", check=False, input=bundle_manifest("invalid", "x", f"[{source}]"))
    assert result.returncode != 0 and words in result.stderr, result.stderr


# --- scale ---------------------------------------------------------------------------------------

N = 1000


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("bundle-cluster")) as c:
        yield c


def target_count(cluster, name: str, digest: str | None = None) -> int:
    out = run_kubectl(cluster, "get", "configmaps", "-A", "-l", f"certmint.io/bundle={name}", "-o",
                      "jsonpath={range .items[*]}{.metadata.annotations.certmint\\.io/bundle-hash}{\"\\n\"}{end}").stdout
    return sum(1 for line in out.splitlines() if line and (digest is None or line == digest))


@pytest.mark.slow
def test_a_bundle_reaches_1000_namespaces_with_one_write_each_and_a_restart_writes_nothing(private, tmp_path):
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: fan-{i:04d}, labels: {{fan: \"yes\"}}}}\n"
            for i in range(N)]
    run_kubectl(private, "apply", "-f", "-", input="---\n".join(docs), timeout=300)
    op = start_operator(private, tmp_path / "first.log")
    try:
        ca = TestCA("Fan-out Root")
        before = api_writes(private)
        started = time.monotonic()
        run_kubectl(private, "apply", "-f", "-", input=(
            "apiVersion: certmint.io/v1\nkind: Bundle\nmetadata: {name: fan}\nspec:\n"
            f"  sources: [{{inLine: {json.dumps(ca.cert_pem.decode())}}}]\n"
            "  target: {configMap: {key: ca.crt}}\n  namespaceSelector: {matchLabels: {fan: \"yes\"}}\n"))
        while True:
            status = json.loads(run_kubectl(private, "get", "bundle", "fan", "-o", "json").stdout).get("status") or {}
            if status.get("namespaces") == N:
                break
            assert time.monotonic() - started < 120, f"not converged in 120 s: {status}"
            time.sleep(0.05)
        seconds = time.monotonic() - started
        assert target_count(private, "fan", status["hash"]) == N
        writes = api_writes(private) - before
        print(f"\nfan-out: {N} namespaces in {seconds:.2f} s; writes: {dict(writes)}")
        assert writes["configmaps"] == N  # one write per namespace
        assert writes["bundles/status"] <= 2

        # a new namespace gets it at once; a restart with everything in place writes nothing
        started = time.monotonic()
        run_kubectl(private, "apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\n"
                                                       "metadata: {name: fan-late, labels: {fan: \"yes\"}}\n")
        wait_until(lambda: run_kubectl(private, "get", "configmap", "-n", "fan-late", "fan", check=False).returncode == 0,
                   timeout=10, interval=0.05, what="the late namespace's target")
        print(f"a new namespace got the bundle in {time.monotonic() - started:.2f} s")
    finally:
        op.stop()
    time.sleep(1)
    before = api_writes(private)
    op = start_operator(private, tmp_path / "second.log")
    try:
        time.sleep(5)  # every Bundle and Namespace has been looked at by then
        writes = api_writes(private) - before
        writes.pop("events", None)
        print(f"restart with {N + 1} targets in place: writes {dict(writes)}")
        assert not writes, writes
    finally:
        op.stop()
