"""Trust bundles: the pure part of a Bundle (certmint.io/v1).

From a Bundle's spec and the PEM its sources hold, build what is written into every target
namespace: the CA certificates deduplicated, the expired ones dropped, in a stable order,
as PEM and optionally as a password-less PKCS#12 truststore. No I/O: the controller reads
the sources and writes the targets.

Determinism is what keeps a Bundle cheap: the same certificates always give byte-identical
PEM and the same content hash, so an unchanged input never writes. (A PKCS#12 file is not
byte-stable, its MAC salt is random, so the hash is taken over the PEM and the target
layout, and the PKCS#12 is only rebuilt when that hash changes.)
"""
from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certmint.pki.types import ReasonedError

__all__ = [
    "BuiltBundle", "BundleError", "BundleSpec", "Source", "TargetSpec", "build_bundle", "fingerprint",
    "parse_bundle_spec", "parse_certificates_pem", "selector_matches", "target_data",
]

SECRET, CONFIG_MAP, IN_LINE, ISSUER_REF, DEFAULT_CAS = "secret", "configMap", "inLine", "issuerRef", "useDefaultCAs"
SOURCE_KINDS = (SECRET, CONFIG_MAP, IN_LINE, ISSUER_REF, DEFAULT_CAS)

# Reasons of the Synced=False condition.
INVALID_SPEC = "InvalidSpec"
NOT_PEM = "InvalidPEM"
SOURCE_NOT_FOUND = "SourceNotFound"
KEY_NOT_FOUND = "KeyNotFound"
EMPTY_BUNDLE = "EmptyBundle"


class BundleError(ReasonedError):
    """Why a Bundle cannot be built."""


@dataclass(frozen=True)
class Source:
    """One entry of spec.sources: kind is one of SOURCE_KINDS; name/key for secret and configMap,
    name/issuer_kind for issuerRef, pem for inLine."""

    kind: str
    name: str = ""
    key: str = ""
    issuer_kind: str = ""
    pem: str = ""

    def describe(self) -> str:
        if self.kind in (SECRET, CONFIG_MAP):
            return f"{self.kind} {self.name}/{self.key}"
        if self.kind == ISSUER_REF:
            return f"issuerRef {self.issuer_kind}/{self.name}"
        return self.kind


@dataclass(frozen=True)
class TargetSpec:
    config_map_key: str
    secret_key: str | None = None
    pkcs12_key: str | None = None


@dataclass(frozen=True)
class BundleSpec:
    sources: tuple[Source, ...]
    target: TargetSpec
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (key, operator, values)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BundleError(INVALID_SPEC, f"{where} must be a non-empty string")
    return value


