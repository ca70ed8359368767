"""Drop fill from the stream's past: a drop's pixels averaged with where earlier frames saw the scene it hides.

A raindrop sits on the glass while the scene moves behind it, so the road a drop covers now was
in view a few frames ago, elsewhere in the frame. :class:`DropHistory` keeps a camera's last
restored frames (each as the engine made it, after the spatial drop fill) with their drop masks.
For a new frame with drops it estimates, per kept frame, where each pixel was then (dense optical
flow, OpenCV's DIS, Kroeger et al. 2016; inside the drops, where the flow follows the drop and
not the scene, the flow is filled from around them), and takes the kept frame's pixel there when
that spot was clear of drops. A kept frame fills a drop only where it also matches the new frame
on a ring of clear pixels around the drop (a mean difference of at most :data:`RING_TOLERANCE`
of the white level): a frame whose flow is wrong there (a passing vehicle, a cut) does not fill
it. The mean of what the accepted frames saw is blended in at the engine's ``drop_fill`` weight,
as the spatial fill is. Only earlier frames are read, so a result never waits for a later frame;
a reset forgets them.

Why not the network: its window is five frames, and a drop that stays put hides the same road
in all of them; the road behind it comes into view in frames further back, which the window
never holds. Measured effect and how the levels were chosen: docs/training.md ("Drop fill from
earlier frames").

Costs are bounded before they are paid: frames with more drop pixels than the spatial fill
accepts (:func:`~vimpnet_ros.engine.drop_fill.drop_region`) are left alone, and everything runs
on a copy of the frames at most :data:`WORK_MAX_SIDE` on the longer side (kept frames are stored
so); on larger frames the change is scaled back up onto the drops' pixels.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from vimpnet_ros.engine.drop_fill import drop_region
from vimpnet_ros.engine.result import PLANE_SCALE
from vimpnet_ros.model.arch_util import fill_from_surroundings

LOGGER = logging.getLogger(__name__)

#: A pixel whose drop probability reaches this is filled from earlier frames, and is not read as the scene there.
HISTORY_THRESHOLD = 0.2
#: The same level on the quantised drop mask (probability x 255, rounded half up).
HISTORY_LEVEL = math.ceil(HISTORY_THRESHOLD * PLANE_SCALE)
#: An earlier frame fills a drop only if, on the clear ring around the drop, it differs from the new frame by at most
#: this fraction of the white level on average (14 grey levels of 255).
RING_TOLERANCE = 14.0 / 255.0
#: The ring: the pixels within this many pixels of the drop (grown by one), outside it.
RING_WIDTH = 3
#: The flow and the fill run on copies of the frames at most this many pixels on the longer side.
WORK_MAX_SIDE = 512
#: Inside the drops grown by this many pixels, the flow is filled from around them.
FLOW_HOLE_MARGIN = 2
#: The flow is estimated on copies of the working frames at this scale (at full scale it costs twice the time
#: and finds the same to 0.01-0.02 dB inside the drops: docs/training.md, "Drop fill from earlier frames").
FLOW_SCALE = 0.5
#: Frames whose flow copy has a shorter side are not filled from earlier ones (DIS's 8 px patches at its finest
#: scale, half the copy's size, need at least this; smaller copies make OpenCV refuse them).
MIN_FLOW_SIDE = 16
#: Points sampled per row of the maps :func:`_sample` hands to cv2.remap (whose maps must have under 32767 rows).
SAMPLE_ROW = 1024


@dataclass(frozen=True)
class _Frame:
    """One frame at the working size: the image (its own dtype, as the engine returned it before this fill), its
    gray 8-bit copy at :data:`FLOW_SCALE` for the flow, and its quantised drop mask."""

    image: np.ndarray
    gray: np.ndarray
    drop_mask: np.ndarray


class DropHistory:
    """The last ``frames`` restored frames of one stream, and the fill of a new frame's drops from them."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self._kept: deque[_Frame] = deque(maxlen=max(frames, 1))
        self._size: tuple[int, ...] | None = None
        self._flow = _flow_estimator() if frames > 0 else None

    def __len__(self) -> int:
        return len(self._kept)

    def clear(self) -> None:
        """Forget the kept frames (the stream was reset)."""
        self._kept.clear()

    def fill(self, image: np.ndarray, drop_mask: np.ndarray, blend: float, white_level: int = 255) -> np.ndarray:
        """``image`` (h, w, 3) uint8/uint16 with its drops blended towards the earlier frames' view; then kept.

        ``drop_mask`` (h, w) uint8 is the probability x 255. Returns ``image`` itself, filled in place (the
        engine's planes are the caller's own). A frame of another size than the kept ones clears them first.
        """
        if self._flow is None:
            return image
        if self._size != image.shape:
            self.clear()
            self._size = image.shape  # the kept frames are working copies: the frame's own size is kept apart
        frame = _working_copy(image, drop_mask, white_level)
        if min(frame.gray.shape) < MIN_FLOW_SIDE:
            return image
        if blend > 0.0 and self._kept and drop_region(drop_mask, HISTORY_LEVEL) is not None:
            try:
                change = self._change(frame, white_level)
                if change is not None:
                    ys, xs = np.nonzero(drop_mask >= HISTORY_LEVEL)
                    mixed = image[ys, xs].astype(np.float32) + blend * _read(change, ys, xs, drop_mask.shape)
                    image[ys, xs] = np.clip(np.rint(mixed), 0, white_level).astype(image.dtype)
            except cv2.error as error:  # never the frame's loss: it keeps the spatial fill, the history starts over
                LOGGER.warning("drop fill from earlier frames skipped, history cleared: %s", error)
                self.clear()
        self._kept.append(frame)
        return image

    def _change(self, frame: _Frame, white_level: int) -> np.ndarray | None:
        """(h, w, 3) float32 at the working size: the mean of what the kept frames saw at the drops' pixels, minus
        the frame there (0 elsewhere); None where no kept frame saw any."""
        assert self._flow is not None
        height, width = frame.drop_mask.shape
        holes = frame.drop_mask >= HISTORY_LEVEL
        # The drops (labelled, grown by one pixel) and the ring of clear pixels around each.
        count, labels = cv2.connectedComponents(cv2.dilate(holes.astype(np.uint8), np.ones((3, 3), np.uint8)))
        grown = cv2.dilate(labels.astype(np.float32), np.ones((2 * RING_WIDTH + 1,) * 2, np.uint8)).astype(np.int32)
        ring = (labels == 0) & (grown > 0) & ~holes
        # Only these pixels are read, the drops' and the rings' (x, y), in every kept frame through _sample.
        ys, xs = np.nonzero(holes | ring)
        in_hole, drop_of = holes[ys, xs], np.where(holes[ys, xs], labels[ys, xs], grown[ys, xs])
        on_ring = ~in_hole
        current = frame.image[ys, xs].astype(np.float32)
        flows = self._flows(frame, holes, ys, xs)
        total = np.zeros_like(current[in_hole])
        seen = np.zeros(int(in_hole.sum()), np.float32)
        tolerance = RING_TOLERANCE * white_level
        for index, earlier in enumerate(self._kept):
            map_x = (xs + flows[:, 2 * index]).astype(np.float32)
            map_y = (ys + flows[:, 2 * index + 1]).astype(np.float32)
            there = _sample(earlier.image, map_x, map_y, cv2.BORDER_REFLECT).astype(np.float32)
            there_mask = _sample(earlier.drop_mask, map_x, map_y, cv2.BORDER_CONSTANT, PLANE_SCALE).reshape(-1)
            clear = there_mask < HISTORY_LEVEL
            inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
            rim = on_ring & clear
            difference = np.abs(there[rim] - current[rim]).mean(axis=1)
            error = np.bincount(drop_of[rim], difference, minlength=count)
            pixels = np.bincount(drop_of[rim], minlength=count)
            matches = (pixels > 0) & (error <= tolerance * pixels)
            matches[0] = False
            use = (clear & inside & matches[drop_of])[in_hole]
            total[use] += there[in_hole][use]
            seen[use] += 1.0
        filled = seen > 0
        if not filled.any():
            return None
        change = np.zeros_like(frame.image, dtype=np.float32)
        hole_ys, hole_xs = ys[in_hole][filled], xs[in_hole][filled]
        change[hole_ys, hole_xs] = total[filled] / seen[filled][:, None] - current[in_hole][filled]
        return change

    def _flows(self, frame: _Frame, holes: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """(n, 2 x kept) float32: for each kept frame, how far the working-size pixels (``ys``, ``xs``) of ``frame``
        had moved since it (x, y), in working-size pixels.

        Estimated on the gray copies at :data:`FLOW_SCALE`; inside the drops grown by :data:`FLOW_HOLE_MARGIN`, where
        the flow follows the drop and not the road, filled from around them (the model's pull-push,
        :func:`~vimpnet_ros.model.arch_util.fill_from_surroundings`, over the stacked fields at the flow's size),
        then read at the pixels asked for (bilinear, as an enlargement would)."""
        assert self._flow is not None
        height, width = holes.shape
        small = frame.gray.shape[1], frame.gray.shape[0]
        grown = cv2.dilate(holes.astype(np.uint8), np.ones((2 * FLOW_HOLE_MARGIN + 1,) * 2, np.uint8))
        flow_holes = (cv2.resize(grown.astype(np.float32), small, interpolation=cv2.INTER_AREA) > 0).astype(np.float32)
        flows = np.concatenate([self._flow.calc(frame.gray, earlier.gray, None) for earlier in self._kept], axis=2)
        with torch.inference_mode():
            stacked = torch.from_numpy(flows).permute(2, 0, 1)[None]
            unknown = torch.from_numpy(flow_holes)[None, None]
            flows = fill_from_surroundings(stacked, unknown)[0].permute(1, 2, 0).contiguous().numpy()
        read = [_read(flows[..., start : start + 4], ys, xs, (height, width)) for start in range(0, flows.shape[2], 4)]
        scale = np.float32(width / small[0]), np.float32(height / small[1])
        return np.concatenate(read, axis=1) * np.tile(scale, len(self._kept))


def _read(field: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, c) float32: ``field`` (fh, fw, c <= 4), a smaller copy of a (h, w) = ``size`` frame, read at that frame's
    pixels (``ys``, ``xs``), bilinear as an enlargement would (only those pixels: nothing at the frame's size)."""
    height, width = size
    if field.shape[:2] == size:
        return field[ys, xs].reshape(len(ys), -1)
    map_x = ((xs + 0.5) * (field.shape[1] / width) - 0.5).astype(np.float32)
    map_y = ((ys + 0.5) * (field.shape[0] / height) - 0.5).astype(np.float32)
    return _sample(np.ascontiguousarray(field), map_x, map_y, cv2.BORDER_REPLICATE)


def _sample(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, border: int, value: float = 0.0) -> np.ndarray:
    """(n, c) ``image`` (h, w[, c]) read bilinearly at the n points (``map_x``, ``map_y``), ``border`` outside it.

    cv2.remap with the points laid out in rows of :data:`SAMPLE_ROW` (its maps may not have 32767 rows or more)."""
    count = len(map_x)
    rows = max(-(-count // SAMPLE_ROW), 1)
    grid_x, grid_y = np.zeros(rows * SAMPLE_ROW, np.float32), np.zeros(rows * SAMPLE_ROW, np.float32)
    grid_x[:count], grid_y[:count] = map_x, map_y
    read = cv2.remap(image, grid_x.reshape(rows, SAMPLE_ROW), grid_y.reshape(rows, SAMPLE_ROW), cv2.INTER_LINEAR,
                     borderMode=border, borderValue=value)  # fmt: skip
    return read.reshape(rows * SAMPLE_ROW, -1)[:count]


def _flow_estimator() -> cv2.DISOpticalFlow:
    """DIS at its medium preset without the variational refinement: on the held-out drives the refinement's
    smoothing costs inside the drops (measured: docs/training.md, "Drop fill from earlier frames") and time."""
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow.setVariationalRefinementIterations(0)
    return flow


def _working_copy(image: np.ndarray, drop_mask: np.ndarray, white_level: int) -> _Frame:
    """``image`` and its mask at most :data:`WORK_MAX_SIDE` on the longer side (area means), and its gray copy for
    the flow."""
    height, width = drop_mask.shape
    scale = WORK_MAX_SIDE / max(height, width)
    if scale < 1.0:
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        drop_mask = cv2.resize(drop_mask, size, interpolation=cv2.INTER_AREA)
    else:
        small, drop_mask = image.copy(), drop_mask.copy()
    gray = cv2.cvtColor(small.astype(np.float32) * (255.0 / white_level), cv2.COLOR_RGB2GRAY)
    flow_size = (max(round(small.shape[1] * FLOW_SCALE), 1), max(round(small.shape[0] * FLOW_SCALE), 1))
    gray = cv2.resize(gray, flow_size, interpolation=cv2.INTER_AREA)
    return _Frame(small, np.clip(np.rint(gray), 0, 255).astype(np.uint8), drop_mask)
