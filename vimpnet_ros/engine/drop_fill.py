"""Drop fill: inside the predicted raindrops, the network's restoration averaged with an inpainting of the drop.

Stage 2 restores a drop from the drop's own pixels and the window's other frames; an
inpainting fills it from the pixels around it (OpenCV's fast-marching method, Telea 2004).
The two err differently (the network keeps the drop's refraction on textured ground; the
inpainting smooths across the drop's edge), and their mean is never further from the clean
frame than the worse of the two, and mostly nearer than either (the mean of two estimates,
weights 1 - ``blend`` and ``blend``). Only pixels where the mask's probability is at least the
published threshold change, so a frame without predicted drops comes out bit for bit as the
network made it. Measured effect and how the blend was chosen: docs/training.md ("Drop fill").

The cost grows with the number of masked pixels (about 0.7 microseconds each on one core of an
Intel Xeon with AVX-512), so it is bounded before it is paid: a frame whose mask covers more
than :data:`MAX_FILL_FRACTION` of it (nothing left around the drops to fill from) or more than
:data:`MAX_FILL_PIXELS` pixels is left as the network made it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from vimpnet_ros.engine.config import DROP_FILL_BLEND
from vimpnet_ros.engine.result import PLANE_SCALE
from vimpnet_ros.model.config import MASK_THRESHOLD

#: Neighbourhood of each inpainted pixel [px] (cv2.inpaint's inpaintRadius).
FILL_RADIUS = 3
#: Frames whose mask covers more than this fraction are left alone: too little around the drops to fill from.
MAX_FILL_FRACTION = 0.5
#: At most this many masked pixels are filled per frame (about 0.2 s of one CPU core; a fifth of a 1280x720 frame).
MAX_FILL_PIXELS = 250_000
#: A quantised mask (probability x 255, rounded half up) at or above this value is a drop: probability >= threshold.
MASK_LEVEL = math.ceil(MASK_THRESHOLD * PLANE_SCALE)


#: Rows and columns around the drops that the inpainting reads: its radius plus the border cv2.inpaint adds (filling
#: the drops' bounding box grown by this gives the same pixels as filling the whole frame, at a fraction of the cost).
FILL_MARGIN = FILL_RADIUS + 2


def drop_region(drop_mask: np.ndarray, level: int = MASK_LEVEL) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Where to fill, from a quantised mask (h, w) uint8: the drops' bounding box grown by :data:`FILL_MARGIN`, and
    the drops inside it (uint8 0/1); None for no drop or too many. A drop is a mask value of at least ``level``."""
    drops = drop_mask >= level
    count = int(np.count_nonzero(drops))
    if count == 0 or count > MAX_FILL_PIXELS or count > MAX_FILL_FRACTION * drops.size:
        return None
    rows, cols = np.flatnonzero(drops.any(axis=1)), np.flatnonzero(drops.any(axis=0))
    box = (
        slice(max(int(rows[0]) - FILL_MARGIN, 0), int(rows[-1]) + FILL_MARGIN + 1),
        slice(max(int(cols[0]) - FILL_MARGIN, 0), int(cols[-1]) + FILL_MARGIN + 1),
    )
    return box, np.ascontiguousarray(drops[box]).view(np.uint8)


def fill_drops(
    image: np.ndarray, drop_mask: np.ndarray, blend: float = DROP_FILL_BLEND, in_place: bool = False
) -> np.ndarray:
    """``image`` (h, w, 3) uint8 or uint16 with the drops' pixels replaced by (1 - blend) x image + blend x inpainted.

    ``drop_mask`` (h, w) uint8 is the network's probability x 255 (:class:`~vimpnet_ros.engine.FrameResult`).
    Returns ``image`` itself (not a copy) when nothing is filled: ``blend`` 0, no drop, or a mask over the bounds.
    ``in_place`` writes into ``image`` instead of a copy: the engine fills its own planes so, and allocates no
    frame that outlives the call (with its allocator keeping freed memory, a long-lived frame allocated after the
    network's tensors were freed splits their space, and the next inference grows the heap by a working set).
    """
    if blend <= 0.0:
        return image
    found = drop_region(drop_mask)
    if found is None:
        return image
    box, region = found
    patch = np.ascontiguousarray(image[box])
    if patch.dtype == np.uint8:
        inpainted = cv2.inpaint(patch, region, FILL_RADIUS, cv2.INPAINT_TELEA)
    else:  # OpenCV inpaints 16-bit images one channel at a time
        channels = [cv2.inpaint(np.ascontiguousarray(patch[..., c]), region, FILL_RADIUS, cv2.INPAINT_TELEA)
                    for c in range(patch.shape[2])]  # fmt: skip
        inpainted = np.stack(channels, axis=-1)
    inside = region.astype(bool)
    filled = image if in_place else image.copy()
    mixed = (1.0 - blend) * patch[inside].astype(np.float32) + blend * inpainted[inside].astype(np.float32)
    filled[box][inside] = np.rint(mixed).astype(image.dtype)
    return filled
