"""certmint's Secrets: a slim cache of only our own (label-selected) Secrets, and the writes.

The cache keeps decoded data and the metadata the policy reads, nothing else, so its
size follows the number of Certificates, never the number of Secrets in the cluster.
"""
from __future__ import annotations

import base64
import marshal
import sys
import threading
from typing import Callable, cast

from certmint.kube.api import Api, ApiError, resource_version
from certmint.kube.reflector import ReflectedCache
from certmint.kube.resources import core_path
from certmint.kube.store import Change, Key, Store, WritesInFlight, compress, decompress
from certmint.policy.types import CA_CERT, CERTIFICATE_NAME, SECRET_ANNOTATION_NAMES, TLS_CERT, TLS_KEY, SecretState

SECRET_SELECTOR = CERTIFICATE_NAME  # "has the label": a server-side existence selector


def interned(value):
    """value with its dict keys and short strings interned: the same text is then stored once,
    however many cached objects repeat it."""
    if isinstance(value, dict):
        return {sys.intern(k): interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interned(v) for v in value]
    if isinstance(value, str) and len(value) <= 256:
        return sys.intern(value)
    return value


def to_state(obj: dict) -> SecretState:
    meta = obj.get("metadata", {})
    data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    return SecretState(meta.get("name", ""), data, dict(meta.get("labels") or {}),
                       dict(meta.get("annotations") or {}), obj.get("type", "Opaque"))


SHARED_KEY = CA_CERT  # the same in every Secret of one issuer

# What certmint's Secrets have in common (keys, labels, annotation names, PEM armour), laid out
# as a packed Secret is, as zlib's preset dictionary: each blob then holds little but its own text.
_PEM = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
SECRET_DICTIONARY = marshal.dumps((
    "", {TLS_CERT: _PEM, TLS_KEY: b"-----BEGIN RSA PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----\n"
                              b"-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n", CA_CERT: _PEM},
    {CERTIFICATE_NAME: ""},
    {k: "" for k in SECRET_ANNOTATION_NAMES},
    "kubernetes.io/tls"))


class PackedSecrets:
    """How the cache holds a Secret: its ca.crt as one copy shared by every Secret that carries
    the same, and the rest (data, labels, annotations) in one blob compressed against what all
    certmint Secrets share: about 0.7 KB for an ECDSA leaf's Secret, against 2 KB as objects.
    Unpacking one takes a few microseconds. A ca.crt that tls.crt already holds (a self-signed
    certificate, or a chain up to its root) stays in the blob, where it costs a few bytes.

    marshal is used for the blob because it is the fastest exact round trip of bytes and str
    values, and the blob never leaves the process that packed it.

    The table of shared values is bounded: past `limit` distinct values it starts afresh (values
    already shared stay shared; only later copies of them are held apart)."""

    def __init__(self, limit: int = 1000):
        self._lock = threading.Lock()
        self._shared: dict[bytes, bytes] = {}
        self._limit = limit

    def shared(self, value: bytes) -> bytes:
        with self._lock:
            if len(self._shared) >= self._limit and value not in self._shared:
                self._shared.clear()
            return self._shared.setdefault(value, value)

    def pack(self, key: Key, secret: SecretState) -> object:
        data = dict(secret.data)
        common = data.get(SHARED_KEY)
        if common is not None and common not in data.get(TLS_CERT, b""):
            del data[SHARED_KEY]
        else:
            common = None
        blob = marshal.dumps((secret.name, data, dict(secret.labels), dict(secret.annotations), secret.type))
        return (self.shared(common) if common is not None else None, compress(blob, SECRET_DICTIONARY))

    def unpack(self, key: Key, held: object) -> SecretState:
        common, blob = cast(tuple[bytes | None, bytes], held)
        name, data, labels, annotations, secret_type = marshal.loads(decompress(blob, SECRET_DICTIONARY))
        if common is not None:
            data[SHARED_KEY] = common
        return SecretState(name, data, labels, annotations, secret_type)


def to_manifest(namespace: str, secret: SecretState) -> dict:
    meta = {"name": secret.name, "namespace": namespace, "labels": dict(secret.labels),
            "annotations": dict(secret.annotations)}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": secret.type,
            "data": {k: base64.b64encode(v).decode() for k, v in secret.data.items()}}



class SecretCache(ReflectedCache[SecretState]):
    """Our Secrets by (namespace, name), fed by a label-selected watch and by our own writes.

    Our writes are stored at once (write-through): a reconcile right after an issuance sees
    the new Secret before the watch delivers it, and the watch's echo of it, being no newer,
    changes nothing and wakes nobody.

    on_change(namespace, secret, own_write) is called for every change the store accepted,
    with the new state, or the last one held when the Secret is gone.
    """

    def __init__(self, api: Api, namespaces: list[str] | None,
                 on_change: Callable[[str, SecretState, bool], None] | None = None):
        self.api = api
        self.writes: WritesInFlight[SecretState] = WritesInFlight()
        self._on_change = on_change or (lambda namespace, secret, own_write: None)
        paths: list[tuple[str | None, str]] = \
            [(ns, core_path("secrets", ns)) for ns in namespaces] if namespaces else [(None, core_path("secrets"))]
        super().__init__(api, paths, SECRET_SELECTOR, "secrets", Store(codec=PackedSecrets()))

    def _event(self, kind: str, obj: dict, own_write: bool = False) -> None:
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", "") or "", meta.get("name", ""))
        version = resource_version(obj)
        if kind == "DELETED":
            change = self.store.delete(key, version)
        else:
            change = self.store.upsert(key, version, to_state(obj))
        if change is not None and (own_write or not self.writes.hold(key, version, change.value)):
            self._on_change(key[0], change.value, own_write)

    def _gone(self, change: Change[SecretState]) -> None:
        self._on_change(change.key[0], change.value, False)

    def remember(self, obj: dict) -> SecretState:
        """Store what one of our writes returned."""
        self._event("MODIFIED", obj, own_write=True)
        return to_state(obj)

    # --- writes and direct reads -------------------------------------------------------

    def read(self, namespace: str, name: str) -> SecretState | None:
        """A direct GET, for Secrets outside our selector (CA and password Secrets, name conflicts)."""
        obj = self.api.get_or_none(core_path("secrets", namespace, name))
        return to_state(obj) if obj else None

    def apply(self, namespace: str, secret: SecretState, force: bool = True) -> SecretState:
        key = (namespace, secret.name)
        self.writes.begin(key)
        try:
            obj = self.api.apply(core_path("secrets", namespace, secret.name), to_manifest(namespace, secret), force=force)
        except BaseException:
            for _, held in self.writes.end(key):  # nothing of ours came: each was someone else's change
                self._on_change(namespace, held, False)
            raise
        answer = resource_version(obj)
        state = self.remember(obj)
        for version, held in self.writes.end(key):
            # our echo (the answer's version) still wakes what follows the Secret, like our own write
            self._on_change(namespace, held, version == answer)
        return state


__all__ = ["ApiError", "SecretCache", "to_manifest", "to_state"]