def _object(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def parse_bundle_spec(spec: Mapping[str, object]) -> BundleSpec:
    """The spec as the CRD's schema and CEL rules admit it; re-checked here, since the operator
    may meet objects stored before a rule existed."""
    raw_sources = spec.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise BundleError(INVALID_SPEC, "spec.sources must list at least one source")
    sources = []
    for i, raw in enumerate(raw_sources):
        where = f"spec.sources[{i}]"
        if not isinstance(raw, dict):
            raise BundleError(INVALID_SPEC, f"{where} must be an object")
        kinds = [k for k in SOURCE_KINDS if raw.get(k) not in (None, False)]
        if len(kinds) != 1:
            raise BundleError(INVALID_SPEC, f"{where} must set exactly one of {', '.join(SOURCE_KINDS)}")
        kind = kinds[0]
        value = raw[kind]
        if kind in (SECRET, CONFIG_MAP):
            ref = value if isinstance(value, dict) else {}
            sources.append(Source(kind, _text(ref.get("name"), f"{where}.{kind}.name"),
                                  _text(ref.get("key"), f"{where}.{kind}.key")))
        elif kind == ISSUER_REF:
            ref = value if isinstance(value, dict) else {}
            issuer_kind = ref.get("kind") or "ClusterIssuer"
            if issuer_kind not in ("Issuer", "ClusterIssuer"):
                raise BundleError(INVALID_SPEC, f"{where}.issuerRef.kind must be Issuer or ClusterIssuer")
            sources.append(Source(kind, _text(ref.get("name"), f"{where}.issuerRef.name"), issuer_kind=issuer_kind))
        elif kind == IN_LINE:
            sources.append(Source(kind, pem=_text(value, f"{where}.inLine")))
        else:
            if value is not True:
                raise BundleError(INVALID_SPEC, f"{where}.useDefaultCAs must be true when set")
            sources.append(Source(kind))
    target = spec.get("target")
    if not isinstance(target, dict):
        raise BundleError(INVALID_SPEC, "spec.target is required")
    cm = _object(target.get("configMap"))
    if cm is None:
        raise BundleError(INVALID_SPEC, "spec.target.configMap.key is required")
    secret = _object(target.get("secret"))
    p12 = _object((_object(target.get("additionalFormats")) or {}).get("pkcs12"))
    parsed_target = TargetSpec(_text(cm.get("key"), "spec.target.configMap.key"),
                               _text(secret.get("key"), "spec.target.secret.key") if secret else None,
                               _text(p12.get("key"), "spec.target.additionalFormats.pkcs12.key") if p12 else None)
    if parsed_target.pkcs12_key is not None and \
            parsed_target.pkcs12_key in (parsed_target.config_map_key, parsed_target.secret_key):
        raise BundleError(INVALID_SPEC, "spec.target.additionalFormats.pkcs12.key must differ from the PEM keys")
    selector = _object(spec.get("namespaceSelector")) or {}
    labels = selector.get("matchLabels") or {}
    expressions = []
    for i, e in enumerate(selector.get("matchExpressions") or []):
        op = e.get("operator") if isinstance(e, dict) else None
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise BundleError(INVALID_SPEC, f"spec.namespaceSelector.matchExpressions[{i}].operator must be "
                                            "In, NotIn, Exists or DoesNotExist")
        values = tuple(e.get("values") or ())
        if op in ("In", "NotIn") and not values:
            raise BundleError(INVALID_SPEC, f"spec.namespaceSelector.matchExpressions[{i}].values must not be "
                                            f"empty for {op}")
        expressions.append((_text(e.get("key"), f"spec.namespaceSelector.matchExpressions[{i}].key"), op, values))
    return BundleSpec(tuple(sources), parsed_target, dict(labels), tuple(expressions))


def selector_matches(spec: BundleSpec, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; an empty selector matches every namespace."""
    if any(labels.get(k) != v for k, v in spec.match_labels.items()):
        return False
    for key, op, values in spec.match_expressions:
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def parse_certificates_pem(pem: bytes | str, where: str) -> list[x509.Certificate]:
    """Every certificate in a PEM text; BundleError(InvalidPEM) when there is none or one is broken."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise BundleError(NOT_PEM, f"{where} holds no PEM certificate")
    try:
        with warnings.catch_warnings():
            # Some long-lived public roots have non-positive serials; they are still trusted roots.
            warnings.simplefilter("ignore")
            return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise BundleError(NOT_PEM, f"{where} is not valid PEM: {e}") from None


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class BuiltBundle:
    certificates: tuple[x509.Certificate, ...]
    pem: bytes
    hash: str  # over the PEM and the target layout: equal hashes mean equal targets

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(fingerprint(c) for c in self.certificates)


def _sort_key(certificate: x509.Certificate) -> tuple[str, str]:
    return certificate.subject.rfc4514_string(), fingerprint(certificate)


def build_bundle(parts: Iterable[tuple[str, bytes | str]], target: TargetSpec, now: dt.datetime) -> BuiltBundle:
    """The bundle of the (where, PEM) parts: each certificate once, the expired ones dropped, sorted
    by subject then fingerprint. BundleError when a part is not PEM or nothing valid is left."""
    unique: dict[str, x509.Certificate] = {}
    for where, pem in parts:
        for certificate in parse_certificates_pem(pem, where):
            if certificate.not_valid_after_utc > now:
                unique.setdefault(fingerprint(certificate), certificate)
    if not unique:
        raise BundleError(EMPTY_BUNDLE, "the sources hold no certificate that is still valid: the targets keep "
                                        "their previous content")
    certificates = tuple(sorted(unique.values(), key=_sort_key))
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    layout = f"{target.config_map_key}|{target.secret_key or ''}|{target.pkcs12_key or ''}".encode()
    digest = hashlib.sha256(layout + b"\n" + pem).hexdigest()
    return BuiltBundle(certificates, pem, digest)


def pkcs12_truststore(certificates: Sequence[x509.Certificate]) -> bytes:
    """A password-less PKCS#12 truststore (Java's trusted-certificate entries), aliases in bundle order."""
    entries = [pkcs12.PKCS12Certificate(c, f"certmint-{i}-{fingerprint(c)[:16]}".encode())
               for i, c in enumerate(certificates)]
    return pkcs12.serialize_java_truststore(entries, serialization.NoEncryption())


def target_data(built: BuiltBundle, target: TargetSpec) -> tuple[dict[str, str], dict[str, bytes], dict[str, bytes]]:
    """(ConfigMap data, ConfigMap binaryData, Secret data) for one target namespace."""
    data = {target.config_map_key: built.pem.decode()}
    binary: dict[str, bytes] = {}
    secret: dict[str, bytes] = {}
    store = pkcs12_truststore(built.certificates) if target.pkcs12_key else None
    if target.pkcs12_key and store is not None:
        binary[target.pkcs12_key] = store
    if target.secret_key:
        secret[target.secret_key] = built.pem
        if target.pkcs12_key and store is not None:
            secret[target.pkcs12_key] = store
    return data, binary, secret
