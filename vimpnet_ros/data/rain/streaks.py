"""Rain streaks: particles at random depths that fall between frames, motion-blurred by the shutter.

Particles live in a 2-D domain a little larger than the frame (so streaks enter and
leave smoothly) and belong to one of a few depth layers. A layer sets their speed,
streak length, brightness and thickness: near particles are fast, long, bright and
thick, far ones slow, short, dim and thin. Each layer precomputes its streak: a
tapered line along the per-video fall direction (the motion blur of an open
shutter), blurred to its thickness, at 4x4 quarter-pixel phases so sub-pixel motion
stays smooth. Rendering adds one such stamp per particle with a single vectorised
``np.bincount`` per layer, which costs the streaks' area, not the frame's.
Particles that fall out at the bottom re-enter at the top at a new random x, so the
density stays constant and the rain never repeats.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from vimpnet_ros.data.rain.config import StreakConfig, draw

#: Sub-pixel phases per axis of the precomputed streak stamps.
_PHASES = 4
#: Particle density unit: particles per 64x64 pixels of a frame whose shorter side is 256 (scaled with the frame).
_DENSITY_BLOCK = 64.0 / 256.0


@dataclass(frozen=True)
class StreakParams:
    """The values drawn for one video (pixels already scaled to the frame)."""

    enabled: bool
    density: float
    angle_rad: float
    speed_px: float
    exposure: float
    intensity: float
    depth_falloff: float
    thickness_px: float
    blur_px: float
    layers: int

    @classmethod
    def sample(cls, config: StreakConfig, rng: np.random.Generator, height: int, width: int) -> StreakParams:
        """Draw one video's streak parameters; always consumes the same amount of randomness."""
        scale = min(height, width) / 256.0
        enabled = bool(rng.random() < config.probability)
        return cls(
            enabled=enabled,
            density=draw(rng, config.density),
            angle_rad=math.radians(draw(rng, config.angle_deg)),
            speed_px=draw(rng, config.speed) * height,
            exposure=draw(rng, config.exposure),
            intensity=draw(rng, config.intensity),
            depth_falloff=draw(rng, config.depth_falloff),
            thickness_px=max(1.0, draw(rng, config.thickness) * scale),
            blur_px=draw(rng, config.blur) * scale,
            layers=config.layers,
        )

    def to_dict(self) -> dict[str, float | int | bool]:
        """JSON-friendly values, for the dataset's metadata."""
        return asdict(self)


@dataclass(frozen=True)
class _Layer:
    """Rendering constants of one depth layer."""

    speed: float
    intensity: float
    stamps: np.ndarray  # (_PHASES**2, k) values of the streak at each sub-pixel phase
    offset_y: np.ndarray  # (k,) row offsets of the stamp's pixels from the particle
    offset_x: np.ndarray  # (k,) column offsets

    @property
    def reach(self) -> int:
        """Largest distance in pixels from a particle to a pixel of its streak."""
        return int(max(np.abs(self.offset_y).max(), np.abs(self.offset_x).max()))


