"""Lifecycle on the real control plane: renewal on time, every re-issuance trigger repaired,
in-place metadata updates, and bounded retries."""
from __future__ import annotations

import base64
import datetime as dt
import json
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certmint.issuance import issue_certificate
from certmint.issuers import issuer_state
from certmint.model import parse_certificate_spec, parse_issuer_spec
from conftest import apply, get_json, openssl, secret_data, wait_for_events, wait_ready
from manifests import SELF_SIGNED_ISSUER

ISSUER = SELF_SIGNED_ISSUER


def certificate(name: str, extra: str = "") -> str:
    return f"""
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: {name}}}
spec:
  secretName: {name}
  commonName: {name}.test
  dnsNames: [{name}.test]
  privateKey: {{algorithm: ECDSA}}
  issuerRef: {{name: self}}
{extra}"""


def status(kubectl, ns: str, name: str) -> dict:
    return get_json(kubectl, "certificate", "-n", ns, name).get("status") or {}


def condition(kubectl, ns: str, name: str, kind: str) -> dict:
    return next((c for c in status(kubectl, ns, name).get("conditions") or [] if c["type"] == kind), {})


def leaf(kubectl, ns: str, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(secret_data(kubectl, ns, name)["tls.crt"])


def wait_revision(kubectl, ns: str, name: str, revision: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status(kubectl, ns, name)
        ready = next((c for c in s.get("conditions") or [] if c["type"] == "Ready"), {})
        if s.get("revision") == revision and ready.get("status") == "True":
            return s
        time.sleep(0.2)
    raise AssertionError(f"{name} did not reach revision {revision}: {status(kubectl, ns, name)}")


def issuing_events(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["involvedObject"]["name"] == name and e["reason"] == "Issuing"]


def test_renews_on_time_again_and_again(kubectl, namespace, operator):
    apply(kubectl, namespace, ISSUER + certificate("short", "  duration: 1h\n  renewBefore: 59m50s"))
    wait_ready(kubectl, namespace, "certificate/short")
    first = status(kubectl, namespace, "short")
    serial = leaf(kubectl, namespace, "short").serial_number
    for revision in (2, 3):
        renewal_time = dt.datetime.strptime(first["renewalTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.timezone.utc)
        now = wait_revision(kubectl, namespace, "short", revision, timeout=40)
        cert = leaf(kubectl, namespace, "short")
        issued_at = cert.not_valid_before_utc + dt.timedelta(minutes=1)  # notBefore is backdated by 1 minute
        lateness = (issued_at - renewal_time).total_seconds()
        print(f"\nrevision {revision}: renewed {lateness:+.1f} s after renewalTime")
        assert -1 <= lateness <= 5, f"renewed {lateness:.1f} s after renewalTime"
        assert cert.serial_number != serial
        serial, first = cert.serial_number, now
    assert "Renewing" in condition(kubectl, namespace, "short", "Issuing")["message"]


def _patch_secret(kubectl, ns: str, name: str, data: dict[str, bytes]) -> None:
    patch = {"data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    kubectl("patch", "secret", "-n", ns, name, "--type=merge", "-p", json.dumps(patch))


def _other_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())


def _expired_pair(spec: dict) -> tuple[bytes, bytes]:
    """A certificate exactly as the spec asks, but issued so long ago that it has expired:
    what a cluster that was switched off for a while wakes up to."""
    parsed = parse_certificate_spec(spec)
    long_ago = dt.datetime.now(dt.timezone.utc) - parsed.duration - dt.timedelta(hours=1)
    issued = issue_certificate(parsed, issuer_state(parse_issuer_spec({"selfSigned": {}}), None, long_ago),
                               None, long_ago)
    return issued.tls_crt, issued.key_pem


def test_every_trigger_is_repaired_with_its_reason(kubectl, namespace, operator):
    ns = namespace
    apply(kubectl, ns, ISSUER + "---\napiVersion: certmint.io/v1\nkind: Issuer\nmetadata: {name: other}\n"
          "spec: {selfSigned: {}}\n" + certificate("repair"))
    wait_ready(kubectl, ns, "certificate/repair")
    revision = 1

    def expect(reason: str) -> None:
        nonlocal revision
        revision += 1
        wait_revision(kubectl, ns, "repair", revision)
        message = condition(kubectl, ns, "repair", "Issuing")["message"]
        assert f"trigger {reason})" in message, message
        wait_for_events(kubectl, ns, lambda events: any(e.get("action") == reason
                                                        for e in issuing_events(events, "repair")))
        data = secret_data(kubectl, ns, "repair")
        assert openssl("pkey", "-pubout", input=data["tls.key"]).stdout == \
            openssl("x509", "-noout", "-pubkey", input=data["tls.crt"]).stdout

    kubectl("delete", "secret", "-n", ns, "repair")
    expect("DoesNotExist")
    _patch_secret(kubectl, ns, "repair", {"tls.key": b""})  # the API keeps a kubernetes.io/tls Secret's keys
    expect("MissingData")
    _patch_secret(kubectl, ns, "repair", {"tls.crt": b"not a certificate"})
    expect("InvalidCertificate")
    _patch_secret(kubectl, ns, "repair", {"tls.key": _other_key()})
    expect("InvalidKeyPair")
    kubectl("patch", "certificate", "-n", ns, "repair", "--type=merge",
            "-p", '{"spec": {"privateKey": {"algorithm": "RSA", "size": 2048}}}')
    expect("SecretMismatch")
    kubectl("patch", "certificate", "-n", ns, "repair", "--type=merge",
            "-p", '{"spec": {"dnsNames": ["repair.test", "also.repair.test"]}}')
    expect("RequestChanged")
    assert leaf(kubectl, ns, "repair").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["repair.test", "also.repair.test"]
    kubectl("patch", "certificate", "-n", ns, "repair", "--type=merge", "-p", '{"spec": {"duration": "48h"}}')
    expect("RequestChanged")
    kubectl("patch", "certificate", "-n", ns, "repair", "--type=merge",
            "-p", '{"spec": {"issuerRef": {"name": "other"}}}')
    expect("IncorrectIssuer")
    kubectl("annotate", "secret", "-n", ns, "repair", "certmint.io/issuer-name=someone", "--overwrite")
    expect("IncorrectIssuer")
    kubectl("annotate", "certificate", "-n", ns, "repair", "certmint.io/renew=first")
    expect("ManuallyTriggered")
    kubectl("patch", "certificate", "-n", ns, "repair", "--type=merge",
            "-p", '{"spec": {"privateKey": {"algorithm": "ECDSA", "size": 256}, "dnsNames": ["repair.test"]}}')
    expect("SecretMismatch")
    expired_crt, expired_key = _expired_pair(get_json(kubectl, "certificate", "-n", ns, "repair")["spec"])
    _patch_secret(kubectl, ns, "repair", {"tls.crt": expired_crt, "tls.key": expired_key})
    expect("Expired")
    # the manual trigger fired exactly once: nothing more happens without a new value
    time.sleep(2)
    assert status(kubectl, ns, "repair")["revision"] == revision


def test_manual_renewal_issues_exactly_once(kubectl, namespace, operator):
    apply(kubectl, namespace, ISSUER + certificate("manual"))
    wait_ready(kubectl, namespace, "certificate/manual")
    before = leaf(kubectl, namespace, "manual").serial_number
    kubectl("annotate", "certificate", "-n", namespace, "manual", "certmint.io/renew=2026-11-23T10:00:00Z")
    wait_revision(kubectl, namespace, "manual", 2)
    assert leaf(kubectl, namespace, "manual").serial_number != before
    time.sleep(3)
    assert status(kubectl, namespace, "manual")["revision"] == 2
    events = wait_for_events(kubectl, namespace, lambda events: len(issuing_events(events, "manual")) >= 2)
    assert len(issuing_events(events, "manual")) == 2


def test_secret_template_change_updates_metadata_in_place(kubectl, namespace, operator):
    apply(kubectl, namespace, ISSUER + certificate("meta", "  secretTemplate:\n    labels: {team: a}"))
    wait_ready(kubectl, namespace, "certificate/meta")
    serial = leaf(kubectl, namespace, "meta").serial_number
    kubectl("patch", "certificate", "-n", namespace, "meta", "--type=merge",
            "-p", '{"spec": {"secretTemplate": {"labels": {"team": "b"}, "annotations": {"contact": "ops"}}}}')
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = get_json(kubectl, "secret", "-n", namespace, "meta")["metadata"]
        if meta["labels"].get("team") == "b" and meta.get("annotations", {}).get("contact") == "ops":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"Secret metadata not updated: {meta}")
    assert leaf(kubectl, namespace, "meta").serial_number == serial
    assert status(kubectl, namespace, "meta")["revision"] == 1


def test_rotation_policy_never_keeps_the_key_always_replaces_it(kubectl, namespace, operator):
    apply(kubectl, namespace, ISSUER + certificate("keeps", "  privateKey: {algorithm: ECDSA, rotationPolicy: Never}")
          + certificate("rotates"))
    wait_ready(kubectl, namespace, "certificate/keeps")
    wait_ready(kubectl, namespace, "certificate/rotates")
    keys = {n: secret_data(kubectl, namespace, n)["tls.key"] for n in ("keeps", "rotates")}
    for name in keys:
        kubectl("annotate", "certificate", "-n", namespace, name, "certmint.io/renew=1")
        wait_revision(kubectl, namespace, name, 2)
    assert secret_data(kubectl, namespace, "keeps")["tls.key"] == keys["keeps"]
    assert secret_data(kubectl, namespace, "rotates")["tls.key"] != keys["rotates"]
