"""The objects the benchmarks apply, as dicts and as multi-document YAML (JSON documents). Pure."""
from __future__ import annotations

import base64
import json
from typing import Iterable

API_VERSION = "certmint.io/v1"
KEY_SIZES = {"ECDSA": 256, "RSA": 2048, "Ed25519": 0}


def private_key(algorithm: str) -> dict:
    key = {"algorithm": algorithm}
    if KEY_SIZES.get(algorithm):
        key["size"] = KEY_SIZES[algorithm]
    return key


def leaf_spec(i: int, algorithm: str, issuer: str, duration: str | None = None,
              renew_before: str | None = None) -> dict:
    """The spec of leaf certificate number i: what the operator issues and what the crypto floor signs."""
    spec = {"secretName": f"c{i}", "commonName": f"c{i}.bench.test", "dnsNames": [f"c{i}.bench.test"],
            "privateKey": private_key(algorithm), "issuerRef": {"name": issuer}}
    if duration:
        spec["duration"] = duration
    if renew_before:
        spec["renewBefore"] = renew_before
    return spec


def ca_spec(algorithm: str, issuer: str = "self") -> dict:
    return {"isCA": True, "commonName": "certmint bench CA", "secretName": "bench-ca",
            "privateKey": private_key(algorithm), "issuerRef": {"name": issuer}}


def obj(kind: str, namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def self_signed_issuer(namespace: str, name: str = "self") -> dict:
    return obj("Issuer", namespace, name, {"selfSigned": {}})


def ca_chain(namespace: str, algorithm: str) -> list[dict]:
    """selfSigned Issuer -> isCA Certificate -> CA Issuer "ca" (its key of the same algorithm as the leaves)."""
    return [self_signed_issuer(namespace), obj("Certificate", namespace, "bench-ca", ca_spec(algorithm)),
            obj("Issuer", namespace, "ca", {"ca": {"secretName": "bench-ca"}})]


def leaves(namespace: str, indices: Iterable[int], algorithm: str, issuer: str, duration: str | None = None,
           renew_before: str | None = None) -> list[dict]:
    return [obj("Certificate", namespace, f"c{i}", leaf_spec(i, algorithm, issuer, duration, renew_before))
            for i in indices]


def to_yaml(objects: Iterable[dict]) -> str:
    """A multi-document YAML file: each document is JSON, which YAML reads as it is."""
    return "---\n".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects)


def opaque_secret(namespace: str, name: str, size: int = 1024) -> dict:
    """An unrelated Secret holding `size` bytes, not labelled for certmint."""
    payload = (name.encode() * (size // max(1, len(name)) + 1))[:size]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": {"blob": base64.b64encode(payload).decode()}}
