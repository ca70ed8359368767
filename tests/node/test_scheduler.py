"""Latest-wins hand-off: bounded pending frames, newest restored, every camera in one turn, bounded stop."""

from __future__ import annotations

import threading
import time

import numpy as np

from vimpnet_ros.node.scheduler import Batch, InferenceWorker
from vimpnet_ros.pipeline.camera import SourceFrame
from vimpnet_ros.pipeline.decode import DecodedFrame


def _frame(stamp: int) -> SourceFrame:
    return SourceFrame(DecodedFrame(np.zeros((2, 2, 3), np.uint8), 255, "rgb8"), stamp, header=None)


def _wait(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_slow_processing_gets_only_recent_frames_and_counts_discards() -> None:
    turns: list[list[Batch]] = []
    release = threading.Event()
    first_started = threading.Event()

    def process(batches: list[Batch]) -> None:
        turns.append(batches)
        first_started.set()
        release.wait(5)

    worker = InferenceWorker(["a"], capacity=3, process=process)
    worker.start()
    worker.submit("a", _frame(0))
    assert first_started.wait(5)
    for stamp in range(1, 11):  # arrive while the worker is busy
        worker.submit("a", _frame(stamp))
    assert worker.pending_count() == 3  # bounded
    release.set()
    _wait(lambda: len(turns) >= 2)
    assert worker.stop(5)
    assert [f.stamp_ns for f in turns[1][0].frames] == [8, 9, 10]  # newest last, older as context
    assert turns[1][0].discarded == 7


def test_every_camera_with_frames_is_in_the_same_turn() -> None:
    turns: list[list[str]] = []
    worker = InferenceWorker(["a", "b", "c"], capacity=2, process=lambda bs: turns.append([b.camera for b in bs]))
    for stamp in range(2):
        worker.submit("a", _frame(stamp))
        worker.submit("b", _frame(stamp))
    worker.start()
    _wait(lambda: len(turns) >= 1)
    worker.submit("c", _frame(5))
    _wait(lambda: len(turns) >= 2)
    assert worker.stop(5)
    assert turns == [["a", "b"], ["c"]]


def test_stop_is_prompt_when_idle_and_bounded_when_busy() -> None:
    worker = InferenceWorker(["a"], capacity=1, process=lambda b: None)
    worker.start()
    started = time.monotonic()
    assert worker.stop(2)
    assert time.monotonic() - started < 1.5  # woken at once, not after its 2-s timeout (margin for a loaded machine)
    busy, release = threading.Event(), threading.Event()
    worker = InferenceWorker(["a"], capacity=1, process=lambda b: (busy.set(), release.wait(30)))
    worker.start()
    worker.submit("a", _frame(0))
    assert busy.wait(5)
    started = time.monotonic()
    assert not worker.stop(0.5) and worker.stopping  # a long inference is abandoned, not waited for
    assert time.monotonic() - started < 5.0 and worker.running()  # bounded by the timeout, not the 30-s turn
    release.set()
    assert worker.join(5)


def test_a_worker_started_after_an_abandoned_turn_waits_for_it() -> None:
    """Deactivate then activate mid-inference: the new worker's first turn starts only once the old one ended."""
    log: list[str] = []
    busy, release = threading.Event(), threading.Event()

    def old_turn(batches: list[Batch]) -> None:
        log.append("old start")
        busy.set()
        release.wait(30)
        log.append("old end")

    old = InferenceWorker(["a"], capacity=2, process=old_turn)
    old.start()
    old.submit("a", _frame(0))
    assert busy.wait(5)
    assert not old.stop(0.2)  # abandoned mid-turn
    new = InferenceWorker(["a"], capacity=2, process=lambda b: log.append(f"new {b[0].frames[-1].stamp_ns}"))
    new.start(after=old)
    for stamp in range(1, 4):
        new.submit("a", _frame(stamp))
    time.sleep(0.5)
    assert log == ["old start"] and new.pending_count() == 2  # held (latest wins meanwhile), not run
    release.set()
    _wait(lambda: len(log) >= 3)
    assert log == ["old start", "old end", "new 3"]
    assert new.stop(5)
    # stopping a worker still waiting for its predecessor is prompt, and it never runs a turn
    busy.clear(), release.clear()
    log.clear()
    old = InferenceWorker(["a"], capacity=2, process=old_turn)
    old.start()
    old.submit("a", _frame(0))
    assert busy.wait(5) and not old.stop(0.2)
    waiting = InferenceWorker(["a"], capacity=2, process=lambda b: log.append("waiting ran"))
    waiting.start(after=old)
    waiting.submit("a", _frame(1))
    assert waiting.stop(2) and not waiting.running()
    release.set()
    assert old.join(5) and log == ["old start", "old end"]
