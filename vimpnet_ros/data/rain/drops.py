"""Raindrops on the lens or windshield: persistent, growing, merging, sliding, refracting drops.

Each drop is an ellipse whose radius wobbles with a few low harmonics of the polar
angle (an irregular, rounded outline). Rendering computes, per drop and only inside
its bounding box, a signed distance to the outline; the drop with the largest
distance owns a pixel, so overlapping drops form one blob (their union). Inside a
drop the frame shows a flipped, magnified view of the scene a little above the drop
(a water drop is a small inverting lens), taken from a defocused copy of the frame
because the lens is focused far beyond the glass; a darker rim, a faint specular
highlight and a soft edge finish it. One full-frame ``cv2.remap`` does all drops.

Between frames drops grow, new small ones appear, drops that touch merge (area is
conserved), and large ones may start sliding down with growing speed; a wiper may
sweep the glass clear from left to right over a few frames. In a static video
(``static_probability``) the drops stay exactly as they are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from vimpnet_ros.data.rain.config import DropConfig, Range, draw

#: Harmonics of the polar angle that perturb a drop's outline.
_HARMONICS = np.array([2.0, 3.0, 5.0])
#: Radial magnification growth towards the edge of a drop (barrel distortion of a lens).
_BULGE = 0.35


@dataclass(frozen=True)
class DropParams:
    """The values drawn for one video (pixels already scaled to the frame)."""

    enabled: bool
    density: float
    radius_px: Range
    irregularity: float
    aspect: Range
    zoom: float
    look_up: float
    blur_sigma_px: float
    edge_px: float
    opacity: float
    rim_darkening: float
    brightness: float
    highlight: float
    growth: float
    spawn_rate: float
    merge_overlap: float
    slide_radius_px: float
    slide_probability: float
    slide_speed_px: float
    static: bool
    wipe_rate: float
    wipe_frames: int

    @classmethod
    def sample(cls, config: DropConfig, rng: np.random.Generator, height: int, width: int) -> DropParams:
        """Draw one video's drop parameters; always consumes the same amount of randomness."""
        short = min(height, width)
        scale = short / 256.0
        enabled = bool(rng.random() < config.probability)
        return cls(
            enabled=enabled,
            density=draw(rng, config.density),
            radius_px=(max(1.0, config.radius[0] * short), max(1.0, config.radius[1] * short)),
            irregularity=draw(rng, config.irregularity),
            aspect=config.aspect,
            zoom=draw(rng, config.zoom),
            look_up=draw(rng, config.look_up),
            blur_sigma_px=draw(rng, config.blur_sigma) * scale,
            edge_px=max(0.5, draw(rng, config.edge_width) * scale),
            opacity=draw(rng, config.opacity),
            rim_darkening=draw(rng, config.rim_darkening),
            brightness=draw(rng, config.brightness),
            highlight=draw(rng, config.highlight),
            growth=draw(rng, config.growth),
            spawn_rate=draw(rng, config.spawn_rate),
            merge_overlap=config.merge_overlap,
            slide_radius_px=config.slide_radius * short,
            slide_probability=config.slide_probability,
            slide_speed_px=draw(rng, config.slide_speed) * height,
            static=bool(rng.random() < config.static_probability),
            wipe_rate=config.wipe_rate,
            wipe_frames=config.wipe_frames,
        )

    def to_dict(self) -> dict[str, float | bool | list[float]]:
        """JSON-friendly values, for the dataset's metadata."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class DropLayer:
    """The drops of one frame: ``image`` (h, w, 3) float32 in [0, 1] (clean + drops),
    ``alpha`` (h, w) float32 soft coverage, ``mask`` (h, w) bool (the drops' binary mask)."""

    image: np.ndarray
    alpha: np.ndarray
    mask: np.ndarray


class DropField:
    """Persistent raindrops of one video; ``render`` the current frame, then ``step``.

    The constructor draws the initial drops from ``rng`` (no I/O); ``step`` uses the
    same generator, so a seed fixes the whole video.
    """

    def __init__(self, params: DropParams, height: int, width: int, rng: np.random.Generator) -> None:
        self.params = params
        self.height = height
        self.width = width
        self._rng = rng
        self._cx = np.zeros(0)
        self._cy = np.zeros(0)
        self._r = np.zeros(0)
        self._aspect = np.zeros(0)
        self._angle = np.zeros(0)
        self._amps = np.zeros((0, _HARMONICS.size))
        self._phases = np.zeros((0, _HARMONICS.size))
        self._sliding = np.zeros(0, dtype=bool)
        self._vy = np.zeros(0)
        self._wipe_step: int | None = None
        if params.enabled:
            count = max(1, int(rng.poisson(params.density * self._area_units)))
            self._spawn(count, params.radius_px)
            self._merge()

    @property
    def _area_units(self) -> float:
        """Frame area in squares of the shorter side: densities count drops per such square (scale-free)."""
        return self.height * self.width / min(self.height, self.width) ** 2

    @property
    def count(self) -> int:
        """Number of drops now on the glass."""
        return int(self._r.size)

    @property
    def radii(self) -> np.ndarray:
        """Drop radii in pixels, (n,)."""
        return self._r.copy()

    @property
    def centres(self) -> np.ndarray:
        """Drop centres (n, 2) as (x, y) pixels."""
        return np.stack([self._cx, self._cy], axis=1)

    def add_drop(self, x: float, y: float, radius: float) -> None:
        """Put one drop (random outline from the field's generator) at (x, y); merges with any it touches."""
        self._spawn(1, (radius, radius))
        self._cx[-1], self._cy[-1], self._r[-1] = x, y, radius
        self._merge()

    def _spawn(self, count: int, radius: Range) -> None:
        """Add ``count`` drops at uniform positions with log-uniform radii in ``radius``."""
        rng = self._rng
        lo, hi = radius
        self._cx = np.concatenate([self._cx, rng.uniform(0, self.width, count)])
        self._cy = np.concatenate([self._cy, rng.uniform(0, self.height, count)])
        self._r = np.concatenate([self._r, np.exp(rng.uniform(math.log(lo), math.log(hi), count))])
        self._aspect = np.concatenate([self._aspect, rng.uniform(*self.params.aspect, count)])
        self._angle = np.concatenate([self._angle, rng.uniform(0, math.pi, count)])
        amps = self.params.irregularity * rng.uniform(0.2, 1.0, (count, _HARMONICS.size))
        self._amps = np.concatenate([self._amps, amps])
        self._phases = np.concatenate([self._phases, rng.uniform(0, 2 * math.pi, (count, _HARMONICS.size))])
        self._sliding = np.concatenate([self._sliding, np.zeros(count, dtype=bool)])
        self._vy = np.concatenate([self._vy, np.zeros(count)])

    def _keep(self, keep: np.ndarray) -> None:
        """Keep only the drops selected by the boolean or index array ``keep``."""
        for name in ("_cx", "_cy", "_r", "_aspect", "_angle", "_amps", "_phases", "_sliding", "_vy"):
            setattr(self, name, getattr(self, name)[keep])

    def _merge(self) -> None:
        """Merge overlapping drops pairwise until none overlap more than ``merge_overlap``.

        The merged drop keeps the larger drop's shape, sits at the area-weighted
        centre and has the summed area, so water is conserved.
        """
        for _ in range(self.count):
            if self.count < 2:
                return
            dist = np.hypot(self._cx[:, None] - self._cx[None, :], self._cy[:, None] - self._cy[None, :])
            ratio = dist / (self._r[:, None] + self._r[None, :])
            ratio[np.tril_indices(self.count)] = np.inf
            flat = int(np.argmin(ratio))
            i, j = divmod(flat, self.count)
            if ratio[i, j] >= self.params.merge_overlap:
                return
            big, small = (i, j) if self._r[i] >= self._r[j] else (j, i)
            area_big, area_small = self._r[big] ** 2, self._r[small] ** 2
            total = area_big + area_small
            self._cx[big] = (self._cx[big] * area_big + self._cx[small] * area_small) / total
            self._cy[big] = (self._cy[big] * area_big + self._cy[small] * area_small) / total
            self._r[big] = math.sqrt(total)
            self._sliding[big] |= self._sliding[small]
            self._vy[big] = max(self._vy[big], self._vy[small])
            self._keep(np.arange(self.count) != small)

    @property
    def wiping(self) -> bool:
        """True while a wiper sweep is under way."""
        return self._wipe_step is not None

    def _wipe(self) -> None:
        """Start a sweep now and then (``wipe_rate``); a sweep clears the drops left of its blade, frame by frame."""
        params = self.params
        if self._wipe_step is None:
            if params.wipe_rate <= 0 or self._rng.random() >= params.wipe_rate:
                return
            self._wipe_step = 0
        self._wipe_step += 1
        blade = self.width * self._wipe_step / max(1, params.wipe_frames)
        self._keep(self._cx - self._r > blade)
        if self._wipe_step >= params.wipe_frames:
            self._wipe_step = None

    def step(self) -> None:
        """Advance one frame: grow, start/continue sliding, drop the ones gone, wipe, spawn, merge."""
        params = self.params
        if not params.enabled or params.static:
            return
        rng = self._rng
        self._wipe()
        self._r = self._r * (1.0 + params.growth)
        start = (
            (~self._sliding) & (self._r > params.slide_radius_px) & (rng.random(self.count) < params.slide_probability)
        )
        self._sliding |= start
        self._vy[start] = params.slide_speed_px * rng.uniform(0.7, 1.3, int(start.sum()))
        # A sliding drop stretches vertically (major axis along y) and speeds up.
        self._angle[self._sliding] = math.pi / 2
        self._aspect[self._sliding] = np.minimum(np.maximum(self._aspect[self._sliding], 1.0) * 1.02, 1.6)
        self._cy = self._cy + self._vy
        self._vy[self._sliding] *= 1.05
        self._keep(self._cy - 2 * self._r < self.height)
        new = int(rng.poisson(params.spawn_rate * self._area_units))
        lo, hi = params.radius_px
        self._spawn(new, (lo, max(lo, math.sqrt(lo * hi))))
        self._merge()

    def render(self, clean: np.ndarray) -> DropLayer:
        """Drops over ``clean`` (h, w, 3) float32 RGB in [0, 1]; pixels without drops stay exactly ``clean``."""
        height, width = self.height, self.width
        alpha = np.zeros((height, width), dtype=np.float32)
        if self.count == 0:
            return DropLayer(image=clean, alpha=alpha, mask=np.zeros((height, width), dtype=bool))
        params = self.params
        best = np.full((height, width), -np.inf, dtype=np.float32)
        map_y, map_x = np.mgrid[0:height, 0:width].astype(np.float32)
        shade = np.ones((height, width), dtype=np.float32)
        shine = np.zeros((height, width), dtype=np.float32)
        edge = params.edge_px
        for index in range(self.count):
            self._draw_drop(index, edge, best, alpha, map_x, map_y, shade, shine)
        sigma = max(params.blur_sigma_px, 0.1)
        defocused = cv2.GaussianBlur(clean, (0, 0), sigma)
        refracted = cv2.remap(defocused, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        refracted = np.clip(refracted * (params.brightness * shade)[..., None] + shine[..., None], 0.0, 1.0)
        alpha = alpha * np.float32(params.opacity)
        image = clean * (1.0 - alpha[..., None]) + refracted * alpha[..., None]
        image = np.where(alpha[..., None] > 0, image, clean).astype(np.float32)
        return DropLayer(image=image, alpha=alpha, mask=best >= 0)

    def _draw_drop(
        self,
        index: int,
        edge: float,
        best: np.ndarray,
        alpha: np.ndarray,
        map_x: np.ndarray,
        map_y: np.ndarray,
        shade: np.ndarray,
        shine: np.ndarray,
    ) -> None:
        """Write drop ``index`` into the per-pixel buffers where it is the closest-to-inside drop."""
        params = self.params
        cx, cy, r = self._cx[index], self._cy[index], self._r[index]
        stretch = math.sqrt(self._aspect[index])
        reach = r * (1.0 + self._amps[index].sum()) * max(stretch, 1.0 / stretch) + edge + 1.0
        x0, x1 = max(0, math.floor(cx - reach)), min(self.width, math.ceil(cx + reach) + 1)
        y0, y1 = max(0, math.floor(cy - reach)), min(self.height, math.ceil(cy + reach) + 1)
        if x0 >= x1 or y0 >= y1:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xs - np.float32(cx), ys - np.float32(cy)
        cos_a, sin_a = math.cos(self._angle[index]), math.sin(self._angle[index])
        u = (dx * cos_a + dy * sin_a) / stretch
        v = (-dx * sin_a + dy * cos_a) * stretch
        rho = np.hypot(u, v)
        phi = np.arctan2(v, u)
        wobble = np.cos(_HARMONICS[:, None, None] * phi[None] + self._phases[index][:, None, None])
        outline = (r * (1.0 + np.tensordot(self._amps[index], wobble, axes=1))).astype(np.float32)
        signed = outline - rho
        region = (slice(y0, y1), slice(x0, x1))
        owns = (signed > best[region]) & (signed > -edge / 2)
        if not owns.any():
            return
        best[region] = np.where(owns, signed, best[region])
        alpha[region] = np.where(owns, np.clip(signed / edge + 0.5, 0.0, 1.0), alpha[region])
        # Inverting lens: the drop shows the scene around a point above it, flipped and magnified.
        radial = 1.0 + _BULGE * (rho / outline) ** 2
        source_x = cx - params.zoom * dx * radial
        source_y = cy - params.look_up * r - params.zoom * dy * radial
        map_x[region] = np.where(owns, source_x, map_x[region])
        map_y[region] = np.where(owns, source_y, map_y[region])
        inner = np.clip(signed / (0.35 * outline), 0.0, 1.0)
        shade[region] = np.where(owns, 1.0 - params.rim_darkening * (1.0 - inner) ** 2, shade[region])
        spot = params.highlight * np.exp(-((dx + 0.35 * r) ** 2 + (dy + 0.4 * r) ** 2) / (2 * (0.15 * r) ** 2))
        shine[region] = np.where(owns, spot, shine[region])
