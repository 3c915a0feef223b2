"""Leader election against the real API server with clocks that disagree: a standby whose wall
clock runs a minute ahead (more than the lease duration) must not take over a live lease, and
takes over about one lease duration, on its own clock, after the leader stops renewing."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest
from certmint.kube.api import Api, load_configuration
from certmint.kube.leader import LeaderElector
from conftest import get_json

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 6.0, 4.0, 1.0
SKEW = dt.timedelta(seconds=60)  # ten lease durations


class Candidate:
    def __init__(self, cluster, namespace: str, lease: str, identity: str, skew: dt.timedelta = dt.timedelta(0)):
        self.identity = identity
        self.became_leader: float | None = None
        self.lost = threading.Event()
        self.elector = LeaderElector(
            Api(load_configuration(str(cluster.kubeconfig))), namespace, lease, identity,
            on_started=self._started, on_stopped=self.lost.set,
            lease_duration=LEASE_DURATION, renew_deadline=RENEW_DEADLINE, retry_period=RETRY_PERIOD,
            wall_clock=lambda: dt.datetime.now(dt.UTC) + skew)

    def _started(self) -> None:
        self.became_leader = time.monotonic()

    @property
    def leading(self) -> bool:
        return self.elector.leading.is_set()

    def wait_leading(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not self.leading:
            assert time.monotonic() < deadline, f"{self.identity} did not become leader within {timeout} s"
            time.sleep(0.05)
        return time.monotonic()


def lease_spec(kubectl, namespace: str, name: str) -> dict:
    return get_json(kubectl, "lease", "-n", namespace, name)["spec"]


def parse(micro: str) -> dt.datetime:
    return dt.datetime.strptime(micro, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


@pytest.fixture
def candidates():
    started: list[Candidate] = []
    yield started
    for c in started:
        c.elector.stop()


def watch_holders(kubectl, namespace: str, name: str, seconds: float, candidates: list[Candidate]) -> set[str]:
    """Every holder the Lease shows over SECONDS, checking that never two candidates lead at once."""
    holders = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        holders.add(lease_spec(kubectl, namespace, name)["holderIdentity"])
        assert sum(c.leading for c in candidates) <= 1, "two leaders at once"
        time.sleep(0.5)
    return holders


def test_a_standby_whose_clock_runs_ahead_waits_for_the_leader_to_stop_renewing(cluster, kubectl, namespace,
                                                                                   candidates):
    leader = Candidate(cluster, namespace, "skew", "leader")
    candidates.append(leader)
    leader.elector.start()
    leader.wait_leading(10)
    standby = Candidate(cluster, namespace, "skew", "standby-ahead", skew=SKEW)
    candidates.append(standby)
    standby.elector.start()

    # the holder's renewTime is always more than a lease duration behind the standby's clock
    holders = watch_holders(kubectl, namespace, "skew", 3 * LEASE_DURATION, candidates)
    assert holders == {"leader"}, f"the lease changed hands while its holder renewed it: {holders}"
    assert leader.leading and not standby.leading and not leader.lost.is_set()

    # the leader stops renewing, as if its process died: nothing hands the lease over
    last = lease_spec(kubectl, namespace, "skew")
    leader.elector.stop(release=False)
    stopped = time.monotonic()
    took_over = standby.wait_leading(LEASE_DURATION + 20)
    waited = took_over - stopped
    print(f"\nstandby (clock +{SKEW.total_seconds():.0f} s) took over {waited:.1f} s after the leader stopped "
          f"renewing (lease duration {LEASE_DURATION:.0f} s)")
    # It last saw the record change at most one renewal period (plus a request) before the stop.
    assert waited >= LEASE_DURATION - RETRY_PERIOD - 1, f"took over after {waited:.1f} s: before the lease expired"
    spec = lease_spec(kubectl, namespace, "skew")
    assert spec["holderIdentity"] == "standby-ahead"
    assert spec["leaseTransitions"] == last["leaseTransitions"] + 1
    # the record carries the standby's own (skewed) wall clock: written for people, never compared
    ahead = parse(spec["renewTime"]) - dt.datetime.now(dt.UTC)
    assert SKEW - dt.timedelta(seconds=10) < ahead < SKEW + dt.timedelta(seconds=10), ahead


def test_a_holder_whose_clock_runs_behind_keeps_its_lease_and_hands_it_over_on_release(cluster, kubectl, namespace,
                                                                                         candidates):
    leader = Candidate(cluster, namespace, "behind", "leader-behind", skew=-SKEW)
    candidates.append(leader)
    leader.elector.start()
    leader.wait_leading(10)
    standby = Candidate(cluster, namespace, "behind", "standby")
    candidates.append(standby)
    standby.elector.start()

    # every renewTime it writes is a minute old by the standby's clock
    holders = watch_holders(kubectl, namespace, "behind", 3 * LEASE_DURATION, candidates)
    assert holders == {"leader-behind"}, f"the lease changed hands while its holder renewed it: {holders}"
    assert not standby.leading

    leader.elector.stop()  # graceful: releases the lease
    released = time.monotonic()
    spec = lease_spec(kubectl, namespace, "behind")
    assert spec["holderIdentity"] in ("", "standby"), json.dumps(spec)
    waited = standby.wait_leading(LEASE_DURATION + 20) - released
    print(f"\nstandby took a released lease {waited:.1f} s after the release")
    assert waited < LEASE_DURATION, f"the standby waited {waited:.1f} s for a released lease to expire"
