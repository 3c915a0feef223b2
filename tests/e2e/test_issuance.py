"""Full issuance on the real control plane: CA chains, every key type and SAN type, extra outputs,
mutual TLS with the issued Secrets, and the errors only the operator can report."""
from __future__ import annotations

import socket
import ssl
import threading
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from conftest import (
    OPERATOR_NAMESPACE,
    apply,
    get_json,
    openssl,
    secret_data,
    wait_for_events,
    wait_ready,
    write_secret_files,
)
from manifests import SELF_SIGNED_ISSUER, constrained_ca, documents

PEM_END = b"-----END CERTIFICATE-----\n"


def split_pem(bundle: bytes) -> list[bytes]:
    return [part + PEM_END for part in bundle.split(PEM_END) if part.strip()]


def ca_chain(namespace: str, suffix: str) -> str:
    """selfSigned -> root (isCA, ClusterIssuer) -> intermediate (isCA, Issuer): the chain from the seeds."""
    return f"""
apiVersion: certmint.io/v1
kind: Issuer
metadata: {{name: bootstrap-{suffix}, namespace: {OPERATOR_NAMESPACE}}}
spec: {{selfSigned: {{}}}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: root-{suffix}, namespace: {OPERATOR_NAMESPACE}}}
spec:
  isCA: true
  commonName: Test Root {suffix}
  secretName: root-{suffix}
  duration: 87600h
  privateKey: {{algorithm: ECDSA, size: 384}}
  issuerRef: {{name: bootstrap-{suffix}}}
---
apiVersion: certmint.io/v1
kind: ClusterIssuer
metadata: {{name: root-{suffix}}}
spec: {{ca: {{secretName: root-{suffix}}}}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: intermediate, namespace: {namespace}}}
spec:
  isCA: true
  commonName: Test Intermediate {suffix}
  secretName: intermediate
  duration: 8760h
  privateKey: {{algorithm: ECDSA, size: 256}}
  issuerRef: {{name: root-{suffix}, kind: ClusterIssuer}}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {{name: intermediate, namespace: {namespace}}}
spec: {{ca: {{secretName: intermediate}}}}
"""


def leaf(name: str, spec: str) -> str:
    return f"""
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: {name}}}
spec:
  secretName: {name}
  issuerRef: {{name: intermediate}}
{spec}"""


@pytest.fixture
def chain_namespace(kubectl, namespace, operator):
    kubectl("apply", "-f", "-", input=ca_chain(namespace, uuid.uuid4().hex[:6]))
    wait_ready(kubectl, namespace, "issuer/intermediate")
    return namespace


MTLS_LEAVES = (
    leaf("server", """  commonName: server.test
  dnsNames: [server.test, localhost]
  ipAddresses: [127.0.0.1, "::1"]
  duration: 720h
  usages: [digital signature, key encipherment, server auth]""")
    + leaf("client", """  commonName: client
  uris: [spiffe://cluster.local/ns/test/sa/client]
  duration: 720h
  usages: [digital signature, key encipherment, client auth]"""))


def test_root_intermediate_leaf_chain_verifies(kubectl, chain_namespace, tmp_path):
    ns = chain_namespace
    apply(kubectl, ns, MTLS_LEAVES)
    wait_ready(kubectl, ns, "certificate/server")
    files = write_secret_files(kubectl, ns, "server", tmp_path)
    chain = split_pem(files["tls.crt"].read_bytes())
    assert len(chain) == 2, "tls.crt holds the leaf and the intermediate, not the root"
    (tmp_path / "intermediates.pem").write_bytes(chain[1])
    (tmp_path / "leaf.pem").write_bytes(chain[0])
    openssl("verify", "-CAfile", str(files["ca.crt"]), "-untrusted", str(tmp_path / "intermediates.pem"),
            str(tmp_path / "leaf.pem"))
    root = x509.load_pem_x509_certificate(files["ca.crt"].read_bytes())
    assert root.subject == root.issuer, "ca.crt is the self-signed root, the trust anchor"
    leaf_cert = x509.load_pem_x509_certificate(chain[0])
    intermediate = x509.load_pem_x509_certificate(chain[1])
    assert leaf_cert.not_valid_after_utc <= intermediate.not_valid_after_utc
    # RFC 5280 properties a user can check with openssl
    text = openssl("x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-text").stdout.decode()
    assert "X509v3 Subject Key Identifier" in text and "X509v3 Authority Key Identifier" in text
    assert "X509v3 Basic Constraints: critical" in text and "CA:FALSE" in text
    assert "X509v3 Key Usage: critical" in text
    assert "IP Address:127.0.0.1" in text and "IP Address:0:0:0:0:0:0:0:1" in text
    assert leaf_cert.serial_number > 2 ** 63
    annotations = get_json(kubectl, "secret", "-n", ns, "server")["metadata"]["annotations"]
    assert annotations["certmint.io/issuer-name"] == "intermediate"
    assert annotations["certmint.io/issuer-kind"] == "Issuer"
    assert annotations["certmint.io/alt-names"] == "server.test,localhost"
    assert annotations["certmint.io/ip-sans"] == "127.0.0.1,::1"
    # kopf only watches: no diff-base or progress annotations, no finalizer, no field manager of its own
    cert_meta = get_json(kubectl, "certificate", "-n", ns, "server", "--show-managed-fields")["metadata"]
    assert not [a for a in cert_meta.get("annotations") or {} if "kopf" in a]
    assert not cert_meta.get("finalizers")
    assert {m["manager"] for m in cert_meta["managedFields"]} <= {"kubectl", "kubectl-client-side-apply", "certmint"}


