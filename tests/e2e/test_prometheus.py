"""The alert rules against a real Prometheus scraping the real operator.

Prometheus (Debian's binary) scrapes the session operator's /metrics every second and
evaluates docs/prometheus/alert-rules.yaml every second. The rules are loaded as shipped
except `for:`, which is set to 0s so an alert fires at its first evaluation: the
expressions, labels and annotations are the real ones.

In one namespace:
  short    1h certificate from a self-signed issuer, renewBefore 5m -> expires within 7 and 30 days
  healthy  90-day certificate (the default duration)                 -> no alert
  broken   its CA Issuer's Secret does not exist                     -> CertificateNotReady, IssuerNotReady
  expired  a Secret holding a certificate that expired an hour ago, made here with `cryptography`
           as certmint would have made it, for an issuer that cannot renew it -> CertificateExpired
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import apply, get_json, secret_data
from prometheus_server import Prometheus, for_durations, wait_until

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "alert-rules.yaml"
JOB = "certmint"  # the job label convention the rules use (docs/metrics.md)
CERT_ALERTS = ("CertificateExpired", "CertificateExpiringSoon", "CertificateExpiringIn30Days", "CertificateNotReady")
TIMEOUT = 30

MANIFEST = """
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: broken-ca}
spec: {ca: {secretName: missing-ca}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: short}
spec:
  secretName: short-tls
  commonName: short.example.com
  duration: 1h
  renewBefore: 5m
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: healthy}
spec:
  secretName: healthy-tls
  commonName: healthy.example.com
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: broken}
spec:
  secretName: broken-tls
  commonName: broken.example.com
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: broken-ca}
"""

EXPIRED_CERTIFICATE = """
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: expired}
spec:
  secretName: expired-tls
  commonName: expired.example.com
  dnsNames: [expired.example.com]
  duration: 1h
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: broken-ca}
"""


@dataclass
class Scenario:
    namespace: str
    cluster_issuer: str
    expired_not_before: dt.datetime
    expired_not_after: dt.datetime


def expired_secret(namespace: str, now: dt.datetime) -> tuple[dict, x509.Certificate]:
    """The Secret certmint would have written two hours ago for Certificate `expired` (duration 1h),
    signed by a CA whose Secret has since been lost: the certificate expired an hour ago."""
    issued_at = now.replace(microsecond=0) - dt.timedelta(hours=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "retired CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(issued_at - dt.timedelta(days=30)).not_valid_after(issued_at + dt.timedelta(days=335))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired.example.com")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(issued_at - dt.timedelta(minutes=1))  # certmint backdates a minute
            .not_valid_after(issued_at + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("expired.example.com")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    assert leaf.not_valid_after_utc < now - dt.timedelta(minutes=59)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())  # privateKey.encoding PKCS1, the default
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {
            "name": "expired-tls", "namespace": namespace,
            "labels": {"certmint.io/certificate-name": "expired"},
            "annotations": {
                "certmint.io/certificate-name": "expired",
                "certmint.io/issuer-name": "broken-ca",
                "certmint.io/issuer-kind": "Issuer",
                "certmint.io/issuer-group": "certmint.io",
                "certmint.io/common-name": "expired.example.com",
                "certmint.io/alt-names": "expired.example.com",
                "certmint.io/ip-sans": "",
                "certmint.io/uri-sans": "",
                "certmint.io/email-sans": "",
                "certmint.io/revision": "1",
            },
        },
        "data": {"tls.crt": b64(pem(leaf) + pem(ca)), "tls.key": b64(key_pem), "ca.crt": b64(pem(ca))},
    }
    return secret, leaf


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(operator, tmp_path_factory):
    """Prometheus scraping the session operator under job="certmint", with the shipped rules (for: 0s)."""
    shipped = yaml.safe_load(RULES.read_text())
    fast = for_durations(shipped, "0s")
    assert [r["expr"] for g in fast["groups"] for r in g["rules"]] == \
        [r["expr"] for g in shipped["groups"] for r in g["rules"]]
    target = operator.metrics_url.removeprefix("http://")
    scrape = [{"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}]
    with Prometheus(tmp_path_factory.mktemp("prometheus"), scrape, [fast]) as prom:
        yield prom


@pytest.fixture(scope="module")
def scenario(kubectl, prometheus) -> Scenario:
    suffix = uuid.uuid4().hex[:5]
    namespace, cluster_issuer = f"prometheus-alerts-{suffix}", f"prometheus-broken-ca-{suffix}"
    kubectl("create", "namespace", namespace)
    kubectl("apply", "-f", "-", input=f"""
