"""What the node publishes for one frame, as plain data: the per-frame rules, written once.

:class:`FrameOutputs` holds the derained image in its published encoding, the raindrop
mask and streak planes, and the ``RainStatus`` fields. The node turns it into rclpy
messages and publishes; bag evaluation writes the same values into the output bag. So
the encoding policy, the mask quantisation and thresholding, the processing state and
the counters cannot differ between the two.

Rules:

- ``derained/image`` keeps the input's family: rgb/bgr stay, alpha is dropped, Bayer
  becomes bgr, mono stays mono, 16-bit stays 16-bit on the camera's own scale
  (``white_level``: a 12-bit camera's output stays within 0..4095).
- ``raindrop_mask``: mono8, the probability x 255, or 0/255 at ``mask_threshold`` > 0.
- ``streak_map``: mono8 (intensity x 255, clipped) or 32FC1 (raw intensity).
- A frame the model cannot be trusted on (NaN/Inf anywhere, an exception) is published
  as its input unchanged, with empty mask and streak planes, ``PROCESSING_FALLBACK``;
  gated or disabled frames likewise with ``PROCESSING_GATED``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: Encodings of the published derained image -> how (h, w, 3) RGB becomes it.
PUBLISHED_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "mono8", "rgb16", "bgr16", "mono16")


class Processing(enum.IntEnum):
    """How a published frame was produced; the values are ``RainStatus.PROCESSING_*`` (checked by a test)."""

    RESTORED = 0
    GATED = 1
    FALLBACK = 2


@dataclass(frozen=True)
class Plane:
    """An image ready for a ``sensor_msgs/Image``: ``pixels`` already in ``encoding``'s layout (h, w[, c])."""

    encoding: str
    pixels: np.ndarray


@dataclass(frozen=True)
class StatusFields:
    """The ``vimpnet_msgs/msg/RainStatus`` fields of one output frame (the header is the source frame's)."""

    processing: Processing
    raindrop_coverage: float
    streak_intensity: float
    rain_detected: bool
    inference_time: float  # [s]
    latency: float  # [s]; NaN when the frame's stamp is not plausible against the clock
    window_frames: int
    window_size: int
    processed_frames: int
    dropped_frames: int
    backend: str
    precision: str
    model: str


@dataclass(frozen=True)
class FrameOutputs:
    """Everything published for one source frame (``meta`` is what the caller pushed with it, e.g. its header)."""

    stamp_ns: int
    meta: Any
    image: Plane
    mask: Plane
    streak: Plane
    rgb8: np.ndarray  # (h, w, 3) uint8 RGB of the published image, for the JPEG output
    status: StatusFields


def image_plane(rgb: np.ndarray, encoding: str) -> Plane:
    """(h, w, 3) RGB (uint8, or uint16 for 16-bit encodings) -> the published image in ``encoding``."""
    if encoding not in PUBLISHED_ENCODINGS:
        raise ValueError(f"cannot publish images as '{encoding}'; use one of {', '.join(PUBLISHED_ENCODINGS)}")
    if encoding.startswith("rgb"):
        pixels = rgb
    elif encoding.startswith("bgr"):
        pixels = np.ascontiguousarray(rgb[:, :, ::-1])
    else:
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return Plane(encoding, np.ascontiguousarray(pixels))


def to_rgb8(rgb: np.ndarray, white_level: int) -> np.ndarray:
    """(h, w, 3) RGB on any scale -> uint8 (for JPEG), rounded."""
    if rgb.dtype == np.uint8:
        return rgb
    return np.clip(rgb.astype(np.float32) * (255.0 / white_level) + 0.5, 0, 255).astype(np.uint8)


def mask_plane(mask: np.ndarray, level: int, binary: bool) -> Plane:
    """The mono8 raindrop mask from the quantised probability plane: as is, or 0/255 at ``level``."""
    pixels = np.where(mask >= level, np.uint8(255), np.uint8(0)) if binary else mask
    return Plane("mono8", np.ascontiguousarray(pixels, dtype=np.uint8))


def streak_plane(streak: np.ndarray, streak_float: np.ndarray | None, encoding: str) -> Plane:
    """mono8 (the quantised plane) or 32FC1 (the raw intensity) streak map."""
    if encoding == "32FC1":
        if streak_float is None:
            raise ValueError("a 32FC1 streak map needs the engine's float streak plane (push with float_streak=True)")
        return Plane("32FC1", np.ascontiguousarray(streak_float, dtype=np.float32))
    return Plane("mono8", streak)


def empty_planes(height: int, width: int, streak_encoding: str) -> tuple[Plane, Plane]:
    """Zero mask and streak planes (fallback, gated and disabled frames)."""
    zeros = np.zeros((height, width), np.uint8)
    streak = np.zeros((height, width), np.float32) if streak_encoding == "32FC1" else zeros
    return Plane("mono8", zeros), Plane(streak_encoding, streak)
