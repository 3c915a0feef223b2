"""Manifests the e2e tests share, as YAML text for `kubectl apply -f -`."""
from __future__ import annotations

SELF_SIGNED_ISSUER = """apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: self}
spec: {selfSigned: {}}
"""


def documents(*docs: str) -> str:
    return "\n---\n".join(d.strip("\n") for d in docs) + "\n"


def constrained_ca(permitted_dns: str, issuer: str = "constrained") -> str:
    """A CA Issuer whose CA certificate may only sign names under permitted_dns."""
    return documents(SELF_SIGNED_ISSUER, f"""apiVersion: certmint.io/v1
kind: Certificate
metadata: {{name: {issuer}-ca}}
spec:
  isCA: true
  commonName: Constrained CA
  secretName: {issuer}-ca
  privateKey: {{algorithm: ECDSA}}
  nameConstraints:
    critical: true
    permitted: {{dnsDomains: [{permitted_dns}]}}
  issuerRef: {{name: self}}""", f"""apiVersion: certmint.io/v1
kind: Issuer
metadata: {{name: {issuer}}}
spec: {{ca: {{secretName: {issuer}-ca}}}}""")
