"""What the policy looks at, and what it decides."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Mapping

from certmint.model.certificate import GROUP, CertificateSpec
from certmint.pki.signing import CASigner
from certmint.pki.types import IssuedCertificate, SigningOptions

# Secret keys, labels and annotations certmint writes. The label lets the operator
# watch only its own Secrets with a server-side selector.
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
CA_CERT = "ca.crt"
DOMAIN = GROUP  # annotations and labels are prefixed with the API group
CERTIFICATE_NAME = f"{DOMAIN}/certificate-name"
ISSUER_NAME = f"{DOMAIN}/issuer-name"
ISSUER_KIND = f"{DOMAIN}/issuer-kind"
ISSUER_GROUP = f"{DOMAIN}/issuer-group"
COMMON_NAME = f"{DOMAIN}/common-name"
ALT_NAMES = f"{DOMAIN}/alt-names"
IP_SANS = f"{DOMAIN}/ip-sans"
URI_SANS = f"{DOMAIN}/uri-sans"
EMAIL_SANS = f"{DOMAIN}/email-sans"  # only when the certificate has email SANs, as cert-manager does
# The certificate's subject, one annotation per field it has (none for a field it lacks),
# keyed by the Subject attribute they describe. Names as cert-manager v1.21's.
SUBJECT_ANNOTATIONS = {
    "organizations": f"{DOMAIN}/subject-organizations",
    "organizational_units": f"{DOMAIN}/subject-organizationalunits",
    "countries": f"{DOMAIN}/subject-countries",
    "provinces": f"{DOMAIN}/subject-provinces",
    "localities": f"{DOMAIN}/subject-localities",
    "street_addresses": f"{DOMAIN}/subject-streetaddresses",
    "postal_codes": f"{DOMAIN}/subject-postalcodes",
    "serial_number": f"{DOMAIN}/subject-serialnumber",
}
REVISION = f"{DOMAIN}/revision"
ISSUER_CHANGED = "IssuerChanged"
# On the Certificate: any new value asks for one issuance; the Secret records the value handled.
RENEW = f"{DOMAIN}/renew"
RENEW_HANDLED = f"{DOMAIN}/renew-handled"
# Every annotation certmint writes on a Secret (the user's secretTemplate adds its own).
SECRET_ANNOTATION_NAMES = (CERTIFICATE_NAME, ISSUER_NAME, ISSUER_KIND, ISSUER_GROUP, COMMON_NAME, ALT_NAMES, IP_SANS,
                           URI_SANS, EMAIL_SANS, *SUBJECT_ANNOTATIONS.values(), REVISION, RENEW_HANDLED)


@dataclass(frozen=True)
class SecretState:
    """The parts of a Secret the policy reads, already base64-decoded."""

    name: str
    data: Mapping[str, bytes] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    type: str = "kubernetes.io/tls"


@dataclass(frozen=True)
class IssuerState:
    """Whether an issuer can sign now; signer is None for a self-signed issuer.

    options are what a self-signed issuer writes into its certificates (CRL distribution
    points); a CA issuer's CRL and AIA URLs are its signer's options.
    """

    ready: bool
    reason: str
    message: str
    signer: CASigner | None = None
    ready_since: dt.datetime | None = None  # when it last became Ready
    options: SigningOptions = field(default_factory=SigningOptions)
    # The issuer signs a CSR elsewhere (step-ca), and that CA decides the subject, usages and CA flag.
    external: bool = False


@dataclass(frozen=True)
class FailureRecord:
    """The last failed issuance, as kept in the Certificate's status."""

    attempts: int = 0
    last_failure: dt.datetime | None = None
    generation: int | None = None  # metadata.generation the failure was seen at


@dataclass(frozen=True)
class Observed:
    """Everything the decision depends on: the policy reads nothing else."""

    name: str
    generation: int
    spec: CertificateSpec
    secret: SecretState | None
    issuer: IssuerState
    now: dt.datetime
    renew_request: str | None = None  # value of the certmint.io/renew annotation
    failure: FailureRecord = field(default_factory=FailureRecord)
    # When an IssuerChanged re-issuance may run: after the issuer's new root has reached the workloads'
    # trust bundles, at this certificate's place in the rotation window (None: no gate). A function,
    # asked only when the issuer changed: finding it reads the trust bundles above the issuer, which
    # no other decision needs.
    rotation_at: Callable[[], dt.datetime | None] = lambda: None
    # The serials of this certificate's issuer that a CertificateRevocation covers, each with what
    # to say about it (which revocation, why): the current certificate on it is re-issued at once.
    revoked: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpToDate:
    """Nothing to issue before renewal_time."""

    not_before: dt.datetime
    not_after: dt.datetime
    renewal_time: dt.datetime
    revision: int | None
    issued: IssuedCertificate | None = None  # what the current certificate says, parsed once per reconcile


@dataclass(frozen=True)
class Issue:
    """Issue now. reason is cert-manager's trigger name (DoesNotExist, Renewing, ...)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Wait:
    """Cannot issue yet. retry_at None means: wait for an event (e.g. the issuer turning Ready)."""

    reason: str
    message: str
    retry_at: dt.datetime | None = None


Decision = UpToDate | Issue | Wait
