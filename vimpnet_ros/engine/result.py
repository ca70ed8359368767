"""What one restored frame looks like to the node, bag evaluation and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameResult:
    """The restored frame for ``stamp_ns`` plus the network's maps, all at the input's size.

    ``image`` is (h, w, 3) uint8 RGB, ``drop_mask`` (h, w) float32 in [0, 1] (raindrop
    probability), ``streak_map`` (h, w) float32 (rain-streak intensity, unbounded).
    ``window_frames`` is how many distinct real frames the window held (less than the
    window size at the start of a stream, where frames are reflected; see
    :mod:`vimpnet_ros.engine.stream`). ``reset_reason`` says why the stream was reset
    since the previous result, if it was. ``valid`` is False when the network produced
    NaN/Inf (those pixels are replaced by the input so the image stays usable).
    """

    stamp_ns: int
    image: np.ndarray
    drop_mask: np.ndarray
    streak_map: np.ndarray
    inference_ms: float
    window_frames: int
    reset_reason: str | None
    backend: str
    precision: str
    valid: bool = True
