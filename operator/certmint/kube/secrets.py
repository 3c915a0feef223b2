"""certmint's Secrets: a slim cache of only our own (label-selected) Secrets, and the writes.

The cache keeps decoded data and the metadata the policy reads, nothing else, so its
size follows the number of Certificates, never the number of Secrets in the cluster.
"""
from __future__ import annotations

import base64
import sys
import threading

from certmint.kube.api import Api, ApiError, resource_version
from certmint.kube.reflector import Reflector
from certmint.policy.types import CERTIFICATE_NAME, SecretState

SECRET_SELECTOR = CERTIFICATE_NAME  # "has the label": a server-side existence selector


def secrets_path(namespace: str | None = None, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/secrets" if namespace else "/api/v1/secrets"
    return f"{base}/{name}" if name else base


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
    data = {sys.intern(k): base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    return SecretState(meta.get("name", ""), data, interned(dict(meta.get("labels") or {})),
                       interned(dict(meta.get("annotations") or {})), sys.intern(obj.get("type", "Opaque")))


def to_manifest(namespace: str, secret: SecretState) -> dict:
    meta = {"name": secret.name, "namespace": namespace, "labels": dict(secret.labels),
            "annotations": dict(secret.annotations)}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": secret.type,
            "data": {k: base64.b64encode(v).decode() for k, v in secret.data.items()}}



class SecretCache:
    """Our Secrets by (namespace, name), fed by a label-selected watch and by our own writes.

    Our writes are stored at once (write-through), so a reconcile right after an issuance
    sees the new Secret even before the watch delivers it; older watch events never
    overwrite newer contents.
    """

    def __init__(self, api: Api, namespaces: list[str] | None, on_change=None):
        self.api = api
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], tuple[int, SecretState]] = {}
        self._on_change = on_change or (lambda namespace, secret: None)
        paths = [secrets_path(ns) for ns in namespaces] if namespaces else [secrets_path()]
        self.reflectors = [Reflector(api, p, SECRET_SELECTOR, self._event, self._relisted, name=f"secrets:{p}")
                           for p in paths]

    def start(self) -> None:
        for r in self.reflectors:
            r.start()

    def stop(self) -> None:
        for r in self.reflectors:
            r.stop()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, namespace: str, name: str) -> SecretState | None:
        entry = self._items.get((namespace, name))
        return entry[1] if entry else None

    def _event(self, kind: str, obj: dict) -> None:
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        version = resource_version(obj)
        with self._lock:
            current = self._items.get(key)
            if kind == "DELETED":
                if current and current[0] > version:
                    return
                self._items.pop(key, None)
                secret = None
            else:
                if current and current[0] >= version:
                    return
                secret = to_state(obj)
                self._items[key] = (version, secret)
        self._on_change(key[0], secret if secret else to_state(obj))

    def _relisted(self, seen: set[tuple[str, str]]) -> None:
        with self._lock:
            gone = [k for k in self._items if k not in seen]
        for namespace, name in gone:
            self._event("DELETED", {"metadata": {"namespace": namespace, "name": name}})

    def remember(self, obj: dict) -> SecretState:
        """Store what a write returned."""
        self._event("MODIFIED", obj)
        return to_state(obj)

    # --- writes and direct reads -------------------------------------------------------

    def read(self, namespace: str, name: str) -> SecretState | None:
        """A direct GET, for Secrets outside our selector (CA and password Secrets, name conflicts)."""
        obj = self.api.get_or_none(secrets_path(namespace, name))
        return to_state(obj) if obj else None

    def apply(self, namespace: str, secret: SecretState) -> SecretState:
        obj = self.api.apply(secrets_path(namespace, secret.name), to_manifest(namespace, secret))
        return self.remember(obj)


__all__ = ["ApiError", "SecretCache", "secrets_path", "to_manifest", "to_state"]
