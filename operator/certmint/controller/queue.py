"""A rate-free work queue of object keys, as Kubernetes controllers use.

A key is processed by at most one worker at a time; adding a key that is already
waiting does nothing, and adding one that is being processed runs it once more
afterwards. add_at() schedules a key for later (renewals, backoff), keeping only the
earliest time per key, so each certificate has at most one pending timer.
"""
from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from typing import Hashable

Key = Hashable


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[Key] = deque()
        self._waiting: set[Key] = set()
        self._processing: set[Key] = set()
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
            self._waiting.add(key)
            self._queue.append(key)
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

    def get(self) -> Key | None:
        """Block until a key is ready; None once the queue is closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                self._fire_timers_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._waiting.discard(key)
                    self._processing.add(key)
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
            self._processing.discard(key)
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

    def scheduled(self, key: Key) -> float | None:
        with self._cond:
            return self._due.get(key)
