"""Latest-wins hand-off from subscription callbacks to one inference worker thread.

Callbacks only decode and :meth:`InferenceWorker.submit`; the worker takes, per
camera, everything that arrived since its last turn: the older frames go into the
camera's temporal ring buffer as context only, the newest is restored. So when
inference is slower than the cameras, latency stays bounded by about one
inference per camera, and memory is bounded by ``capacity`` frames per camera
(the frames that could still be in the temporal window); older pending frames are
discarded and counted. One worker serves all cameras in turn so they share one
loaded model.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_LOG = logging.getLogger(__name__)


@dataclass
class PendingFrame:
    """A decoded frame waiting for the worker; ``rgb`` is (h, w, 3) uint8."""

    camera: str
    stamp_ns: int
    rgb: np.ndarray
    received_ns: int  # monotonic clock at the callback, for queueing delay
    meta: Any = None  # header, camera_info, output encoding: opaque to the scheduler


@dataclass
class _Slot:
    pending: deque[PendingFrame]
    discarded: int = 0


@dataclass
class Batch:
    """What the worker hands to the processing function for one camera's turn.

    ``frames`` are oldest first; only the last must be restored. ``discarded``
    counts frames that fell out of the pending buffer before the worker came.
    """

    camera: str
    frames: list[PendingFrame] = field(default_factory=list)
    discarded: int = 0


class InferenceWorker:
    """One thread running ``process(batch)`` for each camera with pending frames, round-robin."""

    def __init__(self, cameras: list[str], capacity: int, process: Callable[[Batch], None]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._slots: dict[str, _Slot] = {name: _Slot(deque(maxlen=capacity)) for name in cameras}
        self._order = list(cameras)
        self._next = 0
        self._process = process
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._busy = False

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="vimpnet-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 3.0) -> bool:
        """Ask the thread to finish after its current batch; True if it ended within ``timeout`` seconds."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def submit(self, frame: PendingFrame) -> None:
        """Queue a frame for its camera (never blocks; the oldest pending frame is discarded when full)."""
        with self._cond:
            slot = self._slots[frame.camera]
            if len(slot.pending) == slot.pending.maxlen:
                slot.discarded += 1
            slot.pending.append(frame)
            self._cond.notify()

    def clear(self, camera: str) -> None:
        """Forget a camera's pending frames (its stream was reset)."""
        with self._cond:
            self._slots[camera].pending.clear()

    def pending_count(self) -> int:
        """Frames waiting over all cameras (bounded by cameras x capacity)."""
        with self._cond:
            return sum(len(slot.pending) for slot in self._slots.values())

    @property
    def busy(self) -> bool:
        """True while a batch is being processed."""
        return self._busy

    def _take(self) -> Batch | None:
        """The next camera's pending frames in round-robin order, or None (caller holds the lock)."""
        for offset in range(len(self._order)):
            index = (self._next + offset) % len(self._order)
            name = self._order[index]
            slot = self._slots[name]
            if slot.pending:
                self._next = (index + 1) % len(self._order)
                batch = Batch(name, list(slot.pending), slot.discarded)
                slot.pending.clear()
                slot.discarded = 0
                return batch
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
                while batch is None and not self._stop:
                    self._cond.wait(0.5)
                    batch = self._take()
                if self._stop:
                    return
                self._busy = True
            try:
                self._process(batch)
            except Exception:  # the node must outlive a bad batch; process() reports its own errors
                _LOG.exception("inference worker: unexpected error while processing camera %s", batch.camera)
            finally:
                self._busy = False
