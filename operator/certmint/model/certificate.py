"""A typed, defaulted view of a Certificate's spec, and when to renew what it issued.

`parse_certificate_spec` reads `.spec` exactly as the user wrote it (the CRD stores no
defaults) and applies cert-manager's defaults here, in one place:

- duration 2160h; usages "digital signature" and "key encipherment" for an RSA key, and
  "digital signature" alone for ECDSA and Ed25519 keys, which cannot encipher (RFC 8813,
  RFC 8410), and for CA keys (RFC 3279 recommends against enciphering with a key that signs
  certificates); "cert sign" is added when isCA is true;
- private key RSA 2048 when no algorithm is given, ECDSA 256 when the size is absent,
  Ed25519 ignores any size (as cert-manager does) and is always PKCS8; encoding PKCS1;
  rotationPolicy Always;
- issuerRef kind Issuer; issuerRef group "", "cert-manager.io" and "certmint.io" all
  mean certmint's own issuers, so manifests ported from cert-manager work unchanged.

The CRD schema and its CEL rules reject bad input at `kubectl apply`; this module checks
the same rules again (objects may predate a schema change) and a few the schema cannot,
raising SpecError with a message for the user.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from certmint.model._fields import DNS_SUBDOMAIN, get_bool, get_int, get_map, get_str, get_str_list, get_str_map
from certmint.model.duration import format_duration, parse_duration
from certmint.model.errors import SpecError
from certmint.pki.types import (
    ECDSA,
    ED25519,
    PKCS1,
    PKCS8,
    RSA,
    CertificateTemplate,
    KeySpec,
    NameConstraints,
    Subject,
)
from certmint.pki.keys import EC_CURVES, RSA_SIZES
from certmint.pki.usages import RSA_DEFAULT_USAGES, default_usages

__all__ = [
    "ADDITIONAL_OUTPUT_FORMATS",
    "DEFAULT_DURATION",
    "DEFAULT_USAGES",
    "ECDSA_KEY_SIZES",
    "GROUP",
    "ISSUER_KINDS",
    "JksKeystore",
    "IssuerRef",
    "KEY_USAGES",
    "MAX_COMMON_NAME_LENGTH",
    "MINIMUM_DURATION",
    "MINIMUM_RENEW_BEFORE",
    "PKCS12_PROFILES",
    "Pkcs12Keystore",
    "RSA_KEY_SIZES",
    "ROTATION_POLICIES",
    "CertificateSpec",
    "SpecError",
    "parse_certificate_spec",
    "renewal_time",
]

GROUP = "certmint.io"
#: issuerRef.group values that all mean certmint's own Issuer/ClusterIssuer.
GROUP_ALIASES = frozenset({"", "certmint.io", "cert-manager.io"})
ISSUER_KINDS = ("Issuer", "ClusterIssuer")

DEFAULT_DURATION = dt.timedelta(hours=2160)
MINIMUM_DURATION = dt.timedelta(hours=1)
MINIMUM_RENEW_BEFORE = dt.timedelta(minutes=5)
#: A certificate is in use at least ten seconds before it is renewed: issuance backdates
#: notBefore by one minute, so this is a minute and ten seconds after notBefore.
EARLIEST_RENEWAL = dt.timedelta(minutes=1, seconds=10)
MAX_COMMON_NAME_LENGTH = 64

#: cert-manager's usage names. "signing" and "s/mime" are its aliases of
#: "digital signature" and "email protection"; the model stores the canonical names.
KEY_USAGES = (
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
)
USAGE_ALIASES = {"signing": "digital signature", "s/mime": "email protection"}
#: The default for an RSA end-entity key; ECDSA, Ed25519 and CA keys get "digital signature" alone.
DEFAULT_USAGES = RSA_DEFAULT_USAGES

KEY_ALGORITHMS = (RSA, ECDSA, ED25519)
KEY_ENCODINGS = (PKCS1, PKCS8)
RSA_KEY_SIZES = RSA_SIZES  # defined once, where keys are made
ECDSA_KEY_SIZES = tuple(EC_CURVES)
DEFAULT_KEY_SIZES = {RSA: 2048, ECDSA: 256, ED25519: None}
ROTATION_POLICIES = ("Always", "Never")
ADDITIONAL_OUTPUT_FORMATS = ("DER", "CombinedPEM")
PKCS12_PROFILES = ("LegacyRC2", "LegacyDES", "Modern2023")
DEFAULT_PKCS12_PROFILE = "LegacyRC2"
DEFAULT_JKS_ALIAS = "certificate"
#: Secret annotations with this prefix are written by certmint; users may not set them.
RESERVED_ANNOTATION_PREFIX = "certmint.io/"

_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+")


@dataclass(frozen=True)
class IssuerRef:
    """Which issuer signs. `group` is always "certmint.io" once parsed."""

    name: str
    kind: str = "Issuer"  # Issuer | ClusterIssuer
    group: str = GROUP

    @property
    def namespaced(self) -> bool:
        return self.kind == "Issuer"


@dataclass(frozen=True)
class Pkcs12Keystore:
    """keystores.pkcs12: write keystore.p12 / truststore.p12, encrypted with the password
    found in Secret `password_secret_name` (same namespace) under `password_secret_key`."""

    create: bool
    password_secret_name: str
    password_secret_key: str
    profile: str = DEFAULT_PKCS12_PROFILE  # LegacyRC2 | LegacyDES | Modern2023


@dataclass(frozen=True)
class JksKeystore:
    """keystores.jks: write keystore.jks / truststore.jks (same password rules as PKCS12)."""

    create: bool
    password_secret_name: str
    password_secret_key: str
    alias: str = DEFAULT_JKS_ALIAS


@dataclass(frozen=True)
class CertificateSpec:
    """A Certificate's spec with every default applied. `template` is what the issuer is
    asked for; the rest says where and how the result is written and when to renew it.

    The label/annotation dicts are fresh copies: treat them as read-only."""

    secret_name: str
    issuer_ref: IssuerRef
    template: CertificateTemplate
    renew_before: dt.timedelta | None = None
    renew_before_percentage: int | None = None
    rotation_policy: str = "Always"  # Always | Never
    secret_labels: dict[str, str] = field(default_factory=dict)
    secret_annotations: dict[str, str] = field(default_factory=dict)
    additional_output_formats: tuple[str, ...] = ()  # DER | CombinedPEM, without duplicates
    pkcs12: Pkcs12Keystore | None = None
    jks: JksKeystore | None = None
    revision_history_limit: int | None = None
    usages_defaulted: bool = False  # the spec names no usages: template.usages are the key's defaults

    @property
    def duration(self) -> dt.timedelta:
        return self.template.duration


# --------------------------------------------------------------------------- parsing


def parse_certificate_spec(spec: Mapping[str, Any]) -> CertificateSpec:
    """Read a Certificate's `.spec` (as stored, defaults not applied) into a CertificateSpec.

    Raises SpecError, with a message naming the field, for anything certmint cannot issue.
    """
    if not isinstance(spec, Mapping):
        raise SpecError("spec must be an object")

    secret_name = get_str(spec, "secretName", "secretName")
    if not secret_name:
        raise SpecError("secretName is required")
    _check_object_name(secret_name, "secretName", "a Secret")

    issuer_ref = _parse_issuer_ref(spec)
    subject = _parse_subject(spec)
    dns_names = get_str_list(spec, "dnsNames", "dnsNames")
    ip_addresses = tuple(
        _parse_ip(ip, f"ipAddresses[{i}]") for i, ip in enumerate(get_str_list(spec, "ipAddresses", "ipAddresses"))
    )
    uris = get_str_list(spec, "uris", "uris")
    for index, uri in enumerate(uris):
        _check_uri(uri, f"uris[{index}]")
    emails = get_str_list(spec, "emailAddresses", "emailAddresses")
    for index, email in enumerate(emails):
        if not _EMAIL.fullmatch(email):
            raise SpecError(f'emailAddresses[{index}]: "{email}" is not a plain email address like user@example.com')
    if not (subject.common_name or dns_names or ip_addresses or uris or emails):
        raise SpecError("at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses is required")

    duration = _parse_duration_field(spec, "duration")
    if duration is None:
        duration = DEFAULT_DURATION
    if duration < MINIMUM_DURATION:
        raise SpecError(f"duration must be at least 1h, got {spec.get('duration')}")

    renew_before = _parse_duration_field(spec, "renewBefore")
    renew_before_percentage = get_int(spec, "renewBeforePercentage", "renewBeforePercentage")
    if renew_before is not None and renew_before_percentage is not None:
        raise SpecError("renewBefore and renewBeforePercentage cannot both be set: choose one")
    if renew_before is not None:
        if renew_before < MINIMUM_RENEW_BEFORE:
            raise SpecError(f"renewBefore must be at least 5m, got {spec.get('renewBefore')}")
        if renew_before >= duration:
            raise SpecError(
                f"renewBefore ({spec.get('renewBefore')}) must be shorter than duration "
                f"({spec.get('duration') or format_duration(duration)})"
            )
    if renew_before_percentage is not None and not 1 <= renew_before_percentage <= 99:
        raise SpecError(f"renewBeforePercentage must be between 1 and 99, got {renew_before_percentage}")

    is_ca = bool(get_bool(spec, "isCA", "isCA"))
    key, rotation_policy = _parse_private_key(spec)
    usages = _parse_usages(spec, is_ca, key.algorithm)
    name_constraints = _parse_name_constraints(spec, is_ca)

    secret_template = get_map(spec, "secretTemplate", "secretTemplate") or {}
    labels = get_str_map(secret_template, "labels", "secretTemplate.labels")
    annotations = get_str_map(secret_template, "annotations", "secretTemplate.annotations")
    for key_name in annotations:
        if key_name.startswith(RESERVED_ANNOTATION_PREFIX):
            raise SpecError(
                f'secretTemplate.annotations: "{key_name}" is reserved: certmint writes the '
                f"{RESERVED_ANNOTATION_PREFIX} annotations itself"
            )

    revision_history_limit = get_int(spec, "revisionHistoryLimit", "revisionHistoryLimit")
    if revision_history_limit is not None and revision_history_limit < 1:
        raise SpecError(f"revisionHistoryLimit must be at least 1, got {revision_history_limit}")

    pkcs12, jks = _parse_keystores(spec)

    template = CertificateTemplate(
        subject=subject,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        uris=uris,
        email_addresses=emails,
        duration=duration,
        is_ca=is_ca,
        usages=usages,
        name_constraints=name_constraints,
        key=key,
    )
    return CertificateSpec(
        secret_name=secret_name,
        issuer_ref=issuer_ref,
        template=template,
        renew_before=renew_before,
        renew_before_percentage=renew_before_percentage,
        rotation_policy=rotation_policy,
        secret_labels=labels,
        secret_annotations=annotations,
        additional_output_formats=_parse_output_formats(spec),
        pkcs12=pkcs12,
        jks=jks,
        revision_history_limit=revision_history_limit,
        usages_defaulted=not get_str_list(spec, "usages", "usages"),
    )


def _check_object_name(name: str, path: str, what: str) -> None:
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        raise SpecError(
            f'{path}: "{name}" is not a valid name for {what}: use lowercase letters, digits, '
            f"'-' and '.', starting and ending with a letter or digit"
        )


def _parse_issuer_ref(spec: Mapping[str, Any]) -> IssuerRef:
    ref = get_map(spec, "issuerRef", "issuerRef")
    if ref is None:
        raise SpecError("issuerRef is required")
    name = get_str(ref, "name", "issuerRef.name")
    if not name:
        raise SpecError("issuerRef.name is required")
    kind = get_str(ref, "kind", "issuerRef.kind") or "Issuer"
    if kind not in ISSUER_KINDS:
        raise SpecError(f'issuerRef.kind must be Issuer or ClusterIssuer, got "{kind}"')
    group = get_str(ref, "group", "issuerRef.group") or ""
    if group not in GROUP_ALIASES:
        raise SpecError(
            f'issuerRef.group "{group}" is not served by certmint: leave it empty or use certmint.io '
            "(cert-manager.io is accepted as a synonym)"
        )
    return IssuerRef(name=name, kind=kind, group=GROUP)


def _parse_subject(spec: Mapping[str, Any]) -> Subject:
    common_name = get_str(spec, "commonName", "commonName") or None
    if common_name is not None and len(common_name) > MAX_COMMON_NAME_LENGTH:
        raise SpecError(f"commonName must be at most 64 characters, got {len(common_name)}")
    subject = get_map(spec, "subject", "subject") or {}
    return Subject(
        common_name=common_name,
        organizations=get_str_list(subject, "organizations", "subject.organizations"),
        organizational_units=get_str_list(subject, "organizationalUnits", "subject.organizationalUnits"),
        countries=get_str_list(subject, "countries", "subject.countries"),
        provinces=get_str_list(subject, "provinces", "subject.provinces"),
        localities=get_str_list(subject, "localities", "subject.localities"),
        street_addresses=get_str_list(subject, "streetAddresses", "subject.streetAddresses"),
        postal_codes=get_str_list(subject, "postalCodes", "subject.postalCodes"),
        serial_number=get_str(subject, "serialNumber", "subject.serialNumber") or None,
    )


def _parse_ip(text: str, path: str) -> str:
    """A valid IP address in its compressed form (as IssuedCertificate reports them)."""
    try:
        if "%" in text:  # zone indexes are not addresses
            raise ValueError(text)
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise SpecError(f'{path}: "{text}" is not a valid IP address') from None


def _check_uri(uri: str, path: str) -> None:
    try:
        scheme = urllib.parse.urlsplit(uri).scheme
    except ValueError:
        scheme = ""
    if not scheme:
        raise SpecError(f'{path}: "{uri}" is not an absolute URI (like spiffe://example.org/workload)')


def _parse_duration_field(spec: Mapping[str, Any], key: str) -> dt.timedelta | None:
    text = get_str(spec, key, key)
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise SpecError(f"{key}: {exc}") from None


def _parse_usages(spec: Mapping[str, Any], is_ca: bool, algorithm: str) -> tuple[str, ...]:
    """The usages asked for, or the key's defaults.

    The CRD's CEL rules reject key/data encipherment with an ECDSA or Ed25519 key at apply
    time; this does not, on purpose: a Certificate stored before that rule existed keeps
    renewing as it did, instead of failing at its next renewal.
    """
    written = get_str_list(spec, "usages", "usages")
    usages: list[str] = []
    for index, usage in enumerate(written or default_usages(algorithm, is_ca)):
        if usage not in KEY_USAGES:
            raise SpecError(f'usages[{index}]: unknown usage "{usage}"; allowed: {", ".join(KEY_USAGES)}')
        usage = USAGE_ALIASES.get(usage, usage)
        if usage not in usages:
            usages.append(usage)
    if is_ca and "cert sign" not in usages:
        usages.append("cert sign")
    return tuple(usages)


def _parse_private_key(spec: Mapping[str, Any]) -> tuple[KeySpec, str]:
    private_key = get_map(spec, "privateKey", "privateKey") or {}
    algorithm = get_str(private_key, "algorithm", "privateKey.algorithm") or RSA
    if algorithm not in KEY_ALGORITHMS:
        raise SpecError(f'privateKey.algorithm must be RSA, ECDSA or Ed25519, got "{algorithm}"')
    size = get_int(private_key, "size", "privateKey.size") or None  # 0 means "default", as in cert-manager
    if algorithm == RSA:
        size = size or DEFAULT_KEY_SIZES[RSA]
        if size not in RSA_KEY_SIZES:
            raise SpecError(f"privateKey.size: RSA keys must be 2048, 3072, 4096 or 8192 bits, got {size}")
    elif algorithm == ECDSA:
        size = size or DEFAULT_KEY_SIZES[ECDSA]
        if size not in ECDSA_KEY_SIZES:
            raise SpecError(f"privateKey.size: ECDSA keys must be 256, 384 or 521 bits, got {size}")
    else:
        size = None  # Ed25519 has one size; cert-manager ignores privateKey.size for it
    encoding = get_str(private_key, "encoding", "privateKey.encoding") or PKCS1
    if encoding not in KEY_ENCODINGS:
        raise SpecError(f'privateKey.encoding must be PKCS1 or PKCS8, got "{encoding}"')
    if algorithm == ED25519:
        encoding = PKCS8  # there is no PKCS1 form of an Ed25519 key
    rotation_policy = get_str(private_key, "rotationPolicy", "privateKey.rotationPolicy") or "Always"
    if rotation_policy not in ROTATION_POLICIES:
        raise SpecError(f'privateKey.rotationPolicy must be Always or Never, got "{rotation_policy}"')
    return KeySpec(algorithm=algorithm, size=size, encoding=encoding), rotation_policy


def _parse_name_constraints(spec: Mapping[str, Any], is_ca: bool) -> NameConstraints | None:
    constraints = get_map(spec, "nameConstraints", "nameConstraints")
    if constraints is None:
        return None
    if not is_ca:
        raise SpecError("nameConstraints can only be set on a CA certificate (isCA: true)")
    permitted = get_map(constraints, "permitted", "nameConstraints.permitted")
    excluded = get_map(constraints, "excluded", "nameConstraints.excluded")
    if permitted is None and excluded is None:
        raise SpecError("nameConstraints needs permitted or excluded (or both)")

    def lists(items: Mapping[str, Any] | None, path: str) -> tuple[tuple[str, ...], ...]:
        items = items or {}
        ranges = tuple(
            _parse_cidr(cidr, f"{path}.ipRanges[{i}]")
            for i, cidr in enumerate(get_str_list(items, "ipRanges", f"{path}.ipRanges"))
        )
        return (
            get_str_list(items, "dnsDomains", f"{path}.dnsDomains"),
            ranges,
            get_str_list(items, "emailAddresses", f"{path}.emailAddresses"),
            get_str_list(items, "uriDomains", f"{path}.uriDomains"),
        )

    p_dns, p_ip, p_email, p_uri = lists(permitted, "nameConstraints.permitted")
    e_dns, e_ip, e_email, e_uri = lists(excluded, "nameConstraints.excluded")
    return NameConstraints(
        critical=bool(get_bool(constraints, "critical", "nameConstraints.critical")),
        permitted_dns=p_dns,
        permitted_ip_ranges=p_ip,
        permitted_emails=p_email,
        permitted_uri_domains=p_uri,
        excluded_dns=e_dns,
        excluded_ip_ranges=e_ip,
        excluded_emails=e_email,
        excluded_uri_domains=e_uri,
    )


def _parse_cidr(text: str, path: str) -> str:
    """A CIDR with the host bits cleared, as Go's net.ParseCIDR returns it."""
    try:
        if "%" in text:
            raise ValueError(text)
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise SpecError(f'{path}: "{text}" is not a valid CIDR range like 10.0.0.0/8') from None