def _serve_once(context: ssl.SSLContext, sock: socket.socket, result: dict) -> None:
    conn, _ = sock.accept()
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            peer = tls.getpeercert()
            result["peer"] = dict(x[0] for x in peer["subject"]) if peer else None
            tls.sendall(b"hello " + result["peer"]["commonName"].encode())
    except (ssl.SSLError, OSError) as e:
        result["error"] = e


def mtls_exchange(server_files: dict, client_files: dict, trust_for_server: str) -> bytes:
    """A real TLS 1.3 handshake over 127.0.0.1 in which both sides present certificates."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server_files["tls.crt"], server_files["tls.key"])
    server_ctx.load_verify_locations(trust_for_server)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(server_files["ca.crt"]))
    client_ctx.load_cert_chain(client_files["tls.crt"], client_files["tls.key"])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        result: dict = {}
        t = threading.Thread(target=_serve_once, args=(server_ctx, listener, result))
        t.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client_ctx.wrap_socket(raw, server_hostname="server.test") as tls:
                    return tls.recv(100)
        finally:
            t.join(10)


def test_mutual_tls_between_server_and_client_from_one_ca(kubectl, chain_namespace, namespace, tmp_path):
    ns = chain_namespace
    apply(kubectl, ns, MTLS_LEAVES)
    wait_ready(kubectl, ns, "certificate/server")
    wait_ready(kubectl, ns, "certificate/client")
    server = write_secret_files(kubectl, ns, "server", tmp_path / "server")
    client = write_secret_files(kubectl, ns, "client", tmp_path / "client")
    assert mtls_exchange(server, client, str(server["ca.crt"])) == b"hello client"

    # a client certificate from another CA is refused by the server
    apply(kubectl, ns, """
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: stranger}
spec: {selfSigned: {}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: stranger}
spec:
  secretName: stranger
  commonName: client
  usages: [digital signature, client auth]
  privateKey: {algorithm: ECDSA}
  issuerRef: {name: stranger}
