"""Issuers that sign through a real smallstep step-ca, end to end through the operator.

Seed 003 (FlexStack) runs step-ca with step-issuer for 24-hour certificates renewed 8 hours
before expiry. Its Certificate, with only the issuer reference changed, is served here by a
certmint Issuer and ClusterIssuer with `spec.step`, against a step-ca built by `make tools` and
started on 127.0.0.1 (tests/stepca.py), and the real API server:

  - it becomes Ready; the step CLI and OpenSSL accept the chain against the CA's root; ca.crt
    is that root; renewalTime is notAfter - 8h and the certificate lives exactly 24h;
  - a forced renewal signs a new serial through the CA, and the operator then leaves it alone;
  - a wrong password, a wrong caBundle and a stopped CA make the Issuer Ready=False, and a SAN
    the CA's policy forbids makes the Certificate Ready=False, each with a reason naming the
    cause and an event; when the CA comes back the issuer and its certificates recover alone;
  - kill -9 of the operator in the middle of 50 issuances through the CA converges, with every
    certificate issued once (revision 1) and each key matching its certificate;
  - the provisioner password and the decrypted provisioner key appear nowhere the operator
    writes: its log, events and statuses.

The stopped-CA and kill -9 scenarios run their own operators (a short issuer re-check; a
process to kill), so they use a control plane of their own where no other operator writes.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import time

import pytest
from conftest import (
    OPERATOR_NAMESPACE,
    apply,
    control_plane,
    get_json,
    openssl,
    run_kubectl,
    secret_data,
    start_operator,
    wait_for_events,
    wait_ready,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from stepca import StepCA

PEM_END = b"-----END CERTIFICATE-----\n"
DAY = dt.timedelta(hours=24)
RENEW_BEFORE = dt.timedelta(hours=8)

# Seed 003's Certificate exactly as written for cert-manager and step-issuer, except for the
# issuer reference: apiVersion certmint.io/v1, and kind ClusterIssuer instead of
# StepClusterIssuer (or Issuer, for the namespaced variant).
SEED_003_CERTIFICATE = """
apiVersion: certmint.io/v1
kind: Certificate
metadata:
  name: my-service-tls
  namespace: {namespace}
spec:
  secretName: my-service-tls
  duration: 24h
  renewBefore: 8h
  issuerRef:
    name: step-ca-issuer
    kind: {kind}
  dnsNames:
    - my-service.default.svc.cluster.local
    - my-service.default.svc
    - my-service
"""
SEED_003_NAMES = ["my-service.default.svc.cluster.local", "my-service.default.svc", "my-service"]

# Logs of the operators these tests start themselves, for the leak check at the end.
OPERATOR_LOGS: list = []


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    """One step-ca for the module; the scenario that stops a CA gets its own."""
    ca = StepCA(tmp_path_factory.mktemp("stepca"))
    ca.start()
    yield ca
    ca.close()


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("step-private-cluster")) as c:
        yield c


# --------------------------------------------------------------------------- manifests


def password_secret(namespace: str, name: str, key: str, password: bytes) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                       "type": "Opaque", "data": {key: base64.b64encode(password).decode()}})


def step_issuer(kind: str, name: str, step: dict, namespace: str | None = None) -> str:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return json.dumps({"apiVersion": "certmint.io/v1", "kind": kind, "metadata": metadata, "spec": {"step": step}})


def certificate(name: str, dns_names: list[str], extra: dict | None = None) -> str:
    spec = {"secretName": name, "duration": "24h", "renewBefore": "8h", "dnsNames": dns_names,
            "issuerRef": {"name": "step"}, **(extra or {})}
    return json.dumps({"apiVersion": "certmint.io/v1", "kind": "Certificate", "metadata": {"name": name},
                       "spec": spec})


def documents(*docs: str) -> str:
    return "\n---\n".join(docs)


def other_root_bundle() -> str:
    """A caBundle with a root that did not sign the CA's TLS certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the step CA root")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + DAY).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