def _parse_output_formats(spec: Mapping[str, Any]) -> tuple[str, ...]:
    written = spec.get("additionalOutputFormats") or []
    if not isinstance(written, (list, tuple)):
        raise SpecError("additionalOutputFormats must be a list")
    formats: list[str] = []
    for index, item in enumerate(written):
        kind = get_str(item, "type", f"additionalOutputFormats[{index}].type") if isinstance(item, Mapping) else None
        if kind not in ADDITIONAL_OUTPUT_FORMATS:
            raise SpecError(f"additionalOutputFormats[{index}].type must be DER or CombinedPEM")
        if kind not in formats:
            formats.append(kind)
    return tuple(formats)


def _parse_keystores(spec: Mapping[str, Any]) -> tuple[Pkcs12Keystore | None, JksKeystore | None]:
    keystores = get_map(spec, "keystores", "keystores") or {}

    def password_ref(store: Mapping[str, Any], path: str) -> tuple[str, str]:
        ref = get_map(store, "passwordSecretRef", f"{path}.passwordSecretRef")
        name = get_str(ref, "name", f"{path}.passwordSecretRef.name") if ref else None
        key = get_str(ref, "key", f"{path}.passwordSecretRef.key") if ref else None
        if not name or not key:
            raise SpecError(f"{path}.passwordSecretRef needs the name and key of the password's Secret")
        _check_object_name(name, f"{path}.passwordSecretRef.name", "a Secret")
        return name, key

    pkcs12 = jks = None
    store = get_map(keystores, "pkcs12", "keystores.pkcs12")
    if store is not None:
        name, key = password_ref(store, "keystores.pkcs12")
        profile = get_str(store, "profile", "keystores.pkcs12.profile") or DEFAULT_PKCS12_PROFILE
        if profile not in PKCS12_PROFILES:
            raise SpecError(f'keystores.pkcs12.profile must be one of {", ".join(PKCS12_PROFILES)}, got "{profile}"')
        create = bool(get_bool(store, "create", "keystores.pkcs12.create"))
        pkcs12 = Pkcs12Keystore(create=create, password_secret_name=name, password_secret_key=key, profile=profile)
    store = get_map(keystores, "jks", "keystores.jks")
    if store is not None:
        name, key = password_ref(store, "keystores.jks")
        alias = get_str(store, "alias", "keystores.jks.alias") or DEFAULT_JKS_ALIAS
        create = bool(get_bool(store, "create", "keystores.jks.create"))
        if create:
            raise SpecError("JKS keystores are not supported: use keystores.pkcs12 instead "
                            "(Java 9 and later read PKCS#12 keystores)")
        jks = JksKeystore(create=create, password_secret_name=name, password_secret_key=key, alias=alias)
    return pkcs12, jks


