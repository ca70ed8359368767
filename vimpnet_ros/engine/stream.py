"""One camera's stream: ring buffer of the last T frames, per-frame caches, resets, start-of-stream padding.

A :class:`Stream` is cheap and passive: a ring buffer and its cache, read through public
methods; many share one :class:`~vimpnet_ros.engine.InferenceEngine` (one model, one
backend), which puts frames in (:meth:`InferenceEngine.admit`, ``push``, ``flush``) and fills
the cache when it restores a window. The stream never calls the engine. It keeps, per frame,
the input, its network tiles and the caller's ``meta``; its :class:`FeatureCache` holds the
per-frame work that does not depend on the window (each frame's features, each neighbour
pair's flows), so each is computed once, not once per window.

Start of stream (fewer frames than the window needs): the missing positions are
filled by reflecting the available frames about the first (or, in
:meth:`InferenceEngine.flush`, the last) frame: with frames f0, f1, f2 and T=5 the ``latest`` window for f2 is
[f2, f1, f0, f1, f2]; with only f0 it is [f0] * 5. Reflection keeps real, distinct
frames (rain in different places) next to each other, as the reference does for
mirrored clips. ``latest`` returns a result from the first push on; ``center``
returns nothing for the first T//2 pushes (its delay) and then describes frame
k - T//2 at push k, so frame 0 is restored too (its left half reflected).

Resets (the buffer and caches are cleared, the new frame starts a new stream):
the frame size changes, the stamp goes backwards, the stamp jumps forward by more
than ``max_gap_s`` (:meth:`Stream.continuity_break`), or :meth:`Stream.reset` is called. The reason is reported in
the next :class:`~vimpnet_ros.engine.FrameResult`. A jump the caller made itself by skipping frames is
not a reset: :meth:`Stream.supersede` restarts the buffer silently.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vimpnet_ros.engine.drop_history import DropHistory
from vimpnet_ros.errors import EngineError

if TYPE_CHECKING:
    from vimpnet_ros.engine.geometry import FrameGeometry

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
    """Ring buffer and feature cache of one camera; make one with :meth:`InferenceEngine.open_stream`."""

    def __init__(self, name: str, window_size: int, output_index: int, drop_fill_frames: int = 0) -> None:
        self.name = name
        #: Features and flows of the buffered frames (the engine fills it while restoring).
        self.cache = FeatureCache()
        #: The last restored frames, which the engine fills the next frame's drops from.
        self.drop_history = DropHistory(drop_fill_frames)
        self._window_size = window_size
        self._output_index = output_index
        self._slots: deque[FrameSlot] = deque(maxlen=window_size)
        self._geometry: FrameGeometry | None = None
        self._last_stamp_ns: int | None = None
        self._pending_reset: str | None = None
        self._frames_pushed = 0
        self._resets = 0
        self._next_id = 0

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, frames={len(self._slots)}, pushed={self._frames_pushed})"

    # -- reading ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many frames are buffered (at most the window size)."""
        return len(self._slots)

    @property
    def geometry(self) -> FrameGeometry | None:
        """The tiling plan of the buffered frames (None while empty)."""
        return self._geometry

    @property
    def newest_stamp_ns(self) -> int | None:
        """Stamp of the newest buffered frame (None after a reset)."""
        return self._last_stamp_ns

    @property
    def frames_pushed(self) -> int:
        """Frames put in since the stream was opened."""
        return self._frames_pushed

    @property
    def resets(self) -> int:
        """How often the buffer was reset."""
        return self._resets

    def slot(self, index: int) -> FrameSlot:
        """Buffered frame ``index`` (0 = oldest; what ``admit`` returned)."""
        return self._slots[index]

    def slots(self) -> list[FrameSlot]:
        """The buffered frames, oldest first."""
        return list(self._slots)

    def window_for(self, target: int) -> list[FrameSlot]:
        """The T slots (start-of-stream positions reflected) whose window describes buffered frame ``target``."""
        if not 0 <= target < len(self._slots):
            raise EngineError(f"stream {self.name}: no buffered frame {target} (holding {len(self._slots)})")
        indices = window_indices(target, len(self._slots), self._window_size, self._output_index)
        return [self._slots[i] for i in indices]

    def continuity_break(self, frame: np.ndarray, stamp_ns: int, max_gap_s: float) -> str | None:
        """Why ``frame`` cannot continue the buffered sequence (the reset reason), or None when it can."""
        if not self._slots:
            return None
        height, width = frame.shape[:2]
        assert self._geometry is not None
        if self._geometry.input_size != (height, width):
            old_h, old_w = self._geometry.input_size
            return f"resolution changed from {old_w}x{old_h} to {width}x{height}"
        if self._slots[-1].frame.dtype != frame.dtype:
            return f"bit depth changed from {self._slots[-1].frame.dtype} to {frame.dtype}"
        last = self._last_stamp_ns
        if last is not None and stamp_ns < last:
            return f"timestamp went backwards by {(last - stamp_ns) / 1e9:.3f} s"
        if last is not None and stamp_ns - last > max_gap_s * 1e9:
            return f"timestamp jumped by {(stamp_ns - last) / 1e9:.3f} s (more than max_gap_s={max_gap_s})"
        return None

    def cache_stats(self) -> dict[str, int]:
        """Sizes of the buffer and caches (for tests and diagnostics: they must stay bounded)."""
        return {"frames": len(self._slots), "features": len(self.cache.features), "flows": len(self.cache.flows)}

    # -- changing (the engine puts frames in; anyone may reset) ------------------------------------------

    def reset(self, reason: str = "requested") -> None:
        """Forget all buffered frames and caches; the next result reports ``reason``."""
        had_frames = bool(self._slots)
        self._slots.clear()
        self.cache.clear()
        self.drop_history.clear()
        self._geometry = None
        self._last_stamp_ns = None
        if had_frames or reason == "requested":
            self._pending_reset = reason
            self._resets += 1
            LOGGER.info("stream %s reset: %s", self.name, reason)

    def supersede(self, stamp_ns: int, max_gap_s: float) -> bool:
        """Drop the buffered frames, with no reset reported, when ``stamp_ns`` is more than ``max_gap_s`` after them.

        For a caller that skipped frames itself (latest wins under overload): that jump is its own
        doing, not a gap in the camera, so the buffer restarts from the frames that follow. Returns
        whether frames were dropped.
        """
        last = self._last_stamp_ns
        if last is None or not self._slots or stamp_ns - last <= max_gap_s * 1e9:
            return False
        self._slots.clear()
        self.cache.clear()
        self.drop_history.clear()
        self._geometry = None
        self._last_stamp_ns = None
        return True

    def take_reset_reason(self) -> str | None:
        """The pending reset reason, reported once (by the next result)."""
        reason, self._pending_reset = self._pending_reset, None
        return reason

    def append(self, frame: np.ndarray, stamp_ns: int, white_level: int, tiles: torch.Tensor, meta: Any,
               geometry: FrameGeometry) -> int:  # fmt: skip
        """Buffer a checked frame and its tiles (the oldest leaves, with its cache entries); returns its index."""
        if len(self._slots) == self._slots.maxlen:
            self.cache.evict(self._slots[0].frame_id)
        self._slots.append(FrameSlot(self._next_id, stamp_ns, frame, white_level, tiles, meta))
        self._geometry = geometry
        self._next_id += 1
        self._last_stamp_ns = stamp_ns
        self._frames_pushed += 1
        return len(self._slots) - 1

    def relayout(self, window_size: int, output_index: int, geometry: FrameGeometry | None,
                 slots: list[FrameSlot]) -> None:  # fmt: skip
        """Take re-tiled ``slots`` (after the engine reloaded: new tiles, device or window); the cache starts over."""
        self.cache.clear()
        self._window_size, self._output_index = window_size, output_index
        self._slots = deque(slots[-window_size:], maxlen=window_size)
        self._geometry = geometry if self._slots else None
