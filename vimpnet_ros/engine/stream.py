"""One camera's stream: ring buffer of the last T frames, per-frame caches, resets, start-of-stream padding.

A :class:`Stream` is cheap; many share one :class:`~vimpnet_ros.engine.InferenceEngine`
(one model, one backend). It keeps, per frame, the network input tiles and lazily
the per-frame work that does not depend on the window: the frame's features and
the optical flows to its neighbours. Every window then reuses them, so each frame's
features and each neighbour pair's flows are computed once, not once per window.

Start of stream (fewer frames than the window needs): the missing positions are
filled by reflecting the available frames about the first (or, in :meth:`Stream.flush`,
the last) frame: with frames f0, f1, f2 and T=5 the ``latest`` window for f2 is
[f2, f1, f0, f1, f2]; with only f0 it is [f0] * 5. Reflection keeps real, distinct
frames (rain in different places) next to each other, as the reference does for
mirrored clips. ``latest`` returns a result from the first push on; ``center``
returns nothing for the first T//2 pushes (its delay) and then describes frame
k - T//2 at push k, so frame 0 is restored too (its left half reflected).

Resets (the buffer and caches are cleared, the new frame starts a new stream):
the frame size changes, the stamp goes backwards, the stamp jumps forward by more
than ``max_gap_s``, or :meth:`Stream.reset` is called. The reason is reported in
the next :class:`~vimpnet_ros.engine.FrameResult`.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from vimpnet_ros.engine.geometry import FrameGeometry, validate_frame
from vimpnet_ros.errors import EngineError, InputError

if TYPE_CHECKING:
    from vimpnet_ros.engine.engine import InferenceEngine
    from vimpnet_ros.engine.result import FrameResult

LOGGER = logging.getLogger(__name__)


def reflect_index(position: int, last: int) -> int:
    """Map a window position to a frame index in 0..last by mirror reflection at both ends.

    ``last`` is the index of the newest available frame; positions outside
    0..last bounce back (0, 1, ..., last, last-1, ..., 1, 0, 1, ...).
    """
    if last <= 0:
        return 0
    period = 2 * last
    folded = position % period
    return folded if folded <= last else period - folded


def window_indices(target: int, available: int, window: int, output_index: int) -> list[int]:
    """Indices (0 = oldest buffered frame) of the T frames forming the window that describes frame ``target``."""
    first = target - output_index
    return [reflect_index(first + k, available - 1) for k in range(window)]


@dataclass
class FrameSlot:
    """One buffered frame: its id in this stream, stamp, input, network input and cached per-frame work.

    ``frame`` is the (h, w, 3) uint8 input (shown where the network yields NaN);
    ``tiles`` (n_tiles, 3, ph, pw) float32 in [0, 1]; once computed, ``features``
    (n_tiles, c, ph/4, pw/4) and ``small`` (n_tiles, 3, ph/4, pw/4), the 0.25x frame SPyNet reads.
    """

    frame_id: int
    stamp_ns: int
    frame: np.ndarray
    tiles: torch.Tensor
    features: torch.Tensor | None = None
    small: torch.Tensor | None = None


class Stream:
    """Ring buffer and state machine of one camera; use :meth:`InferenceEngine.open_stream` to make one."""

    def __init__(self, engine: InferenceEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.config = engine.config
        self.geometry: FrameGeometry | None = None
        self.slots: deque[FrameSlot] = deque(maxlen=self.config.window_size)
        #: flow[(a, b)] = optical flow frame a -> frame b, (n_tiles, 2, ph/4, pw/4); only for buffered ids.
        self.flows: dict[tuple[int, int], torch.Tensor] = {}
        self.last_stamp_ns: int | None = None
        self.pending_reset: str | None = None
        self.frames_pushed = 0
        self.resets = 0
        self._next_id = 0

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, frames={len(self.slots)}, pushed={self.frames_pushed})"

    def reset(self, reason: str = "requested") -> None:
        """Forget all buffered frames and caches; the next result reports ``reason``."""
        had_frames = bool(self.slots)
        self.slots.clear()
        self.flows.clear()
        self.geometry = None
        self.last_stamp_ns = None
        if had_frames or reason == "requested":
            self.pending_reset = reason
            self.resets += 1
            LOGGER.info("stream %s reset: %s", self.name, reason)

    def _check_reset(self, frame: np.ndarray, stamp_ns: int) -> None:
        """Reset when the new frame cannot continue the buffered sequence."""
        if not self.slots:
            return
        height, width = frame.shape[:2]
        assert self.geometry is not None
        if self.geometry.input_size != (height, width):
            old_h, old_w = self.geometry.input_size
            self.reset(f"resolution changed from {old_w}x{old_h} to {width}x{height}")
        elif self.last_stamp_ns is not None and stamp_ns < self.last_stamp_ns:
            self.reset(f"timestamp went backwards by {(self.last_stamp_ns - stamp_ns) / 1e9:.3f} s")
        elif self.last_stamp_ns is not None and stamp_ns - self.last_stamp_ns > self.config.max_gap_s * 1e9:
            gap = (stamp_ns - self.last_stamp_ns) / 1e9
            self.reset(f"timestamp jumped by {gap:.3f} s (more than max_gap_s={self.config.max_gap_s})")

    def push(self, frame: np.ndarray, stamp_ns: int, restore: bool = True) -> FrameResult | None:
        """Buffer an (h, w, 3) uint8 RGB frame; return the result for the configured output frame.

        ``restore=False`` only keeps the frame as temporal context (for latest-wins
        skipping) and returns None, as does ``center`` mode during its first T//2 pushes.
        """
        frame = validate_frame(frame)
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int | np.integer):
            raise InputError(f"stamp_ns must be an integer number of nanoseconds; got {stamp_ns!r}")
        stamp_ns = int(stamp_ns)
        self._check_reset(frame, stamp_ns)
        if self.geometry is None:
            self.geometry = self.engine.geometry_for(frame.shape[0], frame.shape[1])
        tiles = self.geometry.to_tiles(frame, self.engine.device)
        self._append(FrameSlot(self._next_id, stamp_ns, frame, tiles))
        self._next_id += 1
        self.last_stamp_ns = stamp_ns
        self.frames_pushed += 1
        if not restore:
            return None
        target = len(self.slots) - 1 - self.config.delay_frames
        if target < 0:
            return None
        return self._restore(target)

    def flush(self) -> list[FrameResult]:
        """Results for the frames ``center`` mode has not described yet (end of stream), right side reflected.

        Returns an empty list in ``latest`` mode or when nothing is pending. The
        buffer is kept, so a stream may continue after a flush (then those frames
        are described again when the delay catches up with them).
        """
        delay = self.config.delay_frames
        count = len(self.slots)
        if delay == 0 or count == 0:
            return []
        first = max(0, count - delay)
        return [self._restore(target) for target in range(first, count)]

    def _append(self, slot: FrameSlot) -> None:
        """Add a frame; drop cached flows of the frame that falls out of the ring buffer."""
        if len(self.slots) == self.slots.maxlen:
            evicted = self.slots[0].frame_id
            self.flows = {key: flow for key, flow in self.flows.items() if evicted not in key}
        self.slots.append(slot)

    def window_for(self, target: int) -> list[FrameSlot]:
        """The T slots (start-of-stream positions reflected) whose window describes buffered frame ``target``."""
        if not 0 <= target < len(self.slots):
            raise EngineError(f"stream {self.name}: no buffered frame {target} (holding {len(self.slots)})")
        indices = window_indices(target, len(self.slots), self.config.window_size, self.config.output_index)
        return [self.slots[i] for i in indices]

    def _restore(self, target: int) -> FrameResult:
        """Run the window that describes buffered frame ``target`` (index into the ring buffer)."""
        window = self.window_for(target)
        reason, self.pending_reset = self.pending_reset, None
        return self.engine.restore_window(self, window, self.slots[target], reason)

    def cache_stats(self) -> dict[str, int]:
        """Sizes of the buffer and caches (for tests and diagnostics: they must stay bounded)."""
        return {
            "frames": len(self.slots),
            "features": sum(slot.features is not None for slot in self.slots),
            "flows": len(self.flows),
        }