# --------------------------------------------------------------------------- renewal


def renewal_time(not_before: dt.datetime, not_after: dt.datetime, spec: CertificateSpec) -> dt.datetime:
    """When to renew a certificate valid from `not_before` to `not_after` (the ISSUED
    certificate's dates, which the issuer may have clamped), as cert-manager computes it:

    - notAfter - renewBefore, when renewBefore is set and shorter than the real lifetime;
    - otherwise notAfter - renewBeforePercentage% of the real lifetime, when that is set;
    - otherwise 2/3 of the way through the lifetime (renewBefore = lifetime / 3).

    It is never earlier than EARLIEST_RENEWAL after notBefore (ten seconds after issue):
    notBefore is backdated a minute and notAfter is notBefore + duration, so a renewBefore
    (or percentage) within a minute of the duration would otherwise make every new
    certificate due at once and re-issue it in a loop.

    The result is truncated to a whole second, like the `renewalTime` stored in status,
    so a stored time and a recomputed one compare equal.
    """
    lifetime = not_after - not_before
    renew_before = spec.renew_before
    percentage = spec.renew_before_percentage
    if renew_before is not None and dt.timedelta(0) < renew_before < lifetime:
        before = renew_before
    elif percentage is not None and 0 < percentage < 100:
        before = lifetime * percentage // 100  # floor, like Go's integer arithmetic
    else:
        before = lifetime // 3
    moment = max(not_after - before, not_before + EARLIEST_RENEWAL)
    return moment.replace(microsecond=0)
