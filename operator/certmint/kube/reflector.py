"""List-then-watch of one resource with a server-side label selector, in a thread.

The reflector keeps nothing itself: it calls on_event(type, object) for every object
(type "SYNC" for the initial listing and relists, then ADDED/MODIFIED/DELETED), and
after each listing on_relist(seen, list_version), so the store can forget what was
deleted while nobody watched. Memory stays with the caller's store, and objects outside
the selector are never sent by the API server at all.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Generic, TypeVar

from certmint.kube.api import Api, ApiError
from certmint.kube.store import Change, Store

V = TypeVar("V")

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict], None]
RelistHandler = Callable[[set[tuple[str, str]], int], None]

# A broken watch is retried quickly at first (an API server restart takes seconds), and
# never slower than RETRY_MAX, so the cache is current again soon after the server is back.
RETRY_INITIAL = 0.2
RETRY_MAX = 5.0


def list_into(api: Api, path: str, selector: str | None, on_item: Callable[[dict], None]) -> tuple[set, str]:
    """List path page by page, handing each object to on_item; returns the (namespace, name) pairs
    seen and the listing's resourceVersion (to watch from, and to judge what the listing covered)."""
    seen: set[tuple[str, str]] = set()
    version = ""
    for items, page_version in api.list_pages(path, selector):
        version = page_version  # every page carries the listing's version; the last one counts
        for item in items:
            meta = item.get("metadata", {})
            seen.add((meta.get("namespace", "") or "", meta.get("name", "")))
            on_item(item)
    return seen, version


def version_number(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        return 0


class Reflector:
    def __init__(self, api: Api, path: str, label_selector: str | None, on_event: EventHandler,
                 on_relist: RelistHandler | None = None, name: str = "reflector"):
        self.api, self.path, self.selector = api, path, label_selector
        self.on_event, self.on_relist = on_event, on_relist
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = RETRY_INITIAL
        while not self._stop.is_set():
            try:
                version = self._relist()
                self.synced.set()
                delay = RETRY_INITIAL
                self._watch(version)
            except ApiError as e:
                log.warning("watch of %s failed (%s); retrying in %.1f s", self.path, e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
            except Exception:  # never let the thread die: the operator would go blind
                log.exception("watch of %s crashed; retrying in %.1f s", self.path, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _relist(self) -> str:
        seen, version = list_into(self.api, self.path, self.selector, lambda item: self.on_event("SYNC", item))
        if self.on_relist:
            self.on_relist(seen, version_number(version))  # objects deleted while we were not watching
        return version

    def _watch(self, version: str) -> None:
        while not self._stop.is_set():
            for event in self.api.watch(self.path, version, self.selector):
                kind, obj = event.get("type"), event.get("object", {})
                if kind == "ERROR":
                    if obj.get("code") == 410:  # too old: relist
                        return
                    raise ApiError(obj.get("code", 0), obj.get("reason", ""), obj.get("message", ""))
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_event(kind, obj)
                if self._stop.is_set():
                    return


class ReflectedCache(Generic[V]):
    """A Store of one resource kept current by a Reflector per watched path (one per watched
    namespace, or one for the whole cluster) and by the answers to our own writes. Both go through
    the store's version check, so an older copy never replaces a newer one.

    Subclasses turn a watch event into a store operation (_event) and say what follows when a
    relist finds an object gone (_gone)."""

    def __init__(self, api: Api, paths: list[tuple[str | None, str]], selector: str | None, name: str,
                 store: Store[V]):
        self.store = store
        self.reflectors = [Reflector(api, path, selector, self._event, self._relisted_in(ns), name=f"{name}:{path}")
                           for ns, path in paths]

    def start(self) -> None:
        for r in self.reflectors:
            r.start()

    def stop(self) -> None:
        for r in self.reflectors:
            r.stop()

    def wait_synced(self, timeout: float) -> bool:
        return all(r.synced.wait(timeout) for r in self.reflectors)

    def __len__(self) -> int:
        return len(self.store)

    def get(self, namespace: str, name: str) -> V | None:
        return self.store.get((namespace, name))

    def _event(self, kind: str, obj: dict, own_write: bool = False) -> None:
        raise NotImplementedError

    def _gone(self, change: Change[V]) -> None:
        raise NotImplementedError

    def _relisted_in(self, namespace: str | None) -> RelistHandler:
        """A relist of one namespace (or of all) forgets only what that listing covered."""
        def relisted(seen: set[tuple[str, str]], list_version: int) -> None:
            in_scope = (lambda key: True) if namespace is None else (lambda key: key[0] == namespace)
            for change in self.store.replace(in_scope, seen, list_version):
                self._gone(change)
        return relisted
