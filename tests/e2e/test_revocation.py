"""Revocation end to end, on the real control plane with the real operator: NetStress's set-up
(seed 000) of a CA, a controller (server) certificate and two agent (client) certificates.

Revoking agent-01 with reason keyCompromise must:
- publish a CRL listing it, in the ConfigMap <issuer>-crl (ca.crl, PEM) and over HTTP at
  /crls/<namespace>/<issuer>.crl on the operator's metrics port (DER, application/pkix-crl);
- make `openssl verify -crl_check`, an `openssl s_server -crl_check` and a Python ssl server with
  VERIFY_CRL_CHECK_LEAF refuse agent-01's certificate and accept agent-02's (loopback only);
- re-issue agent-01 with a new key, which they accept.

And a revocation is durable: it survives operator restarts and kill -9, the deletion of the
Certificate and of the revocation itself, and the CRL number never repeats. Revocations applied
together coalesce into few ConfigMap writes. A self-signed issuer reports that it cannot
publish a CRL. Every CRL read here is linted with pkilint and zlint.
"""
from __future__ import annotations

import json
import secrets
import os
import select
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import (
    OPERATOR_NAMESPACE,
    api_writes,
    apply,
    control_plane,
    get_json,
    openssl,
    run_kubectl,
    secret_data,
    start_operator,
    wait_ready,
    write_secret_files,
)
from pkilint_zlint import lint_crl

TIMEOUT = 60
CA = "netstress-ca"

# The CA is a root made by a self-signed bootstrap issuer; it needs the crl sign usage to sign CRLs.
NETSTRESS = f"""
apiVersion: certmint.io/v1
kind: Issuer
metadata: {{name: bootstrap}}
spec: {{selfSigned: {{}}}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: {CA}}}
spec:
  isCA: true
  commonName: NetStress CA
  secretName: {CA}
  usages: [digital signature, cert sign, crl sign]
  privateKey: {{algorithm: ECDSA, size: 256}}
  issuerRef: {{name: bootstrap}}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {{name: {CA}}}
spec:
  ca:
    secretName: {CA}
    crl: {{validity: 24h}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: controller}}
spec:
  secretName: controller
  commonName: controller-01
  dnsNames: [controller.netstress.test]
  ipAddresses: [127.0.0.1]
  usages: [digital signature, server auth]
  privateKey: {{algorithm: ECDSA}}
  issuerRef: {{name: {CA}}}
"""


def agent(name: str, issuer: str = CA) -> str:
    return f"""
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: {name}}}
spec:
  secretName: {name}
  commonName: {name}
  usages: [digital signature, client auth]
  privateKey: {{algorithm: ECDSA}}
  issuerRef: {{name: {issuer}}}
"""


def revocation(name: str, reason: str = "keyCompromise", **target) -> str:
    spec = {"reason": reason, **target}
    return json.dumps({"apiVersion": "certmint.io/v1", "kind": "CertificateRevocation",
                       "metadata": {"name": name}, "spec": spec})


# --- helpers -----------------------------------------------------------------------------------


def hex_serial(serial: int) -> str:
    digits = f"{serial:X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def leaf(kubectl, namespace: str, secret: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(secret_data(kubectl, namespace, secret)["tls.crt"])[0]


def crl_configmap(kubectl, namespace: str, issuer: str) -> dict | None:
    result = kubectl("get", "configmap", "-n", namespace, f"{issuer}-crl", "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def published_crl(kubectl, namespace: str, issuer: str) -> x509.CertificateRevocationList | None:
    configmap = crl_configmap(kubectl, namespace, issuer)
    if configmap is None or "ca.crl" not in (configmap.get("data") or {}):
        return None
    return x509.load_pem_x509_crl(configmap["data"]["ca.crl"].encode())


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def listed(crl: x509.CertificateRevocationList | None) -> set[int]:
    return {r.serial_number for r in crl} if crl is not None else set()


def wait_for(predicate, what: str, timeout: float = TIMEOUT, explain=None):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f"\n{explain()}" if explain else ""))
        time.sleep(0.25)


