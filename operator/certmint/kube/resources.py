"""certmint's custom resources on the API: paths, status patches, events."""
from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable

from certmint.kube.api import Api, ApiError
from certmint.kube.ratelimit import TokenBucket
from certmint.model.certificate import GROUP

log = logging.getLogger(__name__)


VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {"Certificate": "certificates", "Issuer": "issuers", "ClusterIssuer": "clusterissuers",
           "Bundle": "bundles", "CertificateRevocation": "certificaterevocations"}
CLUSTER_SCOPED = ("ClusterIssuer", "Bundle")  # the kinds without a namespace
EVENT_NAMESPACE_FOR_CLUSTER_OBJECTS = "default"
COMPONENT = "certmint"
INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


def _path(group_version: str, plural: str, namespace: str | None, name: str | None) -> str:
    base = group_version + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return f"{base}/{name}" if name else base


def resource_path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """The path of one of certmint's kinds: all of them, those of a namespace, or one object."""
    return _path(f"/apis/{GROUP}/{VERSION}", PLURALS[kind], namespace, name)


def core_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """The same for a core (v1) resource: secrets, configmaps, events, namespaces."""
    return _path("/api/v1", plural, namespace, name)


def patch_status(api: Api, kind: str, namespace: str | None, name: str, status: dict) -> dict:
    """One merge patch of the status subresource; returns the updated object."""
    return api.merge_patch(resource_path(kind, namespace, name) + "/status", {"status": status})


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(obj: dict, event_type: str, reason: str, message: str, action: str | None = None) -> dict:
    """A core/v1 Event about obj; action, when given, is the machine-readable cause (e.g. the trigger)."""
    meta = obj.get("metadata", {})
    stamp = now_rfc3339()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'certmint')}.",
                     "namespace": meta.get("namespace") or EVENT_NAMESPACE_FOR_CLUSTER_OBJECTS},
        "involvedObject": {"apiVersion": obj.get("apiVersion", API_VERSION), "kind": obj.get("kind"),
                           "name": meta.get("name"), "namespace": meta.get("namespace"),
                           "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "source": {"component": COMPONENT},
        "reportingComponent": f"{GROUP}/{COMPONENT}",
        "reportingInstance": INSTANCE,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    if action:
        event["action"] = action
    return event


class EventRecorder:
    """Records Events from a background thread, so a reconcile never waits on one.

    Events are best effort, as in client-go: they are posted at most `qps` a second (with a
    `burst` saved up), so a storm of issuances does not double the API server's work while it
    lasts; the events follow at that pace. If the backlog passes `backlog`, new events are
    dropped (and counted) rather than slowing issuance down.
    """

    def __init__(self, api: Api, qps: float = 50.0, burst: int = 200, backlog: int = 10000,
                 sleep: Callable[[float], None] = time.sleep, on_dropped: Callable[[], None] = lambda: None):
        self.api = api
        self._on_dropped = on_dropped  # counted where the metrics are
        self._bucket = TokenBucket(qps, burst)
        self._sleep = sleep
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=backlog)
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def record(self, obj: dict, event_type: str, reason: str, message: str, action: str | None = None) -> None:
        try:
            self._queue.put_nowait(event_body(obj, event_type, reason, message, action))
        except queue.Full:
            self._on_dropped()

    def pending(self) -> int:
        """Events recorded and not posted yet."""
        return self._queue.qsize()

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            wait = self._bucket.reserve()
            if wait > 0:
                self._sleep(wait)
            namespace = event["metadata"]["namespace"]
            try:
                self.api.create(core_path("events", namespace), event)
            except ApiError as e:
                log.warning("could not record event %s on %s/%s: %s", event["reason"], namespace,
                            event["involvedObject"]["name"], e)

    def flush(self, timeout: float = 5.0) -> None:
        """Post what is queued (at shutdown), waiting at most timeout seconds."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
