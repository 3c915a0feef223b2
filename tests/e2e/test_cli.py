"""The certmint CLI against the real control plane and operator, as a person runs it: as
`certmint ...` (the console script) and as `kubectl certmint ...` through a real kubectl's plugin
discovery. Each test asserts what the user reads: the fields, the exit code, one-line errors."""
from __future__ import annotations

import datetime as dt
import http.server
import importlib.metadata
import json
import os
import pty
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import localcluster
import pytest
import yaml
from conftest import (
    OPERATOR_NAMESPACE,
    apply,
    get_json,
    openssl,
    run_kubectl,
    secret_data,
    wait_ready,
    write_secret_files,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from manifests import SELF_SIGNED_ISSUER, constrained_ca, documents

BIN = Path(sys.executable).parent  # the venv's bin: certmint and kubectl-certmint live here


def certmint(cluster, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "certmint"), *args], capture_output=True, text=True, timeout=timeout,
                          env={**cluster.env(), **(env or {})}, stdin=subprocess.DEVNULL, check=False)


def kubectl_plugin(cluster, *args: str) -> subprocess.CompletedProcess:
    """`kubectl certmint ...`: kubectl finds kubectl-certmint on PATH, as the README's PATH line sets it."""
    env = {**cluster.env(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([localcluster.binary("kubectl"), "certmint", *args], capture_output=True, text=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL, check=False)


def one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The failure a person reads: the exit code, one line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or code == 2, result.stderr  # usage errors add argparse's usage line
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def certificate(name: str, issuer: str = "self", duration: str = "2160h", labels: str = "{}",
                dns: str | None = None) -> str:
    return f"""apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: {name}, labels: {labels}}}
spec:
  secretName: {name}-tls
  commonName: {name}
  dnsNames: [{dns or f'{name}.example.com'}]
  duration: {duration}
  usages: [digital signature, server auth]
  privateKey: {{algorithm: ECDSA}}
  issuerRef: {{name: {issuer}}}
"""


def leaf_of(kubectl, namespace: str, secret: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(secret_data(kubectl, namespace, secret)["tls.crt"])[0]


# --- status -------------------------------------------------------------------------------------


def test_status_of_a_ready_certificate(cluster, kubectl, namespace, operator):
    apply(kubectl, namespace, documents(SELF_SIGNED_ISSUER, certificate("web")))
    wait_ready(kubectl, namespace, "certificate/web")
    leaf = leaf_of(kubectl, namespace, "web-tls")

    result = certmint(cluster, "status", "web", "-n", namespace)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Certificate {namespace}/web" in out
    assert "Ready    True   Ready: Certificate is up to date and has not expired" in out
    assert "Issuing  False  Issued" in out
    assert "Last issuance:  triggered by DoesNotExist, revision 1" in out
    assert "Renewal:        " in out and "(in 59d)" in out  # renewal at 2/3 of 90 days
    assert "Issuer:         Issuer self: Ready True" in out
    assert f"Serial:       {leaf.serial_number:x}" in out
    assert "Not after:    " in out and "(89 days left)" in out
    assert "SANs:         DNS:web.example.com" in out
    assert "\033[" not in out, "no colour when stdout is not a terminal"
    # The recent events, with the issuance's own.
    assert "Events:" in out and "Issued" in out.split("Events:", 1)[1]

    data = json.loads(certmint(cluster, "status", "web", "-n", namespace, "-o", "json").stdout)
    assert data["ready"] == "True" and data["revision"] == 1 and data["lastTrigger"] == "DoesNotExist"
    assert data["issuer"] == {"kind": "Issuer", "name": "self", "ready": "True", "reason": data["issuer"]["reason"],
                              "message": data["issuer"]["message"]}
    assert data["secret"]["serial"] == f"{leaf.serial_number:x}" and data["secret"]["daysLeft"] == 89
    assert data["backoff"] is None
    assert {e["reason"] for e in data["events"]} >= {"Issuing", "Issued"}


def test_status_explains_why_not_ready(cluster, kubectl, namespace, operator):
    """A missing issuer, and an issuance that failed and backs off: what a person reads first."""
    apply(kubectl, namespace, documents(certificate("orphan", issuer="nobody"),
                                        constrained_ca("internal.example.com"),
                                        certificate("evil", issuer="constrained", dns="evil.example.org")))
    kubectl("wait", "-n", namespace, "--for=jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}"
            "=NameConstraintsViolation", "--timeout=60s", "certificate/evil", timeout=200)
    kubectl("wait", "-n", namespace, "--for=condition=Ready=False", "--timeout=60s", "certificate/orphan",
            timeout=200)

    out = certmint(cluster, "status", "orphan", "-n", namespace).stdout
    assert "Ready    False" in out
    assert "Issuer:         Issuer nobody: Ready Unknown (not found)" in out
    assert "Secret:         orphan-tls does not exist" in out

    result = certmint(cluster, "status", "evil", "-n", namespace)
    assert result.returncode == 0
    assert "Ready    False  NameConstraintsViolation" in result.stdout and "evil.example.org" in result.stdout
    assert re.search(r"Back-off:       \d+ failed issuance attempt\(s\), last .* ago; next attempt", result.stdout)
    assert "Issuer:         Issuer constrained: Ready True" in result.stdout
    data = yaml.safe_load(certmint(cluster, "status", "evil", "-n", namespace, "-o", "yaml").stdout)
    attempts = data["backoff"]["failedAttempts"]
    assert attempts >= 1
    # The default back-off: 10 s after the first failure, doubling with each further one.
    last = dt.datetime.fromisoformat(data["backoff"]["lastFailureTime"])
    delay = dt.datetime.fromisoformat(data["backoff"]["nextAttemptAbout"]) - last
    assert delay == min(dt.timedelta(seconds=10 * 2 ** (attempts - 1)), dt.timedelta(hours=1))


def test_status_errors_are_one_line(cluster, namespace):
    one_line_error(certmint(cluster, "status", "absent", "-n", namespace), 1,
                   f"certificate 'absent' in namespace '{namespace}' not found")
    one_line_error(certmint(cluster, "status"), 2, "the following arguments are required: name")
    one_line_error(certmint(cluster, "status", "x", "--context", "nowhere"), 1, "cannot load the kubeconfig",
                   "nowhere")


def test_unreachable_api_server_is_one_line(cluster, tmp_path, namespace):
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    port = localcluster.free_port()  # nothing listens there
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    one_line_error(certmint(cluster, "list", "--kubeconfig", str(path)), 1, "cannot reach the API server")


def test_context_flag_picks_the_kubeconfig_context(cluster, kubectl, tmp_path):
    """--context chooses among the kubeconfig's contexts, and its namespace becomes the default."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    good = config["contexts"][0]
    dead = {"name": "dead", "cluster": {**config["clusters"][0]["cluster"],
                                        "server": f"https://127.0.0.1:{localcluster.free_port()}"}}
    config["clusters"].append(dead)
    config["contexts"] = [{"name": "dead", "context": {**good["context"], "cluster": "dead"}},
                          {"name": "good", "context": {**good["context"], "namespace": "certmint-system"}}]
    config["current-context"] = "dead"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    one_line_error(certmint(cluster, "list", "--kubeconfig", str(path)), 1, "cannot reach the API server")
    chosen = certmint(cluster, "--context", "good", "check", "api", "--kubeconfig", str(path))
    assert chosen.returncode == 0, chosen.stderr
    assert "in namespace certmint-system" in chosen.stdout


def test_forbidden_is_one_line(cluster, kubectl, namespace, tmp_path):
    kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = kubectl("create", "token", "nobody", "-n", namespace, "--duration", "10m").stdout.strip()
    admin = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "nobody",
              "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
              "users": [{"name": "nobody", "user": {"token": token}}],
              "contexts": [{"name": "nobody", "context": {"cluster": "local", "user": "nobody",
                                                          "namespace": namespace}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    err = one_line_error(certmint(cluster, "status", "web", "--kubeconfig", str(path)), 1, "forbidden")
    assert "system:serviceaccount" in err and namespace in err  # the context's namespace was used


# --- list ---------------------------------------------------------------------------------------


def test_list_sorted_by_expiry_with_filters(cluster, kubectl, namespace, operator):
    apply(kubectl, namespace, documents(
        SELF_SIGNED_ISSUER,
        certificate("long", duration="8760h", labels="{tier: web}"),
        certificate("short", duration="24h", labels="{tier: web}"),
        certificate("middle", duration="720h", labels="{tier: db}")))
    for name in ("long", "short", "middle"):
        wait_ready(kubectl, namespace, f"certificate/{name}")

    result = certmint(cluster, "list", "-n", namespace)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "ISSUER", "NOT", "AFTER", "DAYS", "LEFT"]
    rows = [line.split() for line in lines[1:]]
    assert [r[0] for r in rows] == ["short", "middle", "long"], "soonest expiry first"
    assert [r[1] for r in rows] == ["True"] * 3 and {r[2] for r in rows} == {"self"}
    assert [r[4] for r in rows] == ["0", "29", "364"]

    # One Certificate per request: the pages follow each other through continue tokens, same rows.
    assert certmint(cluster, "list", "-n", namespace, "--chunk-size", "1").stdout == result.stdout

    expiring = certmint(cluster, "list", "-n", namespace, "--expiring", "30d").stdout.splitlines()[1:]
    assert [line.split()[0] for line in expiring] == ["short", "middle"]
    assert [line.split()[0] for line in
            certmint(cluster, "list", "-n", namespace, "-l", "tier=web").stdout.splitlines()[1:]] == ["short", "long"]

    wide = certmint(cluster, "list", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "ISSUER", "NOT", "AFTER", "DAYS", "LEFT", "SECRET", "RENEWAL",
                               "REASON", "AGE"]
    row = wide[1].split()
    assert row[0] == "short" and row[5] == "short-tls" and row[7] == "Ready"

    everywhere = certmint(cluster, "list", "-A").stdout.splitlines()
    assert everywhere[0].startswith("NAMESPACE")
    assert any(line.split()[:2] == [namespace, "short"] for line in everywhere)

    items = json.loads(certmint(cluster, "list", "-n", namespace, "-o", "json").stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == ["short", "middle", "long"]
    listed = yaml.safe_load(certmint(cluster, "list", "-n", namespace, "-o", "yaml", "--expiring", "2d").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["short"]

    nothing = certmint(cluster, "list", "-n", namespace, "-l", "tier=none")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert nothing.stderr.strip() == f"No certificates found in namespace {namespace}."
    one_line_error(certmint(cluster, "list", "--expiring", "soon"), 2, "invalid duration 'soon'")


def test_colour_only_on_a_terminal_and_never_with_no_color(cluster, kubectl, namespace, operator):
    apply(kubectl, namespace, documents(SELF_SIGNED_ISSUER, certificate("tty")))
    wait_ready(kubectl, namespace, "certificate/tty")

    def on_a_terminal(extra_env: dict) -> str:
        controller, worker = pty.openpty()
        env = {**{k: v for k, v in cluster.env().items() if k != "NO_COLOR"}, **extra_env}
        proc = subprocess.Popen([str(BIN / "certmint"), "list", "-n", namespace], stdout=worker, stderr=worker,
                                stdin=subprocess.DEVNULL, env=env)
        os.close(worker)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closes when the process exits
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(60)
        os.close(controller)
        assert proc.returncode == 0
        return b"".join(chunks).decode()

    assert "\033[32mTrue\033[0m" in on_a_terminal({})
    plain = on_a_terminal({"NO_COLOR": "1"})
    assert "True" in plain and "\033[" not in plain


# --- renew --------------------------------------------------------------------------------------


def test_renew_waits_for_the_new_revision(cluster, kubectl, namespace, operator):
    apply(kubectl, namespace, documents(SELF_SIGNED_ISSUER, certificate("a", labels="{group: pair}"),
                                        certificate("b", labels="{group: pair}")))
    wait_ready(kubectl, namespace, "certificate/a")
    wait_ready(kubectl, namespace, "certificate/b")
    before = leaf_of(kubectl, namespace, "a-tls").serial_number

    result = certmint(cluster, "renew", "a", "-n", namespace, "--wait", "--timeout", "90s")
    assert result.returncode == 0, result.stderr
    assert "certificate.certmint.io/a renewal requested" in result.stdout
    assert "certificate.certmint.io/a renewed: revision 2" in result.stdout
    assert get_json(kubectl, "certificate", "-n", namespace, "a")["status"]["revision"] == 2
    assert leaf_of(kubectl, namespace, "a-tls").serial_number != before
    assert "ManuallyTriggered" in certmint(cluster, "status", "a", "-n", namespace).stdout

    # By selector, both at once.
    result = certmint(cluster, "renew", "-l", "group=pair", "-n", namespace, "--wait", "--timeout", "90s")
    assert result.returncode == 0, result.stderr
    assert "certificate.certmint.io/a renewed: revision 3" in result.stdout
    assert "certificate.certmint.io/b renewed: revision 2" in result.stdout

    one_line_error(certmint(cluster, "renew", "absent", "-n", namespace), 1, "not found")
    one_line_error(certmint(cluster, "renew", "-n", namespace), 2, "give Certificate names, or --all, or -l")


def test_renew_wait_fails_when_the_issuance_fails(cluster, kubectl, namespace, operator):
    apply(kubectl, namespace, documents(SELF_SIGNED_ISSUER, certificate("doomed")))
    wait_ready(kubectl, namespace, "certificate/doomed")
    # The issuer goes away: the renewal cannot be signed, and --wait must say so rather than hang.
    kubectl("delete", "issuer", "self", "-n", namespace)
    result = certmint(cluster, "renew", "doomed", "-n", namespace, "--wait", "--timeout", "20s")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "doomed" in result.stderr and ("renewal failed" in result.stderr or "timed out" in result.stderr)


# --- inspect and verify -------------------------------------------------------------------------


class CrlServer:
    """An HTTP server publishing one CRL, as an issuer's crlDistributionPoints would."""

    def __init__(self):
        self.body = b""
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/ca.crl"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def publish(self, ca_secret: dict[str, bytes], revoked: list[int]) -> None:
        ca = x509.load_pem_x509_certificates(ca_secret["tls.crt"])[0]
        key = serialization.load_pem_private_key(ca_secret["tls.key"], None)
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
                   .last_update(now - dt.timedelta(minutes=1)).next_update(now + dt.timedelta(hours=1)))
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
        self.body = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture
def crl_server():
    server = CrlServer()
    yield server
    server.httpd.shutdown()


def test_inspect_secret_and_its_crl(cluster, kubectl, namespace, operator, crl_server):
    apply(kubectl, namespace, documents(SELF_SIGNED_ISSUER, f"""apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: root}}
spec:
  isCA: true
  commonName: Inspect Root
  secretName: root
  privateKey: {{algorithm: ECDSA}}
  issuerRef: {{name: self}}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {{name: root}}
spec: {{ca: {{secretName: root, crlDistributionPoints: ["{crl_server.url}"]}}}}""",
                                        certificate("api", issuer="root")))
    wait_ready(kubectl, namespace, "certificate/api")
    data = secret_data(kubectl, namespace, "api-tls")
    leaf = x509.load_pem_x509_certificates(data["tls.crt"])[0]
    crl_server.publish(secret_data(kubectl, namespace, "root"), revoked=[])

    result = certmint(cluster, "inspect", "secret", "api-tls", "-n", namespace)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    fingerprint = leaf.fingerprint(hashes.SHA256()).hex(":").upper()
    for expected in ("Subject:              CN=api", "Issuer:               CN=Inspect Root",
                     f"Serial:               {leaf.serial_number:x}", f"SHA-256 fingerprint:  {fingerprint}",
                     "(89 days left)", "Key:                  ECDSA 256", "CA:                   no",
                     "SANs:                 DNS:api.example.com",
                     "Key usages:           digital signature",
                     "Extended key usages:  server auth",
                     "Verifies:               yes, to CN=Inspect Root",
                     f"Revocation (CRL):       not revoked ({crl_server.url})"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    # Nothing of the private key, in any form.
    key_pem = data["tls.key"].decode()
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    assert "PRIVATE KEY" not in out and key_body[:40] not in out.replace("\n", "")

    crl_server.publish(secret_data(kubectl, namespace, "root"), revoked=[leaf.serial_number])
    revoked = certmint(cluster, "inspect", "secret", "api-tls", "-n", namespace, "-o", "json")
    assert revoked.returncode == 1
    report = json.loads(revoked.stdout)
    assert report["crl"]["status"] == "revoked" and report["verifies"]["ok"] is True
    assert report["certificate"]["serial"] == f"{leaf.serial_number:x}"

    one_line_error(certmint(cluster, "inspect", "secret", "absent", "-n", namespace), 1, "not found")


def test_inspect_and_verify_files_from_a_secret(cluster, kubectl, namespace, operator, tmp_path):
    apply(kubectl, namespace, documents(constrained_ca("internal.example.com"),
                                        certificate("svc", issuer="constrained", dns="svc.internal.example.com")))
    wait_ready(kubectl, namespace, "certificate/svc")
    files = write_secret_files(kubectl, namespace, "svc-tls", tmp_path / "svc")
    tls_crt, ca_crt = str(files["tls.crt"]), str(files["ca.crt"])

    inspected = certmint(cluster, "inspect", tls_crt, "--ca", ca_crt)
    assert inspected.returncode == 0 and "Verifies:               yes, to CN=Constrained CA" in inspected.stdout
    assert "DNS:svc.internal.example.com" in inspected.stdout
    assert "not checked" in certmint(cluster, "inspect", tls_crt).stdout  # no roots given

    ok = certmint(cluster, "verify", tls_crt, "--roots", ca_crt, "--host", "svc.internal.example.com",
                  "--purpose", "server", env={"KUBECONFIG": "/nonexistent"})  # no cluster needed
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("verified for server auth, valid for svc.internal.example.com:")
    assert "CN=Constrained CA" in ok.stdout

    one_line_error(certmint(cluster, "verify", tls_crt, "--roots", ca_crt, "--host", "other.example.com"), 1,
                   "other.example.com is not among the certificate's DNS names")
    one_line_error(certmint(cluster, "verify", tls_crt, "--roots", ca_crt, "--purpose", "client"), 1,
                   "not for client auth")
    one_line_error(certmint(cluster, "verify", ca_crt, "--roots", tls_crt), 1, "verification failed")
    # The CA Secret's own tls.crt is the same root: trusting it verifies too.
    ca_cert = write_secret_files(kubectl, namespace, "constrained-ca", tmp_path / "ca")["tls.crt"]
    assert certmint(cluster, "verify", tls_crt, "--roots", str(ca_cert)).returncode == 0
    one_line_error(certmint(cluster, "verify", tls_crt), 2, "--roots")


# --- revoke -------------------------------------------------------------------------------------

# NetStress's set-up: a root CA (made by a self-signed bootstrap issuer, with the crl sign usage
# a CRL signer needs) as an Issuer that publishes a CRL, and client certificates it signs.
REVOKE_CA = """
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: bootstrap}
spec: {selfSigned: {}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: agents-ca}
spec:
  isCA: true
  commonName: NetStress CA
  secretName: agents-ca
  usages: [digital signature, cert sign, crl sign]
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: bootstrap}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: agents-ca}
spec:
  ca:
    secretName: agents-ca
    crl: {validity: 24h}
"""


def agent(name: str) -> str:
    return f"""---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: {name}}}
spec:
  secretName: {name}
  commonName: {name}
  usages: [digital signature, client auth]
  privateKey: {{algorithm: ECDSA}}
  issuerRef: {{name: agents-ca}}
"""


def with_agents(kubectl, namespace: str, *names: str) -> None:
    apply(kubectl, namespace, REVOKE_CA + "".join(agent(n) for n in names))
    for name in ("agents-ca", *names):
        wait_ready(kubectl, namespace, f"certificate/{name}")
    wait_ready(kubectl, namespace, "issuer/agents-ca")


def hex_serial(serial: int) -> str:
    digits = f"{serial:X}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def published_crl(kubectl, namespace: str, issuer: str) -> x509.CertificateRevocationList:
    configmap = get_json(kubectl, "configmap", "-n", namespace, f"{issuer}-crl")
    return x509.load_pem_x509_crl(configmap["data"]["ca.crl"].encode())


def test_revoke_an_agent_through_kubectl(cluster, kubectl, namespace, operator, tmp_path):
    """The NetStress flow from the command line: `kubectl certmint revoke agent-01 --wait`, then the CRL as
    published makes openssl refuse the old certificate, and the Certificate has a new one."""
    with_agents(kubectl, namespace, "agent-01", "agent-02")
    old = write_secret_files(kubectl, namespace, "agent-01", tmp_path / "old")
    old_serial = leaf_of(kubectl, namespace, "agent-01").serial_number
    agent_02 = write_secret_files(kubectl, namespace, "agent-02", tmp_path / "agent-02")

    result = kubectl_plugin(cluster, "revoke", "agent-01", "-n", namespace, "--reason", "keyCompromise", "--wait")
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert lines[0] == "certificaterevocation.certmint.io/agent-01-r1-keycompromise created"
    assert lines[1].startswith("Revoked:  the current certificate of Certificate agent-01, reason keyCompromise, at ")
    assert lines[2].startswith(f"  serial {hex_serial(old_serial)}  revision 1, not after ")
    assert lines[2].endswith(f"Issuer {namespace}/agents-ca")
    assert re.fullmatch(rf"CRL \(CRL number \d+ and later\): ConfigMap {namespace}/agents-ca-crl, key ca.crl; "
                        rf"HTTP /crls/{namespace}/agents-ca.crl on the operator's metrics port", lines[3]), lines[3]
    obj = get_json(kubectl, "certificaterevocation", "-n", namespace, "agent-01-r1-keycompromise",
                   "--show-managed-fields")
    assert obj["spec"] == {"certificateName": "agent-01", "reason": "keyCompromise"}
    assert {f["manager"] for f in obj["metadata"]["managedFields"] if "f:spec" in f.get("fieldsV1", {})} == \
        {"certmint-cli"}

    # The CRL from the ConfigMap, as a pod mounts it: openssl rejects the old certificate only.
    crl = published_crl(kubectl, namespace, "agents-ca")
    assert crl.get_revoked_certificate_by_serial_number(old_serial) is not None
    crl_file = tmp_path / "ca.crl"
    crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))

    def verify(files: dict) -> subprocess.CompletedProcess:
        return openssl("verify", "-CAfile", str(files["ca.crt"]), "-CRLfile", str(crl_file), "-crl_check",
                       str(files["tls.crt"]), check=False)

    rejected = verify(old)
    assert rejected.returncode != 0 and b"certificate revoked" in rejected.stdout + rejected.stderr
    assert verify(agent_02).returncode == 0

    # Re-issued with a new serial (and a new key), which the same CRL accepts.
    deadline = time.monotonic() + 60
    while leaf_of(kubectl, namespace, "agent-01").serial_number == old_serial:
        assert time.monotonic() < deadline, "agent-01 was not re-issued"
        time.sleep(0.25)
    assert verify(write_secret_files(kubectl, namespace, "agent-01", tmp_path / "new")).returncode == 0
    # Run again, the command names the new revision: a new revocation, not the record made above.
    again = certmint(cluster, "revoke", "agent-01", "-n", namespace, "--reason", "keyCompromise", "--dry-run",
                     "-o", "json")
    assert json.loads(again.stdout)["metadata"]["name"] == "agent-01-r2-keycompromise"


def test_revoke_a_serial_of_a_cluster_issuer(cluster, kubectl, namespace, operator):
    with_agents(kubectl, namespace)
    name = f"agents-root-{secrets.token_hex(3)}"
    # The ClusterIssuer's CA Secret: the namespaced CA's, in the cluster resource namespace.
    data = secret_data(kubectl, namespace, "agents-ca")
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
        "stringData": {k: v.decode() for k, v in data.items() if k in ("tls.crt", "tls.key", "ca.crt")}}))
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "certmint.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name},
        "spec": {"ca": {"secretName": name, "crl": {}}}}))
    try:
        serial = secrets.randbits(120) | 1 << 112
        colons = ":".join(f"{serial:030x}"[i:i + 2] for i in range(0, 30, 2))  # as openssl x509 -text prints it
        object_name = f"{name}-{serial:030x}-privilegewithdrawn"

        # --dry-run prints the object and creates nothing.
        dry = certmint(cluster, "revoke", "--issuer", f"ClusterIssuer/{name}", "--serial", colons, "-n", namespace,
                       "--reason", "privilegeWithdrawn", "-o", "yaml", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert yaml.safe_load(dry.stdout) == {
            "apiVersion": "certmint.io/v1", "kind": "CertificateRevocation",
            "metadata": {"name": object_name, "namespace": namespace},
            "spec": {"issuerRef": {"name": name, "kind": "ClusterIssuer"}, "serialNumber": hex_serial(serial),
                     "reason": "privilegeWithdrawn"}}
        assert kubectl("get", "certificaterevocation", "-n", namespace, object_name, check=False).returncode != 0

        result = certmint(cluster, "revoke", "--issuer", f"clusterissuer/{name}", "--serial", colons, "-n",
                          namespace, "--reason", "privilegeWithdrawn", "--wait")
        assert result.returncode == 0, (result.stdout, result.stderr)
        lines = result.stdout.splitlines()
        assert lines[0] == f"certificaterevocation.certmint.io/{object_name} created"
        assert lines[2] == f"  serial {hex_serial(serial)}  ClusterIssuer {name}"
        assert lines[3].endswith(f"ConfigMap {OPERATOR_NAMESPACE}/{name}-crl, key ca.crl; "
                                 f"HTTP /crls/{name}.crl on the operator's metrics port"), lines[3]
        crl = published_crl(kubectl, OPERATOR_NAMESPACE, name)
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None

        # The same command again (a retry) finds the revocation it made: one record, exit 0.
        again = certmint(cluster, "revoke", "--issuer", f"ClusterIssuer/{name}", "--serial", hex_serial(serial),
                         "-n", namespace, "--reason", "privilegeWithdrawn", "--wait", "-o", "json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["status"]["serials"][0]["serialNumber"] == hex_serial(serial)
        listed = get_json(kubectl, "certificaterevocations", "-n", namespace)["items"]
        assert [i["metadata"]["name"] for i in listed] == [object_name]
        # The same name with another spec is refused rather than taken for it.
        one_line_error(certmint(cluster, "revoke", "--issuer", f"ClusterIssuer/{name}", "--serial", "0A", "-n",
                                namespace, "--name", object_name), 1, "already exists", "give --name")
    finally:
        kubectl("delete", "clusterissuer", name, "--wait=false", check=False)


def test_revoke_all_valid(cluster, kubectl, namespace, operator):
    with_agents(kubectl, namespace, "agent-05")
    serials = [leaf_of(kubectl, namespace, "agent-05").serial_number]
    assert certmint(cluster, "renew", "agent-05", "-n", namespace, "--wait").returncode == 0
    serials.append(leaf_of(kubectl, namespace, "agent-05").serial_number)

    result = certmint(cluster, "revoke", "agent-05", "--all-valid", "--reason", "affiliationChanged", "-n",
                      namespace, "--wait", "-o", "json")
    assert result.returncode == 0, result.stderr
    obj = json.loads(result.stdout)
    assert obj["metadata"]["name"] == "agent-05-all-r2-affiliationchanged"
    assert obj["spec"] == {"certificateName": "agent-05", "revisions": "AllValid", "reason": "affiliationChanged"}
    assert sorted(s["serialNumber"] for s in obj["status"]["serials"]) == sorted(map(hex_serial, serials))
    crl = published_crl(kubectl, namespace, "agents-ca")
    assert all(crl.get_revoked_certificate_by_serial_number(s) is not None for s in serials)


def test_revoke_errors_are_one_line(cluster, kubectl, namespace, operator):
    with_agents(kubectl, namespace)
    # No such Certificate: the revocation is made, and --wait reports the operator's reason.
    err = one_line_error(certmint(cluster, "revoke", "agent-99", "-n", namespace, "--wait", "--timeout", "30s"), 1,
                         "certificaterevocation.certmint.io/agent-99-unspecified is not in effect",
                         "CertificateNotFound")
    assert "agent-99" in err.split("CertificateNotFound", 1)[1]
    # Without --wait, the object is made and the command says how to follow it.
    made = certmint(cluster, "revoke", "agent-98", "-n", namespace)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [
        "certificaterevocation.certmint.io/agent-98-unspecified created",
        "Revokes:  the current certificate of Certificate agent-98, reason unspecified",
        f"Follow:   kubectl wait -n {namespace} --for=condition=Revoked certificaterevocations/agent-98-unspecified"]
    # The CRD's CEL rules, as the API server words them (and a server dry run stores nothing).
    for extra in ((), ("--dry-run=server",)):
        one_line_error(certmint(cluster, "revoke", "--issuer", "agents-ca", "--serial", "5G3A09", "-n", namespace,
                                *extra), 1, 'serialNumber "5G3A09" is not a serial number in hex')
    one_line_error(certmint(cluster, "revoke", "--issuer", "agents-ca", "--serial", "00:00", "-n", namespace), 1,
                   "serialNumber cannot be 0")
    # Flag misuse is a usage error, before anything is sent.
    one_line_error(kubectl_plugin(cluster, "revoke", "agent-01", "--issuer", "Issuer/agents-ca", "--serial", "0A",
                                  "-n", namespace), 2, "not both")
    one_line_error(certmint(cluster, "revoke", "--serial", "0A", "-n", namespace), 2, "go together")
    one_line_error(certmint(cluster, "revoke", "x", "--reason", "stolen"), 2, "invalid choice: 'stolen'")
    names = {i["metadata"]["name"] for i in get_json(kubectl, "certificaterevocations", "-n", namespace)["items"]}
    assert names == {"agent-99-unspecified", "agent-98-unspecified"}


# --- cleanup ------------------------------------------------------------------------------------


def test_cleanup_lists_then_deletes_orphaned_secrets(cluster, kubectl, namespace, operator):
    apply(kubectl, namespace, documents(SELF_SIGNED_ISSUER, certificate("gone"), certificate("kept")))
    wait_ready(kubectl, namespace, "certificate/gone")
    wait_ready(kubectl, namespace, "certificate/kept")
    kubectl("delete", "certificate", "gone", "-n", namespace)

    listed = certmint(cluster, "cleanup", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0][:3] == ["NAMESPACE", "SECRET", "CERTIFICATE"]
    assert [r[:3] for r in rows[1:]] == [[namespace, "gone-tls", "gone"]]
    assert "Certificate gone does not exist" in listed.stdout
    assert "would be deleted" in listed.stderr
    kubectl("get", "secret", "gone-tls", "-n", namespace)  # a dry run deletes nothing

    one_line_error(certmint(cluster, "cleanup", "-n", namespace, "--delete"), 2, "add --yes")
    deleted = certmint(cluster, "cleanup", "-n", namespace, "--delete", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "secret/gone-tls deleted" in deleted.stdout
    assert kubectl("get", "secret", "gone-tls", "-n", namespace, check=False).returncode != 0
    kubectl("get", "secret", "kept-tls", "-n", namespace)
    again = certmint(cluster, "cleanup", "-n", namespace)
    assert again.stdout == "" and "No orphaned certmint Secrets" in again.stderr


def test_cleanup_asks_before_deleting_on_a_terminal(cluster, kubectl, namespace, operator):
    apply(kubectl, namespace, documents(SELF_SIGNED_ISSUER, certificate("asked")))
    wait_ready(kubectl, namespace, "certificate/asked")
    kubectl("delete", "certificate", "asked", "-n", namespace)

    def answer(reply: str) -> str:
        controller, worker = pty.openpty()
        proc = subprocess.Popen([str(BIN / "certmint"), "cleanup", "-n", namespace, "--delete"], stdin=worker,
                                stdout=worker, stderr=worker, env=cluster.env())
        os.close(worker)
        seen = b""
        while b"[y/N]" not in seen:
            seen += os.read(controller, 4096)
        os.write(controller, reply.encode() + b"\n")
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        proc.wait(60)
        os.close(controller)
        assert proc.returncode == 0
        return seen.decode()

    assert "Nothing deleted." in answer("n")
    kubectl("get", "secret", "asked-tls", "-n", namespace)
    assert "secret/asked-tls" in answer("y")
    assert kubectl("get", "secret", "asked-tls", "-n", namespace, check=False).returncode != 0


# --- check api, version, completion -------------------------------------------------------------


def test_check_api(cluster, namespace):
    result = certmint(cluster, "check", "api", "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert "certificates.certmint.io, issuers.certmint.io, clusterissuers.certmint.io Established" in result.stdout
    assert "an invalid one is rejected" in result.stdout
    one_line_error(certmint(cluster, "check", "api", "-n", "no-such-namespace", "--wait", "2s"), 1,
                   "not ready after waiting 2s", "namespace no-such-namespace does not exist")


def test_version_finds_the_operator_deployment(cluster, kubectl, namespace):
    installed = importlib.metadata.version("certmint")
    client = certmint(cluster, "version", "--client", env={"KUBECONFIG": "/nonexistent"})
    assert client.returncode == 0 and client.stdout.strip() == f"Client:     {installed}"
    assert certmint(cluster, "version").stdout.splitlines()[1].startswith("Kubernetes: v1.")
    # The chart's Deployment as installed (this control plane runs no pods: the object is what counts).
    kubectl("apply", "-n", namespace, "-f", "-", input="""apiVersion: apps/v1
kind: Deployment
metadata:
  name: certmint
  labels: {app.kubernetes.io/part-of: certmint, app.kubernetes.io/component: controller}
spec:
  selector: {matchLabels: {app: certmint}}
  template:
    metadata: {labels: {app: certmint}}
    spec: {containers: [{name: operator, image: "registry.example.com:5000/certmint:7.3.1"}]}
""")
    out = certmint(cluster, "version", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert (f"Operator:   7.3.1 (deployment {namespace}/certmint, image registry.example.com:5000/certmint:7.3.1)"
            in out.stdout)
    data = json.loads(certmint(cluster, "version", "-n", namespace, "-o", "json").stdout)
    assert data["client"] == installed and data["operators"][0]["version"] == "7.3.1"


def test_completion_scripts(cluster, tmp_path):
    script = certmint(cluster, "completion", "bash").stdout
    path = tmp_path / "certmint.bash"
    path.write_text(script)
    probe = subprocess.run(["bash", "-c", f"""source {path}
COMP_WORDS=(certmint list -o ""); COMP_CWORD=3; _certmint; echo "${{COMPREPLY[*]}}"
COMP_WORDS=(kubectl-certmint ""); COMP_CWORD=1; _certmint; echo "${{COMPREPLY[*]}}"
COMP_WORDS=(certmint check ""); COMP_CWORD=2; _certmint; echo "${{COMPREPLY[*]}}"
COMP_WORDS=(kubectl-certmint revoke agent-01 --reason ""); COMP_CWORD=4; _certmint; echo "${{COMPREPLY[*]}}"
COMP_WORDS=(certmint revoke --""); COMP_CWORD=2; _certmint; echo "${{COMPREPLY[*]}}"
complete -p kubectl-certmint"""], capture_output=True, text=True, timeout=30, check=False)
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert lines[0] == "table wide json yaml"
    commands = {"status", "list", "renew", "inspect", "verify", "revoke", "cleanup", "check", "version",
                "completion"}
    assert commands <= set(lines[1].split())
    assert lines[2].split()[0] == "api"
    assert "keyCompromise" in lines[3].split() and "--all-valid" in lines[4].split()
    assert "bashcompinit" in certmint(cluster, "completion", "zsh").stdout
    fish = certmint(cluster, "completion", "fish").stdout
    assert "complete -c kubectl-certmint" in fish and "-l expiring" in fish
    one_line_error(certmint(cluster, "completion", "tcsh"), 2, "invalid choice")


# --- kubectl plugin -----------------------------------------------------------------------------


def test_kubectl_certmint_through_plugin_discovery(cluster, kubectl, namespace, operator):
    apply(kubectl, namespace, documents(SELF_SIGNED_ISSUER, certificate("plugged")))
    wait_ready(kubectl, namespace, "certificate/plugged")
    env = {**cluster.env(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    plugins = subprocess.run([localcluster.binary("kubectl"), "plugin", "list"], capture_output=True, text=True,
                             env=env, timeout=60, check=False)
    assert str(BIN / "kubectl-certmint") in plugins.stdout

    status = kubectl_plugin(cluster, "status", "plugged", "-n", namespace)
    assert status.returncode == 0, status.stderr
    assert f"Certificate {namespace}/plugged" in status.stdout and "Ready    True" in status.stdout
    # kubectl-style flags before the command, as `kubectl certmint -n NS list` is typed.
    listed = kubectl_plugin(cluster, "-n", namespace, "list")
    assert listed.stdout.splitlines()[1].split()[:2] == ["plugged", "True"]
    usage = kubectl_plugin(cluster, "status")
    assert usage.returncode == 2 and "kubectl certmint status" in usage.stderr
    context = run_kubectl(cluster, "config", "current-context").stdout.strip()
    assert kubectl_plugin(cluster, "--context", context, "status", "plugged", "-n", namespace).returncode == 0