def wait_listed(kubectl, namespace: str, issuer: str, serials: set[int], timeout: float = TIMEOUT):
    """The published CRL once it lists every serial in serials."""
    def explain() -> str:
        events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        issuer_obj = kubectl("get", "issuer", "-n", namespace, issuer, "-o", "json", check=False).stdout
        return f"issuer: {issuer_obj[-2000:]}\nevents: {events[-3000:]}"
    def missing() -> str:
        absent = sorted(serials - listed(published_crl(kubectl, namespace, issuer)))
        return f"{len(absent)} of {len(serials)} serials missing, e.g. {', '.join(map(hex_serial, absent[:3]))}"

    return wait_for(lambda: (crl := published_crl(kubectl, namespace, issuer)) is not None
                    and serials <= listed(crl) and crl, f"the CRL of {issuer} to list {len(serials)} serials",
                    timeout, lambda: f"{missing()}\n{explain()}")


def wait_revoked(kubectl, namespace: str, name: str, timeout: str = "60s") -> dict:
    kubectl("wait", "-n", namespace, "--for=condition=Revoked", f"--timeout={timeout}",
            f"certificaterevocation/{name}", timeout=200)
    return get_json(kubectl, "certificaterevocation", "-n", namespace, name)


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def http_crl(op, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(op.metrics_url + path, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def assert_lints_clean(crl: x509.CertificateRevocationList) -> None:
    findings = lint_crl(crl)
    assert not findings, "\n".join(map(str, findings))


def verify(ca: Path, crl: Path, certificate: Path) -> subprocess.CompletedProcess:
    return openssl("verify", "-CAfile", str(ca), "-CRLfile", str(crl), "-crl_check", str(certificate), check=False)


def metric(op, name: str, **labels: str) -> float | None:
    for line in op.metrics().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


# --- TLS servers that check the CRL --------------------------------------------------------------


def python_server_handshake(server: dict, crl: Path, client_crt: Path, client_key: Path) -> str | None:
    """A Python ssl server (VERIFY_CRL_CHECK_LEAF) and a client presenting client_crt, over 127.0.0.1.
    The server's verification error, or None when it accepted the client."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server["tls.crt"], server["tls.key"])
    server_ctx.load_verify_locations(cafile=str(server["ca.crt"]))
    server_ctx.load_verify_locations(cafile=str(crl))  # a PEM CRL is loaded like a CA file
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    client_ctx = ssl.create_default_context(cafile=str(server["ca.crt"]))
    client_ctx.load_cert_chain(str(client_crt), str(client_key))
    outcome: dict = {}

    def serve(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"welcome " + dict(x[0] for x in tls.getpeercert()["subject"])["commonName"].encode())
        except (ssl.SSLError, OSError) as e:
            outcome["error"] = getattr(e, "verify_message", None) or str(e)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        thread = threading.Thread(target=serve, args=(listener,))
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client_ctx.wrap_socket(raw, server_hostname="controller.netstress.test") as tls:
                    outcome["reply"] = tls.recv(100)
        except (ssl.SSLError, OSError) as e:
            outcome.setdefault("client_error", str(e))
        finally:
            thread.join(10)
    if "error" in outcome:
        return outcome["error"]
    assert outcome.get("reply", b"").startswith(b"welcome "), outcome
    return None


def openssl_server_handshake(server: dict, crl: Path, client_crt: Path, client_key: Path) -> tuple[bool, str]:
    """`openssl s_server -crl_check -Verify 1` and `openssl s_client` with client_crt, over 127.0.0.1.
    (accepted, the server's output)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1", "-cert", str(server["tls.crt"]),
         "-key", str(server["tls.key"]), "-CAfile", str(server["ca.crt"]), "-CRL", str(crl), "-crl_check",
         "-Verify", "1", "-verify_return_error", "-www"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # s_server prints ACCEPT once it listens; probing the port instead would use up -naccept 1
        ready = b""
        deadline = time.monotonic() + 20
        while b"ACCEPT" not in ready:
            assert time.monotonic() < deadline and server_proc.poll() is None, f"s_server did not start: {ready!r}"
            if select.select([server_proc.stdout], [], [], 0.5)[0]:
                # os.read, not readline: a buffered readline can swallow ACCEPT into Python's buffer,
                # where select no longer sees it
                ready += os.read(server_proc.stdout.fileno(), 4096)
        client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "controller.netstress.test",
             "-CAfile", str(server["ca.crt"]), "-cert", str(client_crt), "-key", str(client_key),
             "-verify_return_error", "-quiet"],
            input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True, timeout=30, check=False)  # judged below
        try:
            out, _ = server_proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a refused handshake may not count towards -naccept
            server_proc.terminate()
            out, _ = server_proc.communicate(timeout=10)
    finally:
        if server_proc.poll() is None:
            server_proc.kill()
            server_proc.wait(10)
    text = (ready + (out or b"")).decode(errors="replace")
    accepted = client.returncode == 0 and b"HTTP/1.0 200 ok" in client.stdout
    return accepted, text + client.stderr.decode(errors="replace")


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def netstress(kubectl, operator):
    """A namespace with the CA issuer publishing a CRL, the controller and two agents, all Ready."""
    namespace = f"netstress-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace)
    apply(kubectl, namespace, NETSTRESS + agent("agent-01") + agent("agent-02"))
    for name in (CA, "controller", "agent-01", "agent-02"):
        wait_ready(kubectl, namespace, f"certificate/{name}")
    wait_ready(kubectl, namespace, f"issuer/{CA}")
    yield namespace
    kubectl("delete", "-n", namespace, "certificaterevocations,certificates,issuers", "--all", "--wait=false",
            check=False)


# --- the NetStress flow ------------------------------------------------------------------------


def test_revoking_an_agent_refuses_it_everywhere_and_reissues_it(kubectl, operator, netstress, tmp_path):
    ns = netstress
    old = write_secret_files(kubectl, ns, "agent-01", tmp_path / "agent-01-old")
    old_cert = leaf(kubectl, ns, "agent-01")
    agent_02 = write_secret_files(kubectl, ns, "agent-02", tmp_path / "agent-02")
    server = write_secret_files(kubectl, ns, "controller", tmp_path / "controller")

    apply(kubectl, ns, revocation("agent-01-key-leaked", certificateName="agent-01"))
    revoked = wait_revoked(kubectl, ns, "agent-01-key-leaked")
    assert condition(revoked, "Ready")["status"] == "True"
    assert condition(revoked, "Revoked")["reason"] == "Revoked"
    (covered,) = revoked["status"]["serials"]
    assert covered["serialNumber"] == hex_serial(old_cert.serial_number)
    assert covered["issuerRef"] == {"name": CA, "kind": "Issuer"}
    assert revoked["status"]["revokedAt"]

    # the ConfigMap: a CRL signed by the CA, listing agent-01 as compromised
    crl = wait_listed(kubectl, ns, CA, {old_cert.serial_number})
    ca_cert = leaf(kubectl, ns, CA)
    assert crl.issuer == ca_cert.subject and crl.is_signature_valid(ca_cert.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(old_cert.serial_number)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(leaf(kubectl, ns, "agent-02").serial_number) is None
    configmap = crl_configmap(kubectl, ns, CA)
    assert configmap["metadata"]["annotations"]["certmint.io/crl-number"] == str(crl_number(crl))
    assert_lints_clean(crl)
    issuer = get_json(kubectl, "issuer", "-n", ns, CA)
    assert issuer["status"]["crl"]["number"] >= crl_number(crl)
    assert issuer["status"]["crl"]["configMap"] == f"{CA}-crl"

    # HTTP on the metrics port: DER, application/pkix-crl, the same CRL (or a newer one)
    status, content_type, body = http_crl(operator, f"/crls/{ns}/{CA}.crl")
    assert status == 200 and content_type == "application/pkix-crl"
    served = x509.load_der_x509_crl(body)
    assert served.is_signature_valid(ca_cert.public_key()) and crl_number(served) >= crl_number(crl)
    assert old_cert.serial_number in listed(served)
    assert http_crl(operator, f"/crls/{ns}/no-such-issuer.crl")[0] == 404

    # metrics
    assert metric(operator, "certmint_revoked_certificates", issuer_name=CA, issuer_kind="Issuer", namespace=ns) == 1
    assert metric(operator, "certmint_crl_next_update_timestamp_seconds", issuer_name=CA, issuer_kind="Issuer",
                  namespace=ns) == served.next_update_utc.timestamp()

    crl_file = tmp_path / "ca.crl"
    crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))

    # openssl verify
    rejected = verify(server["ca.crt"], crl_file, old["tls.crt"])
    assert rejected.returncode != 0 and b"certificate revoked" in rejected.stdout + rejected.stderr
    assert verify(server["ca.crt"], crl_file, agent_02["tls.crt"]).returncode == 0

    # agent-01 was re-issued with a new key, and the new certificate is accepted
    new_cert = wait_for(lambda: (c := leaf(kubectl, ns, "agent-01")).serial_number != old_cert.serial_number and c,
                        "agent-01 to be re-issued")
    new = write_secret_files(kubectl, ns, "agent-01", tmp_path / "agent-01-new")
    assert new_cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo) != \
        old_cert.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    assert verify(server["ca.crt"], crl_file, new["tls.crt"]).returncode == 0
    certificate = get_json(kubectl, "certificate", "-n", ns, "agent-01")
    history = certificate["status"]["issuanceHistory"]
    assert [h["serialNumber"] for h in history][-2:] == [hex_serial(old_cert.serial_number),
                                                         hex_serial(new_cert.serial_number)]

    # openssl s_server -crl_check
    accepted, log = openssl_server_handshake(server, crl_file, old["tls.crt"], old["tls.key"])
    assert not accepted and "certificate revoked" in log, log
    for client in (agent_02, new):
        accepted, log = openssl_server_handshake(server, crl_file, client["tls.crt"], client["tls.key"])
        assert accepted, log

    # a Python ssl server with VERIFY_CRL_CHECK_LEAF
    refused = python_server_handshake(server, crl_file, old["tls.crt"], old["tls.key"])
    assert refused is not None and "revoked" in refused, refused
    assert python_server_handshake(server, crl_file, agent_02["tls.crt"], agent_02["tls.key"]) is None
    assert python_server_handshake(server, crl_file, new["tls.crt"], new["tls.key"]) is None


