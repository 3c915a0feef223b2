"""The CertificateRevocation CRD and the Issuers' spec.ca.crl validate on their own: `kubectl apply`
of a bad one fails against a real API server with a message a user understands, good ones are
stored as written, and a revocation cannot be edited once created.

No operator runs here: everything is the API server applying crds/*.yaml (schema + CEL).
"""
from __future__ import annotations

import json

import pytest

from certmint.revocation import REASONS


def revocation(name: str = "revoke", **spec) -> dict:
    """A valid CertificateRevocation; keyword arguments replace spec fields (None removes one)."""
    body = {"certificateName": "agent-01", "reason": "keyCompromise"}
    body.update(spec)
    body = {k: v for k, v in body.items() if v is not None}
    return {"apiVersion": "certmint.io/v1", "kind": "CertificateRevocation", "metadata": {"name": name},
            "spec": body}


def ca_issuer(crl, kind: str = "Issuer", name: str = "agents-ca") -> dict:
    return {"apiVersion": "certmint.io/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"ca": {"secretName": "agents-ca", "crl": crl}}}


def apply(kubectl, namespace: str, obj: dict):
    return kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)


BY_SERIAL = {"certificateName": None, "issuerRef": {"name": "agents-ca"}, "serialNumber": "5F3A09"}

# (id, manifest, fragments that must all appear in kubectl's stderr)
BAD = [
    ("no-target", revocation(certificateName=None), ["exactly one target must be set"]),
    ("both-targets", revocation(issuerRef={"name": "agents-ca"}, serialNumber="01"),
     ["exactly one target must be set"]),
    ("serial-without-issuer", revocation(certificateName=None, serialNumber="01"),
     ["issuerRef and serialNumber go together"]),
    ("issuer-without-serial", revocation(certificateName=None, issuerRef={"name": "agents-ca"}),
     ["issuerRef and serialNumber go together"]),
    ("serial-not-hex", revocation(**{**BY_SERIAL, "serialNumber": "5G3A"}),
     ['serialNumber "5G3A" is not a serial number in hex']),
    ("serial-with-0x", revocation(**{**BY_SERIAL, "serialNumber": "0x5F3A"}),
     ['serialNumber "0x5F3A" is not a serial number in hex']),
    ("serial-too-long", revocation(**{**BY_SERIAL, "serialNumber": "A" * 41}),
     ["is not a serial number in hex", "at most 20 bytes"]),
    ("serial-zero", revocation(**{**BY_SERIAL, "serialNumber": "00:00"}), ["serialNumber cannot be 0"]),
    ("unknown-reason", revocation(reason="stolen"), ['reason "stolen" is not an RFC 5280 revocation reason',
                                                      "keyCompromise", "certificateHold"]),
    ("remove-from-crl", revocation(reason="removeFromCRL"),
     ['reason "removeFromCRL" is not an RFC 5280 revocation reason', "delete its revocation"]),
    ("reason-missing", revocation(reason=None), ["spec.reason: Required value"]),
    ("revisions-with-serial", revocation(**BY_SERIAL, revisions="AllValid"),
     ["revisions applies to certificateName only"]),
    ("revisions-unknown", revocation(revisions="All"), ['spec.revisions: Unsupported value: "All"']),
    ("bad-issuer-kind", revocation(**{**BY_SERIAL, "issuerRef": {"name": "x", "kind": "Vault"}}),
     ['spec.issuerRef.kind: Unsupported value: "Vault"']),
    ("bad-certificate-name", revocation(certificateName="Agent_01"),
     ['certificateName "Agent_01" is not a valid Certificate name']),
    ("crl-validity-too-short", ca_issuer({"validity": "2h"}), ["crl.validity must be at least 3h, got 2h"]),
    ("crl-validity-in-days", ca_issuer({"validity": "7d"}), ['"7d" is not a valid duration']),
    ("cluster-issuer-crl-validity", ca_issuer({"validity": "1h"}, kind="ClusterIssuer"),
     ["crl.validity must be at least 3h, got 1h"]),
]


@pytest.mark.parametrize("manifest, fragments", [pytest.param(m, f, id=i) for i, m, f in BAD])
def test_bad_manifest_is_rejected_with_a_readable_message(kubectl, namespace, manifest, fragments):
    if manifest["kind"] == "ClusterIssuer":
        manifest = {**manifest, "metadata": {"name": f"{namespace}-bad"}}  # cluster-wide: unique name
    result = apply(kubectl, namespace, manifest)
    assert result.returncode != 0, f"accepted:\n{result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    assert "type conversion error" not in result.stderr  # a CEL rule failed instead of answering


GOOD = [
    ("current", revocation()),
    ("all-valid", revocation(revisions="AllValid", reason="superseded")),
    ("serial-plain", revocation(**BY_SERIAL)),
    ("serial-colons", revocation(**{**BY_SERIAL, "serialNumber": "5f:3a:09"})),
    ("serial-20-bytes", revocation(**{**BY_SERIAL, "serialNumber": "7F" + "ff" * 19})),
    ("cluster-issuer-serial", revocation(**{**BY_SERIAL, "issuerRef": {"name": "root", "kind": "ClusterIssuer"}})),
    *[(f"reason-{reason}", revocation(reason=reason)) for reason in REASONS],
    ("crl-defaults", ca_issuer({})),
    ("crl-week", ca_issuer({"validity": "168h"})),
]


@pytest.mark.parametrize("manifest", [pytest.param(m, id=i) for i, m in GOOD])
def test_good_manifest_is_stored_as_written(kubectl, namespace, manifest):
    result = apply(kubectl, namespace, manifest)
    assert result.returncode == 0, result.stderr
    stored = json.loads(kubectl("get", "-n", namespace, manifest["kind"].lower(), manifest["metadata"]["name"],
                                "-o", "json").stdout)
    assert stored["spec"] == manifest["spec"]  # no defaults written into the object


def test_a_revocation_cannot_be_changed(kubectl, namespace):
    assert apply(kubectl, namespace, revocation("audit")).returncode == 0
    changed = apply(kubectl, namespace, revocation("audit", reason="superseded"))
    assert changed.returncode != 0
    assert "a CertificateRevocation cannot be changed once created" in changed.stderr, changed.stderr
    # metadata (labels, annotations for the audit trail) may still change
    kubectl("label", "-n", namespace, "certificaterevocation", "audit", "ticket=SEC-42")


def test_short_names_category_and_columns(kubectl, namespace):
    apply(kubectl, namespace, revocation("by-name"))
    apply(kubectl, namespace, revocation("by-serial", **BY_SERIAL, reason="certificateHold"))
    for short in ("mintrevoke", "mintrev"):
        assert "by-name" in kubectl("get", "-n", namespace, short).stdout
    listed = kubectl("get", "-n", namespace, "certmint", "-o", "name").stdout.split()
    assert "certificaterevocation.certmint.io/by-name" in listed
    header, *lines = kubectl("get", "-n", namespace, "mintrev", "-o", "wide").stdout.splitlines()
    names = ["NAME", "CERTIFICATE", "SERIAL", "REASON", "REVOKED", "REVOKED AT", "STATUS", "AGE"]
    starts = [header.index(name + " ") if name != "AGE" else header.index(name) for name in names]
    assert starts == sorted(starts), header
    # kubectl leaves an absent value's column blank: cut the rows at the header's columns
    rows = {}
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = cells
    assert rows["by-name"][1:4] == ["agent-01", "", "keyCompromise"]
    assert rows["by-serial"][1:4] == ["", "5F3A09", "certificateHold"]
