"""What one restored frame looks like to the node, bag evaluation and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Quantisation of the drop-mask and streak planes: probability / intensity x 255 (mono8).
PLANE_SCALE = 255


@dataclass(frozen=True)
class FrameResult:
    """The restored frame for ``stamp_ns`` plus the network's maps, all at the input's size, quantised on the device.

    ``image`` is (h, w, 3) RGB with the input's dtype and white level (uint8 0..255, or uint16
    0..``white_level`` for 16-bit input), its predicted drops filled (``EngineConfig.drop_fill``).
    ``drop_mask`` is (h, w) uint8, the raindrop probability x 255 rounded (so ``drop_mask >= 128``
    is p >= 0.5); ``streak_map`` (h, w) uint8,
    the rain-streak intensity clipped to [0, 1] x 255; ``streak_intensity`` the mean of the
    positive intensity over the frame (unclipped); ``streak_float`` the raw (h, w) float32
    intensity when the push asked for it (``float_streak=True``), else None.

    ``valid`` is False when the network produced NaN/Inf anywhere: the frame is not trusted,
    ``image`` is then the input unchanged and both planes are zero. ``window_frames`` is how
    many distinct real frames the window held (fewer than the window size at the start of a
    stream); ``reset_reason`` says why the stream was reset since the previous result;
    ``meta`` is whatever the caller pushed with the described frame (its header, say).
    """

    stamp_ns: int
    image: np.ndarray
    drop_mask: np.ndarray
    streak_map: np.ndarray
    streak_intensity: float
    inference_ms: float
    window_frames: int
    reset_reason: str | None
    backend: str
    precision: str
    valid: bool = True
    white_level: int = 255
    streak_float: np.ndarray | None = None
    meta: Any = None
