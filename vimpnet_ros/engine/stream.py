"""One camera's stream: ring buffer of the last T frames, per-frame caches, resets, start-of-stream padding.

A :class:`Stream` is cheap; many share one :class:`~vimpnet_ros.engine.InferenceEngine`
(one model, one backend). It keeps, per frame, the input, its network tiles and the
caller's ``meta``; its :class:`FeatureCache` holds the per-frame work that does not
depend on the window (each frame's features, each neighbour pair's flows), so each is
computed once, not once per window. The stream owns its buffer and cache; the engine
only reads and fills the cache through the cache's methods when it restores a window.

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

import itertools
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vimpnet_ros.engine.geometry import FrameGeometry, validate_frame
from vimpnet_ros.errors import EngineError, InputError

if TYPE_CHECKING:
    from vimpnet_ros.engine.config import EngineConfig
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
    """One buffered frame: its id in this stream, stamp, input, white level, network tiles and the caller's meta.

    ``frame`` is the (h, w, 3) uint8/uint16 input; ``tiles`` (n_tiles, 3, ph, pw) float32 in [0, 1]
    on the engine's device.
    """

    frame_id: int
    stamp_ns: int
    frame: np.ndarray
    white_level: int
    tiles: torch.Tensor
    meta: Any = None


class FeatureCache:
    """Per-frame features and per-pair flows of the buffered frames (what windows share).

    ``features[id]`` = (features (n_tiles, c, ph/4, pw/4), small (n_tiles, 3, ph/4, pw/4), the 0.25x frame
    SPyNet reads); ``flows[(a, b)]`` = flow frame a -> frame b, (n_tiles, 2, ph/4, pw/4). Entries of a
    frame that left the ring buffer are dropped with it, so the cache holds at most T frames and their pairs.
    """

    def __init__(self) -> None:
        self.features: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.flows: dict[tuple[int, int], torch.Tensor] = {}

    def missing_features(self, window: list[FrameSlot]) -> list[FrameSlot]:
        """Distinct slots of ``window`` whose features are not computed yet (window order)."""
        unique = {slot.frame_id: slot for slot in window}
        return [slot for frame_id, slot in unique.items() if frame_id not in self.features]

    def missing_pairs(self, window: list[FrameSlot]) -> list[tuple[FrameSlot, FrameSlot]]:
        """Neighbour pairs of ``window`` whose flows are not computed yet (each pair once)."""
        pairs: dict[tuple[int, int], tuple[FrameSlot, FrameSlot]] = {}
        for first, second in itertools.pairwise(window):
            key = (first.frame_id, second.frame_id)
            if key not in self.flows and key not in pairs and key[::-1] not in pairs:  # one pair gives both ways
                pairs[key] = (first, second)
        return list(pairs.values())

    def store_features(self, slot: FrameSlot, features: torch.Tensor, small: torch.Tensor) -> None:
        """Keep a frame's features and 0.25x frame."""
        self.features[slot.frame_id] = (features, small)

    def small(self, slot: FrameSlot) -> torch.Tensor:
        """The 0.25x frame of a slot whose features are stored."""
        return self.features[slot.frame_id][1]

    def store_flows(self, first: FrameSlot, second: FrameSlot, forward: torch.Tensor, backward: torch.Tensor) -> None:
        """Keep the flows first -> second (``forward``) and second -> first (``backward``)."""
        self.flows[(first.frame_id, second.frame_id)] = forward
        self.flows[(second.frame_id, first.frame_id)] = backward

    def window_inputs(self, window: list[FrameSlot]) -> tuple[torch.Tensor, ...]:
        """The window step's inputs: lqs (n, t, 3, h, w), feats (n, t, c, h/4, w/4), flows (n, t-1, 2, ..) x2."""
        pairs = list(itertools.pairwise(window))
        return (
            torch.stack([slot.tiles for slot in window], dim=1),
            torch.stack([self.features[slot.frame_id][0] for slot in window], dim=1),
            torch.stack([self.flows[(a.frame_id, b.frame_id)] for a, b in pairs], dim=1),
            torch.stack([self.flows[(b.frame_id, a.frame_id)] for a, b in pairs], dim=1),
        )

    def evict(self, frame_id: int) -> None:
        """Forget a frame that left the ring buffer."""
        self.features.pop(frame_id, None)
        self.flows = {key: flow for key, flow in self.flows.items() if frame_id not in key}

    def clear(self) -> None:
        """Forget everything (reset, or a reload that changed the tiles)."""
        self.features.clear()
        self.flows.clear()


