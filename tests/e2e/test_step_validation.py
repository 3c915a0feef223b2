"""spec.step validates on its own: a real API server applying crds/*.yaml (schema + CEL)
rejects a bad step Issuer or ClusterIssuer with a readable message and stores a good one,
including seed 003's StepClusterIssuer spec moved over unchanged, exactly as written.

No operator and no step-ca run here.
"""
from __future__ import annotations

import base64
import json

import pytest

ROOT_PEM = b"""-----BEGIN CERTIFICATE-----
MIIBdDCCARmgAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDEwlzdGVwIHJv
b3QwHhcNMjYwMTAxMDAwMDAwWhcNMzYwMTAxMDAwMDAwWjAUMRIwEAYDVQQDEwlz
dGVwIHJvb3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT1
-----END CERTIFICATE-----
"""  # the API server only checks that caBundle is base64; what it holds is the operator's concern

STEP = {
    "url": "https://step-ca.flexstack-identity.svc.cluster.local:9000",
    "caBundle": base64.b64encode(ROOT_PEM).decode(),
    "provisioner": {"name": "admin", "kid": "admin",
                    "passwordRef": {"name": "step-ca-secrets", "key": "provisioner-password"}},
}


def issuer(spec, kind: str = "Issuer", name: str = "step") -> dict:
    return {"apiVersion": "certmint.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def step(**overrides) -> dict:
    """STEP with fields replaced (None removes one); provisioner=... and passwordRef=... merge."""
    spec = json.loads(json.dumps(STEP))
    for key, value in overrides.items():
        if key == "passwordRef":
            spec["provisioner"]["passwordRef"] = value
        elif key in ("name", "kid"):
            spec["provisioner"][key] = value
        else:
            spec[key] = value
    for container in (spec, spec.get("provisioner") or {}):
        for key in [k for k, v in container.items() if v is None]:
            del container[key]
    return spec


def apply(kubectl, namespace: str, obj: dict):
    return kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)


BAD = [
    ("step-and-ca", {"step": STEP, "ca": {"secretName": "root"}},
     ["exactly one of selfSigned, ca or step must be set"]),
    ("step-and-self-signed", {"step": STEP, "selfSigned": {}}, ["exactly one of selfSigned, ca or step must be set"]),
    ("none", {}, ["exactly one of selfSigned, ca or step must be set"]),
    ("http-url", {"step": step(url="http://step-ca:9000")}, ["spec.step.url", "url must be an https:// URL"]),
    ("not-a-url", {"step": step(url="https://step ca:9000/")}, ["url must be an https:// URL"]),
    ("no-url", {"step": step(url=None)}, ["spec.step.url: Required value"]),
    ("no-ca-bundle", {"step": step(caBundle=None)}, ["spec.step.caBundle: Required value"]),
    ("ca-bundle-not-base64", {"step": step(caBundle="-----BEGIN CERTIFICATE-----")}, ["spec.step.caBundle"]),
    ("no-provisioner", {"step": step(provisioner=None)}, ["spec.step.provisioner: Required value"]),
    ("no-kid", {"step": step(kid=None)}, ["spec.step.provisioner.kid: Required value"]),
    ("no-password-ref", {"step": step(passwordRef=None)}, ["spec.step.provisioner.passwordRef: Required value"]),
    ("password-ref-without-key", {"step": step(passwordRef={"name": "step-ca-secrets"})},
     ["spec.step.provisioner.passwordRef.key: Required value"]),
    ("password-ref-bad-name", {"step": step(passwordRef={"name": "Step_CA", "key": "password"})},
     ["passwordRef.name must be a valid Secret name"]),
    ("password-ref-bad-key", {"step": step(passwordRef={"name": "step-ca-secrets", "key": "a/b"})},
     ["passwordRef.key must be a valid Secret key"]),
    # step-issuer's other provisioner password sources are not part of certmint's API
    ("password-env", {"step": {**STEP, "provisioner": {**STEP["provisioner"], "passwordEnv": "PW"}}},
     ['unknown field "spec.step.provisioner.passwordEnv"']),
]


@pytest.mark.parametrize("kind", ["Issuer", "ClusterIssuer"])
@pytest.mark.parametrize("spec, fragments", [pytest.param(s, f, id=i) for i, s, f in BAD])
def test_bad_step_issuer_is_rejected_with_a_readable_message(kubectl, namespace, kind, spec, fragments):
    result = apply(kubectl, namespace, issuer(spec, kind, name=f"{namespace}-bad"))
    assert result.returncode != 0, f"accepted:\n{result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    assert "type conversion error" not in result.stderr


def test_seed_003_step_cluster_issuer_spec_ports_unchanged(kubectl, namespace):
    """Seed 003's StepClusterIssuer, its spec moved as it is: only the passwordRef's namespace
    goes, since a ClusterIssuer reads its Secrets from the cluster resource namespace."""
    seed = {
        "url": "https://step-ca.flexstack-identity.svc.cluster.local:9000",
        "caBundle": base64.b64encode(ROOT_PEM).decode(),
        "provisioner": {"name": "admin", "kid": "admin",
                        "passwordRef": {"name": "step-ca-secrets", "key": "provisioner-password",
                                        "namespace": "flexstack-identity"}},
    }
    name = f"{namespace}-seed"
    rejected = apply(kubectl, namespace, issuer({"step": seed}, "ClusterIssuer", name))
    assert rejected.returncode != 0
    assert 'unknown field "spec.step.provisioner.passwordRef.namespace"' in rejected.stderr
    del seed["provisioner"]["passwordRef"]["namespace"]
    stored_as_written(kubectl, namespace, issuer({"step": seed}, "ClusterIssuer", name))


@pytest.mark.parametrize("kind", ["Issuer", "ClusterIssuer"])
def test_good_step_issuer_is_stored_as_written(kubectl, namespace, kind):
    stored_as_written(kubectl, namespace, issuer({"step": step(url="https://10.0.0.7:9000/")}, kind,
                                                 name=f"{namespace}-good"))


def stored_as_written(kubectl, namespace: str, manifest: dict) -> None:
    cluster_scoped = manifest["kind"] == "ClusterIssuer"
    result = apply(kubectl, namespace, manifest)
    assert result.returncode == 0, result.stderr
    where = [] if cluster_scoped else ["-n", namespace]
    name = manifest["metadata"]["name"]
    try:
        stored = json.loads(kubectl("get", *where, manifest["kind"].lower(), name, "-o", "json").stdout)
        assert stored["spec"] == manifest["spec"]
    finally:
        kubectl("delete", *where, manifest["kind"].lower(), name, "--wait=false", check=False)
