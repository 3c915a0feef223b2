"""Leader election on a coordination.k8s.io/v1 Lease, judged by observation time as client-go does it.

The leader renews the Lease every retry_period. A candidate remembers the Lease record it last
saw and the time, on its own monotonic clock, at which it saw that record change. It treats the
Lease as expired only when the record has stayed the same for a full leaseDurationSeconds on that
clock. The timestamps inside the record (renewTime, acquireTime) are written for people reading
the Lease and are never compared with the local clock: another machine's clock may run ahead or
behind by any amount, and a standby whose clock runs ahead must not take over a live lease.

A leader that cannot renew within renew_deadline (measured from the start of its last successful
renewal, on its own clock) stops leading and calls on_stopped (the operator exits), so it has
stopped before any standby can have waited out the lease_duration that follows that renewal.
This holds as long as the clocks run at about the same rate; lease_duration / renew_deadline is
the rate difference tolerated.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from certmint.kube.api import Api, ApiError

log = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro(t: dt.datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for the Lease NAMESPACE/NAME.

    clock is the local monotonic time in seconds, the only time expiry is judged by;
    wall_clock is the time written into the record's acquireTime and renewTime.
    """

    def __init__(self, api: Api, namespace: str, name: str, identity: str,
                 on_started: Callable[[], None], on_stopped: Callable[[], None],
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], dt.datetime] = _utcnow):
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration, got "
                             f"{retry_period}, {renew_deadline}, {lease_duration}")
        self.api, self.identity = api, identity
        self.path = LEASES.format(namespace=namespace)
        self.name = name
        self.on_started, self.on_stopped = on_started, on_stopped
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.clock, self.wall_clock = clock, wall_clock
        # A request that hangs (etcd frozen, say) must not hold a round past the renew deadline.
        self.request_timeout = max(1.0, renew_deadline / 2)
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._lost = False
        self._thread: threading.Thread | None = None
        # One round at a time: stop() waits for the round in flight, so a renewal cannot land
        # after the release and hold the lease for another lease duration.
        self._round = threading.Lock()
        self._observed: dict[str, Any] | None = None  # the Lease spec last seen
        self._observed_at = 0.0  # self.clock() when that spec was first seen
        self._last_renewal = 0.0  # self.clock() at the start of our last successful renewal

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop campaigning. With release (the default) a lease we hold is handed over at once, so a
        standby need not wait for it to expire; without it the lease is left to expire, as when the
        process dies."""
        self._stop.set()
        with self._round:
            was_leading = self.leading.is_set()
            self.leading.clear()
            if was_leading and release:
                self._release()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.request_timeout * 2 + 1)

    def _run(self) -> None:
        while not self._stop.is_set() and not self._lost:
            self.step()
            self._stop.wait(self.retry_period)

    def step(self) -> None:
        """One round: acquire or renew the lease, and start or stop leading on the outcome."""
        started = lost = False
        with self._round:
            if self._stop.is_set() or self._lost:
                return
            attempt = self.clock()
            held = self.try_acquire_or_renew()
            if held:
                self._last_renewal = attempt
                if not self.leading.is_set():
                    self.leading.set()
                    started = True
            elif self.leading.is_set() and self.clock() - self._last_renewal > self.renew_deadline:
                self.leading.clear()
                self._lost = lost = True
        # The callbacks run outside the round lock: they may stop the elector.
        if started:
            log.info("became leader (lease %s, identity %s)", self.name, self.identity)
            self.on_started()
        if lost:
            log.error("lost leadership: lease %s not renewed for %.0f s", self.name, self.renew_deadline)
            self.on_stopped()

    # --- one attempt -----------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """Create, renew or take over the lease; False while another holder's lease is live, or the API failed."""
        try:
            lease = self._get()
            if lease is None:
                now = self.wall_clock()
                created = self._send("create", "POST", self.path, self._record(now, now, transitions=0))
                self._observe(created)
                return True
            spec = lease.get("spec") or {}
            self._observe(lease)
            holder = spec.get("holderIdentity") or ""
            if holder and holder != self.identity and self._live(spec):
                return False
            now = self.wall_clock()
            if holder == self.identity:  # a renewal keeps the acquisition's time and count
                acquired, transitions = spec.get("acquireTime") or _micro(now), spec.get("leaseTransitions") or 0
            else:
                acquired, transitions = _micro(now), (spec.get("leaseTransitions") or 0) + 1
            body = self._record(acquired, now, transitions)
            body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            self._observe(self._send("update", "PUT", f"{self.path}/{self.name}", body))
            return True
        except ApiError as e:
            if not e.conflict:  # a conflict is another candidate's write winning the race: expected
                log.warning("leader election on lease %s: %s", self.name, e)
            return False

    def _live(self, spec: dict[str, Any]) -> bool:
        """The record has changed within its lease duration, as measured on our own clock."""
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        return self.clock() < self._observed_at + duration

    def _observe(self, lease: dict[str, Any]) -> None:
        """Remember the record, and when it last changed: a change, whatever its timestamps say,
        proves the holder was alive just now."""
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observed = spec
            self._observed_at = self.clock()

    def _release(self) -> None:
        try:
            lease = self._get()
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            now = self.wall_clock()
            # An empty holder lets any candidate acquire at once; the 1 s duration tells older
            # clients, which look at renewTime, the same.
            body = self._record(now, now, spec.get("leaseTransitions") or 0)
            body["spec"].update(holderIdentity="", leaseDurationSeconds=1)
            body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
            self._send("update", "PUT", f"{self.path}/{self.name}", body)
            log.info("released lease %s", self.name)
        except ApiError as e:
            log.warning("could not release lease %s: %s", self.name, e)

    # --- the API ---------------------------------------------------------------------------

    def _get(self) -> dict[str, Any] | None:
        try:
            return self._send("get", "GET", f"{self.path}/{self.name}")
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def _send(self, verb: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.api.request(verb, method, path, body=body, timeout=self.request_timeout)

    def _record(self, acquired: dt.datetime | str, renewed: dt.datetime, transitions: int) -> dict[str, Any]:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                         "acquireTime": acquired if isinstance(acquired, str) else _micro(acquired),
                         "renewTime": _micro(renewed), "leaseTransitions": transitions}}
