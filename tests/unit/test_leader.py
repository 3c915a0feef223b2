"""Leader election by observation time: expiry is judged on the candidate's own monotonic clock,
from when it last saw the Lease record change, never by comparing the record's timestamps
with the local clock. An in-memory Lease store stands for the API server here; the e2e test
tests/e2e/test_leader_clock.py runs the same scenarios against a real one."""
from __future__ import annotations

import copy
import datetime as dt

import pytest
from certmint.kube.api import ApiError
from certmint.kube.leader import LeaderElector

NS, NAME = "certmint", "lease"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
REAL_NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


class FakeLeaseApi:
    """The Lease endpoints of an API server: GET, POST (409 when it exists), PUT with optimistic
    concurrency on resourceVersion (409 when stale). down=True answers every request with a
    connection error."""

    def __init__(self):
        self.lease: dict | None = None
        self.version = 0
        self.down = False
        self.writes: list[dict] = []

    def request(self, verb, method, path, body=None, timeout=None, **_):
        assert timeout is not None, "every lease request is bounded in time"
        if self.down:
            raise ApiError(0, "ConnectionRefusedError", "connection refused")
        if method == "GET":
            assert path == f"{PATH}/{NAME}"
            if self.lease is None:
                raise ApiError(404, "NotFound", "leases not found")
            return copy.deepcopy(self.lease)
        if method == "POST":
            assert path == PATH
            if self.lease is not None:
                raise ApiError(409, "AlreadyExists", "already exists")
            return self._store(body)
        if method == "PUT":
            assert path == f"{PATH}/{NAME}"
            if self.lease is None:
                raise ApiError(404, "NotFound", "leases not found")
            if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "the object has been modified")
            return self._store(body)
        raise AssertionError(f"unexpected {method} {path}")

    def _store(self, body):
        self.version += 1
        lease = copy.deepcopy(body)
        lease["metadata"] = {**lease["metadata"], "namespace": NS, "resourceVersion": str(self.version)}
        self.lease = lease
        self.writes.append(copy.deepcopy(lease))
        return copy.deepcopy(lease)

    @property
    def spec(self) -> dict:
        return self.lease["spec"]


class Clock:
    """A local monotonic clock the test moves by hand."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Candidate:
    def __init__(self, api, identity, clock, skew=dt.timedelta(0), **timing):
        self.started = 0
        self.stopped = 0
        self.wall = lambda: REAL_NOW + dt.timedelta(seconds=clock.t - 1000.0) + skew

        def started():
            self.started += 1

        def stopped():
            self.stopped += 1

        self.elector = LeaderElector(api, NS, NAME, identity, started, stopped,
                                     clock=clock, wall_clock=self.wall, **timing)

    @property
    def leading(self) -> bool:
        return self.elector.leading.is_set()

    def step(self):
        self.elector.step()


@pytest.fixture
def api():
    return FakeLeaseApi()


@pytest.fixture
def clocks():
    # two machines: each has its own monotonic clock; tests move them together
    return Clock(), Clock(5_000_000.0)


def advance(clocks, seconds):
    for c in clocks:
        c.t += seconds


def run(candidates, clocks, seconds, period=2.0):
    """Every candidate takes a round every period seconds, for SECONDS."""
    elapsed = 0.0
    while elapsed < seconds:
        for c in candidates:
            c.step()
        advance(clocks, period)
        elapsed += period


def test_the_first_candidate_creates_the_lease_with_its_wall_clock_times(api, clocks):
    a = Candidate(api, "a", clocks[0])
    a.step()
    assert a.leading and a.started == 1
    assert api.spec["holderIdentity"] == "a"
    assert api.spec["leaseDurationSeconds"] == 15
    assert api.spec["leaseTransitions"] == 0
    assert api.spec["renewTime"] == "2026-11-30T12:00:00.000000Z" == api.spec["acquireTime"]


def test_renewals_keep_the_acquisition_time_and_count(api, clocks):
    a = Candidate(api, "a", clocks[0])
    run([a], clocks, 10)
    assert api.spec["acquireTime"] == "2026-11-30T12:00:00.000000Z"
    assert api.spec["renewTime"] == "2026-11-30T12:00:08.000000Z"
    assert api.spec["leaseTransitions"] == 0
    assert a.started == 1 and a.stopped == 0


@pytest.mark.parametrize("skew", [60, 15, -60, 3600])
def test_a_standby_with_a_skewed_wall_clock_never_takes_a_live_lease(api, clocks, skew):
    """The defect: judging expiry by renewTime + leaseDuration < local now lets a standby whose
    clock runs ahead take over a lease its holder renews every two seconds."""
    a = Candidate(api, "a", clocks[0])
    b = Candidate(api, "b", clocks[1], skew=dt.timedelta(seconds=skew))
    run([a, b], clocks, 120)
    assert a.leading and not b.leading
    assert api.spec["holderIdentity"] == "a"
    assert {w["spec"]["holderIdentity"] for w in api.writes} == {"a"}


def test_a_standby_ignores_a_holder_whose_timestamps_are_far_in_the_past(api, clocks):
    """A holder whose clock runs an hour behind writes renewTime an hour ago: still live, because
    the record keeps changing."""
    a = Candidate(api, "a", clocks[0], skew=dt.timedelta(hours=-1))
    b = Candidate(api, "b", clocks[1])
    run([a, b], clocks, 60)
    assert api.spec["holderIdentity"] == "a" and not b.leading


def test_the_standby_takes_over_one_lease_duration_after_the_record_last_changed(api, clocks):
    a = Candidate(api, "a", clocks[0])
    b = Candidate(api, "b", clocks[1], skew=dt.timedelta(seconds=60))
    run([a, b], clocks, 20)
    a.step()  # the leader's last renewal ...
    b.step()  # ... which the standby sees change at its clock's time T
    seen = clocks[1].t
    last = copy.deepcopy(api.spec)
    # the leader dies; the standby's rounds see the same record until T + 15 s on its own clock
    while clocks[1].t < seen + 15 - 0.5:
        advance(clocks, 0.5)
        b.step()
        assert not b.leading, f"took over {clocks[1].t - seen:.1f} s after the last change"
    assert api.spec == last
    advance(clocks, 1.0)
    b.step()
    assert b.leading and b.started == 1
    assert api.spec["holderIdentity"] == "b"
    assert api.spec["leaseTransitions"] == 1
    assert api.spec["acquireTime"] == api.spec["renewTime"]


def test_a_new_candidate_waits_a_full_lease_duration_even_for_a_record_renewed_long_ago(api, clocks):
    """It has never seen the record change, so it cannot know the holder is gone: the renewTime
    says "an hour ago", but that is another machine's clock."""
    a = Candidate(api, "a", clocks[0], skew=dt.timedelta(hours=-1))
    a.step()
    b = Candidate(api, "b", clocks[1])
    b.step()
    run([b], clocks, 14)  # rounds up to 12 s after it first saw the record
    assert not b.leading
    run([b], clocks, 4)  # 14 s: still live; 16 s: expired
    assert b.leading


