"""The work queue of object keys and the rate limiter for retries, as Kubernetes controllers have them.

A key is processed by at most one worker at a time; adding a key that is already
waiting does nothing, and adding one that is being processed runs it once more
afterwards. add_at() schedules a key for later (renewals, issuance back-off), keeping
only the earliest time per key, so each certificate has at most one pending timer.

Retries after a failed reconcile go through RateLimiter: per item, a delay that starts
in milliseconds and doubles to a cap (reset when the item succeeds), and over all items
a token bucket, so a failure that hits every object at once (a cluster-wide 403) cannot
turn into a flood of requests.
"""
from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from dataclasses import dataclass
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from certmint.kube.ratelimit import TokenBucket

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class QueueStats:
    depth: int
    unfinished_seconds: float  # summed over the keys being processed now
    longest_running_seconds: float


class QueueObserver(Protocol):
    """Hooks for the work-queue metrics."""

    def added(self) -> None: ...

    def started(self, waited_seconds: float) -> None: ...

    def finished(self, worked_seconds: float) -> None: ...

    def retried(self) -> None: ...


class NoObserver:
    def added(self) -> None:
        pass

    def started(self, waited_seconds: float) -> None:
        pass

    def finished(self, worked_seconds: float) -> None:
        pass

    def retried(self) -> None:
        pass


class WorkQueue(Generic[Key]):
    def __init__(self, observer: QueueObserver | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.observer: QueueObserver = observer or NoObserver()
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[Key] = deque()
        self._waiting: dict[Key, float] = {}  # key -> when it was queued (monotonic)
        self._processing: dict[Key, float] = {}  # key -> when processing started
        self._dirty: set[Key] = set()  # added while processing
        self._timers: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._seq = 0
        self._closed = False

    def add(self, key: Key) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._waiting:
            self._waiting[key] = self._clock()
            self._queue.append(key)
            self.observer.added()
            self._cond.notify()

    def add_at(self, key: Key, when: float) -> None:
        """Add key at time.time() == when (wall clock, as certificate times are)."""
        with self._cond:
            if when <= time.time():
                self._add_locked(key)
                return
            current = self._due.get(key)
            if current is not None and current <= when:
                return
            self._due[key] = when
            self._seq += 1
            heapq.heappush(self._timers, (when, self._seq, key))
            self._cond.notify_all()

    def add_after(self, key: Key, delay: float) -> None:
        self.add_at(key, time.time() + delay)

    def get(self) -> Key | None:
        """Block until a key is ready; None once the queue is closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                self._fire_timers_locked()
                if self._queue:
                    key = self._queue.popleft()
                    queued = self._waiting.pop(key)
                    now = self._clock()
                    self._processing[key] = now
                    self.observer.started(now - queued)
                    return key
                timeout = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.time())
                    timeout = min(timeout, 60.0)  # re-read the clock now and then: wall time can jump
                self._cond.wait(timeout)

    def _fire_timers_locked(self) -> None:
        now = time.time()
        while self._timers and self._timers[0][0] <= now:
            when, _, key = heapq.heappop(self._timers)
            if self._due.get(key) == when:
                del self._due[key]
                self._add_locked(key)

    def done(self, key: Key) -> None:
        with self._cond:
            started = self._processing.pop(key, None)
            if started is not None:
                self.observer.finished(self._clock() - started)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)

    def forget(self, key: Key) -> None:
        """Drop a pending timer (the object is gone)."""
        with self._cond:
            self._due.pop(key, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._processing)

    def stats(self) -> QueueStats:
        with self._cond:
            now = self._clock()
            running = [now - started for started in self._processing.values()]
            return QueueStats(len(self._queue), sum(running), max(running, default=0.0))


class RateLimiter(Generic[Key]):
    """How long to wait before retrying an item: the larger of its own exponential delay and
    the overall token bucket's (client-go's MaxOf(ItemExponentialFailure, Bucket) limiter)."""

    def __init__(self, base: float = 0.005, cap: float = 30.0, qps: float = 50.0, burst: int = 300,
                 clock: Callable[[], float] = time.monotonic):
        self.base, self.cap = base, cap
        self._bucket = TokenBucket(qps, burst, clock)
        self._lock = threading.Lock()
        self._failures: dict[Key, int] = {}

    def when(self, key: Key) -> float:
        """Count one more failure of key; the delay before it may be retried, in seconds."""
        with self._lock:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            item_delay = min(self.cap, self.base * 2 ** min(failures, 62))
        return max(item_delay, self._bucket.reserve())

    def failures(self, key: Key) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def forget(self, key: Key) -> None:
        """The item succeeded: its next failure starts from the base delay again."""
        with self._lock:
            self._failures.pop(key, None)