# --------------------------------------------------------------------------- reading state


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def obj_status(kubectl, kind: str, name: str, namespace: str | None = None) -> dict:
    scope = ("-n", namespace) if namespace else ()
    return get_json(kubectl, kind, name, *scope).get("status") or {}


def ready_condition(kubectl, kind: str, name: str, namespace: str | None = None) -> dict:
    return next((c for c in obj_status(kubectl, kind, name, namespace).get("conditions") or []
                 if c["type"] == "Ready"), {})


def wait_condition(kubectl, kind: str, name: str, namespace: str | None, status: str, reason: str | None = None,
                   timeout: float = 60) -> tuple[dict, float]:
    """The Ready condition once it has this status (and reason), and the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        cond = ready_condition(kubectl, kind, name, namespace)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return cond, time.monotonic() - started
        if time.monotonic() > deadline:
            raise AssertionError(f"{kind}/{name}: Ready is not {status}/{reason} after {timeout} s: {cond}")
        time.sleep(0.2)


def split_pem(bundle: bytes) -> list[bytes]:
    return [part + PEM_END for part in bundle.split(PEM_END) if part.strip()]


def events_for(events: list[dict], name: str, reason: str | None = None) -> list[dict]:
    return [e for e in events if e["involvedObject"]["name"] == name and (reason is None or e["reason"] == reason)]


# --------------------------------------------------------------------------- Ready, chain, renewal


def check_served_certificate(kubectl, ca: StepCA, namespace: str, tmp_path) -> x509.Certificate:
    """The Secret of seed 003's Certificate: a chain the step CLI and OpenSSL accept against the CA's
    root, ca.crt that root, exactly 24h of life, and renewalTime notAfter - 8h."""
    data = secret_data(kubectl, namespace, "my-service-tls")
    assert data["ca.crt"] == ca.root_pem, "ca.crt is the CA's root, the caBundle"
    chain = split_pem(data["tls.crt"])
    assert len(chain) == 2, "tls.crt holds the leaf and step-ca's intermediate"
    assert x509.load_pem_x509_certificate(chain[1]) == x509.load_pem_x509_certificate(
        ca.intermediate_path.read_bytes()), "the intermediate is the CA's own"
    tls_crt, ca_crt = tmp_path / "tls.crt", tmp_path / "ca.crt"
    leaf_pem, intermediates = tmp_path / "leaf.pem", tmp_path / "intermediates.pem"
    tls_crt.write_bytes(data["tls.crt"])
    ca_crt.write_bytes(data["ca.crt"])
    leaf_pem.write_bytes(chain[0])
    intermediates.write_bytes(chain[1])
    ca.step("certificate", "verify", str(tls_crt), "--roots", str(ca_crt))
    out = openssl("verify", "-CAfile", str(ca_crt), "-untrusted", str(intermediates), str(leaf_pem))
    assert out.stdout.decode().strip().endswith("OK")

    leaf = x509.load_pem_x509_certificate(chain[0])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(SEED_003_NAMES)
    key = serialization.load_pem_private_key(data["tls.key"], None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers(), "tls.key is the leaf's key"
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == DAY, "the certificate lives exactly 24h"

    status = obj_status(kubectl, "certificate", "my-service-tls", namespace)
    assert parse_time(status["notAfter"]) == leaf.not_valid_after_utc
    assert parse_time(status["notBefore"]) == leaf.not_valid_before_utc
    assert parse_time(status["renewalTime"]) == leaf.not_valid_after_utc - RENEW_BEFORE, status
    return leaf


def wait_revision(kubectl, namespace: str, name: str, revision: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = obj_status(kubectl, "certificate", name, namespace)
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        if status.get("revision") == revision and ready.get("status") == "True":
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not reach revision {revision}: {status}")
        time.sleep(0.2)


def forced_renewal_issues_once(kubectl, ca: StepCA, namespace: str, before: x509.Certificate, tmp_path) -> None:
    """The certmint.io/renew annotation signs a new serial through the CA, and then nothing more
    happens: a certificate the CA built from its own template must still count as matching the
    spec, or the operator would re-issue it in a loop."""
    kubectl("annotate", "certificate", "-n", namespace, "my-service-tls", "certmint.io/renew=forced-1")
    started = time.monotonic()
    wait_revision(kubectl, namespace, "my-service-tls", 2)
    print(f"forced renewal through step-ca: {time.monotonic() - started:.1f} s")
    after = check_served_certificate(kubectl, ca, namespace, tmp_path)
    assert after.serial_number != before.serial_number
    # Long enough for a RequestChanged loop to show: each loop round is one issuance, a fraction
    # of a second through a local CA.
    time.sleep(15)
    status = obj_status(kubectl, "certificate", "my-service-tls", namespace)
    assert status["revision"] == 2, f"re-issued again after the forced renewal: {status}"
    # Events are recorded in the background: wait for both issuances' Issuing and Issued events.
    events = wait_for_events(kubectl, namespace, lambda evs: len(events_for(evs, "my-service-tls", "Issued")) >= 2
                             and len(events_for(evs, "my-service-tls", "Issuing")) >= 2)
    issuing = events_for(events, "my-service-tls", "Issuing")
    assert len(issuing) == 2, [e.get("message") for e in issuing]
    assert secret_data(kubectl, namespace, "my-service-tls")["tls.crt"].startswith(
        after.public_bytes(serialization.Encoding.PEM))


def test_seed_003_certificate_through_a_step_issuer(kubectl, namespace, operator, ca, tmp_path):
    apply(kubectl, namespace, documents(
        password_secret(namespace, "step-ca-secrets", "provisioner-password", ca.password),
        step_issuer("Issuer", "step-ca-issuer",
                    ca.issuer_spec(password_secret="step-ca-secrets", password_key="provisioner-password"))))
    _, issuer_ready = wait_condition(kubectl, "issuer", "step-ca-issuer", namespace, "True", "Verified")
    started = time.monotonic()
    apply(kubectl, namespace, SEED_003_CERTIFICATE.format(namespace=namespace, kind="Issuer"))
    wait_ready(kubectl, namespace, "certificate/my-service-tls")
    print(f"\nIssuer Ready in {issuer_ready:.1f} s; seed 003's Certificate Ready "
          f"{time.monotonic() - started:.1f} s after apply")
    leaf = check_served_certificate(kubectl, ca, namespace, tmp_path)
    assert obj_status(kubectl, "certificate", "my-service-tls", namespace)["revision"] == 1
    forced_renewal_issues_once(kubectl, ca, namespace, leaf, tmp_path)
    # Repair works as with certmint's own issuers: a deleted Secret is issued again by the CA.
    kubectl("delete", "secret", "-n", namespace, "my-service-tls")
    wait_revision(kubectl, namespace, "my-service-tls", 3)
    check_served_certificate(kubectl, ca, namespace, tmp_path)


def test_seed_003_certificate_through_a_step_cluster_issuer(kubectl, operator, ca, tmp_path):
    """Seed 003 as written: a cluster-wide issuer named step-ca-issuer and the Certificate in
    namespace default. The password Secret lives in the cluster resource namespace."""
    ns = "default"
    apply(kubectl, OPERATOR_NAMESPACE,
          password_secret(OPERATOR_NAMESPACE, "step-ca-secrets", "provisioner-password", ca.password))
    kubectl("apply", "-f", "-", input=step_issuer(
        "ClusterIssuer", "step-ca-issuer",
        ca.issuer_spec(password_secret="step-ca-secrets", password_key="provisioner-password")))
    try:
        _, issuer_ready = wait_condition(kubectl, "clusterissuer", "step-ca-issuer", None, "True", "Verified")
        started = time.monotonic()
        apply(kubectl, ns, SEED_003_CERTIFICATE.format(namespace=ns, kind="ClusterIssuer"))
        wait_ready(kubectl, ns, "certificate/my-service-tls")
        print(f"\nClusterIssuer Ready in {issuer_ready:.1f} s; seed 003's Certificate Ready "
              f"{time.monotonic() - started:.1f} s after apply")
        leaf = check_served_certificate(kubectl, ca, ns, tmp_path)
        forced_renewal_issues_once(kubectl, ca, ns, leaf, tmp_path)
    finally:
        kubectl("delete", "certificate", "-n", ns, "my-service-tls", "--ignore-not-found")
        kubectl("delete", "secret", "-n", ns, "my-service-tls", "--ignore-not-found")
        kubectl("delete", "clusterissuer", "step-ca-issuer", "--ignore-not-found")
        kubectl("delete", "secret", "-n", OPERATOR_NAMESPACE, "step-ca-secrets", "--ignore-not-found")


# --------------------------------------------------------------------------- what goes wrong


def test_wrong_password_wrong_bundle_and_forbidden_san_are_reported(kubectl, namespace, operator, ca):
    ns = namespace
    good = ca.issuer_spec(password_secret="pw")
    apply(kubectl, ns, documents(
        password_secret(ns, "pw", "password", ca.password),
        password_secret(ns, "wrong-pw", "password", b"not-" + ca.password[::-1]),
        step_issuer("Issuer", "step", good),
        step_issuer("Issuer", "wrong-password", ca.issuer_spec(password_secret="wrong-pw")),
        step_issuer("Issuer", "wrong-bundle", {**good, "caBundle": other_root_bundle()}),
        certificate("forbidden", ["forbidden.invalid"]),
    ))
    wrong_password, _ = wait_condition(kubectl, "issuer", "wrong-password", ns, "False", "WrongPassword")
    assert "does not decrypt with the password" in wrong_password["message"], wrong_password
    wrong_bundle, _ = wait_condition(kubectl, "issuer", "wrong-bundle", ns, "False", "TLSVerificationFailed")
    assert "does not verify against caBundle" in wrong_bundle["message"], wrong_bundle
    wait_condition(kubectl, "issuer", "step", ns, "True", "Verified")
    refused, _ = wait_condition(kubectl, "certificate", "forbidden", ns, "False", "Refused")
    assert 'dns name "forbidden.invalid" not allowed' in refused["message"], refused
    print(f"\nWrongPassword: {wrong_password['message']}\nTLSVerificationFailed: {wrong_bundle['message']}"
          f"\nRefused: {refused['message']}")
    events = wait_for_events(kubectl, ns, lambda evs: all((
        events_for(evs, "wrong-password", "WrongPassword"),
        events_for(evs, "wrong-bundle", "TLSVerificationFailed"),
        [e for e in events_for(evs, "forbidden", "Failed") if "Refused" in e["message"]])))
    assert all(e["type"] == "Warning" for e in events_for(events, "wrong-password") + events_for(events, "wrong-bundle"))
    assert run_kubectl_absent(kubectl, ns, "forbidden"), "a refused certificate writes no Secret"

    # Fixing each cause is enough: the password Secret (re-read by the issuer's quick re-check),
    # the caBundle (a spec change), the CA's policy for the SAN is not changed here.
    kubectl("patch", "secret", "-n", ns, "wrong-pw", "--type=merge",
            "-p", json.dumps({"data": {"password": base64.b64encode(ca.password).decode()}}))
    _, fixed_password = wait_condition(kubectl, "issuer", "wrong-password", ns, "True", "Verified")
    kubectl("patch", "issuer", "-n", ns, "wrong-bundle", "--type=merge",
            "-p", json.dumps({"spec": {"step": {"caBundle": ca.ca_bundle}}}))
    _, fixed_bundle = wait_condition(kubectl, "issuer", "wrong-bundle", ns, "True", "Verified")
    print(f"recovered after the password fix in {fixed_password:.1f} s, after the caBundle fix in {fixed_bundle:.1f} s")


def run_kubectl_absent(kubectl, namespace: str, secret: str) -> bool:
    result = kubectl("get", "secret", "-n", namespace, secret, check=False)
    return result.returncode != 0 and "NotFound" in result.stderr


def test_stopped_ca_and_recovery_without_a_restart(private, tmp_path):
    """The CA goes away under a Ready issuer: the issuer turns Ready=False (Unreachable) at its next
    re-check, a Certificate applied meanwhile waits, and when the CA is back the issuer and then
    the Certificate become Ready by themselves, with the same operator process."""
    kubectl = functools.partial(run_kubectl, private)
    ns = "step-stopped"
    kubectl("create", "namespace", ns)
    ca = StepCA(tmp_path / "stepca")
    ca.start()
    log = tmp_path / "operator.log"
    OPERATOR_LOGS.append(log)
    op = start_operator(private, log, "--issuer-recheck", "3s")
    try:
        apply(kubectl, ns, documents(password_secret(ns, "pw", "password", ca.password),
                                     step_issuer("Issuer", "step", ca.issuer_spec(password_secret="pw")),
                                     certificate("before", ["before.example.test"])))
        wait_ready(kubectl, ns, "certificate/before")
        # A re-check that finds the issuer as it was writes nothing: with a 3 s re-check, two
        # rounds leave the Issuer's resourceVersion where it was.
        version = get_json(kubectl, "issuer", "-n", ns, "step")["metadata"]["resourceVersion"]
        time.sleep(7)
        assert get_json(kubectl, "issuer", "-n", ns, "step")["metadata"]["resourceVersion"] == version

        ca.stop()
        cond, detected = wait_condition(kubectl, "issuer", "step", ns, "False", "Unreachable", timeout=60)
        assert "refused" in cond["message"] or "failed" in cond["message"], cond
        print(f"\nCA stopped: Issuer Ready=False ({cond['reason']}: {cond['message']}) after {detected:.1f} s")
        wait_for_events(kubectl, ns, lambda evs: events_for(evs, "step", "Unreachable"))

        apply(kubectl, ns, certificate("pending", ["pending.example.test"]))
        pending, _ = wait_condition(kubectl, "certificate", "pending", ns, "False")
        print(f"Certificate applied while the CA is down: Ready=False ({pending['reason']}: {pending['message']})")
        time.sleep(3)
        assert ready_condition(kubectl, "certificate", "pending", ns).get("status") == "False"
        # What the CA already signed is still valid: an up-to-date certificate stays Ready.
        assert ready_condition(kubectl, "certificate", "before", ns).get("status") == "True"

        ca.start()
        back = time.monotonic()
        wait_condition(kubectl, "issuer", "step", ns, "True", "Verified", timeout=60)
        issuer_back = time.monotonic() - back
        wait_condition(kubectl, "certificate", "pending", ns, "True", timeout=60)
        certificate_back = time.monotonic() - back
        print(f"CA started again: Issuer Ready after {issuer_back:.1f} s, pending Certificate Ready after "
              f"{certificate_back:.1f} s, no operator restart")
        assert op.proc.poll() is None, "the operator kept running"
        assert obj_status(kubectl, "certificate", "pending", ns)["revision"] == 1
        assert obj_status(kubectl, "certificate", "before", ns)["revision"] == 1
    finally:
        op.stop()
        ca.close()


# --------------------------------------------------------------------------- kill -9


N = 50


def ready_count(kubectl, namespace: str) -> int:
    items = json.loads(kubectl("get", "certificates", "-n", namespace, "-o", "json").stdout)["items"]
    return sum(1 for c in items for cond in (c.get("status") or {}).get("conditions") or []
               if cond["type"] == "Ready" and cond["status"] == "True")


def sign_requests(ca: StepCA) -> int:
    return sum(1 for line in ca.log().splitlines() if "/1.0/sign" in line and "status=201" in line)


def provisioner_reads(ca: StepCA) -> int:
    return sum(1 for line in ca.log().splitlines() if "/provisioners" in line and "user-agent=certmint" in line)


def test_kill_9_in_the_middle_of_50_step_issuances(private, ca, tmp_path):
    kubectl = functools.partial(run_kubectl, private)
    ns = "step-killed"
    kubectl("create", "namespace", ns)
    # RSA 4096 keys take long enough to make that the kill lands in the middle of the batch.
    docs = [password_secret(ns, "pw", "password", ca.password),
            step_issuer("Issuer", "step", ca.issuer_spec(password_secret="pw"))]
    docs += [certificate(f"c{i}", [f"c{i}.example.test"], {"privateKey": {"algorithm": "RSA", "size": 4096}})
             for i in range(N)]
    signed_before, reads_before = sign_requests(ca), provisioner_reads(ca)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    OPERATOR_LOGS.extend([first_log, second_log])
    op = start_operator(private, first_log)
    try:
        apply(kubectl, ns, documents(*docs))
        started = time.monotonic()
        deadline = started + 180
        while (count := ready_count(kubectl, ns)) < 3:
            assert time.monotonic() < deadline, "issuance through step-ca did not get going"
            time.sleep(0.1)
        op.stop(kill=True)
        interrupted_at = ready_count(kubectl, ns)
        print(f"\nkill -9 after {time.monotonic() - started:.1f} s with {interrupted_at}/{N} Ready")
        assert interrupted_at < N, "the kill came too late to interrupt anything"
        op = start_operator(private, second_log)
        restarted = time.monotonic()
        deadline = restarted + 300
        while (count := ready_count(kubectl, ns)) < N:
            assert time.monotonic() < deadline, f"only {count}/{N} Ready 300 s after the restart"
            time.sleep(0.5)
        print(f"all {N} Ready {time.monotonic() - restarted:.1f} s after the restart")
    finally:
        op.stop()
    items = json.loads(kubectl("get", "certificates", "-n", ns, "-o", "json").stdout)["items"]
    revisions = {c["metadata"]["name"]: (c.get("status") or {}).get("revision") for c in items}
    assert set(revisions.values()) == {1}, f"issued twice for one revision: {revisions}"
    for i in range(N):
        data = secret_data(kubectl, ns, f"c{i}")
        leaf = x509.load_pem_x509_certificate(data["tls.crt"])
        key = serialization.load_pem_private_key(data["tls.key"], None)
        assert key.public_key().public_numbers() == leaf.public_key().public_numbers(), f"c{i}: key mismatch"
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == DAY
        assert data["ca.crt"] == ca.root_pem
        revision = json.loads(kubectl("get", "secret", "-n", ns, f"c{i}", "-o", "json").stdout)["metadata"]
        assert revision["annotations"]["certmint.io/revision"] == "1", revision
    signed = sign_requests(ca) - signed_before
    print(f"step-ca signed {signed} certificates for {N} Certificates "
          f"({signed - N} signed before the kill and never stored)")
    assert signed >= N
    print(f"step-ca served {provisioner_reads(ca) - reads_before} provisioner list reads (Ready checks) meanwhile")


# --------------------------------------------------------------------------- secrets stay secret


def test_password_and_provisioner_key_appear_nowhere(kubectl, operator, private, ca):
    """Runs last: the session operator and every operator above have handled the right and the wrong
    passwords and the decrypted key. None of them may be in a log, an event or a status."""
    secrets_ = {"the provisioner password": ca.password.decode(),
                "the wrong password": ("not-" + ca.password[::-1].decode())}
    jwk = json.loads(ca.decrypted_provisioner_key().read_text())
    secrets_["the decrypted provisioner key"] = jwk["d"]
    places = {"the session operator's log": operator.log_text()}
    for log in OPERATOR_LOGS:
        places[f"operator log {log.name}"] = log.read_text(errors="replace") if log.exists() else ""
    for name, run in (("session cluster", kubectl), ("private cluster", functools.partial(run_kubectl, private))):
        places[f"events ({name})"] = run("get", "events", "-A", "-o", "json").stdout
        places[f"statuses ({name})"] = run("get", "certificates,issuers,clusterissuers", "-A", "-o", "json").stdout
    assert places["the session operator's log"], "the operator log is empty: nothing was checked"
    for what, value in secrets_.items():
        assert len(value) >= 16
        for where, text in places.items():
            assert value not in text, f"{what} appears in {where}"
    print(f"\nchecked {len(places)} places ({sum(len(t) for t in places.values())} characters) for "
          f"{len(secrets_)} secrets: none found")