apiVersion: certmint.io/v1
kind: ClusterIssuer
metadata: {{name: {cluster_issuer}}}
spec: {{ca: {{secretName: missing-ca-{suffix}}}}}
""")
    apply(kubectl, namespace, MANIFEST)
    # the Secret first, as if it had been there all along; then its Certificate
    secret, leaf = expired_secret(namespace, dt.datetime.now(dt.timezone.utc))
    kubectl("apply", "-f", "-", input=json.dumps(secret))
    apply(kubectl, namespace, EXPIRED_CERTIFICATE)
    kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=60s",
            "certificate/short", "certificate/healthy", timeout=90)
    yield Scenario(namespace, cluster_issuer, leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    # the control plane has no namespace controller: stop the retries, and leave no ClusterIssuer behind
    kubectl("delete", "-n", namespace, "certificates,issuers", "--all", "--wait=false", check=False)
    kubectl("delete", "clusterissuer", cluster_issuer, "--wait=false", check=False)


# --- helpers ---------------------------------------------------------------------------------


def firing(prom: Prometheus, alertname: str, **labels: str) -> list[dict]:
    return [a for a in prom.alerts() if a["state"] == "firing" and a["labels"]["alertname"] == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def explain(prom: Prometheus, s: Scenario):
    def text() -> str:
        alerts = [(a["labels"]["alertname"], a["labels"].get("kind", ""), a["labels"].get("name", ""), a["state"])
                  for a in prom.alerts() if a["labels"].get("namespace") in (s.namespace, None)]
        series = prom.query(f'{{namespace="{s.namespace}",__name__!~"ALERTS.*"}}')
        targets = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in prom.targets()]
        return (f"active alerts: {sorted(alerts)}\ntargets: {targets}\nseries of the namespace:\n"
                + "\n".join(f"  {r['metric']} {r['value'][1]}" for r in series)
                + f"\nprometheus log:\n{prom.log_tail(1500)}")
    return text


def wait_firing(prom: Prometheus, s: Scenario, alertname: str, **labels: str) -> dict:
    found = wait_until(lambda: firing(prom, alertname, **labels), TIMEOUT,
                       f"{alertname} {labels} to fire", explain(prom, s))
    assert len(found) == 1, found
    return found[0]


def certificate_alerts(prom: Prometheus, s: Scenario, name: str) -> set[str]:
    return {a["labels"]["alertname"] for a in prom.alerts()
            if a["labels"].get("namespace") == s.namespace and a["labels"].get("name") == name}


def settled(prom: Prometheus, s: Scenario, *selectors: str) -> None:
    """Until Prometheus has scraped each selector's series and evaluated the rules after that."""
    for selector in selectors:
        wait_until(lambda selector=selector: prom.query(selector), TIMEOUT, f"Prometheus to have {selector}", explain(prom, s))
    prom.wait_for_evaluation_after(time.time())


def prometheus_timestamps(prom: Prometheus, s: Scenario, name: str,
                          metrics=("not_before", "not_after", "expiration", "renewal")) -> dict[str, float]:
    out = {}
    for metric in metrics:
        selector = f'certmanager_certificate_{metric}_timestamp_seconds{{namespace="{s.namespace}",name="{name}"}}'
        out[metric] = wait_until(lambda selector=selector: prom.value(selector), TIMEOUT, selector, explain(prom, s))
    return out


