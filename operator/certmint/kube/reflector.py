"""List-then-watch of one resource with a server-side label selector, in a thread.

The reflector keeps nothing itself: it calls on_event(type, object) for every object
(type "SYNC" for the initial listing and relists, then ADDED/MODIFIED/DELETED), and
relists when the watch expires. So memory stays with the caller's slim cache, and
objects outside the selector are never sent by the API server at all.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from certmint.kube.api import Api, ApiError

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict], None]


class Reflector:
    def __init__(self, api: Api, path: str, label_selector: str | None, on_event: EventHandler,
                 on_relist: Callable[[set[tuple[str, str]]], None] | None = None, name: str = "reflector"):
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
        delay = 1.0
        while not self._stop.is_set():
            try:
                version = self._relist()
                self.synced.set()
                delay = 1.0
                self._watch(version)
            except ApiError as e:
                log.warning("watch of %s failed (%s); retrying in %.0f s", self.path, e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception:  # never let the thread die: the operator would go blind
                log.exception("watch of %s crashed; retrying in %.0f s", self.path, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _relist(self) -> str:
        seen: set[tuple[str, str]] = set()
        version = ""
        for items, version in self.api.list_pages(self.path, self.selector):
            for item in items:
                meta = item.get("metadata", {})
                seen.add((meta.get("namespace", ""), meta.get("name", "")))
                self.on_event("SYNC", item)
        if self.on_relist:
            self.on_relist(seen)  # objects deleted while we were not watching
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
                if kind != "BOOKMARK":
                    self.on_event(kind, obj)
                if self._stop.is_set():
                    return


def wait_synced(reflectors: list[Reflector], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    return all(r.synced.wait(max(0.0, deadline - time.monotonic())) for r in reflectors)
