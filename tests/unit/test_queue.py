"""The work queue, the retry rate limiter and the token bucket under it."""
from __future__ import annotations

import threading
import time

from certmint.controller.queue import NoObserver, RateLimiter, WorkQueue
from certmint.kube.ratelimit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_gives_the_burst_at_once_then_qps():
    clock = FakeClock()
    bucket = TokenBucket(qps=10.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == 0.1  # the fourth waits for one token
    assert bucket.reserve() == 0.2
    clock.now += 10.0  # refilled, but never beyond the burst
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() > 0


def test_item_delay_starts_in_milliseconds_doubles_and_is_capped():
    clock = FakeClock()
    limiter = RateLimiter(base=0.005, cap=30.0, qps=1e9, burst=10**9, clock=clock)
    delays = [limiter.when("k") for _ in range(16)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert max(delays) == 30.0 and delays[-1] == 30.0
    assert limiter.failures("k") == 16


def test_success_resets_the_item():
    limiter = RateLimiter(base=0.005, qps=1e9, burst=10**9)
    for _ in range(5):
        limiter.when("k")
    limiter.forget("k")
    assert limiter.when("k") == 0.005


def test_items_back_off_independently():
    limiter = RateLimiter(base=0.005, qps=1e9, burst=10**9)
    for _ in range(6):
        limiter.when("a")
    assert limiter.when("b") == 0.005


def test_the_bucket_bounds_retries_of_many_items_at_once():
    """10,000 objects failing at once (a cluster-wide 403): after the burst, retries are spread at
    the bucket's rate, so the API server sees at most qps retries a second."""
    clock = FakeClock()
    limiter = RateLimiter(base=0.005, cap=30.0, qps=50.0, burst=300, clock=clock)
    delays = [limiter.when(("Certificate", "ns", str(i))) for i in range(10000)]
    assert sum(d <= 0.005 for d in delays) == 300
    assert max(delays) >= (10000 - 300) / 50.0 - 1
    within_first_10s = sum(d <= 10.0 for d in delays)
    assert within_first_10s <= 300 + 50 * 10 + 1


def test_a_key_is_processed_by_one_worker_at_a_time_and_rerun_if_added_meanwhile():
    q = WorkQueue()
    q.add("k")
    assert q.get() == "k"
    q.add("k")  # while processing: marked dirty, not handed to another worker
    assert len(q) == 1
    q.done("k")
    assert q.get() == "k"
    q.done("k")
    q.close()
    assert q.get() is None


def test_add_at_keeps_the_earliest_time_per_key():
    q = WorkQueue()
    q.add_at("k", time.time() + 3600)
    q.add_at("k", time.time() + 0.05)
    q.add_at("k", time.time() + 1800)
    started = time.monotonic()
    assert q.get() == "k"
    assert time.monotonic() - started < 5


def test_the_observer_sees_adds_waits_and_work():
    seen = {"added": 0, "started": [], "finished": [], "retried": 0}

    class Observer(NoObserver):
        def added(self):
            seen["added"] += 1

        def started(self, waited):
            seen["started"].append(waited)

        def finished(self, worked):
            seen["finished"].append(worked)

    q = WorkQueue(observer=Observer())
    q.add("a")
    q.add("a")  # already waiting: not added twice
    key = q.get()
    stats = q.stats()
    assert stats.depth == 0 and stats.longest_running_seconds >= 0
    q.done(key)
    assert seen["added"] == 1 and len(seen["started"]) == 1 and len(seen["finished"]) == 1


def test_workers_drain_concurrently_added_keys():
    q = WorkQueue()
    done: list = []
    lock = threading.Lock()

    def work():
        while (key := q.get()) is not None:
            with lock:
                done.append(key)
            q.done(key)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for i in range(1000):
        q.add(i)
    deadline = time.monotonic() + 10
    while len(done) < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    q.close()
    for w in workers:
        w.join()
    assert sorted(done) == list(range(1000))