class Stream:
    """Ring buffer and state machine of one camera; use :meth:`InferenceEngine.open_stream` to make one."""

    def __init__(self, engine: InferenceEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.geometry: FrameGeometry | None = None
        self.slots: deque[FrameSlot] = deque(maxlen=engine.config.window_size)
        self.cache = FeatureCache()
        self.last_stamp_ns: int | None = None
        self.pending_reset: str | None = None
        self.frames_pushed = 0
        self.resets = 0
        self._next_id = 0

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, frames={len(self.slots)}, pushed={self.frames_pushed})"

    @property
    def config(self) -> EngineConfig:
        """The engine's current config (it may change when the engine degrades after an out-of-memory error)."""
        return self.engine.config

    def reset(self, reason: str = "requested") -> None:
        """Forget all buffered frames and caches; the next result reports ``reason``."""
        had_frames = bool(self.slots)
        self.slots.clear()
        self.cache.clear()
        self.geometry = None
        self.last_stamp_ns = None
        if had_frames or reason == "requested":
            self.pending_reset = reason
            self.resets += 1
            LOGGER.info("stream %s reset: %s", self.name, reason)

    def rebuild(self) -> None:
        """Re-tile the buffered frames for the engine's current config and device (after a reload); keeps them all."""
        self.cache.clear()
        self.geometry = None
        slots = list(self.slots)
        self.slots = deque(maxlen=self.config.window_size)
        for slot in slots[-self.config.window_size :]:
            geometry = self._geometry_for(slot.frame)
            slot.tiles = geometry.to_tiles(self.engine.upload(slot.frame), slot.white_level)
            self.slots.append(slot)

    def _check_reset(self, frame: np.ndarray, stamp_ns: int) -> None:
        """Reset when the new frame cannot continue the buffered sequence."""
        if not self.slots:
            return
        height, width = frame.shape[:2]
        assert self.geometry is not None
        if self.geometry.input_size != (height, width):
            old_h, old_w = self.geometry.input_size
            self.reset(f"resolution changed from {old_w}x{old_h} to {width}x{height}")
        elif self.slots[-1].frame.dtype != frame.dtype:
            self.reset(f"bit depth changed from {self.slots[-1].frame.dtype} to {frame.dtype}")
        elif self.last_stamp_ns is not None and stamp_ns < self.last_stamp_ns:
            self.reset(f"timestamp went backwards by {(self.last_stamp_ns - stamp_ns) / 1e9:.3f} s")
        elif self.last_stamp_ns is not None and stamp_ns - self.last_stamp_ns > self.config.max_gap_s * 1e9:
            gap = (stamp_ns - self.last_stamp_ns) / 1e9
            self.reset(f"timestamp jumped by {gap:.3f} s (more than max_gap_s={self.config.max_gap_s})")

    def _geometry_for(self, frame: np.ndarray) -> FrameGeometry:
        if self.geometry is None:
            self.geometry = self.engine.geometry_for(frame.shape[0], frame.shape[1])
        return self.geometry

    def admit(self, frame: np.ndarray, stamp_ns: int, meta: Any = None, white_level: int | None = None) -> int | None:
        """Buffer a frame (checks, resets, upload, tiling); return the buffer index of the frame to describe now.

        None while ``center`` mode is still filling its first half window. Used by :meth:`push`
        and by :meth:`InferenceEngine.push_many`, which restores several streams' frames in one batch.
        """
        frame, level = validate_frame(frame, white_level)
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int | np.integer):
            raise InputError(f"stamp_ns must be an integer number of nanoseconds; got {stamp_ns!r}")
        stamp_ns = int(stamp_ns)
        self.engine.require_loaded()
        self._check_reset(frame, stamp_ns)
        tiles = self._geometry_for(frame).to_tiles(self.engine.upload(frame), level)
        if len(self.slots) == self.slots.maxlen:
            self.cache.evict(self.slots[0].frame_id)
        self.slots.append(FrameSlot(self._next_id, stamp_ns, frame, level, tiles, meta))
        self._next_id += 1
        self.last_stamp_ns = stamp_ns
        self.frames_pushed += 1
        target = len(self.slots) - 1 - self.config.delay_frames
        return target if target >= 0 else None

    def push(
        self,
        frame: np.ndarray,
        stamp_ns: int,
        restore: bool = True,
        meta: Any = None,
        white_level: int | None = None,
        float_streak: bool = False,
    ) -> FrameResult | None:
        """Buffer an (h, w, 3) RGB frame; return the result for the configured output frame.

        ``meta`` travels with the frame and comes back on the result that describes it
        (``FrameResult.meta``). ``white_level`` is the full-scale value of a uint16 frame
        (e.g. 4095 for 12 bits). ``restore=False`` only keeps the frame as temporal context
        (for latest-wins skipping) and returns None, as does ``center`` mode during its first
        T//2 pushes. ``float_streak`` adds the raw streak intensity to the result.
        """
        target = self.admit(frame, stamp_ns, meta, white_level)
        if not restore or target is None:
            return None
        return self.engine.restore([(self, target)], float_streak)[0]

    def flush(self, float_streak: bool = False) -> list[FrameResult]:
        """Results for the frames ``center`` mode has not described yet (end of stream), right side reflected.

        Returns an empty list in ``latest`` mode or when nothing is pending. The
        buffer is kept, so a stream may continue after a flush (then those frames
        are described again when the delay catches up with them).
        """
        delay = self.config.delay_frames
        count = len(self.slots)
        if delay == 0 or count == 0:
            return []
        return [
            self.engine.restore([(self, target)], float_streak)[0] for target in range(max(0, count - delay), count)
        ]

    def window_for(self, target: int) -> list[FrameSlot]:
        """The T slots (start-of-stream positions reflected) whose window describes buffered frame ``target``."""
        if not 0 <= target < len(self.slots):
            raise EngineError(f"stream {self.name}: no buffered frame {target} (holding {len(self.slots)})")
        indices = window_indices(target, len(self.slots), self.config.window_size, self.config.output_index)
        return [self.slots[i] for i in indices]

    def take_reset_reason(self) -> str | None:
        """The pending reset reason, reported once (by the next result)."""
        reason, self.pending_reset = self.pending_reset, None
        return reason

    def cache_stats(self) -> dict[str, int]:
        """Sizes of the buffer and caches (for tests and diagnostics: they must stay bounded)."""
        return {"frames": len(self.slots), "features": len(self.cache.features), "flows": len(self.cache.flows)}