def test_deleting_the_certificate_keeps_the_revocation(kubectl, netstress):
    ns = netstress
    apply(kubectl, ns, agent("agent-03"))
    wait_ready(kubectl, ns, "certificate/agent-03")
    serial = leaf(kubectl, ns, "agent-03").serial_number
    apply(kubectl, ns, revocation("agent-03-retired", "cessationOfOperation", certificateName="agent-03"))
    wait_revoked(kubectl, ns, "agent-03-retired")
    kubectl("delete", "-n", ns, "certificate/agent-03", "secret/agent-03")
    # another revocation makes the issuer sign a new CRL: agent-03 stays on it
    apply(kubectl, ns, agent("agent-04"))
    wait_ready(kubectl, ns, "certificate/agent-04")
    serial_04 = leaf(kubectl, ns, "agent-04").serial_number
    before = crl_number(published_crl(kubectl, ns, CA))
    apply(kubectl, ns, revocation("agent-04-superseded", "superseded", certificateName="agent-04"))
    wait_revoked(kubectl, ns, "agent-04-superseded")
    crl = wait_listed(kubectl, ns, CA, {serial, serial_04})
    assert crl_number(crl) > before and serial in listed(crl)
    still = get_json(kubectl, "certificaterevocation", "-n", ns, "agent-03-retired")
    assert condition(still, "Revoked")["status"] == "True"
    assert still["status"]["serials"][0]["serialNumber"] == hex_serial(serial)


