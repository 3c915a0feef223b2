"""Issuers behind one small interface: given an issuer's spec and what it reads, can it sign now?

Pure: the caller fetches the CA Secret; this module only judges it. Each issuer type
returns an IssuerState; a CA issuer carries the CASigner the issuance uses.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from certmint.model.issuer import IssuerSpec
from certmint.pki import CAError, SigningOptions, load_ca
from certmint.policy.types import CA_CERT, TLS_CERT, TLS_KEY, IssuerState, SecretState

SELF_SIGNED = "SelfSigned"
CA = "CA"


def issuer_state(spec: IssuerSpec, ca_secret: SecretState | None, now: dt.datetime,
                 secret_namespace: str | None = None) -> IssuerState:
    if spec.kind == SELF_SIGNED:
        return IssuerState(True, "IsReady", "Self-signed issuer is ready",
                           options=signing_options(spec))
    return _ca_state(spec, ca_secret, now, secret_namespace)


def signing_options(spec: IssuerSpec) -> SigningOptions:
    """The CRL Distribution Points and Authority Information Access every certificate of this issuer carries.

    A self-signed certificate is its own issuer, so only CRL distribution points apply to it.
    """
    if spec.kind == SELF_SIGNED:
        return SigningOptions(crl_distribution_points=spec.crl_distribution_points)
    return SigningOptions(spec.crl_distribution_points, spec.ocsp_servers, spec.issuing_certificate_urls)


def _ca_state(spec: IssuerSpec, secret: SecretState | None, now: dt.datetime,
              namespace: str | None) -> IssuerState:
    where = f"{namespace}/{spec.ca_secret_name}" if namespace else spec.ca_secret_name
    if secret is None:
        return IssuerState(False, "SecretNotFound", f"CA Secret {where} does not exist: create it, "
                           "or issue it with a Certificate that has isCA: true")
    cert, key = secret.data.get(TLS_CERT), secret.data.get(TLS_KEY)
    if not cert or not key:
        return IssuerState(False, "InvalidKeyPair", f"CA Secret {where} must contain tls.crt and tls.key")
    try:
        signer = load_ca(cert, key, secret.data.get(CA_CERT), now)
    except CAError as e:
        return IssuerState(False, e.reason, f"CA Secret {where}: {e.message}")
    return IssuerState(True, "KeyPairVerified", "Signing CA verified",
                       dataclasses.replace(signer, options=signing_options(spec)))


def valid_until(state: IssuerState) -> dt.datetime | None:
    """When a Ready issuer stops being able to sign (its CA certificate expires)."""
    return state.signer.certificate.not_valid_after_utc if state.signer else None
