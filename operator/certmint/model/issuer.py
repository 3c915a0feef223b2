"""A typed view of an Issuer's or ClusterIssuer's spec (both have the same spec).

The spec holds exactly one of `selfSigned` {crlDistributionPoints} or
`ca` {secretName, crlDistributionPoints, ocspServers, issuingCertificateURLs, crl {validity}}.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from certmint.model._fields import get_map, get_str, get_str_list
from certmint.model.duration import parse_duration
from certmint.model.errors import SpecError

__all__ = ["CA", "SELF_SIGNED", "IssuerSpec", "SpecError", "parse_issuer_spec"]

SELF_SIGNED = "SelfSigned"
CA = "CA"

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class IssuerSpec:
    """What kind of issuer this is and what it writes into the certificates it signs.

    `ca_secret_name` is set for kind "CA" only: the Secret holding the CA's tls.crt and
    tls.key (in the Issuer's namespace, or the cluster resource namespace for a
    ClusterIssuer)."""

    kind: str  # SelfSigned | CA
    ca_secret_name: str | None = None
    crl_distribution_points: tuple[str, ...] = ()
    ocsp_servers: tuple[str, ...] = ()
    issuing_certificate_urls: tuple[str, ...] = ()
    # How long each CRL is valid (nextUpdate - thisUpdate) when the CA issuer publishes
    # one (`ca.crl` present); None when it does not.
    crl_validity: dt.timedelta | None = None


def parse_issuer_spec(spec: Mapping[str, Any]) -> IssuerSpec:
    """Read an Issuer's or ClusterIssuer's `.spec`. Raises SpecError unless exactly one
    of selfSigned and ca is set, or when ca has no valid secretName."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec must be an object")
    self_signed = get_map(spec, "selfSigned", "selfSigned")
    ca = get_map(spec, "ca", "ca")
    if self_signed is not None and ca is not None:
        raise SpecError("exactly one of selfSigned or ca must be set, not both")
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
        if len(secret_name) > 253 or not _DNS_SUBDOMAIN.fullmatch(secret_name):
            raise SpecError(f'ca.secretName: "{secret_name}" is not a valid Secret name')
        return IssuerSpec(
            kind=CA,
            ca_secret_name=secret_name,
            crl_distribution_points=get_str_list(ca, "crlDistributionPoints", "ca.crlDistributionPoints"),
            ocsp_servers=get_str_list(ca, "ocspServers", "ca.ocspServers"),
            issuing_certificate_urls=get_str_list(ca, "issuingCertificateURLs", "ca.issuingCertificateURLs"),
            crl_validity=_parse_crl_validity(ca),
        )
    raise SpecError("exactly one of selfSigned or ca must be set")


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