def test_all_valid_revokes_every_unexpired_revision(kubectl, netstress):
    ns = netstress
    apply(kubectl, ns, agent("agent-05"))
    wait_ready(kubectl, ns, "certificate/agent-05")
    serials = [leaf(kubectl, ns, "agent-05").serial_number]
    for revision in (2, 3):
        kubectl("annotate", "certificate", "-n", ns, "agent-05", f"certmint.io/renew=revision-{revision}",
                "--overwrite")
        kubectl("wait", "-n", ns, f"--for=jsonpath={{.status.revision}}={revision}", "--timeout=60s",
                "certificate/agent-05", timeout=90)
        serials.append(leaf(kubectl, ns, "agent-05").serial_number)
    history = get_json(kubectl, "certificate", "-n", ns, "agent-05")["status"]["issuanceHistory"]
    assert [h["revision"] for h in history] == [1, 2, 3]
    apply(kubectl, ns, revocation("agent-05-all", "affiliationChanged", certificateName="agent-05",
                                  revisions="AllValid"))
    revoked = wait_revoked(kubectl, ns, "agent-05-all")
    assert sorted(s["serialNumber"] for s in revoked["status"]["serials"]) == sorted(map(hex_serial, serials))
    crl = wait_listed(kubectl, ns, CA, set(serials))
    assert_lints_clean(crl)