""")
    wait_ready(kubectl, ns, "certificate/stranger")
    stranger = write_secret_files(kubectl, ns, "stranger", tmp_path / "stranger")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        reply = mtls_exchange(server, stranger, str(server["ca.crt"]))
        if not reply:  # TLS 1.3: the server's rejection arrives as an alert on the first read
            raise ConnectionError("server closed the connection")


KEY_TYPES = [
    ("rsa2048", "RSA", 2048, "PKCS1", "BEGIN RSA PRIVATE KEY", "Private-Key: (2048 bit"),
    ("rsa3072", "RSA", 3072, "PKCS8", "BEGIN PRIVATE KEY", "Private-Key: (3072 bit"),
    ("rsa4096", "RSA", 4096, "PKCS1", "BEGIN RSA PRIVATE KEY", "Private-Key: (4096 bit"),
    ("rsa8192", "RSA", 8192, "PKCS8", "BEGIN PRIVATE KEY", "Private-Key: (8192 bit"),
    ("ec256", "ECDSA", 256, "PKCS1", "BEGIN EC PRIVATE KEY", "prime256v1"),
    ("ec384", "ECDSA", 384, "PKCS8", "BEGIN PRIVATE KEY", "secp384r1"),
    ("ec521", "ECDSA", 521, "PKCS1", "BEGIN EC PRIVATE KEY", "secp521r1"),
    ("ed25519", "Ed25519", None, "PKCS8", "BEGIN PRIVATE KEY", "ED25519"),
]


def test_every_key_type_and_encoding_from_a_ca_issuer(kubectl, chain_namespace, tmp_path):
    ns = chain_namespace
    manifests = ""
    for name, algorithm, size, encoding, _, _ in KEY_TYPES:
        size_line = f", size: {size}" if size else ""
        manifests += leaf(name, f"""  commonName: {name}.test
  dnsNames: [{name}.test]
  privateKey: {{algorithm: {algorithm}{size_line}, encoding: {encoding}}}""")
    apply(kubectl, ns, manifests)
    for name, *_ in KEY_TYPES:
        wait_ready(kubectl, ns, f"certificate/{name}", timeout="180s")
    for name, _algorithm, _size, _encoding, pem_header, openssl_says in KEY_TYPES:
        files = write_secret_files(kubectl, ns, name, tmp_path / name)
        assert pem_header in files["tls.key"].read_text(), name
        key_text = openssl("pkey", "-in", str(files["tls.key"]), "-noout", "-text").stdout.decode()
        assert openssl_says in key_text, name
        assert openssl("pkey", "-in", str(files["tls.key"]), "-pubout").stdout == \
            openssl("x509", "-in", str(files["tls.crt"]), "-noout", "-pubkey").stdout, name
        chain = split_pem(files["tls.crt"].read_bytes())
        (tmp_path / name / "i.pem").write_bytes(b"".join(chain[1:]))
        openssl("verify", "-CAfile", str(files["ca.crt"]), "-untrusted", str(tmp_path / name / "i.pem"),
                str(files["tls.crt"]))


def test_every_san_type_and_subject_field(kubectl, chain_namespace, tmp_path):
    ns = chain_namespace
    apply(kubectl, ns, leaf("names", """  commonName: names.test
  dnsNames: ["*.apps.test", names.test]
  ipAddresses: [10.1.2.3, "2001:db8::1"]
  uris: ["spiffe://trust.domain/ns/prod/sa/payments"]
  emailAddresses: [ops@example.com]
  subject:
    organizations: [Example Corp]
    organizationalUnits: [Platform]
    countries: [US]
    provinces: [CA]
    localities: [San Francisco]
    streetAddresses: [1 Main St]
    postalCodes: ["94105"]
    serialNumber: "1234"
  privateKey: {algorithm: ECDSA}"""))
    wait_ready(kubectl, ns, "certificate/names")
    files = write_secret_files(kubectl, ns, "names", tmp_path)
    text = openssl("x509", "-in", str(files["tls.crt"]), "-noout", "-text").stdout.decode()
    text += openssl("x509", "-in", str(files["tls.crt"]), "-noout", "-subject", "-nameopt", "RFC2253").stdout.decode()
    for expected in ("DNS:*.apps.test", "DNS:names.test", "IP Address:10.1.2.3", "IP Address:2001:DB8:0:0:0:0:0:1",
                     "URI:spiffe://trust.domain/ns/prod/sa/payments", "email:ops@example.com",
                     "O=Example Corp", "OU=Platform", "C=US", "ST=CA", "L=San Francisco", "street=1 Main St",
                     "postalCode=94105", "serialNumber=1234", "CN=names.test"):
        assert expected in text, expected
    annotations = get_json(kubectl, "secret", "-n", ns, "names")["metadata"]["annotations"]
    assert annotations["certmint.io/uri-sans"] == "spiffe://trust.domain/ns/prod/sa/payments"


def test_extra_outputs_secret_template_and_pkcs12(kubectl, chain_namespace, tmp_path):
    ns = chain_namespace
    kubectl("create", "secret", "generic", "-n", ns, "p12-password", "--from-literal=password=s3cret")
    apply(kubectl, ns, leaf("outputs", """  commonName: outputs.test
  privateKey: {algorithm: RSA, size: 2048}
  secretTemplate:
    labels: {team: payments}
    annotations: {owner: ops@example.com}
  additionalOutputFormats: [{type: DER}, {type: CombinedPEM}]
  keystores:
    pkcs12:
      create: true
      passwordSecretRef: {name: p12-password, key: password}
      profile: Modern2023"""))
    wait_ready(kubectl, ns, "certificate/outputs")
    secret = get_json(kubectl, "secret", "-n", ns, "outputs")
    assert secret["metadata"]["labels"]["team"] == "payments"
    assert secret["metadata"]["annotations"]["owner"] == "ops@example.com"
    data = secret_data(kubectl, ns, "outputs")
    assert set(data) >= {"tls.crt", "tls.key", "ca.crt", "key.der", "tls-combined.pem", "keystore.p12",
                         "truststore.p12"}
    assert data["tls-combined.pem"].startswith(data["tls.key"]) and data["tls.crt"] in data["tls-combined.pem"]
    (tmp_path / "key.der").write_bytes(data["key.der"])
    assert openssl("pkey", "-inform", "DER", "-in", str(tmp_path / "key.der"), "-pubout").stdout == \
        openssl("pkey", "-pubout", input=data["tls.key"]).stdout
    store = pkcs12.load_pkcs12(data["keystore.p12"], b"s3cret")
    assert store.cert.certificate == x509.load_pem_x509_certificate(data["tls.crt"])
    (tmp_path / "keystore.p12").write_bytes(data["keystore.p12"])
    openssl("pkcs12", "-in", str(tmp_path / "keystore.p12"), "-passin", "pass:s3cret", "-noout")


def _ready(kubectl, ns: str, kind_name: str) -> dict:
    status = get_json(kubectl, *kind_name.split("/", 1), "-n", ns).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def wait_condition(kubectl, ns: str, kind_name: str, status: str, reason: str, timeout: str = "60s") -> dict:
    kubectl("wait", "-n", ns, f"--for=jsonpath={{.status.conditions[?(@.type==\"Ready\")].reason}}={reason}",
            f"--timeout={timeout}", kind_name, timeout=200)
    ready = _ready(kubectl, ns, kind_name)
    assert ready["status"] == status, ready
    return ready


def wait_event(kubectl, ns: str, name: str, matches) -> None:
    wait_for_events(kubectl, ns, lambda events: any(e["involvedObject"]["name"] == name and matches(e)
                                                    for e in events))


def test_missing_issuer_then_issued_as_soon_as_it_exists(kubectl, namespace, operator):
    apply(kubectl, namespace, """
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: early}
spec:
  secretName: early
  commonName: early.test
  issuerRef: {name: late}
