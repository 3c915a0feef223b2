"""What a reconcile reads and writes through, and what it returns.

A reconcile is a function (Context, key) -> Result. It reads the store, decides, makes
its API writes (whose answers go back into the store through the same version check as
watch events), and returns what should happen next: requeue at a time, wake other keys.
It never reaches into the controller's queue or workers; the worker loop applies the
result. So the reconcilers depend on this module only, and the controller on them.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Mapping
from typing import cast

from certmint.controller import status as st
from certmint.controller.keys import KeyFactory
from certmint.controller.options import Options
from certmint.external.step_issuer import StepIssuers
from certmint.kube.api import Api, resource_version
from certmint.kube.objects import TrustCaches
from certmint.kube.resources import API_VERSION, EventRecorder, patch_status
from certmint.kube.secrets import SecretCache, interned
from certmint.kube.store import Store, WritesInFlight, compress, decompress
from certmint.metrics import Metrics
from certmint.model.certificate import GROUP, ISSUER_KINDS
from certmint.policy import Backoff, IssuerState
from certmint.revocation import Ledger, Revocation, read_ledger, revocation_of
from certmint.revocation.spec import IssuerKey

ObjectKey = tuple[str, str, str]  # (kind, namespace or "", name)
CERTIFICATE = "Certificate"
REVOCATION = "CertificateRevocation"
CONFIGMAP = "ConfigMap"  # certmint's CRL ConfigMaps (label-selected), kept with their data


@dataclass(frozen=True)
class Result:
    """What should happen after a reconcile. requeue_at: reconcile this key again then (renewal,
    back-off, re-check); wake: reconcile these keys soon (their input changed); forget: the
    object is gone, drop its pending timer."""

    requeue_at: dt.datetime | None = None
    wake: tuple[ObjectKey, ...] = ()
    forget: bool = False
    later: tuple[tuple[ObjectKey, dt.datetime], ...] = ()  # reconcile these keys then (coalescing)


def object_key(obj: dict) -> ObjectKey:
    meta = obj.get("metadata", {})
    return obj.get("kind", ""), meta.get("namespace", "") or "", meta.get("name", "")


def issuer_key(kind: str, namespace: str, name: str) -> ObjectKey:
    """The key of the issuer a reference in `namespace` names: ClusterIssuers have no namespace."""
    return (kind, namespace if kind == "Issuer" else "", name)


def ca_secret_key(namespace: str, name: str) -> tuple[str, str, str]:
    return ("CASecret", namespace, name)


BUNDLE = "Bundle"


def bundle_source_key(issuer: ObjectKey) -> tuple[str, str, str, str]:
    """Where a Bundle with an issuerRef source is filed in the index: under the issuer it follows."""
    return ("BundleSource", *issuer)


def kind_key(kind: str) -> tuple[str, str]:
    return ("Kind", kind)


def index_by_reference(cluster_resource_namespace: str) -> Callable[[tuple[str, ...], object], Iterable[tuple]]:
    """The store's index: a Certificate is filed under the issuer it references, and a CA issuer
    under its CA Secret, so a change of either wakes exactly the objects that depend on it.
    Issuers and revocations, which are few, are also filed under their kind (kind_key), so they
    are found without a scan of the Certificates."""
    def filed(key: tuple[str, ...], obj: object) -> Iterable[tuple]:
        if not isinstance(obj, dict):
            return ()
        spec = obj.get("spec") or {}
        if key[0] == CERTIFICATE:
            ref = spec.get("issuerRef") or {}
            if isinstance(ref, dict) and ref.get("name"):
                return (issuer_key(ref.get("kind") or "Issuer", key[1], ref["name"]),)
        elif key[0] in ISSUER_KINDS:
            ca = spec.get("ca") or {}
            if isinstance(ca, dict) and ca.get("secretName"):
                namespace = key[1] if key[0] == "Issuer" else cluster_resource_namespace
                return (kind_key(key[0]), ca_secret_key(namespace, ca["secretName"]))
            return (kind_key(key[0]),)
        elif key[0] == REVOCATION:
            return (kind_key(REVOCATION),)
        elif key[0] == BUNDLE:  # a Bundle under each issuer it follows (Issuers: in the trust namespace)
            refs = [s.get("issuerRef") for s in spec.get("sources") or [] if isinstance(s, dict)]
            return tuple(bundle_source_key(issuer_key(r.get("kind") or "ClusterIssuer", cluster_resource_namespace,
                                                      r["name"]))
                         for r in refs if isinstance(r, dict) and r.get("name"))
        return ()
    return filed


KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "annotations")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(obj: dict) -> dict:
    """A compact copy with only what the reconcilers read (tens of thousands are cached).

    managedFields and kubectl's last-applied copy would double each object. The kinds held as
    dicts have the strings that repeat across objects (keys, reasons, messages) interned, so each
    is held once; the packed kinds need not.
    """
    source = obj.get("metadata") or {}
    meta = {k: source[k] for k in KEPT_METADATA if k in source}
    if LAST_APPLIED in meta.get("annotations", {}):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
    result: dict = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta,
                    "spec": obj.get("spec") or {}, "status": obj.get("status") or {}}
    if obj.get("kind") not in PACKED_KINDS:
        result = interned(result)
    if "data" in obj:  # a ConfigMap: its data is what is read
        result["data"] = obj["data"]
    return result


PACKED_KINDS = (CERTIFICATE, REVOCATION)  # the kinds there can be tens of thousands of

# A Ready Certificate as the store holds it, its values left out: the field names, condition
# messages and references most Certificates share, as zlib's preset dictionary.
_TIME = "2026-01-01T00:00:00Z"
_CONDITION = {"type": "", "status": "True", "reason": "", "message": "", "lastTransitionTime": _TIME,
              "observedGeneration": 1}
OBJECT_DICTIONARY = json.dumps({
    "apiVersion": API_VERSION, "kind": CERTIFICATE,
    "metadata": {"name": "", "namespace": "", "uid": "", "resourceVersion": "", "generation": 1, "annotations": {}},
    "spec": {"secretName": "", "commonName": "", "dnsNames": [], "ipAddresses": [], "uris": [], "emailAddresses": [],
             "usages": ["digital signature", "key encipherment", "server auth", "client auth"], "isCA": False,
             "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"},
             "duration": "2160h", "renewBefore": "360h", "issuerRef": {"name": "", "kind": "Issuer", "group": GROUP}},
    "status": {"conditions": [
        {**_CONDITION, "type": "Ready", "reason": "Ready", "message": st.READY_MESSAGE},
        {**_CONDITION, "type": "Issuing", "status": "False", "reason": "Issued",
         "message": "The certificate has been successfully issued (revision 1, trigger DoesNotExist)"}],
        "notBefore": _TIME, "notAfter": _TIME, "renewalTime": _TIME, "revision": 1,
        "issuanceHistory": [{"revision": 1, "serialNumber": "", "notAfter": _TIME,
                             "issuerRef": {"name": "", "kind": "Issuer", "group": GROUP}}]},
}, separators=(",", ":")).encode()


class PackedObjects:
    """How the store holds objects: Certificates and revocations as compact JSON compressed against
    what Certificates share (a few hundred bytes for a Ready Certificate, against 2.8 KB as a dict;
    packing or unpacking one takes microseconds), so every read gets its own copy. Issuers, Bundles
    and CRL ConfigMaps, which are few and read often, stay dicts."""

    def pack(self, key: tuple[str, ...], obj: dict) -> object:
        if key[0] not in PACKED_KINDS:
            return obj
        return compress(json.dumps(obj, separators=(",", ":")).encode(), OBJECT_DICTIONARY)

    def unpack(self, key: tuple[str, ...], held: object) -> dict:
        if not isinstance(held, bytes):
            return held  # type: ignore[return-value]
        return json.loads(decompress(held, OBJECT_DICTIONARY))


PACKED = PackedObjects()


def to_issuer_key(key: ObjectKey) -> IssuerKey:
    return IssuerKey(key[0], key[2], key[1] or None)


def from_issuer_key(issuer: IssuerKey) -> ObjectKey:
    return (issuer.kind, issuer.namespace or "", issuer.name)


class RevocationCaches:
    """Views derived from the revocations and CRL ConfigMaps in the store, rebuilt only when their
    inputs change: the revoked serials of each issuer (for the policy's Revoked trigger, read by
    every Certificate reconcile), the ledger read from each CRL ConfigMap (parsing a large CRL
    takes a tenth of a second), and the DER each issuer's CRL is served as."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 0  # moves on every change of a CertificateRevocation
        self._built = -1
        self._revocations: tuple[Revocation, ...] = ()
        self._by_issuer: dict[IssuerKey, dict[int, str]] = {}
        self._ledgers: dict[tuple[str, ...], tuple[int, int | None, Ledger]] = {}
        self._served: dict[IssuerKey, bytes] = {}

    def changed(self) -> None:
        with self._lock:
            self._version += 1

    def revocations(self, objects: Store[dict]) -> tuple[Revocation, ...]:
        """Every revocation whose status pins what it covers."""
        with self._lock:
            if self._built == self._version:
                return self._revocations
            version = self._version
        held = (objects.get(k) for k in objects.indexed(kind_key(REVOCATION)))
        found = tuple(r for obj in held if obj is not None and (r := revocation_of(obj)) is not None)
        by_issuer: dict[IssuerKey, dict[int, str]] = {}
        for r in found:
            for covered in r.coverage.serials:
                by_issuer.setdefault(covered.issuer, {})[covered.serial] = f"CertificateRevocation {r.name} ({r.reason})"
        with self._lock:
            if self._version == version:
                self._revocations, self._by_issuer, self._built = found, by_issuer, version
        return found

    def revoked_by(self, objects: Store[dict], issuer: IssuerKey) -> Mapping[int, str]:
        self.revocations(objects)
        with self._lock:
            return self._by_issuer.get(issuer, {})

    def ledger(self, key: tuple[str, ...], version: int, status_number: int | None, configmap: dict | None) -> Ledger:
        with self._lock:
            held = self._ledgers.get(key)
            if held is not None and held[0] == version and held[1] == status_number:
                return held[2]
        meta = (configmap or {}).get("metadata") or {}
        ledger = read_ledger((configmap or {}).get("data"), meta.get("annotations"), status_number)
        with self._lock:
            self._ledgers[key] = (version, status_number, ledger)
        return ledger

    def serve(self, issuer: IssuerKey, der: bytes | None) -> None:
        with self._lock:
            if der is None:
                self._served.pop(issuer, None)
            else:
                self._served[issuer] = der

    def served(self, issuer: IssuerKey) -> bytes | None:
        with self._lock:
            return self._served.get(issuer)