def test_a_serial_of_a_cluster_issuer_is_published_in_the_cluster_resource_namespace(kubectl, operator, netstress):
    ns, suffix = netstress, secrets.token_hex(3)
    name = f"netstress-root-{suffix}"
    # the ClusterIssuer's CA Secret: the namespaced CA's, copied into the cluster resource namespace
    data = secret_data(kubectl, ns, CA)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
              "stringData": {k: v.decode() for k, v in data.items() if k in ("tls.crt", "tls.key", "ca.crt")}}
    kubectl("apply", "-f", "-", input=json.dumps(secret))
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "certmint.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name},
        "spec": {"ca": {"secretName": name, "crl": {}}}}))
    try:
        serial = secrets.randbits(120) | 1
        apply(kubectl, ns, revocation("by-serial", "privilegeWithdrawn", serialNumber=hex_serial(serial),
                                      issuerRef={"name": name, "kind": "ClusterIssuer"}))
        wait_revoked(kubectl, ns, "by-serial")
        crl = wait_listed(kubectl, OPERATOR_NAMESPACE, name, {serial})
        status, content_type, body = http_crl(operator, f"/crls/{name}.crl")
        assert status == 200 and content_type == "application/pkix-crl"
        assert serial in listed(x509.load_der_x509_crl(body))
        assert_lints_clean(crl)
    finally:
        kubectl("delete", "clusterissuer", name, "--wait=false", check=False)


def test_a_self_signed_issuer_cannot_publish_a_crl(kubectl, netstress):
    ns = netstress
    apply(kubectl, ns, agent("lonely", issuer="bootstrap"))
    wait_ready(kubectl, ns, "certificate/lonely")
    apply(kubectl, ns, revocation("lonely-revoked", certificateName="lonely"))
    kubectl("wait", "-n", ns, "--for=condition=Ready=False", "--timeout=60s", "certificaterevocation/lonely-revoked",
            timeout=90)

    def reported():
        obj = get_json(kubectl, "certificaterevocation", "-n", ns, "lonely-revoked")
        return condition(obj, "Ready").get("reason") == "IssuerCannotPublishCRL" and obj

    obj = wait_for(reported, "the IssuerCannotPublishCRL reason")
    assert "cannot publish a CRL" in condition(obj, "Ready")["message"]
    assert condition(obj, "Revoked")["status"] == "False"
    assert crl_configmap(kubectl, ns, "bootstrap") is None


