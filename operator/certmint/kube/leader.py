"""Leader election on a coordination.k8s.io/v1 Lease, as Kubernetes controllers do it.

The leader renews the Lease every renew_period; a standby takes over once the Lease has
not been renewed for lease_duration. A leader that cannot renew within renew_deadline
stops leading (the caller exits), so two leaders never act at once for long.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable

from certmint.kube.api import Api, ApiError

log = logging.getLogger(__name__)


def _micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            pass
    return None


class LeaderElector:
    def __init__(self, api: Api, namespace: str, name: str, identity: str,
                 on_started: Callable[[], None], on_stopped: Callable[[], None],
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0):
        self.api, self.identity = api, identity
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self.on_started, self.on_stopped = on_started, on_stopped
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.leading = threading.Event()
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="leader-election", daemon=True).start()

    def stop(self) -> None:
        """Stop, and hand the Lease over at once if we hold it, so a standby need not wait for it to expire."""
        self._stop.set()
        if self.leading.is_set():
            self.leading.clear()
            self._release()

    def _release(self) -> None:
        try:
            lease = self.api.get_or_none(f"{self.path}/{self.name}")
            if not lease or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["leaseDurationSeconds"] = 1
            self.api.request("update", "PUT", f"{self.path}/{self.name}", body=lease)
            log.info("released lease %s", self.name)
        except ApiError as e:
            log.warning("could not release lease %s: %s", self.name, e)

    def _run(self) -> None:
        while not self._stop.is_set() and not self._try_acquire():
            self._stop.wait(self.retry_period)
        if self._stop.is_set():
            return
        log.info("became leader (lease %s, identity %s)", self.name, self.identity)
        self.leading.set()
        self.on_started()
        last_renewal = time.monotonic()
        while not self._stop.wait(self.retry_period):
            if self._try_acquire():
                last_renewal = time.monotonic()
            elif time.monotonic() - last_renewal > self.renew_deadline:
                log.error("lost leadership: lease %s not renewed for %.0f s", self.name, self.renew_deadline)
                self.leading.clear()
                self.on_stopped()
                return

    def _try_acquire(self) -> bool:
        """Create, renew or take over the lease; False when someone else holds it or the API failed."""
        now = dt.datetime.now(dt.timezone.utc)
        try:
            lease = self.api.get_or_none(f"{self.path}/{self.name}")
            if lease is None:
                self.api.create(self.path, self._lease(now, now, transitions=0))
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
            duration = spec.get("leaseDurationSeconds") or self.lease_duration
            if holder and holder != self.identity and renewed and \
                    now < renewed + dt.timedelta(seconds=duration):
                return False
            acquired = _parse(spec.get("acquireTime")) if holder == self.identity else now
            transitions = (spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
            body = self._lease(acquired or now, now, transitions)
            body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            self.api.request("update", "PUT", f"{self.path}/{self.name}", body=body)
            return True
        except ApiError as e:
            if not e.conflict:
                log.warning("leader election: %s", e)
            return False

    def _lease(self, acquired: dt.datetime, renewed: dt.datetime, transitions: int) -> dict:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                         "acquireTime": _micro(acquired), "renewTime": _micro(renewed),
                         "leaseTransitions": transitions}}