class IssuerStates:
    """The last computed state of each issuer, shared by the workers under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[ObjectKey, IssuerState] = {}

    def get(self, key: ObjectKey) -> IssuerState | None:
        with self._lock:
            return self._states.get(key)

    def put(self, key: ObjectKey, state: IssuerState) -> IssuerState | None:
        """Store state; returns the previous one."""
        with self._lock:
            previous = self._states.get(key)
            self._states[key] = state
            return previous

    def setdefault(self, key: ObjectKey, state: IssuerState) -> IssuerState:
        """The state held for key, or state if none is held yet (then held)."""
        with self._lock:
            return self._states.setdefault(key, state)

    def pop(self, key: ObjectKey) -> None:
        with self._lock:
            self._states.pop(key, None)


@dataclass
class Context:
    api: Api
    options: Options
    objects: Store[dict]  # Certificates, Issuers and ClusterIssuers (slim), by ObjectKey
    secrets: SecretCache
    events: EventRecorder
    metrics: Metrics
    backoff: Backoff
    now: Callable[[], dt.datetime]
    issuer_states: IssuerStates = field(default_factory=IssuerStates)
    step: StepIssuers = field(default_factory=StepIssuers)  # shared step-ca clients and signers
    trust: TrustCaches | None = None  # Namespaces and Bundle targets, for the Bundle reconciler
    revocations: RevocationCaches = field(default_factory=RevocationCaches)
    writes: WritesInFlight[None] = field(default_factory=WritesInFlight)  # status patches in flight
    keys: KeyFactory = field(default_factory=KeyFactory)
    replay: Callable[[ObjectKey], None] = lambda key: None  # a held event was someone else's change

    def write_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        """One status patch; its answer goes into the store. A watch event of the object that comes
        while the patch is in flight is held: if it was our own echo it is dropped, otherwise (someone
        changed the object meanwhile) it is handed on as the event it was (replay)."""
        key = (kind, namespace, name)
        self.writes.begin(key)
        try:
            answer = patch_status(self.api, kind, namespace or None, name, status)
        finally:
            held = self.writes.end(key)
        version = resource_version(answer)
        if any(v != version for v, _ in held):
            self.replay(key)
        return self.remember(kind, answer)

    def remember(self, kind: str, obj: dict) -> dict:
        """Store the answer to our own write of an object we watch, through the version check:
        if a newer copy (a user's edit) is already held, it stays. Returns the slim answer."""
        slimmed = slim({**obj, "kind": kind})
        self.objects.upsert(object_key(slimmed), resource_version(slimmed), slimmed, only_if_present=True)
        return slimmed

    def of_kind(self, kind: str) -> list[tuple[ObjectKey, dict]]:
        """The objects of a kind the index files by kind (issuers, revocations), with their keys."""
        found = ((cast(ObjectKey, k), self.objects.get(k)) for k in self.objects.indexed(kind_key(kind)))
        return [(k, obj) for k, obj in found if obj is not None]

    def certificates_of(self, issuer: ObjectKey) -> tuple[ObjectKey, ...]:
        return tuple(cast(ObjectKey, k) for k in self.objects.indexed(issuer))

    def issuers_using(self, namespace: str, secret_name: str) -> tuple[ObjectKey, ...]:
        return tuple(cast(ObjectKey, k) for k in self.objects.indexed(ca_secret_key(namespace, secret_name)))

    def bundles_following(self, issuer: ObjectKey) -> tuple[ObjectKey, ...]:
        return tuple(sorted(cast(ObjectKey, k) for k in self.objects.indexed(bundle_source_key(issuer))))
