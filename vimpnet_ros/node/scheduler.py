"""Latest-wins hand-off from subscription callbacks to one inference worker thread.

Callbacks only decode and :meth:`InferenceWorker.submit`; at each turn the worker takes
everything that arrived for every camera: per camera, the older frames go into its
temporal ring buffer as context only and the newest is restored, and cameras of the
same size share each network call. So when inference is slower than the cameras, latency
stays bounded by about one inference, and memory is bounded by ``capacity`` frames per
camera (the frames that could still be in the temporal window); older pending frames are
discarded and counted.

Stopping is bounded: :meth:`InferenceWorker.stop` returns after ``timeout`` seconds even
if an inference is still running (a CPU inference at 1280x720 takes ~10 s here); the
thread is a daemon and, once told to stop, never calls back into the node again. A worker
started ``after`` such a stopped one holds its first turn until that inference has ended,
so the same streams never see two turns at once (a deactivate followed at once by an
activate).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vimpnet_ros.pipeline.camera import SourceFrame

_LOG = logging.getLogger(__name__)


@dataclass
class Batch:
    """One camera's frames for a turn, oldest first (only the last is restored); ``discarded`` fell out before."""

    camera: str
    frames: list[SourceFrame] = field(default_factory=list)
    discarded: int = 0


@dataclass
class _Slot:
    pending: deque[SourceFrame]
    discarded: int = 0


class InferenceWorker:
    """One thread running ``process(batches)`` with every camera's pending frames, until stopped."""

    def __init__(self, cameras: list[str], capacity: int, process: Callable[[list[Batch]], None]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._slots: dict[str, _Slot] = {name: _Slot(deque(maxlen=capacity)) for name in cameras}
        self._process = process
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._after: InferenceWorker | None = None

    def start(self, after: InferenceWorker | None = None) -> None:
        """Start the worker thread (idempotent); its first turn waits for ``after``'s turn still running."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            self._after = after
            self._thread = threading.Thread(target=self._run, name="vimpnet-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 3.0) -> bool:
        """Tell the thread to finish after its current turn; True if it ended within ``timeout`` seconds."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def running(self) -> bool:
        """True while the thread lives (after :meth:`stop`: while its last turn still runs)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; True once it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called: a turn still running must not publish."""
        return self._stop

    def submit(self, camera: str, frame: SourceFrame) -> None:
        """Queue a frame for its camera (never blocks; the oldest pending frame is discarded when full)."""
        with self._cond:
            slot = self._slots[camera]
            if len(slot.pending) == slot.pending.maxlen:
                slot.discarded += 1
            slot.pending.append(frame)
            self._cond.notify()

    def pending_count(self) -> int:
        """Frames waiting over all cameras (bounded by cameras x capacity)."""
        with self._cond:
            return sum(len(slot.pending) for slot in self._slots.values())

    def _take(self) -> list[Batch]:
        """Every camera's pending frames (caller holds the lock)."""
        batches = []
        for name, slot in self._slots.items():
            if slot.pending:
                batches.append(Batch(name, list(slot.pending), slot.discarded))
                slot.pending.clear()
                slot.discarded = 0
        return batches

    def _run(self) -> None:
        while self._after is not None:  # the fence: a predecessor's turn still runs on the same streams
            if self._stop:
                return
            if self._after.join(0.1):
                self._after = None
        while True:
            with self._cond:
                batches = self._take()
                while not batches and not self._stop:
                    self._cond.wait(0.5)
                    batches = self._take()
                if self._stop:
                    return
            try:
                self._process(batches)
            except Exception:  # the node must outlive a bad turn; process() reports its own errors
                _LOG.exception("inference worker: unexpected error in a turn for %s", [b.camera for b in batches])
