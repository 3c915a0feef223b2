"""Events are posted in the background at a bounded pace, and dropped (counted) past the backlog."""
from __future__ import annotations

import threading

from certmint.kube.resources import EventRecorder


class RecordingApi:
    """Stands in for the API server's events endpoint: records what was posted."""

    def __init__(self) -> None:
        self.posted: list[dict] = []
        self.gate = threading.Event()

    def create(self, path: str, body: dict) -> dict:
        self.gate.wait(10)
        self.posted.append(body)
        return body


def certificate(name: str) -> dict:
    return {"apiVersion": "certmint.io/v1", "kind": "Certificate", "metadata": {"name": name, "namespace": "a"}}


def test_events_past_the_burst_wait_for_tokens_and_all_are_posted_in_order():
    api = RecordingApi()
    api.gate.set()
    waits: list[float] = []
    recorder = EventRecorder(api, qps=100.0, burst=2, sleep=lambda s: waits.append(s))  # type: ignore[arg-type]
    for i in range(5):
        recorder.record(certificate(f"c{i}"), "Normal", "Issued", "issued")
    recorder.flush()
    assert [e["involvedObject"]["name"] for e in api.posted] == [f"c{i}" for i in range(5)]
    assert len(waits) == 3 and all(w > 0 for w in waits)  # the burst went at once, the rest waited
    assert recorder.pending() == 0


def test_a_full_backlog_drops_new_events_and_counts_them():
    api = RecordingApi()  # the gate stays closed: nothing is posted while the backlog fills
    dropped: list[int] = []
    recorder = EventRecorder(api, backlog=3, on_dropped=lambda: dropped.append(1))  # type: ignore[arg-type]
    for i in range(10):
        recorder.record(certificate(f"c{i}"), "Normal", "Issued", "issued")
    assert len(dropped) >= 6
    assert recorder.pending() <= 3
    api.gate.set()
    recorder.flush()