def leaf_of(kubectl, namespace: str, secret: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(secret_data(kubectl, namespace, secret)["tls.crt"])[0]


def ready_condition(kubectl, namespace: str, name: str) -> dict:
    status = get_json(kubectl, "certificate", "-n", namespace, name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


# --- tests -----------------------------------------------------------------------------------


def test_a_short_lived_certificate_fires_the_7_and_30_day_alerts(prometheus, scenario):
    s = scenario
    soon = wait_firing(prometheus, s, "CertificateExpiringSoon", namespace=s.namespace, name="short")
    month = wait_firing(prometheus, s, "CertificateExpiringIn30Days", namespace=s.namespace, name="short")
    assert soon["labels"].items() >= {"job": JOB, "severity": "warning", "issuer_name": "selfsigned",
                                      "issuer_kind": "Issuer", "issuer_group": "certmint.io"}.items()
    assert month["labels"]["severity"] == "info"
    assert 0 < float(soon["value"]) <= 3600 + 60, "the 7-day alert's value is the seconds left"
    assert 0 < float(month["value"]) <= 1 / 24 + 0.001, "the 30-day alert's value is the days left"
    assert soon["annotations"]["summary"] == f"Certificate {s.namespace}/short expires in less than 7 days"
    assert re.search(r"expires in \d+m \d+s\.", soon["annotations"]["description"]), soon  # humanizeDuration


def test_a_broken_issuer_fires_the_not_ready_alerts(prometheus, scenario, kubectl):
    s = scenario
    alert = wait_firing(prometheus, s, "CertificateNotReady", namespace=s.namespace, name="broken")
    assert alert["labels"]["condition"] == "False" and alert["labels"]["issuer_name"] == "broken-ca"
    issuer = wait_firing(prometheus, s, "IssuerNotReady", kind="Issuer", namespace=s.namespace, name="broken-ca")
    assert issuer["annotations"]["summary"] == f"Issuer {s.namespace}/broken-ca is not Ready"
    cluster = wait_firing(prometheus, s, "IssuerNotReady", kind="ClusterIssuer", name=s.cluster_issuer)
    assert cluster["annotations"]["summary"] == f"ClusterIssuer {s.cluster_issuer} is not Ready"
    # what the alerts say is what the API says
    ready = ready_condition(kubectl, s.namespace, "broken")
    assert ready.get("status") == "False", ready
    # never issued: no expiry series at all, so nothing can claim it expired (cert-manager exports 0 here)
    assert prometheus.query(f'certmanager_certificate_expiration_timestamp_seconds'
                            f'{{namespace="{s.namespace}",name="broken"}}') == []
    assert "CertificateExpired" not in certificate_alerts(prometheus, s, "broken")


def test_healthy_certificates_raise_no_alert(prometheus, scenario):
    s = scenario
    settled(prometheus, s,
            f'certmanager_certificate_ready_status{{namespace="{s.namespace}",name="healthy",condition="True"}} == 1',
            f'certmanager_certificate_expiration_timestamp_seconds{{namespace="{s.namespace}",name="healthy"}}',
            f'certmanager_issuer_ready_status{{namespace="{s.namespace}",name="selfsigned",condition="True"}} == 1',
            f'up{{job="{JOB}"}} == 1')
    assert certificate_alerts(prometheus, s, "healthy") == set(), explain(prometheus, s)()
    assert certificate_alerts(prometheus, s, "short") == {"CertificateExpiringSoon", "CertificateExpiringIn30Days"}
    assert not firing(prometheus, "IssuerNotReady", namespace=s.namespace, name="selfsigned")
    assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] == "CertmintOperatorDown"]
    days_left = prometheus.value(f'(certmanager_certificate_expiration_timestamp_seconds'
                                 f'{{namespace="{s.namespace}",name="healthy"}} - time()) / 86400')
    assert 89.9 < days_left <= 90, days_left


def test_the_metrics_are_the_secrets_certificate_dates(prometheus, scenario, kubectl):
    s = scenario
    for name, renew_before in (("short", lambda lifetime: dt.timedelta(minutes=5)),
                               ("healthy", lambda lifetime: lifetime // 3)):
        leaf = leaf_of(kubectl, s.namespace, f"{name}-tls")
        got = prometheus_timestamps(prometheus, s, name)
        not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        renewal = (not_after - renew_before(not_after - not_before)).replace(microsecond=0)
        assert got == {"not_before": not_before.timestamp(), "not_after": not_after.timestamp(),
                       "expiration": not_after.timestamp(), "renewal": renewal.timestamp()}, name


def test_an_expired_certificate_that_cannot_be_renewed_fires_certificate_expired(prometheus, scenario, kubectl):
    """Needs the operator to export the Secret's dates while it cannot renew (see docs/metrics.md)."""
    s = scenario
    ready = wait_until(lambda: (c := ready_condition(kubectl, s.namespace, "expired")).get("status") == "False" and c,
                       TIMEOUT, "Certificate expired to be Ready=False", explain(prometheus, s))
    assert ready["reason"] == "IssuerNotReady", ready
    # the operator could not renew it, so the Secret still holds the expired certificate
    leaf = leaf_of(kubectl, s.namespace, "expired-tls")
    assert leaf.not_valid_after_utc == s.expired_not_after
    alert = wait_firing(prometheus, s, "CertificateExpired", namespace=s.namespace, name="expired")
    assert alert["labels"]["severity"] == "critical"
    assert float(alert["value"]) == s.expired_not_after.timestamp()
    assert prometheus_timestamps(prometheus, s, "expired", ("not_before", "not_after", "expiration")) == {
        "not_before": s.expired_not_before.timestamp(), "not_after": s.expired_not_after.timestamp(),
        "expiration": s.expired_not_after.timestamp()}
    assert certificate_alerts(prometheus, s, "expired") == set(CERT_ALERTS)
