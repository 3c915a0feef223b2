"""The Bundle reconciler's view of the issuer tree, from the controller's store and Secret cache: what
is below an issuer (to any depth), what is above one, which Bundles a Secret change concerns, which
roots are in use, and when a certificate under a rotated CA gets its turn."""
from __future__ import annotations

import datetime as dt

import pytest
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

from certmint.controller.bundles import (
    ancestors,
    bundles_for_secret,
    issuer_roots,
    rotation_gate,
    subtree,
)
from certmint.controller.context import Context, index_by_reference
from certmint.controller.options import Options
from certmint.issuers import issuer_state
from certmint.kube.store import Store
from certmint.model import parse_issuer_spec
from certmint.policy.types import CERTIFICATE_NAME, SecretState
from certmint.tls.testing import TestCA
from certmint.trust import fingerprint
from certmint.trust.anchors import TrackedCA, to_status

CRNS = "certmint"
APP = "app"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _now():
    """NOW is taken when each test starts: the CAs the tests make are valid from a few minutes
    before their own creation, and a NOW from collection time may be long before that."""
    global NOW
    NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@dataclass
class Secrets:
    """The part of SecretCache the Bundle code reads."""
    held: dict[tuple[str, str], SecretState] = field(default_factory=dict)

    def get(self, namespace: str, name: str) -> SecretState | None:
        return self.held.get((namespace, name))

    def read(self, namespace: str, name: str) -> SecretState | None:
        return self.held.get((namespace, name))


def obj(kind: str, namespace: str, name: str, spec: dict, status: dict | None = None) -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": spec, "status": status or {}}


def secret(name: str, owner: str, ca: TestCA, leaf: bytes | None = None) -> SecretState:
    """A leaf's Secret (leaf given), or a CA's own Secret, with its key so an issuer can sign with it."""
    data = {"tls.crt": leaf or ca.cert_pem, "ca.crt": ca.root.cert_pem}
    if leaf is None:
        data["tls.key"] = ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())
    return SecretState(name, data, {CERTIFICATE_NAME: owner})


def tree(old_leaf_root: TestCA | None = None):
    """bootstrap (selfSigned) -> root-ca -> ClusterIssuer root -> intermediate-ca -> Issuer intermediate
    -> web, api; and a Bundle following root. With old_leaf_root, api's Secret still carries that root."""
    root = TestCA("Tree Root")
    intermediate = root.intermediate("Tree Intermediate")
    store: Store[dict] = Store(index=index_by_reference(CRNS))
    objects = [
        obj("Issuer", CRNS, "bootstrap", {"selfSigned": {}}),
        obj("Certificate", CRNS, "root-ca", {"secretName": "root-ca", "isCA": True, "issuerRef": {"name": "bootstrap"}}),
        obj("ClusterIssuer", "", "root", {"ca": {"secretName": "root-ca"}}),
        obj("Certificate", APP, "intermediate-ca", {"secretName": "intermediate-ca", "isCA": True,
                                                    "issuerRef": {"name": "root", "kind": "ClusterIssuer"}}),
        obj("Issuer", APP, "intermediate", {"ca": {"secretName": "intermediate-ca"}}),
        obj("Certificate", APP, "web", {"secretName": "web-tls", "issuerRef": {"name": "intermediate"}}),
        obj("Certificate", APP, "api", {"secretName": "api-tls", "issuerRef": {"name": "intermediate"}}),
        obj("Bundle", "", "trust", {"sources": [{"issuerRef": {"name": "root", "kind": "ClusterIssuer"}}],
                                    "target": {"configMap": {"key": "ca.crt"}}}),
        obj("Bundle", "", "other", {"sources": [{"inLine": "x"}], "target": {"configMap": {"key": "ca.crt"}}}),
    ]
    for o in objects:
        store.upsert((o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]), 1, o)
    secrets = Secrets({
        (CRNS, "root-ca"): SecretState("root-ca", {"tls.crt": root.cert_pem, "ca.crt": root.cert_pem},
                                       {CERTIFICATE_NAME: "root-ca"}),
        (APP, "intermediate-ca"): secret("intermediate-ca", "intermediate-ca", intermediate),
        (APP, "web-tls"): secret("web-tls", "web", intermediate, intermediate.issue("web").cert_pem),
        (APP, "api-tls"): SecretState("api-tls", {"ca.crt": (old_leaf_root or root).cert_pem},
                                      {CERTIFICATE_NAME: "api"}),
    })
    options = Options(cluster_resource_namespace=CRNS, trust_propagation=dt.timedelta(minutes=2),
                      rotation_spread=dt.timedelta(minutes=5))
    ctx = Context(None, options, store, secrets, None, None, None, lambda: NOW)  # type: ignore[arg-type]
    return ctx, root, intermediate


