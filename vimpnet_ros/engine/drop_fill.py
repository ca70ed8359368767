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


def drop_region(drop_mask: np.ndarray) -> np.ndarray | None:
    """The pixels to fill (h, w) uint8 0/1 from a quantised mask (h, w) uint8; None for none or too many."""
    region = (drop_mask >= MASK_LEVEL).view(np.uint8)
    count = int(np.count_nonzero(region))
    if count == 0 or count > MAX_FILL_PIXELS or count > MAX_FILL_FRACTION * region.size:
        return None
    return region


def fill_drops(image: np.ndarray, drop_mask: np.ndarray, blend: float = DROP_FILL_BLEND) -> np.ndarray:
    """``image`` (h, w, 3) uint8 or uint16 with the drops' pixels replaced by (1 - blend) x image + blend x inpainted.

    ``drop_mask`` (h, w) uint8 is the network's probability x 255 (:class:`~vimpnet_ros.engine.FrameResult`).
    Returns ``image`` itself (not a copy) when nothing is filled: ``blend`` 0, no drop, or a mask over the bounds.
    """
    if blend <= 0.0:
        return image
    region = drop_region(drop_mask)
    if region is None:
        return image
    if image.dtype == np.uint8:
        inpainted = cv2.inpaint(image, region, FILL_RADIUS, cv2.INPAINT_TELEA)
    else:  # OpenCV inpaints 16-bit images one channel at a time
        channels = [cv2.inpaint(np.ascontiguousarray(image[..., c]), region, FILL_RADIUS, cv2.INPAINT_TELEA)
                    for c in range(image.shape[2])]  # fmt: skip
        inpainted = np.stack(channels, axis=-1)
    inside = region.astype(bool)
    filled = image.copy()
    mixed = (1.0 - blend) * image[inside].astype(np.float32) + blend * inpainted[inside].astype(np.float32)
    filled[inside] = np.rint(mixed).astype(image.dtype)
    return filled