class StreakField:
    """Persistent falling particles of one video; ``render`` the current frame, then ``step``.

    The constructor draws the initial particles from ``rng`` (no I/O); ``step`` draws
    respawn positions from the same generator, so a seed fixes the whole video.
    """

    def __init__(self, params: StreakParams, height: int, width: int, rng: np.random.Generator) -> None:
        self.params = params
        self.height = height
        self.width = width
        self._rng = rng
        self._direction = np.array([math.sin(params.angle_rad), math.cos(params.angle_rad)], dtype=np.float64)
        self._layers = [self._make_layer(index) for index in range(params.layers)]
        self.margin = max(layer.reach for layer in self._layers) + math.ceil(params.speed_px) + 2
        domain_area = (height + 2 * self.margin) * (width + 2 * self.margin)
        block = _DENSITY_BLOCK * min(height, width)
        total = round(params.density * domain_area / block**2) if params.enabled else 0
        # Farther layers hold more particles: the volume seen at a depth grows with it.
        weights = np.array([(index + 0.5) / params.layers + 0.3 for index in range(params.layers)])
        counts = np.floor(total * weights / weights.sum()).astype(int)
        self._layer_of = np.repeat(np.arange(params.layers), counts)
        count = int(counts.sum())
        self._x = rng.uniform(-self.margin, width + self.margin, count)
        self._y = rng.uniform(-self.margin, height + self.margin, count)
        self._brightness = rng.uniform(0.5, 1.0, count).astype(np.float32)
        self._speed_jitter = rng.uniform(0.9, 1.1, count)

    @property
    def positions(self) -> np.ndarray:
        """Particle positions (n, 2) as (x, y) pixels; for tests and debugging."""
        return np.stack([self._x, self._y], axis=1)

    def _make_layer(self, index: int) -> _Layer:
        """Speed, brightness and motion-blur kernel of layer ``index`` (0 = nearest)."""
        params = self.params
        depth = (index + 0.5) / params.layers
        factor = 1.0 - (1.0 - params.depth_falloff) * depth
        speed = params.speed_px * factor
        length = max(1.0, speed * params.exposure)
        thickness = 1.0 + (params.thickness_px - 1.0) * (1.0 - depth)
        dx, dy = float(self._direction[0]), float(self._direction[1])
        kernels = np.stack(
            [
                _streak_kernel(length, dx, dy, thickness, (phase_x / _PHASES, phase_y / _PHASES))
                for phase_y in range(_PHASES)
                for phase_x in range(_PHASES)
            ]
        )
        kernels /= max(float(kernels[0].max()), 1e-12)
        support = kernels.max(axis=0) > 1e-3
        rows, cols = np.nonzero(support)
        size_y, size_x = support.shape
        return _Layer(
            speed=speed,
            intensity=params.intensity * math.sqrt(factor),
            stamps=kernels[:, rows, cols].astype(np.float32),
            offset_y=rows - (size_y - 1) // 2,
            offset_x=cols - (size_x - 1) // 2,
        )

    def render(self) -> np.ndarray:
        """Streak intensity of the current frame, (h, w) float32 in [0, 1]."""
        height, width = self.height, self.width
        total = np.zeros(height * width, dtype=np.float64)
        for index, layer in enumerate(self._layers):
            chosen = self._layer_of == index
            if not chosen.any():
                continue
            # Integer anchor pixel and quarter-pixel phase of every particle.
            quarter_x = np.round(self._x[chosen] * _PHASES).astype(np.int64)
            quarter_y = np.round(self._y[chosen] * _PHASES).astype(np.int64)
            anchor_x, phase_x = np.divmod(quarter_x, _PHASES)
            anchor_y, phase_y = np.divmod(quarter_y, _PHASES)
            xs = anchor_x[:, None] + layer.offset_x[None, :]
            ys = anchor_y[:, None] + layer.offset_y[None, :]
            values = layer.stamps[phase_y * _PHASES + phase_x] * (layer.intensity * self._brightness[chosen])[:, None]
            inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
            total += np.bincount(ys[inside] * width + xs[inside], weights=values[inside], minlength=height * width)
        layer = total.reshape(height, width).astype(np.float32)
        if self.params.blur_px > 0.3:  # defocused streaks (the camera focuses beyond the rain)
            layer = cv2.GaussianBlur(layer, (0, 0), self.params.blur_px)
        return np.clip(layer, 0.0, 1.0)

    def step(self) -> None:
        """Advance the particles by one frame; those that leave at the bottom re-enter at the top."""
        if self._x.size == 0:
            return
        speeds = np.array([layer.speed for layer in self._layers])[self._layer_of] * self._speed_jitter
        self._x = self._x + speeds * self._direction[0]
        self._y = self._y + speeds * self._direction[1]
        margin = self.margin
        span_y = self.height + 2 * margin
        span_x = self.width + 2 * margin
        fallen = self._y >= self.height + margin
        if fallen.any():
            self._y[fallen] -= span_y
            self._x[fallen] = self._rng.uniform(-margin, self.width + margin, int(fallen.sum()))
        self._x = np.mod(self._x + margin, span_x) - margin


def _streak_kernel(
    length: float, dx: float, dy: float, thickness: float, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """A line of ``length`` pixels along (dx, dy), tapered at both ends, blurred to ``thickness``.

    The line is centred at the kernel's centre pixel moved by ``shift`` = (x, y)
    (sub-pixel phase); the kernel size does not depend on the shift.
    """
    sigma = max(0.3, 0.45 * thickness)
    half_x = abs(dx) * length / 2 + 3 * sigma + 2
    half_y = abs(dy) * length / 2 + 3 * sigma + 2
    size = (2 * math.ceil(half_y) + 1, 2 * math.ceil(half_x) + 1)
    centre_y, centre_x = (size[0] - 1) / 2 + shift[1], (size[1] - 1) / 2 + shift[0]
    samples = max(2, math.ceil(length * 4))
    t = np.linspace(-0.5, 0.5, samples)
    taper = 1.0 - np.abs(2.0 * t) ** 4
    kernel = _splat(centre_x + t * length * dx, centre_y + t * length * dy, taper.astype(np.float32), size)
    return cv2.GaussianBlur(kernel, (0, 0), sigma)


def _splat(x: np.ndarray, y: np.ndarray, weight: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear splat of weighted points into an (h, w) float32 image; points outside are dropped."""
    height, width = shape
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0).astype(np.float32)
    fy = (y - y0).astype(np.float32)
    image = np.zeros(height * width, dtype=np.float64)
    for oy, ox, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi = x0 + ox
        yi = y0 + oy
        inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
        image += np.bincount(yi[inside] * width + xi[inside], weights=(weight * w)[inside], minlength=height * width)
    return image.reshape(height, width).astype(np.float32)
