"""certmint's custom resources on the API: paths, status patches, events."""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket

from certmint.kube.api import Api, ApiError

log = logging.getLogger(__name__)

GROUP = "certmint.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {"Certificate": "certificates", "Issuer": "issuers", "ClusterIssuer": "clusterissuers"}
EVENT_NAMESPACE_FOR_CLUSTER_OBJECTS = "default"
COMPONENT = "certmint"
INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


def resource_path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    plural = PLURALS[kind]
    base = f"/apis/{GROUP}/{VERSION}" + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return f"{base}/{name}" if name else base


def patch_status(api: Api, kind: str, namespace: str | None, name: str, status: dict) -> dict:
    """One merge patch of the status subresource; returns the updated object."""
    return api.merge_patch(resource_path(kind, namespace, name) + "/status", {"status": status})


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def post_event(api: Api, obj: dict, event_type: str, reason: str, message: str, action: str | None = None) -> None:
    """Record a core/v1 Event on obj. Failures are logged, never raised: an event is not worth a retry.

    action, when given, is the machine-readable cause (e.g. the re-issuance trigger)."""
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace") or EVENT_NAMESPACE_FOR_CLUSTER_OBJECTS
    stamp = now_rfc3339()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'certmint')}.", "namespace": namespace},
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
    try:
        api.create(f"/api/v1/namespaces/{namespace}/events", event)
    except ApiError as e:
        log.warning("could not record event %s on %s/%s: %s", reason, namespace, meta.get("name"), e)