def test_a_released_lease_is_taken_at_once(api, clocks):
    a = Candidate(api, "a", clocks[0])
    b = Candidate(api, "b", clocks[1])
    run([a, b], clocks, 10)
    a.elector.stop()
    assert not a.leading
    assert api.spec["holderIdentity"] == "" and api.spec["leaseDurationSeconds"] == 1
    b.step()
    assert b.leading and api.spec["holderIdentity"] == "b"
    assert api.spec["leaseTransitions"] == 1


def test_stop_without_release_leaves_the_lease_to_expire(api, clocks):
    a = Candidate(api, "a", clocks[0])
    b = Candidate(api, "b", clocks[1])
    run([a, b], clocks, 10)
    a.elector.stop(release=False)
    assert api.spec["holderIdentity"] == "a"
    a.step()  # a stopped elector takes no more rounds
    assert api.spec["holderIdentity"] == "a"
    run([a, b], clocks, 14)
    assert not b.leading
    run([a, b], clocks, 4)
    assert b.leading


def test_a_leader_that_cannot_renew_within_the_deadline_stops_leading(api, clocks):
    a = Candidate(api, "a", clocks[0])
    a.step()
    api.down = True
    run([a], clocks, 10)  # rounds at +0, +2, ... +8: within the 10 s deadline
    assert a.leading and a.stopped == 0
    run([a], clocks, 4)
    assert not a.leading and a.stopped == 1
    api.down = False
    run([a], clocks, 10)
    assert not a.leading and a.started == 1, "a lost leadership is not taken again: the process restarts"


def test_a_leader_that_misses_a_few_renewals_keeps_the_lease(api, clocks):
    a = Candidate(api, "a", clocks[0])
    b = Candidate(api, "b", clocks[1])
    run([a, b], clocks, 6)
    api.down = True
    run([a, b], clocks, 6)
    api.down = False
    run([a, b], clocks, 30)
    assert a.leading and not b.leading and a.stopped == 0


def test_the_leader_stops_before_a_standby_can_take_over(api, clocks):
    """The leader's renewals fail (its requests do not get through) while the standby still sees
    the API: the leader gives up renew_deadline after its last renewal, the standby takes over
    lease_duration after seeing it: never two leaders at once."""
    a = Candidate(api, "a", clocks[0])
    b = Candidate(api, "b", clocks[1])
    run([a, b], clocks, 6)
    real = api.request

    def cut_off_a(verb, method, path, body=None, timeout=None):
        if body and body["spec"]["holderIdentity"] == "a":
            raise ApiError(0, "TimeoutError", "timed out")
        return real(verb, method, path, body=body, timeout=timeout)

    api.request = cut_off_a
    for _ in range(40):
        a.step()
        b.step()
        assert not (a.leading and b.leading)
        advance(clocks, 0.5)
    assert b.leading and not a.leading and a.stopped == 1


def test_two_standbys_race_and_one_wins(api, clocks):
    a = Candidate(api, "a", clocks[0])
    a.step()
    b = Candidate(api, "b", clocks[1])
    c = Candidate(api, "c", clocks[1])
    b.step()
    c.step()
    advance(clocks, 16)
    real = api.request

    def b_writes_first(verb, method, path, body=None, timeout=None):
        # b's whole round lands between c's read of the expired record and c's write
        if method == "PUT" and body["spec"]["holderIdentity"] == "c" and not b.leading:
            b.step()
        return real(verb, method, path, body=body, timeout=timeout)

    api.request = b_writes_first
    c.step()  # its write carries the resourceVersion b has just replaced
    assert b.leading and not c.leading
    assert api.spec["holderIdentity"] == "b" and api.spec["leaseTransitions"] == 1


def test_a_deposed_leader_that_sees_another_holder_stops(api, clocks):
    a = Candidate(api, "a", clocks[0])
    a.step()
    # someone else holds the lease now (a was cut off past its deadline, say)
    api.lease["spec"]["holderIdentity"] = "z"
    api.lease["metadata"]["resourceVersion"] = str(api.version + 1)
    api.version += 1
    run([a], clocks, 14)
    assert not a.leading and a.stopped == 1
    assert api.spec["holderIdentity"] == "z"


def test_timings_must_be_ordered(api, clocks):
    with pytest.raises(ValueError):
        LeaderElector(api, NS, NAME, "a", lambda: None, lambda: None,
                      lease_duration=10, renew_deadline=10, retry_period=2)
