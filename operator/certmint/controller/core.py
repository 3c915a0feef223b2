"""The controller: caches of our objects, a work queue, and the workers that reconcile.

Event sources (kopf's watches of our custom resources, the label-selected Secret watch,
timers for renewals and back-off) only add keys to the queue. Workers take one key at
a time and reconcile it level-based from the caches, so a missed or repeated event
costs nothing but one more pass.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import uuid
from typing import Callable

from certmint.controller.certificates import reconcile_certificate
from certmint.controller.issuers import compute_state, reconcile_issuer, secret_namespace
from certmint.controller.options import Options
from certmint.controller.queue import WorkQueue
from certmint.kube.api import Api, ApiError, resource_version
from certmint.kube.leader import LeaderElector
from certmint.kube.reflector import Reflector
from certmint.kube.resources import INSTANCE, EventRecorder, resource_path
from certmint.kube.secrets import SecretCache, interned
from certmint.metrics import Metrics
from certmint.model import IssuerRef
from certmint.policy import Backoff, IssuerState, SecretState
from certmint.policy.types import CERTIFICATE_NAME

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str, str]  # (kind, namespace or "", name)
ISSUER_KINDS = ("Issuer", "ClusterIssuer")


def object_key(obj: dict) -> ObjectKey:
    meta = obj.get("metadata", {})
    return obj.get("kind", ""), meta.get("namespace", "") or "", meta.get("name", "")



KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "annotations")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _slim(obj: dict) -> dict:
    """A compact copy with only what the reconcilers read (tens of thousands are cached).

    managedFields and kubectl's last-applied copy would double each object; the strings
    that repeat across objects (keys, reasons, messages) are interned, so each is held once.
    """
    source = obj.get("metadata") or {}
    meta = {k: source[k] for k in KEPT_METADATA if k in source}
    if LAST_APPLIED in meta.get("annotations", {}):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
    return interned({"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta,
                     "spec": obj.get("spec") or {}, "status": obj.get("status") or {}})


class Controller:
    def __init__(self, api: Api, options: Options, metrics: Metrics | None = None,
                 clock: Callable[[], dt.datetime] | None = None):
        self.api = api
        self.options = options
        self.metrics = metrics or Metrics()
        self.now = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.backoff = Backoff(options.backoff_initial, options.backoff_max)
        self.queue = WorkQueue()
        self.events = EventRecorder(api)
        self.certificates: dict[ObjectKey, dict] = {}
        self.issuers: dict[ObjectKey, dict] = {}
        self.issuer_states: dict[ObjectKey, IssuerState] = {}
        self.secrets = SecretCache(api, list(options.namespaces) or None, on_change=self._secret_changed)
        # Certificates are watched here rather than through kopf: kopf keeps a memory record per
        # object and runs its change-detection pipeline on every event, which costs kilobytes and
        # CPU per certificate; the reflector keeps only the slim cached copy.
        self.certificate_reflectors = [
            Reflector(api, path, None, self._certificate_event, self._certificates_relisted, name=f"watch:{path}")
            for path in ([resource_path("Certificate", ns) for ns in options.namespaces]
                         or [resource_path("Certificate")])]
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.started = threading.Event()  # caches filled: ready to serve, as leader or standby
        self.leading = threading.Event()  # workers running
        self.elector: LeaderElector | None = None

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Fill the caches, then start the workers: no decision is taken on a partial view."""
        self.secrets.start()
        for reflector in self.certificate_reflectors:
            reflector.start()
        for reflector in self.secrets.reflectors + self.certificate_reflectors:
            if not reflector.synced.wait(120):
                raise RuntimeError(f"could not list {reflector.path} within 120 s")
        for kind in ISSUER_KINDS:
            for obj in self._list_issuers(kind):
                obj.setdefault("kind", kind)
                self.object_event("SYNC", obj)
        self.started.set()
        log.info("caches filled: %d Secrets of ours, %d issuers", len(self.secrets), len(self.issuers))
        if self.options.leader_election:
            self.elector = LeaderElector(
                self.api, self.options.leader_election_namespace, self.options.leader_election_id,
                f"{INSTANCE}_{uuid.uuid4().hex[:8]}", on_started=self._start_workers, on_stopped=self._lost_leadership)
            self.elector.start()
        else:
            self._start_workers()

    def _start_workers(self) -> None:
        for i in range(self.options.workers):
            t = threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        self.leading.set()
        log.info("reconciling: %d workers", self.options.workers)

    @staticmethod
    def _lost_leadership() -> None:
        """Another replica may be reconciling already: stop at once, and let the restart stand by."""
        logging.shutdown()
        os._exit(1)

    def _list_issuers(self, kind: str) -> list[dict]:
        if kind == "ClusterIssuer" or not self.options.namespaces:
            return self.api.list(resource_path(kind))
        return [o for ns in self.options.namespaces for o in self.api.list(resource_path(kind, ns))]

    def stop(self) -> None:
        """Finish the reconciles in flight, then hand over the lease: no two leaders write at once."""
        for reflector in self.certificate_reflectors:
            reflector.stop()
        self.queue.close()
        for t in self._workers:
            t.join(timeout=10)
        self.events.flush()
        if self.elector:
            self.elector.stop()
        self.secrets.stop()

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            controller = key[0]
            try:
                self.metrics.sync_calls.labels(controller).inc()
                if controller == "Certificate":
                    reconcile_certificate(self, key)
                else:
                    reconcile_issuer(self, key)
            except ApiError as e:
                self.metrics.sync_errors.labels(controller).inc()
                log.warning("reconciling %s failed: %s; retrying in %s", key, e, self.backoff.initial)
                self.queue.add_at(key, (self.now() + self.backoff.initial).timestamp())
            except Exception:
                self.metrics.sync_errors.labels(controller).inc()
                log.exception("reconciling %s crashed; retrying in %s", key, self.backoff.maximum)
                self.queue.add_at(key, (self.now() + self.backoff.maximum).timestamp())
            finally:
                self.queue.done(key)

    # --- events in -----------------------------------------------------------------------------

    def object_event(self, event_type: str | None, obj: dict) -> None:
        """A watch event of a Certificate, Issuer or ClusterIssuer."""
        obj = _slim(obj)
        key = object_key(obj)
        store = self.certificates if key[0] == "Certificate" else self.issuers
        with self._lock:
            if event_type == "DELETED":
                store.pop(key, None)
            else:
                current = store.get(key)
                if current is not None and resource_version(current) > resource_version(obj):
                    return  # older than what our own write returned
                store[key] = obj
        self.queue.add(key)

    def _certificate_event(self, kind: str, obj: dict) -> None:
        self.object_event(kind, {**obj, "kind": "Certificate"})

    def _certificates_relisted(self, seen: set[tuple[str, str]]) -> None:
        """Certificates deleted while the watch was down: forget them."""
        gone = [k for k in list(self.certificates) if (k[1], k[2]) not in seen]
        for kind, namespace, name in gone:
            self.object_event("DELETED", {"kind": kind, "metadata": {"namespace": namespace, "name": name}})

    def remember_certificate(self, obj: dict) -> None:
        obj = _slim({"kind": "Certificate", **obj})
        with self._lock:
            key = object_key(obj)
            if key in self.certificates:
                self.certificates[key] = obj

    def _secret_changed(self, namespace: str, secret: SecretState) -> None:
        owner = secret.labels.get(CERTIFICATE_NAME)
        if owner:
            self.queue.add(("Certificate", namespace, owner))
        for key, obj in list(self.issuers.items()):  # few issuers: a scan is cheaper than an index
            ca = (obj.get("spec") or {}).get("ca") or {}
            if ca.get("secretName") == secret.name and secret_namespace(self, key) == namespace:
                self.queue.add(key)

    def wake_certificates_of(self, issuer: ObjectKey) -> None:
        kind, namespace, name = issuer
        for key, obj in list(self.certificates.items()):
            ref = (obj.get("spec") or {}).get("issuerRef") or {}
            if ref.get("name") == name and (ref.get("kind") or "Issuer") == kind \
                    and (kind == "ClusterIssuer" or key[1] == namespace):
                self.queue.add(key)

    # --- reads for the reconcilers ---------------------------------------------------------

    def issuer_state_for(self, namespace: str, ref: IssuerRef) -> IssuerState:
        key: ObjectKey = (ref.kind, namespace if ref.kind == "Issuer" else "", ref.name)
        state = self.issuer_states.get(key)
        if state is not None:
            return state
        obj = self.issuers.get(key)
        if obj is None:
            where = f"{ref.kind} {ref.name}" + (f" in namespace {namespace}" if ref.kind == "Issuer" else "")
            return IssuerState(False, "NotFound", f"{where} does not exist")
        return compute_state(self, key, obj, self.now())