def test_subtree_reaches_every_depth_and_both_kinds_of_issuer():
    ctx, _, _ = tree()
    issuers, certificates, secrets = subtree(ctx, ("ClusterIssuer", "", "root"))
    assert issuers == [("ClusterIssuer", "", "root"), ("Issuer", APP, "intermediate")]
    assert sorted(certificates) == [("Certificate", APP, n) for n in ("api", "intermediate-ca", "web")]
    assert set(secrets) == {(CRNS, "root-ca"), (APP, "intermediate-ca"), (APP, "web-tls"), (APP, "api-tls")}


def test_ancestors_and_the_bundles_a_secret_change_concerns():
    ctx, _, _ = tree()
    assert ancestors(ctx, ("Issuer", APP, "intermediate")) == [
        ("Issuer", APP, "intermediate"), ("ClusterIssuer", "", "root"), ("Issuer", CRNS, "bootstrap")]
    assert ctx.bundles_following(("ClusterIssuer", "", "root")) == (("Bundle", "", "trust"),)
    # a leaf's Secret, the intermediate's (a CA Secret), and the root's all concern the Bundle on root
    assert bundles_for_secret(ctx, APP, "web-tls", "web") == {("Bundle", "", "trust")}
    assert bundles_for_secret(ctx, APP, "intermediate-ca", "intermediate-ca") == {("Bundle", "", "trust")}
    assert bundles_for_secret(ctx, CRNS, "root-ca", "root-ca") == {("Bundle", "", "trust")}
    assert bundles_for_secret(ctx, APP, "unrelated", None) == set()


def test_a_previous_root_stays_in_use_while_a_secret_below_carries_it():
    old = TestCA("Tree Root")  # the same name: the previous key of the root
    ctx, root, _ = tree(old_leaf_root=old)
    assert {fingerprint(c) for c in issuer_roots(ctx, ("ClusterIssuer", "", "root"))} == {
        fingerprint(root.cert), fingerprint(old.cert)}
    ctx, root, _ = tree()
    assert [fingerprint(c) for c in issuer_roots(ctx, ("ClusterIssuer", "", "root"))] == [fingerprint(root.cert)]


def test_rotation_gate_waits_for_the_bundle_then_spreads():
    ctx, root, intermediate = tree()
    key = ("Certificate", APP, "web")
    state = issuer_state(parse_issuer_spec({"ca": {"secretName": "intermediate-ca"}}),
                         ctx.secrets.get(APP, "intermediate-ca"), NOW)
    ref = ("Issuer", APP, "intermediate")
    # the Bundle does not hold the root yet: no turn (the CA's expiry, which no renewal reaches)
    assert rotation_gate(ctx, key, state, ref) == intermediate.cert.not_valid_after_utc
    # the Bundle has written the root everywhere since `since`
    since = NOW + dt.timedelta(minutes=10)
    synced = [TrackedCA(fingerprint(root.cert), root.cert_pem.decode(), root.cert.not_valid_after_utc, since)]
    ctx.objects.upsert(("Bundle", "", "trust"), 2, {**ctx.objects.get(("Bundle", "", "trust")),
                                                     "status": {"issuerCAs": to_status(synced)}})
    at = rotation_gate(ctx, key, state, ref)
    assert since + dt.timedelta(minutes=2) <= at < since + dt.timedelta(minutes=7)
    # a self-signed issuer has no CA to rotate
    assert rotation_gate(ctx, key, issuer_state(parse_issuer_spec({"selfSigned": {}}), None, NOW), ref) is None