# --- durability and cost, on a control plane of their own ----------------------------------------


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A control plane no other operator writes to: API writes are counted exactly."""
    with control_plane(tmp_path_factory.mktemp("revocation-cluster")) as c:
        yield c


def pkubectl(cluster):
    return lambda *args, **kw: run_kubectl(cluster, *args, **kw)


def set_up_ca(cluster, namespace: str) -> None:
    k = pkubectl(cluster)
    k("create", "namespace", namespace)
    apply(k, namespace, NETSTRESS + agent("agent-01") + agent("agent-02"))
    for name in (CA, "agent-01", "agent-02"):
        wait_ready(k, namespace, f"certificate/{name}")


def test_revocations_survive_restarts_and_kill_9_and_numbers_only_grow(private, tmp_path):
    k, ns = pkubectl(private), "durable"
    op = start_operator(private, tmp_path / "op-1.log")
    numbers = []
    try:
        set_up_ca(private, ns)
        serial = leaf(k, ns, "agent-01").serial_number
        apply(k, ns, revocation("agent-01", certificateName="agent-01"))
        wait_revoked(k, ns, "agent-01")
        numbers.append(crl_number(wait_listed(k, ns, CA, {serial})))
    finally:
        op.stop()
    # while the operator is down, the revocation object is deleted: that un-revokes nothing
    k("delete", "-n", ns, "certificaterevocation/agent-01")
    before = api_writes(private)
    op = start_operator(private, tmp_path / "op-2.log")
    try:
        time.sleep(5)  # let a restart do whatever it would
        assert api_writes(private)["configmaps"] == before["configmaps"], "an unchanged CRL was re-published"
        # a restart reconciles every object once; the CRL ConfigMaps it caches are read, not reconciled
        assert "crashed" not in op.log_text(), op.log_text()[-3000:]
        assert serial in listed(published_crl(k, ns, CA))
        # kill -9 right after a new revocation, then start again: it converges, the number grows
        serial_02 = leaf(k, ns, "agent-02").serial_number
        apply(k, ns, revocation("agent-02", "superseded", certificateName="agent-02"))
        op.stop(kill=True)
    finally:
        op.stop()
    op = start_operator(private, tmp_path / "op-3.log")
    try:
        wait_revoked(k, ns, "agent-02")
        crl = wait_listed(k, ns, CA, {serial, serial_02})
        numbers.append(crl_number(crl))
        # the operator's own deletion-proof record of the number: the issuer's status
        assert get_json(k, "issuer", "-n", ns, CA)["status"]["crl"]["number"] == numbers[-1]
        # a deleted ConfigMap comes back with the entries of the revocations that still exist (their
        # status pins what they cover) and a number never used before, from the issuer's status
        k("delete", "-n", ns, f"configmap/{CA}-crl")
        apply(k, ns, agent("agent-06"))
        wait_ready(k, ns, "certificate/agent-06")
        serial_06 = leaf(k, ns, "agent-06").serial_number
        apply(k, ns, revocation("agent-06", certificateName="agent-06"))
        crl = wait_listed(k, ns, CA, {serial_02, serial_06})
        numbers.append(crl_number(crl))
    finally:
        op.stop()
    assert numbers == sorted(set(numbers)), f"CRL numbers must only grow: {numbers}"


def test_a_thousand_revocations_coalesce_into_few_configmap_writes(private, tmp_path):
    k, ns, n = pkubectl(private), "coalesce", 1000
    op = start_operator(private, tmp_path / "op.log")
    try:
        set_up_ca(private, ns)
        serials = {secrets.randbits(127) | 1 for _ in range(n)}
        docs = [{"apiVersion": "certmint.io/v1", "kind": "CertificateRevocation",
                 "metadata": {"name": f"bulk-{i}", "namespace": ns},
                 "spec": {"issuerRef": {"name": CA}, "serialNumber": hex_serial(s), "reason": "cessationOfOperation"}}
                for i, s in enumerate(sorted(serials))]
        before = api_writes(private)
        started = time.monotonic()
        k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}), timeout=300)
        crl = wait_listed(k, ns, CA, serials, timeout=300)
        elapsed = time.monotonic() - started
        time.sleep(3)  # writes still in flight land before counting
        writes = api_writes(private) - before
        print(f"\n{n} revocations applied together: on the CRL after {elapsed:.1f} s, "
              f"{writes['configmaps']} ConfigMap writes, {writes['issuers/status']} issuer status patches, "
              f"{writes['certificaterevocations/status']} revocation status patches, "
              f"{writes['certificaterevocations']} revocation creates")
        assert len(listed(crl)) >= n
        assert writes["configmaps"] <= 10, writes
        assert writes["issuers/status"] <= 10, writes
        assert writes["certificaterevocations/status"] <= 2 * n, writes  # pin the coverage, then Revoked
        assert_lints_clean(crl)
    finally:
        op.stop()
