"""The walking skeleton: a self-signed Issuer and a Certificate become a usable TLS Secret."""
from __future__ import annotations

from conftest import apply, get_json, openssl, wait_for_events, wait_ready, write_secret_files

MANIFEST = """
apiVersion: certmint.io/v1
kind: Issuer
metadata:
  name: selfsigned
spec:
  selfSigned: {}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata:
  name: web
spec:
  secretName: web-tls
  commonName: web.example.com
  dnsNames: [web.example.com, www.example.com]
  duration: 24h
  privateKey:
    algorithm: ECDSA
    size: 256
  issuerRef:
    name: selfsigned
"""


def test_selfsigned_certificate_becomes_a_tls_secret(kubectl, namespace, operator, tmp_path):
    apply(kubectl, namespace, MANIFEST)
    wait_ready(kubectl, namespace, "certificate/web")

    secret = get_json(kubectl, "secret", "-n", namespace, "web-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) >= {"tls.crt", "tls.key", "ca.crt"}
    assert secret["metadata"]["labels"]["certmint.io/certificate-name"] == "web"

    files = write_secret_files(kubectl, namespace, "web-tls", tmp_path)
    crt, key = str(files["tls.crt"]), str(files["tls.key"])
    # valid for the next 23 hours, and not for the next 25
    openssl("x509", "-in", crt, "-noout", "-checkend", str(23 * 3600))
    assert openssl("x509", "-in", crt, "-noout", "-checkend", str(25 * 3600), check=False).returncode == 1
    san = openssl("x509", "-in", crt, "-noout", "-ext", "subjectAltName").stdout.decode()
    assert "DNS:web.example.com" in san and "DNS:www.example.com" in san
    # the key is the certificate's key
    assert openssl("pkey", "-in", key, "-pubout").stdout == openssl("x509", "-in", crt, "-noout", "-pubkey").stdout
    assert "ASN1 OID: prime256v1" in openssl("pkey", "-in", key, "-noout", "-text").stdout.decode()
    # self-signed: the certificate is its own trust anchor
    openssl("verify", "-CAfile", str(files["ca.crt"]), crt)

    status = get_json(kubectl, "certificate", "-n", namespace, "web")["status"]
    assert status["revision"] == 1
    for field in ("notBefore", "notAfter", "renewalTime"):
        assert status[field].endswith("Z")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Ready")
    enddate = openssl("x509", "-in", crt, "-noout", "-enddate").stdout.decode()
    assert enddate.strip().startswith("notAfter=")

    columns = kubectl("get", "certificate", "-n", namespace, "web").stdout
    assert "READY" in columns and "True" in columns and "web-tls" in columns
    wait_for_events(kubectl, namespace, lambda events: {"Issuing", "Issued"} <= {
        e["reason"] for e in events if e["involvedObject"]["name"] == "web"})
