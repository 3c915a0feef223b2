"""A typed view of an Issuer's or ClusterIssuer's spec (both have the same spec).

The spec holds exactly one of `selfSigned` {crlDistributionPoints} or
`ca` {secretName, crlDistributionPoints, ocspServers, issuingCertificateURLs, crl {validity}}.
or `step` {url, caBundle, provisioner {name, kid, passwordRef {name, key}}}: an external
smallstep step-ca, with step-issuer's field names.
"""
from __future__ import annotations

import datetime as dt
import base64
import binascii
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from certmint.model._fields import DNS_SUBDOMAIN, get_map, get_str, get_str_list
from certmint.model.duration import parse_duration
from certmint.model.errors import SpecError
from certmint.pki.inspect import parse_certificates
from certmint.pki.types import PKIError

__all__ = ["CA", "SELF_SIGNED", "STEP", "IssuerSpec", "SpecError", "StepSpec", "parse_issuer_spec"]

SELF_SIGNED = "SelfSigned"
CA = "CA"
STEP = "Step"



@dataclass(frozen=True)
class IssuerSpec:
    """What kind of issuer this is and what it writes into the certificates it signs.

    `ca_secret_name` is set for kind "CA" only: the Secret holding the CA's tls.crt and
    tls.key (in the Issuer's namespace, or the cluster resource namespace for a
    ClusterIssuer)."""

    kind: str  # SelfSigned | CA | Step
    ca_secret_name: str | None = None
    crl_distribution_points: tuple[str, ...] = ()
    ocsp_servers: tuple[str, ...] = ()
    issuing_certificate_urls: tuple[str, ...] = ()
    step: StepSpec | None = None  # set for kind "Step" only
    # How long each CRL is valid (nextUpdate - thisUpdate) when the CA issuer publishes
    # one (`ca.crl` present); None when it does not.
    crl_validity: dt.timedelta | None = None


def parse_issuer_spec(spec: Mapping[str, Any]) -> IssuerSpec:
    """Read an Issuer's or ClusterIssuer's `.spec`. Raises SpecError unless exactly one
    of selfSigned, ca and step is set, or when ca or step is incomplete."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec must be an object")
    self_signed = get_map(spec, "selfSigned", "selfSigned")
    ca = get_map(spec, "ca", "ca")
    step = get_map(spec, "step", "step")
    chosen = [name for name, value in (("selfSigned", self_signed), ("ca", ca), ("step", step)) if value is not None]
    if len(chosen) > 1:
        raise SpecError(f"exactly one of selfSigned, ca or step must be set, not {' and '.join(chosen)}")
    if self_signed is not None:
        return IssuerSpec(
            kind=SELF_SIGNED,
            crl_distribution_points=get_str_list(
                self_signed, "crlDistributionPoints", "selfSigned.crlDistributionPoints"
            ),
        )
    if ca is not None:
        secret_name = get_str(ca, "secretName", "ca.secretName")
        if not secret_name:
            raise SpecError("ca.secretName is required: name the Secret that holds the CA's tls.crt and tls.key")
        if len(secret_name) > 253 or not DNS_SUBDOMAIN.fullmatch(secret_name):
            raise SpecError(f'ca.secretName: "{secret_name}" is not a valid Secret name')
        return IssuerSpec(
            kind=CA,
            ca_secret_name=secret_name,
            crl_distribution_points=get_str_list(ca, "crlDistributionPoints", "ca.crlDistributionPoints"),
            ocsp_servers=get_str_list(ca, "ocspServers", "ca.ocspServers"),
            issuing_certificate_urls=get_str_list(ca, "issuingCertificateURLs", "ca.issuingCertificateURLs"),
            crl_validity=_parse_crl_validity(ca),
        )
    if step is not None:
        return IssuerSpec(kind=STEP, step=_parse_step(step))
    raise SpecError("exactly one of selfSigned, ca or step must be set")


_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


@dataclass(frozen=True)
class StepSpec:
    """`spec.step`: a smallstep step-ca and the JWK provisioner to sign through, with
    step-issuer's field names. The password is read from the Secret `password_secret_name`
    (the Issuer's namespace, or the cluster resource namespace for a ClusterIssuer) at its
    key `password_secret_key`; it is never part of the spec."""

    url: str
    ca_bundle: bytes = field(repr=False)  # PEM, decoded from the base64 in the spec
    provisioner_name: str
    provisioner_kid: str
    password_secret_name: str
    password_secret_key: str


def _parse_step(step: Mapping[str, Any]) -> StepSpec:
    url = get_str(step, "url", "step.url")
    if not url:
        raise SpecError("step.url is required: the step-ca's https:// URL")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise SpecError(f'step.url: "{url}" is not an https:// URL')
    encoded = get_str(step, "caBundle", "step.caBundle")
    if not encoded:
        raise SpecError("step.caBundle is required: the step-ca's root certificate, PEM, base64-encoded")
    try:
        ca_bundle = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SpecError("step.caBundle is not valid base64") from None
    try:
        parse_certificates(ca_bundle)
    except PKIError:
        raise SpecError("step.caBundle does not hold a PEM certificate") from None
    provisioner = get_map(step, "provisioner", "step.provisioner")
    if provisioner is None:
        raise SpecError("step.provisioner is required: {name, kid, passwordRef}")
    name = get_str(provisioner, "name", "step.provisioner.name")
    kid = get_str(provisioner, "kid", "step.provisioner.kid")
    if not name or not kid:
        raise SpecError("step.provisioner.name and step.provisioner.kid are required")
    password_ref = get_map(provisioner, "passwordRef", "step.provisioner.passwordRef")
    if password_ref is None:
        raise SpecError("step.provisioner.passwordRef is required: the Secret holding the provisioner password")
    secret_name = get_str(password_ref, "name", "step.provisioner.passwordRef.name") or ""
    if len(secret_name) > 253 or not DNS_SUBDOMAIN.fullmatch(secret_name):
        raise SpecError(f'step.provisioner.passwordRef.name: "{secret_name}" is not a valid Secret name')
    secret_key = get_str(password_ref, "key", "step.provisioner.passwordRef.key") or ""
    if len(secret_key) > 253 or not _SECRET_KEY.fullmatch(secret_key):
        raise SpecError(f'step.provisioner.passwordRef.key: "{secret_key}" is not a valid Secret key')
    return StepSpec(url=url, ca_bundle=ca_bundle, provisioner_name=name, provisioner_kid=kid,
                    password_secret_name=secret_name, password_secret_key=secret_key)


#: `ca.crl.validity` when `ca.crl` is present without it, and the least it may be: the CRL
#: is re-signed at least 2h before its nextUpdate and alerted on 1h before.
DEFAULT_CRL_VALIDITY = dt.timedelta(hours=24)
MINIMUM_CRL_VALIDITY = dt.timedelta(hours=3)


def _parse_crl_validity(ca: Mapping[str, Any]) -> dt.timedelta | None:
    crl = get_map(ca, "crl", "ca.crl")
    if crl is None:
        return None
    text = get_str(crl, "validity", "ca.crl.validity")
    if text is None:
        return DEFAULT_CRL_VALIDITY
    try:
        validity = parse_duration(text)
    except ValueError as e:
        raise SpecError(f"ca.crl.validity: {e}") from None
    if validity < MINIMUM_CRL_VALIDITY:
        raise SpecError(f"ca.crl.validity must be at least 3h, got {text}")
    return validity