""")
    ready = wait_condition(kubectl, namespace, "certificate/early", "False", "IssuerNotReady")
    assert "late" in ready["message"] and "does not exist" in ready["message"]
    wait_event(kubectl, namespace, "early", lambda e: e["reason"] == "IssuerNotReady")
    apply(kubectl, namespace, "apiVersion: certmint.io/v1\nkind: Issuer\nmetadata: {name: late}\nspec: {selfSigned: {}}\n")
    wait_ready(kubectl, namespace, "certificate/early", timeout="30s")


def test_broken_ca_secret_is_reported_on_the_issuer(kubectl, namespace, operator):
    kubectl("create", "secret", "generic", "-n", namespace, "not-a-ca", "--from-literal=tls.crt=junk",
            "--from-literal=tls.key=junk")
    apply(kubectl, namespace, """
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: missing}
spec: {ca: {secretName: nowhere}}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: garbage}
spec: {ca: {secretName: not-a-ca}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: waits}
spec:
  secretName: waits
  commonName: waits.test
  issuerRef: {name: missing}
""")
    ready = wait_condition(kubectl, namespace, "issuer/missing", "False", "SecretNotFound")
    assert "nowhere" in ready["message"]
    wait_condition(kubectl, namespace, "issuer/garbage", "False", "InvalidKeyPair")
    ready = wait_condition(kubectl, namespace, "certificate/waits", "False", "IssuerNotReady")
    assert "nowhere" in ready["message"]


def test_leaf_from_a_non_ca_certificate_is_refused(kubectl, namespace, operator):
    apply(kubectl, namespace, SELF_SIGNED_ISSUER + """
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: plain}
spec: {secretName: plain, commonName: plain.test, issuerRef: {name: self}}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: not-ca}
spec: {ca: {secretName: plain}}
""")
    wait_ready(kubectl, namespace, "certificate/plain")
    ready = wait_condition(kubectl, namespace, "issuer/not-ca", "False", "NotACertificateAuthority")
    assert "CA" in ready["message"]


def test_name_constraints_of_the_ca_are_enforced(kubectl, namespace, operator):
    apply(kubectl, namespace, documents(constrained_ca("internal.example.com"), """
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: allowed}
spec: {secretName: allowed, dnsNames: [api.internal.example.com], issuerRef: {name: constrained}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: forbidden}
spec: {secretName: forbidden, dnsNames: [evil.example.org], issuerRef: {name: constrained}}
"""))
    wait_ready(kubectl, namespace, "certificate/allowed")
    ready = wait_condition(kubectl, namespace, "certificate/forbidden", "False", "NameConstraintsViolation")
    assert "evil.example.org" in ready["message"]
    status = get_json(kubectl, "certificate", "-n", namespace, "forbidden")["status"]
    assert status["failedIssuanceAttempts"] >= 1 and status["lastFailureTime"]
    wait_event(kubectl, namespace, "forbidden", lambda e: e["reason"] == "Failed" and e["type"] == "Warning")


def test_a_secret_that_is_not_ours_is_never_overwritten(kubectl, namespace, operator):
    kubectl("create", "secret", "generic", "-n", namespace, "taken", "--from-literal=password=keep-me")
    apply(kubectl, namespace, SELF_SIGNED_ISSUER + """
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: grabby}
spec: {secretName: taken, commonName: grabby.test, issuerRef: {name: self}}
""")
    ready = wait_condition(kubectl, namespace, "certificate/grabby", "False", "SecretMismatch")
    assert "taken" in ready["message"]
    assert secret_data(kubectl, namespace, "taken") == {"password": b"keep-me"}
