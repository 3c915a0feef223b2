"""The recording rule for the `cert_manager_` spelling, in a real Prometheus scraping the real operator.

Seed 001's alert rules query cert_manager_certificate_expiration_timestamp_seconds, which no
exporter has. Prometheus (Debian's binary) scrapes the session operator every second and
evaluates the recording group of docs/prometheus/alert-rules.yaml as shipped, next to the
seed's rules verbatim except `for:` (0s, so they fire at their first evaluation):

  ten-days  a 240h certificate -> the recorded series equals the operator's, and the seed's
            "expiring in less than 30 days" rule fires for it
  healthy   a 90-day certificate -> recorded too, no seed alert
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from conftest import apply, secret_data
from prometheus_server import SEED_001_RULES, Prometheus, for_durations, wait_until

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "alert-rules.yaml"
RECORDED = "cert_manager_certificate_expiration_timestamp_seconds"
EXPORTED = "certmanager_certificate_expiration_timestamp_seconds"
TIMEOUT = 30

MANIFEST = """
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: ten-days}
spec:
  secretName: ten-days-tls
  commonName: agent-01.netstress.example
  duration: 240h
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: healthy}
spec:
  secretName: healthy-tls
  commonName: controller.netstress.example
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned}
"""


@pytest.fixture(scope="module")
def namespace(kubectl):
    name = f"prometheus-recording-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    apply(kubectl, name, MANIFEST)
    kubectl("wait", "-n", name, "--for=condition=Ready", "--timeout=60s", "certificate/ten-days",
            "certificate/healthy", timeout=90)
    yield name
    kubectl("delete", "-n", name, "certificates,issuers", "--all", "--wait=false", check=False)


@pytest.fixture(scope="module")
def prometheus(operator, namespace, tmp_path_factory):
    shipped = yaml.safe_load(RULES.read_text())
    recording = {"groups": [g for g in shipped["groups"] if any("record" in r for r in g["rules"])]}
    assert recording["groups"], f"no recording rule in {RULES.name}"
    seed = for_durations(yaml.safe_load(SEED_001_RULES), "0s")
    target = operator.metrics_url.removeprefix("http://")
    scrape = [{"job_name": "certmint", "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}]
    with Prometheus(tmp_path_factory.mktemp("prometheus-recording"), scrape, [recording, seed]) as prom:
        yield prom


def series(prom: Prometheus, name: str, namespace: str) -> dict[str, tuple[dict, float]]:
    """By Certificate name: (labels without __name__, value)."""
    out = {}
    for r in prom.query(f'{name}{{namespace="{namespace}"}}'):
        labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
        out[labels["name"]] = (labels, float(r["value"][1]))
    return out


def test_the_recorded_series_is_the_operators_under_the_seeds_name(prometheus, namespace, kubectl):
    def both():
        recorded, exported = series(prometheus, RECORDED, namespace), series(prometheus, EXPORTED, namespace)
        return (recorded, exported) if set(recorded) == set(exported) == {"ten-days", "healthy"} else None

    recorded, exported = wait_until(both, TIMEOUT, f"{RECORDED} for both certificates", prometheus.log_tail)
    assert recorded == exported  # same labels, same values: only the name differs
    for name in ("ten-days", "healthy"):
        leaf = x509.load_pem_x509_certificates(secret_data(kubectl, namespace, f"{name}-tls")["tls.crt"])[0]
        assert recorded[name][1] == leaf.not_valid_after_utc.timestamp()


def test_the_seeds_rules_fire_as_written(prometheus, namespace):
    def seed_alerts():
        return [a for a in prometheus.alerts()
                if a["state"] == "firing" and a["labels"].get("namespace") == namespace]

    alerts = wait_until(seed_alerts, TIMEOUT, "the seed's 30-day alert to fire", prometheus.log_tail)
    prometheus.wait_for_evaluation_after(time.time())  # every rule has seen both certificates
    alerts = seed_alerts()
    assert [(a["labels"]["alertname"], a["labels"]["name"]) for a in alerts] == [("CertificateExpiringSoon",
                                                                                  "ten-days")]
    assert alerts[0]["annotations"]["description"] == "Certificate ten-days expires in less than 30 days"
    assert alerts[0]["labels"]["issuer_name"] == "selfsigned" and alerts[0]["labels"]["severity"] == "warning"
