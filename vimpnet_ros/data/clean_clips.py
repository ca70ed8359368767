"""Clean video without footage: short clips from photographs bundled with scikit-image.

A fresh machine has no driving video, but scikit-image's wheel ships a few real
photographs. Moving a virtual camera over one of them (forward zoom, a slow pan,
a slight hand-held shake and roll) gives clips with real textures and real
frame-to-frame motion, enough to render training data, run the demo and test
the pipeline end to end. Every clip is fixed by its seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from vimpnet_ros.data.rain.config import Range, draw
from vimpnet_ros.errors import DatasetError, InputError

#: Photographs inside the scikit-image wheel (no download), street-like scenes first.
BUNDLED_IMAGES: tuple[str, ...] = (
    "motorcycle_left",
    "motorcycle_right",
    "rocket",
    "astronaut",
    "coffee",
    "chelsea",
    "camera",
    "brick",
    "grass",
    "gravel",
)


@dataclass(frozen=True)
class CameraMotion:
    """Ranges of the simulated ego-motion; one value per clip.

    ``zoom``: relative magnification per frame (driving forward); ``pan``: speed of
    the view, fraction of the view width per frame; ``shake``: hand-held jitter,
    fraction of the view width; ``roll_deg``: jitter of the roll angle;
    ``view``: the first frame's view as a fraction of the largest crop that fits.
    """

    zoom: Range = (0.0, 0.02)
    pan: Range = (0.0, 0.012)
    shake: Range = (0.0, 0.004)
    roll_deg: Range = (0.0, 0.6)
    view: Range = (0.55, 0.85)


def bundled_image(name: str) -> np.ndarray:
    """Load a photograph shipped with scikit-image as (h, w, 3) uint8 RGB (grey images are replicated)."""
    if name not in BUNDLED_IMAGES:
        raise InputError(f"unknown bundled image {name!r}; choose one of {list(BUNDLED_IMAGES)}")
    import skimage.data

    try:
        if name in ("motorcycle_left", "motorcycle_right"):
            left, right, _ = skimage.data.stereo_motorcycle()
            image = left if name == "motorcycle_left" else right
        else:
            image = getattr(skimage.data, name)()
    except Exception as error:  # skimage raises several types when a file is missing from the wheel
        raise DatasetError(
            f"scikit-image's bundled image {name!r} is not available offline ({error}); reinstall scikit-image"
        ) from error
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def available_bundled_images() -> list[str]:
    """Names of :data:`BUNDLED_IMAGES` that load on this machine."""
    available = []
    for name in BUNDLED_IMAGES:
        try:
            bundled_image(name)
        except DatasetError:
            continue
        available.append(name)
    return available


def make_clean_clip(
    image: np.ndarray | str,
    num_frames: int,
    size: tuple[int, int],
    rng: np.random.Generator | int = 0,
    motion: CameraMotion | None = None,
) -> np.ndarray:
    """A clip (t, h, w, 3) uint8 RGB of a virtual camera moving over one photograph.

    ``image``: (H, W, 3) uint8 RGB or a name from :data:`BUNDLED_IMAGES`; ``size``:
    output (width, height), any size (the view is resampled); ``rng``: Generator or seed.
    """
    source = bundled_image(image) if isinstance(image, str) else np.asarray(image)
    if source.ndim != 3 or source.shape[-1] != 3 or source.dtype != np.uint8:
        raise InputError(f"make_clean_clip needs an (H, W, 3) uint8 RGB image, got {source.shape} {source.dtype}")
    if num_frames < 1:
        raise InputError(f"make_clean_clip needs num_frames >= 1, got {num_frames}")
    out_w, out_h = size
    if out_w < 1 or out_h < 1:
        raise InputError(f"make_clean_clip needs a positive output size, got {size}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    motion = CameraMotion() if motion is None else motion

    src_h, src_w = source.shape[:2]
    aspect = out_w / out_h
    view_w = draw(generator, motion.view) * min(src_w, src_h * aspect)
    # Resample the photo once so the first view maps about 1:1 to the output (no aliasing later).
    prescale = min(1.0, out_w / view_w)
    if prescale < 1.0:
        source = cv2.resize(source, None, fx=prescale, fy=prescale, interpolation=cv2.INTER_AREA)
        src_h, src_w = source.shape[:2]
        view_w *= prescale

    zoom = draw(generator, motion.zoom)
    widths = view_w / (1.0 + zoom) ** np.arange(num_frames)
    pan_speed = draw(generator, motion.pan) * view_w
    heading = generator.uniform(-0.35, 0.35) + (math.pi if generator.random() < 0.5 else 0.0)
    velocity = pan_speed * np.array([math.cos(heading), math.sin(heading)])
    shake = draw(generator, motion.shake) * view_w
    roll = math.radians(draw(generator, motion.roll_deg))
    jitter = _smooth_jitter(generator, num_frames, 3)
    margin = 2.0 * shake + 1.0
    centre = _start_centre(generator, widths, aspect, velocity, (src_w, src_h), margin)
    if centre is None:
        velocity = np.zeros(2)
        centre = _start_centre(generator, widths, aspect, velocity, (src_w, src_h), 0.0)
    assert centre is not None  # a zero-motion view of at most the largest crop always fits

    frames = np.empty((num_frames, out_h, out_w, 3), dtype=np.uint8)
    for index in range(num_frames):
        scale = widths[index] / out_w
        angle = roll * jitter[index, 2]
        rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        where = centre + velocity * index + shake * jitter[index, :2]
        offset = where - rotation @ np.array([out_w / 2.0, out_h / 2.0])
        matrix = np.hstack([rotation, offset[:, None]])
        frames[index] = cv2.warpAffine(
            source,
            matrix,
            (out_w, out_h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )
    return frames


def _smooth_jitter(rng: np.random.Generator, count: int, channels: int) -> np.ndarray:
    """(count, channels) smooth values in [-1, 1]: two random sinusoids per channel."""
    t = np.arange(count)[:, None]
    freq = rng.uniform(0.15, 0.9, (2, channels))
    phase = rng.uniform(0, 2 * math.pi, (2, channels))
    weight = rng.uniform(0.3, 0.7, channels)
    return weight * np.sin(freq[0] * t + phase[0]) + (1 - weight) * np.sin(freq[1] * t + phase[1])


def _start_centre(
    rng: np.random.Generator,
    widths: np.ndarray,
    aspect: float,
    velocity: np.ndarray,
    source_size: tuple[int, int],
    margin: float,
) -> np.ndarray | None:
    """A first-frame view centre keeping every frame's view inside the photo, or None if none exists."""
    last = len(widths) - 1
    low = np.zeros(2)
    high = np.zeros(2)
    for axis, extent in enumerate(source_size):
        half = np.array([widths[0], widths[last]]) / 2.0 / (1.0 if axis == 0 else aspect) + margin
        shift = np.array([0.0, velocity[axis] * last])
        low[axis] = np.max(half - shift)
        high[axis] = np.min(extent - half - shift)
    if np.any(low > high + 1e-6):
        return None
    return rng.uniform(low, np.maximum(low, high))


def make_clean_clips(
    count: int,
    num_frames: int,
    size: tuple[int, int],
    seed: int = 0,
    images: Sequence[str] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``count`` (image name, clip) pairs, cycling over the bundled photographs.

    Clip i uses the generator ``default_rng([seed, i])``, so clip i does not depend on ``count``.
    """
    names = list(images) if images is not None else available_bundled_images()
    if not names:
        raise DatasetError("no bundled scikit-image photographs are available; reinstall scikit-image")
    cache: dict[str, np.ndarray] = {}
    for index in range(count):
        name = names[index % len(names)]
        if name not in cache:
            cache[name] = bundled_image(name)
        yield name, make_clean_clip(cache[name], num_frames, size, np.random.default_rng([seed, index]))
