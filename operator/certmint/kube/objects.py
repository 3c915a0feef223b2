"""Slim watched caches for trust bundles: the cluster's Namespaces (name and labels only) and the
ConfigMaps and Secrets that Bundles write (label-selected, metadata only).

Each cache is a Store fed by a Reflector and by the answers to our own writes, with the same
version check as every other cache, so the echo of our own write changes nothing and wakes
nobody. The target caches keep no data: a target's content is judged by the content-hash
annotation the operator writes with it, so memory follows the number of targets, not the
size of the bundles (a bundle of the public CAs is ~200 kB, times every namespace).
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from certmint.kube.api import Api, resource_version
from certmint.kube.reflector import ReflectedCache
from certmint.kube.resources import core_path
from certmint.kube.store import Change, Store

BUNDLE_LABEL = "certmint.io/bundle"
HASH_ANNOTATION = "certmint.io/bundle-hash"

# on_change(key, old, new, own_write): key is (namespace, name); old/new are None when absent.
OnChange = Callable[[tuple[str, str], dict | None, dict | None, bool], None]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _slim(obj: dict, base64_data: bool) -> dict:
    """Labels, the content-hash annotation, and a SHA-256 of each data value: what the operator wrote
    is judged by the annotation, and an edit of the data by someone else (which leaves the annotation
    as it was) by the digests."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    data = obj.get("data") or {}
    digests = {k: digest(base64.b64decode(v) if base64_data else v.encode()) for k, v in data.items()
               if isinstance(v, str)}
    return {"labels": dict(meta.get("labels") or {}), "hash": annotations.get(HASH_ANNOTATION, ""),
            "uid": meta.get("uid", ""), "digests": digests,
            # a namespace being deleted refuses new objects: no target is written there
            "deleting": bool(meta.get("deletionTimestamp"))}


class ObjectCache(ReflectedCache[dict]):
    """(namespace, name) -> {labels, hash, uid} of one resource, optionally label-selected, over
    one or more paths (one per watched namespace, or the whole cluster)."""

    def __init__(self, api: Api, paths: list[tuple[str | None, str]], selector: str | None, name: str,
                 on_change: OnChange | None = None, base64_data: bool = False):
        self._base64 = base64_data  # Secrets: data values are base64
        self._on_change = on_change or (lambda key, old, new, own: None)
        super().__init__(api, paths, selector, name, Store())

    def items(self) -> list[tuple[tuple[str, str], dict]]:
        return [(key, value) for key, value in self.store.items()]  # type: ignore[misc]

    def _event(self, kind: str, obj: dict, own_write: bool = False) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", "") or "", meta.get("name", ""))
        old = self.store.get(key)
        if kind == "DELETED":
            change = self.store.delete(key, resource_version(obj))
        else:
            change = self.store.upsert(key, resource_version(obj), _slim(obj, self._base64))
        if change is not None:
            self._on_change(key, old, None if change.deleted else change.value, own_write)

    def _gone(self, change: Change[dict]) -> None:
        self._on_change(change.key, change.value, None, False)  # type: ignore[arg-type]

    def remember(self, obj: dict) -> None:
        """Store what one of our writes returned."""
        self._event("MODIFIED", obj, own_write=True)

    def forget(self, namespace: str, name: str) -> None:
        """After our own delete: gone now, and a late watch event of the old copy cannot bring it back."""
        key = (namespace, name)
        version = self.store.version(key)
        if version is not None:
            old = self.store.get(key)
            if self.store.delete(key, version) is not None:
                self._on_change(key, old, None, True)


class TrustCaches:
    """Namespaces (all of them: there are few, and a new one must get its bundles at once) and the
    Bundle targets: ConfigMaps and Secrets carrying the certmint.io/bundle label."""

    def __init__(self, api: Api, namespaces: list[str] | None, on_namespace: OnChange, on_target: OnChange):
        self.namespaces = ObjectCache(api, [(None, core_path("namespaces"))], None, "namespaces", on_namespace)
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.config_maps = ObjectCache(
            api, [(ns, core_path("configmaps", ns)) for ns in scopes],
            BUNDLE_LABEL, "bundle-configmaps", on_target)
        self.secrets = ObjectCache(
            api, [(ns, core_path("secrets", ns)) for ns in scopes],
            BUNDLE_LABEL, "bundle-secrets", on_target, base64_data=True)
        self.watched = set(namespaces or ())  # empty: every namespace

    @property
    def caches(self) -> tuple[ObjectCache, ...]:
        return self.namespaces, self.config_maps, self.secrets

    def start(self) -> None:
        for c in self.caches:
            c.start()

    def stop(self) -> None:
        for c in self.caches:
            c.stop()

    def wait_synced(self, timeout: float) -> bool:
        return all(c.wait_synced(timeout) for c in self.caches)

    def bundle_names(self) -> set[str]:
        """The Bundles that targets name: a Bundle deleted while the operator was down is found here."""
        return {value["labels"].get(BUNDLE_LABEL, "") for cache in (self.config_maps, self.secrets)
                for _, value in cache.items()} - {""}
