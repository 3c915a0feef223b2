"""The controller: one store of what certmint watches, a work queue, and the workers that reconcile.

Event sources (kopf's watches of Certificates, Issuers and ClusterIssuers, the
label-selected Secret watch, timers for renewals and back-off) only change the store and
queue the keys whose objects changed. Workers take one key at a time, reconcile it
level-based from the store, and apply the Result it returns; so a missed or repeated
event costs nothing but one more pass.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

from certmint.controller.bundles import (
    bundles_for_secret,
    reconcile_bundle,
    wake_for_issuer,
    wake_for_namespace,
)
from certmint.controller.certificates import reconcile_certificate
from certmint.controller.context import (
    CERTIFICATE,
    CONFIGMAP,
    REVOCATION,
    PACKED,
    Context,
    ObjectKey,
    Result,
    index_by_reference,
    issuer_key,
    object_key,
    slim,
)
from certmint.controller.issuers import reconcile_issuer
from certmint.controller.revocations import reconcile_certificate_revocation, remember_configmap, served
from certmint.controller.memory import release_free_memory, trim_now_and_then
from certmint.controller.options import Options
from certmint.controller.queue import RateLimiter, WorkQueue
from certmint.kube.api import Api, ApiError, resource_version
from certmint.kube.leader import LeaderElector
from certmint.kube.objects import BUNDLE_LABEL, TrustCaches
from certmint.kube.reflector import Reflector, list_into, version_number
from certmint.kube.resources import CLUSTER_SCOPED, INSTANCE, EventRecorder, core_path, resource_path
from certmint.kube.secrets import SecretCache
from certmint.kube.store import Change, Store
from certmint.metrics import Metrics
from certmint.policy import Backoff, SecretState
from certmint.policy.types import CERTIFICATE_NAME
from certmint.revocation.ledger import CRL_LABEL, ISSUER_KIND_ANNOTATION as ISSUER_KIND, \
    ISSUER_NAME_ANNOTATION as ISSUER_NAME

log = logging.getLogger(__name__)

# The reconciler of each kind the store holds; the kind is the first element of its keys.
RECONCILERS: dict[str, Callable[[Context, ObjectKey], Result]] = {
    CERTIFICATE: reconcile_certificate,
    "Issuer": reconcile_issuer,
    "ClusterIssuer": reconcile_issuer,
    "Bundle": reconcile_bundle,
    REVOCATION: reconcile_certificate_revocation,
}
RESYNC = "Resync"  # queue key ("Resync", kind, namespace or ""): list one scope again, forget what is gone
RELIST_SETTLE = 2.0  # seconds after a relist is noticed before the scope is listed again (debounce)
PROBE_INTERVAL = 0.5  # seconds between /readyz probes while the API server is unavailable


class Controller:
    def __init__(self, api: Api, options: Options, metrics: Metrics | None = None,
                 clock: Callable[[], dt.datetime] | None = None):
        self.api = api
        self.options = options
        self.metrics = metrics or Metrics()
        self.queue: WorkQueue[tuple] = WorkQueue(observer=self.metrics.queue_observer())
        self.metrics.watch_queue(self.queue.stats)
        self.limiter: RateLimiter[tuple] = RateLimiter(cap=options.retry_max)
        self.objects: Store[dict] = Store(index=index_by_reference(options.cluster_resource_namespace),
                                          observer=self._stored, codec=PACKED)
        self.secrets = SecretCache(api, list(options.namespaces) or None, on_change=self._secret_changed)
        events = EventRecorder(api, options.event_qps, options.event_burst,
                               on_dropped=self.metrics.events_dropped.inc)
        self.metrics.watch_events(events.pending)
        self.ctx = Context(api, options, self.objects, self.secrets, events, self.metrics,
                           Backoff(options.backoff_initial, options.backoff_max),
                           clock or (lambda: dt.datetime.now(dt.timezone.utc)))
        # Namespaces and Bundle targets, for the Bundles: watched, so a new namespace gets its bundles at once.
        self.ctx.replay = self.queue.add
        self.ctx.trust = TrustCaches(api, list(options.namespaces) or None, self._namespace_changed,
                                     self._target_changed)
        # The CRL ConfigMaps (label-selected): the ledger each CA issuer's CRL is rebuilt from.
        crl_namespaces = sorted({*options.namespaces, options.cluster_resource_namespace}) \
            if options.namespaces else [None]
        self.crl_configmaps = [
            Reflector(api, core_path("configmaps", ns), CRL_LABEL,
                      self._crl_configmap_event, self._crl_configmaps_relisted_in(ns), name=f"crls:{ns or '*'}")
            for ns in crl_namespaces]
        self._workers: list[threading.Thread] = []
        self._listed_by_kopf: set[tuple[str, str]] = set()  # scopes whose first kopf listing was seen
        self._lock = threading.Lock()
        self._parked: set[tuple] = set()  # keys that failed because the API server was unavailable
        self._probing = False
        self._stopping = threading.Event()
        self.started = threading.Event()  # store filled: ready to serve, as leader or standby
        self.leading = threading.Event()  # workers running
        self.elector: LeaderElector | None = None

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Fill the store, then start the workers: no decision is taken on a partial view."""
        self.secrets.start()
        assert self.ctx.trust is not None
        self.ctx.trust.start()
        for reflector in self.crl_configmaps:
            reflector.start()
        for reflector in self.secrets.reflectors + self.crl_configmaps:
            if not reflector.synced.wait(120):
                raise RuntimeError(f"could not list {reflector.path} within 120 s")
        if not self.ctx.trust.wait_synced(120):
            raise RuntimeError("could not list Namespaces and Bundle targets within 120 s")
        for kind, namespace in self._scopes():
            self._resync(kind, namespace)
        release_free_memory()
        threading.Thread(target=trim_now_and_then, args=(self._stopping,), name="memory-trim", daemon=True).start()
        self.started.set()
        log.info("store filled: %d Secrets of ours, %d Certificates and issuers",
                 len(self.secrets), len(self.objects))
        if self.options.leader_election:
            self.elector = LeaderElector(
                self.api, self.options.leader_election_namespace, self.options.leader_election_id,
                f"{INSTANCE}_{uuid.uuid4().hex[:8]}", on_started=self._start_workers, on_stopped=self._lost_leadership)
            self.elector.start()
        else:
            self._start_workers()

    def _scopes(self) -> list[tuple[str, str]]:
        """(kind, namespace or "") for each listing that together covers what we watch."""
        namespaces = list(self.options.namespaces) or [""]
        return [(kind, ns) for kind in (CERTIFICATE, "Issuer", REVOCATION) for ns in namespaces] \
            + [(kind, "") for kind in CLUSTER_SCOPED]

    def _start_workers(self) -> None:
        # every object once: metrics and timers are rebuilt from it (CRL ConfigMaps are read, not reconciled)
        for key in self.objects.keys(lambda k: k[0] in RECONCILERS):
            self.queue.add(key)
        assert self.ctx.trust is not None
        for name in self.ctx.trust.bundle_names():  # targets of a Bundle deleted while we were down
            self.queue.add(("Bundle", "", name))
        for kind, namespace in self._scopes():
            self.queue.add_after((RESYNC, kind, namespace), self.options.resync_period.total_seconds())
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

    def stop(self) -> None:
        """Finish the reconciles in flight, then hand over the lease: no two leaders write at once."""
        self._stopping.set()
        self.queue.close()
        for t in self._workers:
            t.join(timeout=10)
        self.ctx.events.flush()
        if self.elector:
            self.elector.stop()
        self.secrets.stop()
        if self.ctx.trust is not None:
            self.ctx.trust.stop()
        for reflector in self.crl_configmaps:
            reflector.stop()
        self.ctx.keys.close()

    # --- the worker loop -------------------------------------------------------------------

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            controller = key[0]
            try:
                self.metrics.sync_calls.labels(controller).inc()
                result = self._reconcile(key)
            except ApiError as e:
                self._retry(key, e, f"reconciling {key} failed: {e}")
            except Exception as e:  # a bug: retried like any failure, never a hot loop
                log.exception("reconciling %s crashed", key)
                self._retry(key, e, None)
            else:
                self.limiter.forget(key)
                self._apply(key, result)
            finally:
                self.queue.done(key)

    def _reconcile(self, key: tuple) -> Result:
        if key[0] == RESYNC:
            self._resync(key[1], key[2])
            release_free_memory()
            return Result(requeue_at=self.ctx.now() + self.options.resync_period)
        return RECONCILERS[key[0]](self.ctx, key)

    def _apply(self, key: tuple, result: Result) -> None:
        if result.forget:
            self.queue.forget(key)
        if result.requeue_at is not None:
            self.queue.add_at(key, result.requeue_at.timestamp())
        for woken in result.wake:
            self.queue.add(woken)
        for woken, when in result.later:
            self.queue.add_at(woken, when.timestamp())

    def _retry(self, key: tuple, error: Exception, message: str | None) -> None:
        self.metrics.sync_errors.labels(key[0]).inc()
        delay = self.limiter.when(key)
        if isinstance(error, ApiError) and error.retry_after:
            delay = max(delay, error.retry_after)
        if message:
            log.warning("%s; retrying in %.3f s", message, delay)
        self.queue.observer.retried()
        self.queue.add_after(key, delay)
        if isinstance(error, ApiError) and error.unavailable:
            self._park(key)

    # --- recovery: retry at once when the API server is back ----------------------------------

    def _park(self, key: tuple) -> None:
        """key failed because the API server was unavailable. Its own back-off keeps it from
        hammering a server that is down; a single probe notices when the server is back, and
        then every parked key is retried at once instead of at the end of its back-off."""
        with self._lock:
            self._parked.add(key)
            if self._probing:
                return
            self._probing = True
        threading.Thread(target=self._probe, name="api-probe", daemon=True).start()

    def _probe(self) -> None:
        while not self.api.ready():
            time.sleep(PROBE_INTERVAL)
        with self._lock:
            parked, self._parked = self._parked, set()
            self._probing = False
        log.info("the API server answers again: retrying %d objects now", len(parked))
        for key in parked:
            self.queue.add(key)

    # --- events in -----------------------------------------------------------------------------

    def object_event(self, event_type: str | None, obj: dict) -> None:
        """A watch event of a Certificate, Issuer or ClusterIssuer (event_type None: from a listing)."""
        key, version = object_key(obj), resource_version(obj)
        if event_type == "DELETED":
            change = self.objects.delete(key, version)
        elif self.objects.version(key) == version:  # already held (kopf's listing after ours): nothing to slim
            change = None
        else:
            change = self.objects.upsert(key, version, slim(obj))
        if change is not None:
            if not self.ctx.writes.hold(key, version, None):  # not the echo of our status patch
                self.queue.add(key)
            for bundle in wake_for_issuer(self.ctx, key):  # an issuer changed: the roots its Bundles follow may too
                self.queue.add(bundle)
        if event_type is None and self.started.is_set():
            self._noticed_listing(key)

    def _noticed_listing(self, key: ObjectKey) -> None:
        """kopf lists a scope when it (re)starts a watch, and reports only the objects it finds, not
        the ones that are gone. The first listing of a scope is the one the store was filled from;
        after a later one, the scope is listed again here so what was deleted meanwhile is forgotten."""
        scope = (key[0], key[1] if self.options.namespaces and key[0] not in CLUSTER_SCOPED else "")
        with self._lock:
            first = scope not in self._listed_by_kopf
            self._listed_by_kopf.add(scope)
        if not first:
            self.queue.add_after((RESYNC, *scope), RELIST_SETTLE)

    def _resync(self, kind: str, namespace: str) -> None:
        """List one scope into the store; forget what it covered and did not return."""
        seen: set[ObjectKey] = set()

        def listed(item: dict) -> None:
            obj = slim({**item, "kind": kind})
            key = object_key(obj)
            seen.add(key)
            if self.objects.upsert(key, resource_version(obj), obj) is not None and self.started.is_set():
                self.queue.add(key)

        _, version = list_into(self.api, resource_path(kind, namespace or None), None, listed)

        def in_scope(key: tuple) -> bool:
            return key[0] == kind and (not namespace or key[1] == namespace)

        for change in self.objects.replace(in_scope, seen, version_number(version)):
            log.info("%s %s/%s was deleted while not watched", kind, change.key[1], change.key[2])
            self.queue.add(change.key)

    def _stored(self, change: Change[dict]) -> None:
        """Every change the store accepts: the views derived from revocations follow them."""
        if change.key[0] == REVOCATION:
            self.ctx.revocations.changed()

    def _crl_configmap_event(self, kind: str, obj: dict) -> None:
        """A CRL ConfigMap changed (or went): its issuer puts it right, unless the change was ours."""
        meta = obj.get("metadata") or {}
        key = (CONFIGMAP, meta.get("namespace", "") or "", meta.get("name", ""))
        if kind == "DELETED":
            changed = self.objects.delete(key, resource_version(obj)) is not None
        else:
            changed = remember_configmap(self.ctx, obj)
        annotations = meta.get("annotations") or {}
        issuer_kind, issuer_name = annotations.get(ISSUER_KIND), annotations.get(ISSUER_NAME)
        if changed and issuer_kind in ("Issuer", "ClusterIssuer") and issuer_name and self.started.is_set():
            self.queue.add(issuer_key(issuer_kind, key[1], issuer_name))

    def _crl_configmaps_relisted_in(self, namespace: str | None) -> Callable[[set[tuple[str, str]], int], None]:
        def relisted(seen: set[tuple[str, str]], list_version: int) -> None:
            keys = {(CONFIGMAP, ns, name) for ns, name in seen}
            self.objects.replace(lambda k: k[0] == CONFIGMAP and (namespace is None or k[1] == namespace),
                                 keys, list_version)
        return relisted

    def served_crl(self, path: str) -> bytes | None:
        return served(self.ctx, path)

    def _secret_changed(self, namespace: str, secret: SecretState, own_write: bool) -> None:
        """A Secret of ours, or a CA Secret, changed. Its Certificate is woken unless the change is
        our own write (whose reconcile already knows what comes next); CA issuers always are."""
        owner = secret.labels.get(CERTIFICATE_NAME)
        if owner and not own_write:
            self.queue.add((CERTIFICATE, namespace, owner))
        for key in self.ctx.issuers_using(namespace, secret.name):
            self.queue.add(key)
        for key in bundles_for_secret(self.ctx, namespace, secret.name, owner):
            self.queue.add(key)

    def _namespace_changed(self, key: tuple[str, str], old: dict | None, new: dict | None, own: bool) -> None:
        for bundle in wake_for_namespace(self.ctx, old, new):
            self.queue.add(bundle)

    def _target_changed(self, key: tuple[str, str], old: dict | None, new: dict | None, own: bool) -> None:
        """A Bundle's ConfigMap or Secret changed or went, and not by our hand: its Bundle puts it right."""
        name = ((new or old) or {}).get("labels", {}).get(BUNDLE_LABEL)
        if name and not own and self.started.is_set():
            self.queue.add(("Bundle", "", name))
