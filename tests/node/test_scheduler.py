"""Latest-wins hand-off: bounded pending frames, newest restored, round-robin cameras."""

from __future__ import annotations

import threading
import time

import numpy as np

from vimpnet_ros.node.scheduler import Batch, InferenceWorker, PendingFrame


def _frame(camera: str, stamp: int) -> PendingFrame:
    return PendingFrame(camera, stamp, np.zeros((2, 2, 3), np.uint8), time.monotonic_ns())


def test_slow_processing_gets_only_recent_frames_and_counts_discards() -> None:
    batches: list[Batch] = []
    release = threading.Event()
    first_started = threading.Event()

    def process(batch: Batch) -> None:
        batches.append(batch)
        first_started.set()
        release.wait(5)

    worker = InferenceWorker(["a"], capacity=3, process=process)
    worker.start()
    worker.submit(_frame("a", 0))
    assert first_started.wait(5)
    for stamp in range(1, 11):  # arrive while the worker is busy
        worker.submit(_frame("a", stamp))
    assert worker.pending_count() == 3  # bounded
    release.set()
    deadline = time.monotonic() + 5
    while len(batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stop(5)
    assert [f.stamp_ns for f in batches[1].frames] == [8, 9, 10]  # newest last, older as context
    assert batches[1].discarded == 7


def test_cameras_take_turns() -> None:
    order: list[str] = []
    gate = threading.Event()
    worker = InferenceWorker(["a", "b"], capacity=2, process=lambda b: (order.append(b.camera), gate.wait(5)))
    for stamp in range(2):
        worker.submit(_frame("a", stamp))
        worker.submit(_frame("b", stamp))
    worker.start()
    gate.set()
    deadline = time.monotonic() + 5
    while len(order) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.submit(_frame("a", 5))
    while len(order) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stop(5)
    assert order == ["a", "b", "a"]


def test_stop_is_prompt_when_idle() -> None:
    worker = InferenceWorker(["a"], capacity=1, process=lambda b: None)
    worker.start()
    started = time.monotonic()
    assert worker.stop(2)
    assert time.monotonic() - started < 1.0
