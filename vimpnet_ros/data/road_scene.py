"""Procedural road scenes: driving-like clean video without footage (numpy and OpenCV only).

No package on PyPI ships real driving frames that install offline (the dataset
devkits ship code, simulators download their assets at run time), and the bundled
photographs moved by a virtual camera have no parallax, no road and no night. This
module renders the missing kind of video: a camera on a car that drives forward along
a road, so near things flow past faster than far ones, vehicles move on their own, and
the light changes, while the raindrops that the rain renderer adds stay on the glass.

A scene is a few analytic layers, rendered per pixel with perspective projection:

- **sky**: a gradient by elevation (overcast, blue, dusk or night) with clouds on a
  far plane;
- **ground** (the plane y = 0): for every pixel below the horizon the ray is
  intersected with the ground and the road is evaluated in road coordinates (distance
  along the road, lateral offset): asphalt texture, lane markings (dashed and solid,
  box-filtered by the pixel's footprint so far stripes do not alias), kerbs,
  sidewalks, verges;
- **objects**: buildings with window grids, trees, street lamps, signs, parked and
  moving vehicles, each a set of planar quads drawn far to near; every quad pixel is
  ray-intersected with the quad's plane, so its texture is in perspective;
- **light**: day (overcast or sun), dusk and night; at night street lamps light pools
  on the road, the ego car's headlights light the road ahead, lit windows, head- and
  tail-lights glow (bloom) and reflect on the wet road; fog by distance; an automatic
  exposure that drifts slowly over a clip.

The frame is rendered at ``supersample`` x the output size and area-averaged down.
Everything random is drawn from a generator seeded by the caller; objects along the
road are drawn per 12 m slot from ``default_rng([seed, slot, side])``, so a scene does
not depend on the clip length, and the same seed always gives the same video.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from vimpnet_ros.data.rain.config import Range, draw
from vimpnet_ros.errors import InputError

#: Length of one slot of roadside objects along the road, metres.
SLOT = 12.0
#: Objects farther than this (metres along the road) are not drawn; fog hides them.
FAR = 200.0
#: Near clipping plane, metres.
NEAR = 0.25
#: Faces drawn on fewer pixels than this skip their fine texture (saves the per-call cost of the noise).
_TEXTURED = 256
#: Times of day and their light settings are chosen from these names.
TIMES_OF_DAY: tuple[str, ...] = ("day", "overcast", "dusk", "night")

Vector = np.ndarray
#: A pattern maps face coordinates (a, b) in metres and the pixel footprint to
#: (albedo (n, 3), emission (n, 3) or None, alpha (n,) or None).
Pattern = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]


@dataclass(frozen=True)
class RoadSceneConfig:
    """Ranges of one road scene; one value per clip is drawn from each range.

    Distances are metres, speeds metres per frame, angles degrees. ``time_weights``
    are the relative chances of day / overcast / dusk / night.
    """

    speed: Range = (0.15, 1.6)
    stop_probability: float = 0.08
    fov_deg: Range = (55.0, 95.0)
    camera_height: Range = (1.15, 1.75)
    pitch_deg: Range = (-1.0, 5.0)
    roll_deg: Range = (-1.5, 1.5)
    sway: Range = (0.0, 0.3)
    shake_deg: Range = (0.0, 0.5)
    curvature: Range = (-0.0025, 0.0025)
    lanes: tuple[int, int] = (1, 3)
    lane_width: Range = (2.9, 3.7)
    sidewalk: Range = (0.0, 4.0)
    building_probability: Range = (0.0, 0.95)
    building_height: Range = (4.0, 30.0)
    tree_probability: Range = (0.0, 0.7)
    lamp_spacing: Range = (22.0, 45.0)
    traffic_density: Range = (0.0, 0.05)
    parked_probability: Range = (0.0, 0.5)
    visibility: Range = (70.0, 700.0)
    exposure_drift: Range = (0.0, 0.3)
    saturation: Range = (0.6, 1.15)
    time_weights: tuple[float, float, float, float] = (0.3, 0.3, 0.15, 0.25)
    supersample: int = 2

    def __post_init__(self) -> None:
        """Reject values that cannot render."""
        if self.supersample < 1:
            raise InputError(f"road scene supersample must be >= 1, got {self.supersample}")
        if min(self.time_weights) < 0 or sum(self.time_weights) <= 0:
            raise InputError(f"road scene time_weights must be >= 0 with a positive sum, got {self.time_weights}")
        if not 1 <= self.lanes[0] <= self.lanes[1]:
            raise InputError(f"road scene lanes must be 1 <= lo <= hi, got {self.lanes}")


#: Named scene presets. ``heldout`` shifts the style for the held-out test set: more dusk
#: and night, wider lenses, lower cameras, denser traffic, thicker fog.
ROAD_PRESETS: dict[str, RoadSceneConfig] = {
    "default": RoadSceneConfig(),
    "heldout": RoadSceneConfig(
        speed=(0.3, 1.9),
        fov_deg=(70.0, 105.0),
        camera_height=(1.0, 1.5),
        traffic_density=(0.02, 0.07),
        visibility=(50.0, 400.0),
        saturation=(0.5, 1.0),
        time_weights=(0.2, 0.25, 0.25, 0.3),
    ),
}


def road_preset(name: str) -> RoadSceneConfig:
    """A scene preset by name (:data:`ROAD_PRESETS`)."""
    try:
        return ROAD_PRESETS[name]
    except KeyError:
        raise InputError(f"unknown road scene preset {name!r}; choose one of {sorted(ROAD_PRESETS)}") from None


# ---------------------------------------------------------------------------------------------------------------------
# Procedural textures


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice -> float in [0, 1): a cheap integer hash (deterministic, vectorised)."""
    h = (ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + seed * 1442695041) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float32) / np.float32(65536.0)


#: Lattice cells per side of the value-noise texture and texels per cell.
_NOISE_CELLS = 32
_NOISE_TEXELS = 16
_NOISE_TEXTURE: np.ndarray | None = None
#: cv2.remap takes maps of at most 32767 columns: samples go through in rows of this many.
_REMAP_ROW = 1024


def _noise_texture() -> np.ndarray:
    """A tileable value-noise texture (512 x 512 float32 in [0, 1)), made once per process.

    Value noise on a 32 x 32 periodic lattice, interpolated with a smoothstep at 16
    texels per cell; sampling it bilinearly (``cv2.remap``) is several times cheaper
    than hashing the lattice per pixel.
    """
    global _NOISE_TEXTURE
    if _NOISE_TEXTURE is None:
        size = _NOISE_CELLS * _NOISE_TEXELS
        coords = (np.arange(size, dtype=np.float64) + 0.5) / _NOISE_TEXELS
        cells = np.floor(coords).astype(np.int64)
        frac = (coords - cells).astype(np.float32)
        smooth = frac * frac * (3 - 2 * frac)
        lattice = _hash(*np.meshgrid(np.arange(_NOISE_CELLS), np.arange(_NOISE_CELLS), indexing="xy"), 7)
        c0, c1 = cells % _NOISE_CELLS, (cells + 1) % _NOISE_CELLS
        rows = lattice[c0] * (1 - smooth)[:, None] + lattice[c1] * smooth[:, None]  # interpolate along y
        _NOISE_TEXTURE = np.ascontiguousarray(
            rows[:, c0] * (1 - smooth)[None, :] + rows[:, c1] * smooth[None, :], dtype=np.float32
        )
    return _NOISE_TEXTURE


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1) with unit lattice spacing, the same shape as ``x`` (float32).

    Samples the tileable texture (period 32 lattice units) at an offset chosen by ``seed``.
    """
    texture = _noise_texture()
    size = float(texture.shape[0])
    shape = np.shape(x)
    count = int(np.prod(shape))
    if count == 0:
        return np.zeros(shape, dtype=np.float32)
    rows = -(-count // _REMAP_ROW)
    maps = np.zeros((2, rows * _REMAP_ROW), dtype=np.float32)
    for axis, (values, salt) in enumerate(((x, 0x9E3779B1), (y, 0x85EBCA77))):
        offset = ((seed * salt + axis * 0x27D4EB2F) % 2**32) / 2**32 * size - 0.5
        target = maps[axis, :count]
        np.multiply(np.ravel(values), _NOISE_TEXELS, out=target, casting="unsafe")
        target += np.float32(offset)
        np.mod(target, np.float32(size), out=target)
    sampled = cv2.remap(
        texture,
        maps[0].reshape(rows, _REMAP_ROW),
        maps[1].reshape(rows, _REMAP_ROW),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_WRAP,
    )
    return sampled.reshape(-1)[:count].reshape(shape)


def fbm(x: np.ndarray, y: np.ndarray, seed: int, scale: float, octaves: int, footprint: np.ndarray) -> np.ndarray:
    """Fractal noise in about [-0.5, 0.5] with features of ``scale`` metres and finer octaves.

    An octave finer than the pixel ``footprint`` (metres per pixel, per sample) fades
    to its mean, so distant texture averages out instead of aliasing.
    """
    total = np.zeros(np.shape(x), dtype=np.float32)
    amplitude, frequency = 0.5, 1.0 / scale
    for octave in range(octaves):
        fade = np.clip(1.5 - 2.0 * footprint * frequency, 0.0, 1.0).astype(np.float32)
        if np.any(fade > 0):
            total += amplitude * fade * (value_noise(x * frequency, y * frequency, seed + 101 * octave) - 0.5)
        amplitude *= 0.5
        frequency *= 2.0
    return total


def box_coverage(x: np.ndarray, lo: float, hi: float, width: np.ndarray) -> np.ndarray:
    """Share of the interval [x - width/2, x + width/2] inside [lo, hi]: an anti-aliased band."""
    half = np.maximum(width, 1e-6) * 0.5
    return np.clip((np.minimum(x + half, hi) - np.maximum(x - half, lo)) / (2 * half), 0.0, 1.0)


def periodic_coverage(x: np.ndarray, period: float, lo: float, hi: float, width: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the bands [lo, hi] + k * period (0 <= lo < hi <= period)."""
    phase = np.mod(x, period)
    duty = (hi - lo) / period
    covered = box_coverage(phase, lo, hi, width) + box_coverage(phase - period, lo, hi, width)
    covered = covered + box_coverage(phase + period, lo, hi, width)
    blend = np.clip(width / period - 0.5, 0.0, 1.0)  # footprint wider than a period: the mean
    return np.clip(covered, 0.0, 1.0) * (1 - blend) + duty * blend


def _srgb(r: float, g: float, b: float) -> np.ndarray:
    """An sRGB colour (0..1) as linear RGB float32."""
    return (np.array([r, g, b], dtype=np.float32) ** 2.2).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class Quad:
    """A planar rectangle: ``origin`` + a * ``u`` + b * ``v`` for a in [0, width], b in [0, height].

    ``u`` and ``v`` are orthogonal unit vectors in world coordinates (x right, y up,
    z forward at the start of the road); the face is seen from the side of ``u x v``
    unless ``two_sided``.
    """

    origin: Vector
    u: Vector
    v: Vector
    width: float
    height: float
    pattern: Pattern
    two_sided: bool = False
    normal: Vector = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Cache the unit normal u x v (drawn every frame)."""
        object.__setattr__(self, "normal", np.cross(self.u, self.v))

    def corners(self) -> np.ndarray:
        """(4, 3) world corners in order."""
        o, u, v = self.origin, self.u * self.width, self.v * self.height
        return np.stack([o, o + u, o + u + v, o + v])


@dataclass
class SceneObject:
    """Quads drawn together (one object), with the world point that orders objects far to near."""

    anchor: Vector
    quads: list[Quad]
    #: Glowing lights: (position, linear rgb, radius in metres).
    lights: list[tuple[Vector, np.ndarray, float]] = field(default_factory=list)
    #: Lights that illuminate the scene (street lamps): (position, linear rgb).
    lamps: list[tuple[Vector, np.ndarray]] = field(default_factory=list)
    #: Tree crowns: (centre, leaf albedo, radius in metres, texture seed).
    crowns: list[tuple[Vector, np.ndarray, float, int]] = field(default_factory=list)

    def radius(self) -> float:
        """Radius of a sphere around ``anchor`` that holds every quad, crown and light (for frustum culling)."""
        points = [quad.corners() for quad in self.quads]
        points += [np.array([centre]) for centre, _, _, _ in self.crowns]
        points += [np.array([position]) for position, _, _ in self.lights]
        extra = max([r for _, _, r, _ in self.crowns], default=0.0)
        if not points:
            return extra
        return float(np.linalg.norm(np.concatenate(points) - self.anchor, axis=1).max()) + extra


def _clip_near(points: np.ndarray) -> np.ndarray:
    """Clip a convex polygon (k, 3) in camera coordinates to z >= NEAR (Sutherland-Hodgman)."""
    out: list[np.ndarray] = []
    count = len(points)
    for index in range(count):
        current, following = points[index], points[(index + 1) % count]
        inside_c, inside_f = current[2] >= NEAR, following[2] >= NEAR
        if inside_c:
            out.append(current)
        if inside_c != inside_f:
            t = (NEAR - current[2]) / (following[2] - current[2])
            out.append(current + t * (following - current))
    return np.array(out) if out else np.zeros((0, 3))


def _in_view(camera: Camera, obj: SceneObject, half_w: float, half_h: float) -> bool:
    """False when the object's bounding sphere is wholly behind the camera or outside the view frustum."""
    x, y, z = camera.to_camera(obj.anchor[None, :])[0]
    radius = obj.radius()
    if z + radius < NEAR:
        return False
    slack_w = radius * math.sqrt(1.0 + half_w * half_w)
    slack_h = radius * math.sqrt(1.0 + half_h * half_h)
    return abs(x) - slack_w <= z * half_w and abs(y) - slack_h <= z * half_h


@dataclass
class Camera:
    """A pinhole camera: position, camera-to-world rotation (x right, y up, z forward), focal length in pixels."""

    position: Vector
    rotation: np.ndarray
    focal: float
    cx: float
    cy: float

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World (k, 3) -> camera (k, 3)."""
        return (points - self.position) @ self.rotation

    def project(self, camera_points: np.ndarray) -> np.ndarray:
        """Camera (k, 3) with z > 0 -> pixel (k, 2) as (x, y)."""
        z = camera_points[:, 2]
        return np.stack(
            [self.cx + self.focal * camera_points[:, 0] / z, self.cy - self.focal * camera_points[:, 1] / z], axis=1
        )


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation: yaw about y (positive turns right), pitch about x (positive looks down), roll."""
    cy_, sy_ = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    r_yaw = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
    r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_yaw @ r_pitch @ r_roll


def box_quads(
    corner: Vector,
    along: Vector,
    across: Vector,
    size: tuple[float, float, float],
    sides: Pattern,
    ends: Pattern | None = None,
    top: Pattern | None = None,
) -> list[Quad]:
    """The outward-facing faces of a box standing on ``corner``: ``size`` = (length along, depth across, height).

    ``along`` and ``across`` are horizontal unit vectors with ``across`` = ``along`` turned
    right (so the faces' normals point out); ``sides`` textures the two long faces,
    ``ends`` the faces at either end (the back, normal -along, first), ``top`` the roof.
    Face coordinates: a along the face (left to right seen from outside), b up.
    """
    length, depth, height = size
    up = np.array([0.0, 1.0, 0.0])
    ends = ends or sides
    quads = [
        Quad(corner + across * depth, -across, up, depth, height, ends),  # back end, normal -along
        Quad(corner + along * length, across, up, depth, height, ends),  # front end, normal +along
        Quad(corner, along, up, length, height, sides),  # normal -across
        Quad(corner + across * depth + along * length, -along, up, length, height, sides),  # normal +across
    ]
    if top is not None:
        quads.append(Quad(corner + up * height, along, across, length, depth, top))
    return quads


# ---------------------------------------------------------------------------------------------------------------------
# The scene


@dataclass(frozen=True)
class Lighting:
    """Light of one clip (linear RGB)."""

    name: str
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    ambient: np.ndarray
    sun: np.ndarray
    sun_direction: Vector
    fog: np.ndarray
    night: float  # 0 = full day, 1 = night: how much lamps, windows and vehicle lights glow
    clouds: float


def _lighting(name: str, rng: np.random.Generator) -> Lighting:
    """Sky, ambient, sun and fog colours for a time of day, jittered per clip."""
    jitter = (rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, 3)).astype(np.float32)
    azimuth = rng.uniform(-math.pi, math.pi)
    if name == "day":
        elevation = rng.uniform(0.35, 1.1)
        zenith, horizon = _srgb(0.35, 0.55, 0.85), _srgb(0.78, 0.85, 0.92)
        ambient, sun, fog, night, clouds = _srgb(0.55, 0.6, 0.7), _srgb(1.0, 0.95, 0.85) * 1.6, horizon, 0.0, 0.5
    elif name == "overcast":
        elevation = rng.uniform(0.5, 1.2)
        grey = rng.uniform(0.55, 0.85)
        zenith, horizon = _srgb(grey * 0.85, grey * 0.88, grey * 0.93), _srgb(grey, grey, grey * 1.02)
        ambient, sun, fog, night, clouds = _srgb(0.72, 0.74, 0.78), _srgb(0.3, 0.3, 0.3), horizon, 0.0, 0.8
    elif name == "dusk":
        elevation = rng.uniform(0.0, 0.12)
        zenith, horizon = _srgb(0.2, 0.22, 0.42), _srgb(0.95, 0.55, 0.3)
        ambient, sun, fog, night, clouds = (
            _srgb(0.32, 0.28, 0.32),
            _srgb(1.0, 0.6, 0.35),
            _srgb(0.55, 0.42, 0.4),
            0.6,
            0.6,
        )
    else:
        elevation = -0.3
        zenith, horizon = _srgb(0.02, 0.025, 0.05), _srgb(0.14, 0.11, 0.1)
        ambient, sun, fog, night, clouds = _srgb(0.05, 0.055, 0.07), _srgb(0, 0, 0), _srgb(0.08, 0.07, 0.07), 1.0, 0.3
    direction = np.array(
        [math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth)]
    )
    return Lighting(
        name=name,
        sky_zenith=zenith * jitter,
        sky_horizon=horizon * jitter,
        ambient=ambient * jitter,
        sun=sun,
        sun_direction=direction,
        fog=fog * jitter,
        night=night,
        clouds=clouds * rng.uniform(0.4, 1.2),
    )


#: Rec. 709 luma weights of linear RGB.
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
#: Facade colours (sRGB): brick, render, concrete, glass, dark brick, white, sandstone.
_FACADES = (
    (0.55, 0.3, 0.22),
    (0.82, 0.76, 0.64),
    (0.58, 0.58, 0.56),
    (0.35, 0.45, 0.52),
    (0.36, 0.22, 0.18),
    (0.88, 0.88, 0.85),
    (0.74, 0.63, 0.45),
)
#: Vehicle paint (sRGB): white, black, silver, grey, red, blue, dark green, yellow.
_PAINTS = (
    (0.9, 0.9, 0.9),
    (0.06, 0.06, 0.07),
    (0.65, 0.66, 0.68),
    (0.35, 0.36, 0.38),
    (0.65, 0.08, 0.07),
    (0.12, 0.22, 0.5),
    (0.1, 0.25, 0.15),
    (0.9, 0.72, 0.1),
)


class RoadScene:
    """One clip's world: road layout, roadside objects, traffic, light and the camera path.

    Build with :meth:`sample`; :meth:`render` draws frame ``index`` (h, w, 3) uint8 RGB.
    """

    def __init__(self, config: RoadSceneConfig, rng: np.random.Generator, width: int, height: int) -> None:
        if width < 8 or height < 8:
            raise InputError(f"road scenes need frames of at least 8x8 pixels, got {width}x{height}")
        self.config = config
        self.width, self.height = width, height
        self.seed = int(rng.integers(0, 2**31 - 1))
        weights = np.array(config.time_weights, dtype=np.float64)
        self.light = _lighting(TIMES_OF_DAY[int(rng.choice(len(TIMES_OF_DAY), p=weights / weights.sum()))], rng)
        self.lanes = int(rng.integers(config.lanes[0], config.lanes[1] + 1))
        self.oncoming_lanes = int(rng.integers(0, self.lanes + 1))
        self.lane_width = draw(rng, config.lane_width)
        self.right_edge = self.lanes * self.lane_width
        self.left_edge = -max(self.oncoming_lanes, 0.35) * self.lane_width
        self.parked_probability = draw(rng, config.parked_probability)
        # Parked cars stand in a parking strip between the edge line and the kerb, never in a lane.
        self.shoulder = rng.uniform(2.2, 2.8) if self.parked_probability > 0.1 else rng.uniform(0.0, 0.8)
        self.sidewalk = draw(rng, config.sidewalk)
        self.kerb = rng.uniform(0.12, 0.3)
        self.curvature = draw(rng, config.curvature)
        self.yellow_centre = bool(rng.random() < 0.35)
        self.dash = (rng.uniform(2.0, 4.0), rng.uniform(5.0, 10.0))
        self.asphalt = _srgb(*([rng.uniform(0.2, 0.38)] * 3)) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
        self.wet = rng.uniform(0.3, 1.0)
        self.verge = _srgb(0.3, 0.38, 0.2) if rng.random() < 0.6 else _srgb(0.45, 0.4, 0.33)
        self.paving = _srgb(*([rng.uniform(0.45, 0.65)] * 3))
        self.building_probability = draw(rng, config.building_probability)
        self.building_height = config.building_height
        self.tree_probability = draw(rng, config.tree_probability)
        self.lamp_spacing = draw(rng, config.lamp_spacing)
        self.lamp_offset = rng.uniform(0, self.lamp_spacing)
        self.visibility = draw(rng, config.visibility)
        #: Drawing distance: objects fade into the fog before it, so none pops up at the limit.
        self.far = min(FAR, 3.0 * self.visibility)
        self.saturation = draw(rng, config.saturation)
        self.tint = rng.uniform(0.92, 1.08, 3).astype(np.float32)
        # Camera path.
        stopped = rng.random() < config.stop_probability
        self.speed = 0.0 if stopped else draw(rng, config.speed)
        self.acceleration = 0.0 if stopped else rng.uniform(-0.02, 0.02)
        self.ego_lane = int(rng.integers(0, self.lanes))
        self.camera_height = draw(rng, config.camera_height)
        self.fov = math.radians(draw(rng, config.fov_deg))
        self.pitch = math.radians(draw(rng, config.pitch_deg))
        self.roll = math.radians(draw(rng, config.roll_deg))
        self.sway = draw(rng, config.sway)
        self.shake = math.radians(draw(rng, config.shake_deg))
        self.wobble = rng.uniform(0, 2 * math.pi, 8)
        self.wobble_rate = rng.uniform(0.05, 0.5, 8)
        self.exposure_drift = draw(rng, config.exposure_drift)
        self.exposure_phase = rng.uniform(0, 2 * math.pi)
        self.exposure: float | None = None
        self.traffic = self._sample_traffic(rng, draw(rng, config.traffic_density))
        self._slots: dict[tuple[int, int], list[SceneObject]] = {}
        scale = config.supersample
        self._grid = np.mgrid[0 : height * scale, 0 : width * scale].astype(np.float32)
        self._grid += 0.5

    @classmethod
    def sample(
        cls, config: RoadSceneConfig | None, rng: np.random.Generator | int, width: int, height: int
    ) -> RoadScene:
        """Draw a scene for frames of ``width`` x ``height``; ``rng`` a Generator (consumed) or a seed."""
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return cls(config or RoadSceneConfig(), generator, width, height)

    # -- road geometry ----------------------------------------------------------------------------------------------

    def centre_x(self, s: np.ndarray | float) -> np.ndarray | float:
        """World x of the road's reference line (lane 0's left edge) at distance s along the road."""
        return 0.5 * self.curvature * np.square(s)

    def heading(self, s: float) -> float:
        """Road direction at s (radians, positive = curving right)."""
        return math.atan(self.curvature * s)

    def to_world(self, s: float, lateral: float, height: float = 0.0) -> Vector:
        """Road coordinates -> world point."""
        return np.array([float(self.centre_x(s)) + lateral, height, s])

    def road_axes(self, s: float) -> tuple[Vector, Vector]:
        """(along, across) unit vectors of the road at s: forward and to the right."""
        angle = self.heading(s)
        along = np.array([math.sin(angle), 0.0, math.cos(angle)])
        return along, np.array([along[2], 0.0, -along[0]])

    def camera(self, index: int) -> Camera:
        """The camera at frame ``index``: position on the road, heading along it, sway and shake."""
        t = float(index)
        s = self.speed * t + 0.5 * self.acceleration * t * t
        w = self.wobble + self.wobble_rate * t
        lateral = (self.ego_lane + 0.5) * self.lane_width + self.sway * math.sin(w[0]) * 0.7
        height = self.camera_height + 0.015 * math.sin(w[1] * 3.0) * min(1.0, self.speed)
        yaw = self.heading(s) + 0.4 * self.shake * math.sin(w[2]) + 0.02 * self.sway * math.cos(w[0])
        pitch = self.pitch + 0.5 * self.shake * math.sin(w[3] * 2.0)
        roll = self.roll + 0.3 * self.shake * math.sin(w[4])
        scale = self.config.supersample
        width, height_px = self.width * scale, self.height * scale
        focal = 0.5 * width / math.tan(0.5 * self.fov)
        return Camera(self.to_world(s, lateral, height), _rotation(yaw, pitch, roll), focal, width / 2, height_px / 2)

    # -- traffic and roadside objects -------------------------------------------------------------------------------

    def _sample_traffic(self, rng: np.random.Generator, density: float) -> list[dict[str, float]]:
        """Moving vehicles: position at frame 0, lane offset, speed (m/frame), direction, shape, paint."""
        vehicles: list[dict[str, float]] = []
        span = (-20.0, 160.0)
        for lane in range(self.lanes):
            count = rng.poisson(density * (span[1] - span[0]))
            for _ in range(count):
                s = rng.uniform(*span)
                vehicle = self._vehicle(rng, s, (lane + 0.5) * self.lane_width, 1.0)
                if lane == self.ego_lane:  # ahead of the camera and not slower than it: never drives into it
                    vehicle["s"] = max(s, 0.0) + 12.0
                    vehicle["speed"] = max(vehicle["speed"], self.speed * 1.02)
                vehicles.append(vehicle)
        for lane in range(self.oncoming_lanes):
            count = rng.poisson(density * (span[1] - span[0]) * 1.5)
            for _ in range(count):
                vehicles.append(self._vehicle(rng, rng.uniform(0, 260.0), -(lane + 0.5) * self.lane_width, -1.0))
        return vehicles

    def _vehicle(self, rng: np.random.Generator, s: float, lateral: float, direction: float) -> dict[str, float]:
        """One vehicle's parameters (kind 0 car, 1 van, 2 truck/bus)."""
        kind = int(rng.choice(3, p=[0.75, 0.15, 0.1]))
        relative = rng.uniform(0.75, 1.25) if direction > 0 else rng.uniform(0.6, 1.4)
        return {
            "s": s,
            "lateral": lateral + rng.uniform(-0.25, 0.25),
            "speed": direction * max(0.2, self.speed * relative + rng.uniform(-0.2, 0.2)),
            "direction": direction,
            "kind": kind,
            "paint": int(rng.integers(len(_PAINTS))),
            "length": (rng.uniform(3.8, 4.9), rng.uniform(4.8, 6.0), rng.uniform(8.0, 12.0))[kind],
            "width": (rng.uniform(1.65, 1.9), rng.uniform(1.9, 2.1), rng.uniform(2.3, 2.55))[kind],
            "height": (rng.uniform(1.35, 1.55), rng.uniform(1.9, 2.5), rng.uniform(2.8, 3.6))[kind],
        }

    def _slot_objects(self, slot: int, side: int) -> list[SceneObject]:
        """Roadside objects of one slot (12 m) on one side (+1 right, -1 left), cached per clip."""
        key = (slot, side)
        if key not in self._slots:
            rng = np.random.default_rng([self.seed, slot + 100_000, side + 2])
            self._slots[key] = self._make_slot(rng, slot, side)
        return self._slots[key]

    def _make_slot(self, rng: np.random.Generator, slot: int, side: int) -> list[SceneObject]:
        """Buildings, trees, lamps, signs and parked cars of one slot."""
        objects: list[SceneObject] = []
        s0 = slot * SLOT
        edge = self.right_edge + self.shoulder if side > 0 else self.left_edge - self.shoulder
        kerb_out = edge + side * self.kerb
        walk_out = kerb_out + side * self.sidewalk
        if rng.random() < self.building_probability:
            length = rng.uniform(0.5, 1.0) * SLOT
            start = s0 + rng.uniform(0, SLOT - length)
            setback = walk_out + side * rng.uniform(0.0, 4.0)
            depth = rng.uniform(8.0, 20.0)
            height = math.exp(rng.uniform(*np.log(self.building_height)))
            objects.append(self._building(rng, start, length, setback, depth, height, side))
        elif rng.random() < 0.3:
            objects.append(self._wall(rng, s0, walk_out + side * rng.uniform(0.3, 2.0), side))
        for _ in range(2):
            if rng.random() < self.tree_probability * 0.6:
                s = s0 + rng.uniform(0, SLOT)
                lateral = kerb_out + side * rng.uniform(0.5, max(0.6, self.sidewalk + 2.5))
                objects.append(self._tree(rng, s, lateral))
        lamp_index = math.floor((s0 - self.lamp_offset) / self.lamp_spacing)
        lamp_s = self.lamp_offset + (lamp_index + 1) * self.lamp_spacing
        if s0 <= lamp_s < s0 + SLOT and (side > 0 or rng.random() < 0.5):
            objects.append(self._lamp(rng, lamp_s, kerb_out + side * 0.4, side))
        if rng.random() < 0.12:
            objects.append(self._sign(rng, s0 + rng.uniform(0, SLOT), kerb_out + side * 0.5, side))
        if self.shoulder > 2.0 and rng.random() < self.parked_probability:
            vehicle = self._vehicle(rng, s0 + rng.uniform(0, SLOT), edge - side * self.shoulder / 2, float(side))
            vehicle["speed"] = 0.0
            objects.append(self._vehicle_object(vehicle, 0))
        return objects

    def _building(
        self,
        rng: np.random.Generator,
        start: float,
        length: float,
        front: float,
        depth: float,
        height: float,
        side: int,
    ) -> SceneObject:
        """A box with a window grid on the faces; the front faces the road."""
        base = _srgb(*_FACADES[int(rng.integers(len(_FACADES)))]) * rng.uniform(0.8, 1.15)
        floor = rng.uniform(2.9, 3.8)
        cell = rng.uniform(1.8, 4.0)
        window = (rng.uniform(0.35, 0.75), rng.uniform(0.35, 0.65))
        lit_share = rng.uniform(0.15, 0.7) * self.light.night
        glass = _srgb(0.12, 0.15, 0.2) + 0.25 * self.light.sky_horizon
        pattern = _facade_pattern(base, glass, floor, cell, window, lit_share, int(rng.integers(2**31)))
        along, across = self.road_axes(start)
        inner = front if side > 0 else front - depth
        quads = box_quads(self.to_world(start, inner), along, across, (length, depth, height), pattern)
        anchor = self.to_world(start + length / 2, inner + depth / 2)
        return SceneObject(anchor, quads)

    def _wall(self, rng: np.random.Generator, s: float, lateral: float, side: int) -> SceneObject:
        """A low wall, fence or hedge along the road."""
        hedge = rng.random() < 0.5
        colour = _srgb(0.18, 0.3, 0.12) if hedge else _srgb(*([rng.uniform(0.4, 0.75)] * 3))
        height = rng.uniform(0.6, 2.2)
        pattern = _noise_pattern(colour, 0.3 if hedge else 4.0, 0.6 if hedge else 0.2, int(rng.integers(2**31)))
        along, across = self.road_axes(s)
        thickness = rng.uniform(0.2, 1.0) if hedge else 0.25
        inner = lateral if side > 0 else lateral - thickness
        quads = box_quads(self.to_world(s, inner), along, across, (SLOT, thickness, height), pattern, top=pattern)
        return SceneObject(self.to_world(s + SLOT / 2, inner), quads)

    def _tree(self, rng: np.random.Generator, s: float, lateral: float) -> SceneObject:
        """A trunk (two crossed quads) and a crown (a camera-facing textured disc, set at draw time)."""
        height = rng.uniform(3.5, 9.0)
        crown = rng.uniform(1.2, 3.0)
        base = self.to_world(s, lateral)
        bark = _noise_pattern(_srgb(0.25, 0.2, 0.15), 0.2, 0.3, int(rng.integers(2**31)))
        trunk = 0.12 + 0.03 * height
        quads = [
            Quad(
                base - np.array([trunk, 0, 0]),
                np.array([1.0, 0, 0]),
                np.array([0, 1.0, 0]),
                2 * trunk,
                height,
                bark,
                True,
            ),
            Quad(
                base - np.array([0, 0, trunk]),
                np.array([0, 0, 1.0]),
                np.array([0, 1.0, 0]),
                2 * trunk,
                height,
                bark,
                True,
            ),
        ]
        leaves = _srgb(rng.uniform(0.12, 0.3), rng.uniform(0.25, 0.42), rng.uniform(0.08, 0.18))
        centre = base + np.array([0.0, height, 0.0])
        return SceneObject(base, quads, crowns=[(centre, leaves, crown, int(rng.integers(2**31)))])

    def _lamp(self, rng: np.random.Generator, s: float, lateral: float, side: int) -> SceneObject:
        """A street lamp: pole, arm over the road and a head that glows at night."""
        height = rng.uniform(6.5, 9.5)
        base = self.to_world(s, lateral)
        metal = _flat_pattern(_srgb(0.35, 0.36, 0.38))
        width = 0.09
        up = np.array([0.0, 1.0, 0.0])
        _, across = self.road_axes(s)
        arm = -side * across
        quads = [
            Quad(base - np.array([width, 0, 0]), np.array([1.0, 0, 0]), up, 2 * width, height, metal, True),
            Quad(base - np.array([0, 0, width]), np.array([0, 0, 1.0]), up, 2 * width, height, metal, True),
            Quad(base + up * (height - 0.1), arm, np.array([0, 0, 1.0]), 1.8, 0.12, metal, True),
        ]
        head = base + up * (height - 0.15) + arm * 1.7
        colour = _srgb(1.0, 0.78, 0.45) if rng.random() < 0.6 else _srgb(0.85, 0.9, 1.0)
        obj = SceneObject(base, quads)
        obj.lights.append((head, colour * 4.0 * self.light.night, 0.3))
        obj.lamps.append((head, colour * 6.0 * self.light.night))
        return obj

    def _sign(self, rng: np.random.Generator, s: float, lateral: float, side: int) -> SceneObject:
        """A post with a coloured sign panel facing the traffic."""
        base = self.to_world(s, lateral)
        up = np.array([0.0, 1.0, 0.0])
        post = _flat_pattern(_srgb(0.5, 0.5, 0.5))
        colours = ((0.1, 0.25, 0.65), (0.8, 0.1, 0.1), (0.95, 0.95, 0.95), (0.1, 0.5, 0.2), (0.95, 0.75, 0.1))
        panel = _sign_pattern(_srgb(*colours[int(rng.integers(len(colours)))]), _srgb(0.95, 0.95, 0.95))
        size = rng.uniform(0.6, 1.4)
        height = rng.uniform(2.0, 2.8)
        right = np.array([1.0, 0, 0])
        quads = [
            Quad(base - np.array([0.04, 0, 0]), right, up, 0.08, height, post, True),
            Quad(base + up * height - right * size / 2, right, up, size, size, panel, True),
        ]
        return SceneObject(base, quads)

    def _vehicle_object(self, vehicle: dict[str, float], index: int, detail: bool = True) -> SceneObject:
        """A vehicle at frame ``index``: a body box (and a cabin for cars) with lights, windows and wheels."""
        s = vehicle["s"] + vehicle["speed"] * index
        along, _ = self.road_axes(s)
        forward = along * (1.0 if vehicle["direction"] > 0 else -1.0)
        right = np.array([forward[2], 0.0, -forward[0]])
        up = np.array([0.0, 1.0, 0.0])
        length, width, height = vehicle["length"], vehicle["width"], vehicle["height"]
        paint = _srgb(*_PAINTS[int(vehicle["paint"])])
        centre = self.to_world(s, vehicle["lateral"])
        rear_left = centre - forward * length / 2 - right * width / 2
        night = self.light.night
        car = vehicle["kind"] == 0
        body_h = height * (0.55 if car else 1.0)
        ends = _vehicle_ends_pattern(paint, width, body_h, night, car)
        quads: list[Quad] = []
        if detail:  # the contact shadow and the cabin only matter near the camera
            quads.append(Quad(rear_left - right * 0.25 - forward * 0.25 + up * 0.01, forward, right, length + 0.5,
                              width + 0.5, _shadow_pattern(length + 0.5, width + 0.5)))  # fmt: skip
        quads += box_quads(
            rear_left, forward, right, (length, width, body_h), _vehicle_side_pattern(paint, length, body_h, car), ends,
            _flat_pattern(paint * 0.9),
        )  # fmt: skip
        if car and detail:
            glass = _window_pattern(paint, self.light.sky_horizon)
            cabin_l, inset, cabin_w = length * 0.5, length * 0.22, width - 0.16
            corner = rear_left + forward * inset + right * 0.08 + up * body_h
            quads += box_quads(
                corner, forward, right, (cabin_l, cabin_w, height - body_h), glass, glass, _flat_pattern(paint * 0.85)
            )
        obj = SceneObject(centre, quads)
        if night > 0:
            for offset in (0.25, width - 0.25):
                tail = rear_left + right * offset + up * body_h * 0.7 - forward * 0.03
                obj.lights.append((tail, _srgb(1.0, 0.05, 0.02) * 1.5 * night, 0.1))
                head = rear_left + right * offset + up * body_h * 0.55 + forward * (length + 0.03)
                obj.lights.append((head, _srgb(1.0, 0.95, 0.85) * 2.0 * night, 0.12))
        return obj

    def objects(self, index: int, camera_s: float) -> list[SceneObject]:
        """Every object near enough to be seen at frame ``index`` (fog hides those beyond 3x the visibility)."""
        far = self.far
        first = math.floor((camera_s - SLOT) / SLOT)
        last = math.floor((camera_s + far) / SLOT)
        found: list[SceneObject] = []
        for slot in range(first, last + 1):
            for side in (1, -1):
                found.extend(self._slot_objects(slot, side))
        for vehicle in self.traffic:
            s = vehicle["s"] + vehicle["speed"] * index
            if camera_s - 15.0 < s < camera_s + far:
                found.append(self._vehicle_object(vehicle, index, detail=s < camera_s + 40.0))
        return found

    # -- rendering --------------------------------------------------------------------------------------------------

    def clip(self, num_frames: int) -> np.ndarray:
        """Frames 0..num_frames-1 as (t, h, w, 3) uint8 RGB."""
        return np.stack([self.render(index) for index in range(num_frames)])

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as (h, w, 3) uint8 RGB."""
        camera = self.camera(index)
        rays = self._rays(camera)
        radiance = np.zeros((*rays.shape[:2], 3), dtype=np.float32)
        depth = np.full(rays.shape[:2], np.inf, dtype=np.float32)
        emission = np.zeros_like(radiance)
        objects = self.objects(index, float(camera.position[2]))
        near = [
            np.concatenate([position, colour])
            for obj in objects
            for position, colour in obj.lamps
            if float(colour.max()) > 0 and float(np.linalg.norm(position - camera.position)) < 90.0
        ]
        lamps = np.array(near, dtype=np.float64).reshape(-1, 6)
        self._sky(rays, radiance)
        self._ground(camera, rays, radiance, depth, lamps)
        order = sorted(objects, key=lambda o: -float(np.linalg.norm(o.anchor - camera.position)))
        half_w = camera.cx / camera.focal
        half_h = camera.cy / camera.focal
        for obj in order:
            if not _in_view(camera, obj, half_w, half_h):
                continue
            for quad in obj.quads:
                self._draw_quad(camera, rays, quad, radiance, depth, emission, lamps)
            for centre, leaves, radius, seed in obj.crowns:
                self._draw_crown(camera, centre, leaves, radius, seed, radiance, depth)
            for position, colour, radius in obj.lights:
                self._draw_light(camera, position, colour, radius, radiance, depth, emission)
        self._fog(radiance, depth)
        return self._develop(radiance, emission, index)

    def _rays(self, camera: Camera) -> np.ndarray:
        """World ray direction per pixel (h, w, 3), scaled so the camera-z component is 1 (t = depth)."""
        ys, xs = self._grid
        dx = (xs - camera.cx) / camera.focal
        dy = -(ys - camera.cy) / camera.focal
        r = camera.rotation.astype(np.float32)
        return np.stack(
            [
                r[0, 0] * dx + r[0, 1] * dy + r[0, 2],
                r[1, 0] * dx + r[1, 1] * dy + r[1, 2],
                r[2, 0] * dx + r[2, 1] * dy + r[2, 2],
            ],
            axis=-1,
        )

    def _sky(self, rays: np.ndarray, radiance: np.ndarray) -> None:
        """Sky gradient by elevation, clouds on a plane 800 m up; pixels below the horizon are left to the ground."""
        light = self.light
        upward = rays[..., 1] > -0.05
        if not upward.any():
            return
        d = rays[upward]
        norm = np.sqrt(np.einsum("ij,ij->i", d, d))
        elevation = np.clip(d[:, 1] / norm, -1.0, 1.0)
        blend = np.clip(elevation * 2.5, 0.0, 1.0)[:, None] ** 0.6
        sky = light.sky_horizon * (1 - blend) + light.sky_zenith * blend
        up = np.maximum(d[:, 1], 1e-3)
        cx, cz = d[:, 0] / up * 800.0, d[:, 2] / up * 800.0
        footprint = 800.0 / up / (self.width * self.config.supersample)
        cloud = fbm(cx, cz, self.seed + 17, 600.0, 3, footprint) + 0.5
        amount = np.clip((cloud - (1.0 - light.clouds * 0.8)) * 3.0, 0.0, 1.0) * np.clip(elevation * 8.0, 0.0, 1.0)
        cloud_colour = light.sky_horizon * (1.1 if light.name != "night" else 1.6)
        radiance[upward] = sky * (1 - amount[:, None]) + cloud_colour * amount[:, None]

    def _irradiance(self, points: np.ndarray, normal: Vector, lamps: np.ndarray, camera: Camera) -> np.ndarray:
        """Light arriving at world ``points`` (n, 3) on a surface facing ``normal`` (3,): sky, sun, lamps, headlights.

        ``lamps``: (L, 6) street lamps as position and linear rgb (night only; (0, 6) by day).
        Returns (n, 3), or (1, 3) when the light is the same everywhere (no local lights).
        """
        light = self.light
        total = light.ambient * (0.75 + 0.25 * float(np.clip(normal[1], -1.0, 1.0)))
        if float(light.sun.max()) > 0:
            total = total + light.sun * float(np.clip(normal @ light.sun_direction, 0.0, 1.0))
        total = total[None, :].astype(np.float32)
        if light.night <= 0:
            return total
        height = points @ normal  # distance along the normal, per point
        if len(lamps):
            positions, colours = lamps[:, :3], lamps[:, 3:]
            distance2 = (
                np.einsum("ij,ij->i", points, points)[:, None]
                + np.einsum("ij,ij->i", positions, positions)[None, :]
                - 2.0 * points @ positions.T
            )
            towards = (positions @ normal)[None, :] - height[:, None]
            facing = np.clip(towards / np.sqrt(np.maximum(distance2, 1e-6)), 0.0, 1.0)
            total = total + (facing / (1.0 + np.maximum(distance2, 0.0) / 9.0)) @ (colours * 0.6)
        # Ego headlights: a cone ahead of the camera, low and forward (lit surfaces face the car).
        along = camera.rotation[:, 2]
        source = camera.position - np.array([0.0, 0.6, 0.0])
        relative = points - source
        forward = relative @ along
        sideways2 = np.maximum(np.einsum("ij,ij->i", relative, relative) - forward**2, 0.0)
        spread2 = sideways2 / np.maximum(forward * 0.35 + 0.5, 0.1) ** 2
        beam = np.exp(-spread2) * np.clip(forward / 4.0, 0.0, 1.0) / (1.0 + (forward / 25.0) ** 2)
        facing_car = float(np.clip(-(normal @ along), 0.0, 1.0)) if abs(normal[1]) < 0.5 else 1.0
        return total + _srgb(1.0, 0.96, 0.88)[None, :] * (1.6 * light.night * facing_car * beam)[:, None]

    def _ground(
        self,
        camera: Camera,
        rays: np.ndarray,
        radiance: np.ndarray,
        depth: np.ndarray,
        lamps: np.ndarray,
    ) -> None:
        """The road plane: asphalt, markings, kerbs, sidewalks and verges in road coordinates."""
        down = rays[..., 1] < -1e-4
        t = -camera.position[1] / np.where(down, rays[..., 1], -1.0)
        hit = down & (t < FAR * 1.5)
        if not hit.any():
            return
        t = t[hit]
        points = camera.position[None, :] + t[:, None] * rays[hit]
        s = points[:, 2]
        lateral = points[:, 0] - self.centre_x(s)
        focal = camera.focal
        across_fp = t / focal * 1.2
        along_fp = np.minimum(t * t / (focal * max(camera.position[1], 0.3)), 50.0) * 1.2 + across_fp
        colour = self._road_surface(s, lateral, across_fp, along_fp)
        lit = colour * self._irradiance(points, np.array([0.0, 1.0, 0.0]), lamps, camera)
        radiance[hit] = lit
        depth[hit] = t

    def _road_surface(self, s: np.ndarray, lateral: np.ndarray, across: np.ndarray, along: np.ndarray) -> np.ndarray:
        """Albedo (n, 3) of the ground at road coordinates, box-filtered by the footprints (metres)."""
        seed = self.seed
        right, left = self.right_edge, self.left_edge
        footprint = np.maximum(across, along * 0.3)
        grain = fbm(s, lateral, seed + 1, 0.6, 3, footprint)
        patches = fbm(s * 0.3, lateral, seed + 2, 6.0, 2, footprint)
        asphalt = self.asphalt[None, :] * (1.0 + 0.5 * grain + 0.5 * patches)[:, None]
        # Tyre tracks are darker and smoother (wet): two bands per lane.
        track = np.zeros_like(s)
        for lane in range(-self.oncoming_lanes, self.lanes):
            centre = (lane + 0.5) * self.lane_width
            for offset in (-0.8, 0.8):
                track = np.maximum(track, box_coverage(lateral, centre + offset - 0.3, centre + offset + 0.3, across))
        asphalt = asphalt * (1.0 - 0.15 * self.wet * track)[:, None]
        # Markings: lane dividers (dashed), edge lines (solid), the centre line (solid or dashed, maybe yellow).
        paint = np.zeros_like(s)
        line = 0.13
        wear = np.clip(1.2 - 1.5 * (fbm(s, lateral * 3, seed + 3, 0.5, 2, footprint) + 0.5), 0.3, 1.0)
        dash_len, gap = self.dash
        dashes = periodic_coverage(s, dash_len + gap, 0.0, dash_len, along)
        for lane in range(1, self.lanes):
            x = lane * self.lane_width
            paint = np.maximum(paint, box_coverage(lateral, x - line / 2, x + line / 2, across) * dashes)
        for lane in range(1, self.oncoming_lanes):
            x = -lane * self.lane_width
            paint = np.maximum(paint, box_coverage(lateral, x - line / 2, x + line / 2, across) * dashes)
        paint = np.maximum(paint, box_coverage(lateral, right - 0.25, right - 0.25 + line, across))
        if self.oncoming_lanes:
            paint = np.maximum(paint, box_coverage(lateral, left + 0.12, left + 0.12 + line, across))
        centre_line = box_coverage(lateral, -line / 2, line / 2, across)
        if self.oncoming_lanes == 0:
            centre_line = box_coverage(lateral, left + 0.12, left + 0.12 + line, across)
        white = _srgb(0.85, 0.85, 0.82)
        yellow = _srgb(0.9, 0.7, 0.15) if self.yellow_centre else white
        colour = asphalt * (1 - paint * wear)[:, None] + white[None, :] * (paint * wear)[:, None]
        colour = colour * (1 - centre_line * wear)[:, None] + yellow[None, :] * (centre_line * wear)[:, None]
        # Beside the road: shoulder (asphalt), kerb, sidewalk (paving), verge.
        outside_r = lateral - (right + self.shoulder)
        outside_l = (left - self.shoulder) - lateral
        outside = np.maximum(outside_r, outside_l)
        kerb = box_coverage(outside, 0.0, self.kerb, across)
        walk = box_coverage(outside, self.kerb, self.kerb + self.sidewalk, across)
        verge = box_coverage(outside, self.kerb + self.sidewalk, 1e6, across)
        seams = 1.0 - 0.35 * np.maximum(
            periodic_coverage(s, 0.6, 0.0, 0.04, along), periodic_coverage(lateral, 0.6, 0.0, 0.04, across)
        )
        paving = self.paving[None, :] * (seams * (1.0 + 0.4 * grain))[:, None]
        kerb_colour = _srgb(0.7, 0.7, 0.68)[None, :] * (1.0 + 0.3 * grain)[:, None]
        verge_noise = fbm(s, lateral, seed + 4, 1.5, 3, footprint)
        verge_colour = self.verge[None, :] * (1.0 + 1.2 * verge_noise)[:, None]
        road = 1.0 - kerb - walk - verge
        return (
            colour * road[:, None]
            + kerb_colour * kerb[:, None]
            + paving * walk[:, None]
            + verge_colour * verge[:, None]
        ).astype(np.float32)

    def _draw_quad(
        self,
        camera: Camera,
        rays: np.ndarray,
        quad: Quad,
        radiance: np.ndarray,
        depth: np.ndarray,
        emission: np.ndarray,
        lamps: np.ndarray,
    ) -> None:
        """Ray-trace one quad inside its projected outline; nearer pixels (depth) are kept."""
        normal = quad.normal
        to_camera = camera.position - quad.origin
        if not quad.two_sided and float(normal @ to_camera) <= 0:
            return
        corners = _clip_near(camera.to_camera(quad.corners()))
        if len(corners) < 3:
            return
        pixels = camera.project(corners)
        height, width = rays.shape[:2]
        x0, y0 = np.floor(pixels.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pixels.max(axis=0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, width), min(y1 + 1, height)
        if x0 >= x1 or y0 >= y1:
            return
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        shift = 4
        outline = np.round((pixels - np.array([x0, y0]) - 0.5) * (1 << shift)).astype(np.int32)
        cv2.fillConvexPoly(mask, outline, 1, lineType=cv2.LINE_8, shift=shift)
        inside = mask.astype(bool)
        if not inside.any():
            return
        region = (slice(y0, y1), slice(x0, x1))
        d = rays[region][inside]
        denominator = d @ normal
        denominator = np.where(np.abs(denominator) < 1e-6, 1e-6, denominator)
        t = (to_camera @ normal) * -1.0 / denominator
        t = np.maximum(t, NEAR)
        sub_depth = depth[region]
        nearer = t < sub_depth[inside]
        if not nearer.any():
            return
        t, d = t[nearer], d[nearer]
        points = camera.position[None, :] + t[:, None] * d
        local = points - quad.origin
        a, b = local @ quad.u, local @ quad.v
        slant = np.abs(denominator[nearer]) / np.linalg.norm(d, axis=1)
        footprint = t / camera.focal / np.maximum(slant, 0.15) * 1.2
        albedo, glow, alpha = quad.pattern(a, b, footprint)
        facing = normal if float(normal @ to_camera) > 0 else -normal
        lit = albedo * self._irradiance(points, facing, lamps, camera)
        if glow is not None:
            lit = lit + glow
        rows, cols = np.nonzero(inside)
        rows, cols = rows[nearer] + y0, cols[nearer] + x0
        if alpha is None:
            radiance[rows, cols] = lit
            depth[rows, cols] = t
        else:
            keep = alpha > 0.5
            radiance[rows, cols] = radiance[rows, cols] * (1 - alpha[:, None]) + lit * alpha[:, None]
            depth[rows[keep], cols[keep]] = t[keep]
        if glow is not None:
            emission[rows, cols] += glow * 0.5

    def _draw_crown(
        self,
        camera: Camera,
        centre: Vector,
        colour: np.ndarray,
        radius: float,
        seed: int,
        radiance: np.ndarray,
        depth: np.ndarray,
    ) -> None:
        """A tree crown: a camera-facing disc with a leafy, ragged edge and shading."""
        local = camera.to_camera(centre[None, :])[0]
        if local[2] < NEAR + radius:
            return
        cx, cy = camera.project(local[None, :])[0]
        size = camera.focal * radius / local[2]
        if size < 0.7:
            return
        height, width = radiance.shape[:2]
        x0, x1 = max(int(cx - 1.3 * size), 0), min(int(cx + 1.3 * size) + 1, width)
        y0, y1 = max(int(cy - 1.3 * size), 0), min(int(cy + 1.3 * size) + 1, height)
        if x0 >= x1 or y0 >= y1:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u, v = (xs + 0.5 - cx) / size, (ys + 0.5 - cy) / size
        rho = np.hypot(u, v * 1.1)
        leaf_scale = max(size / 6.0, 0.5)
        leaves = value_noise(u * 6.0 + seed % 97, v * 6.0, seed) + 0.5 * value_noise(u * 14.0, v * 14.0, seed + 1)
        edge = 1.0 + 0.25 * (leaves - 0.75)
        alpha = np.clip((edge - rho) * size / 1.5, 0.0, 1.0)
        nearer = local[2] < depth[y0:y1, x0:x1]
        alpha = alpha * nearer
        shade = (0.55 + 0.6 * (leaves - 0.75) * min(1.0, leaf_scale) - 0.25 * v).astype(np.float32)
        ambient = self.light.ambient + self.light.sun * max(0.0, float(self.light.sun_direction[1])) * 0.5
        lit = colour[None, None, :] * ambient[None, None, :] * np.clip(shade, 0.1, 1.5)[..., None]
        block = radiance[y0:y1, x0:x1]
        block[:] = block * (1 - alpha[..., None]) + lit * alpha[..., None]
        depth[y0:y1, x0:x1] = np.where(alpha > 0.5, local[2], depth[y0:y1, x0:x1])

    def _draw_light(
        self,
        camera: Camera,
        position: Vector,
        colour: np.ndarray,
        radius: float,
        radiance: np.ndarray,
        depth: np.ndarray,
        emission: np.ndarray,
    ) -> None:
        """A glowing light (lamp head, head/tail-light): a bright disc, and its reflection on the wet road."""
        if float(colour.max()) <= 0:
            return
        local = camera.to_camera(position[None, :])[0]
        if local[2] < NEAR + 0.5:
            return
        cx, cy = camera.project(local[None, :])[0]
        size = max(camera.focal * radius / local[2], 0.6)
        height, width = radiance.shape[:2]
        if not (-4 * size <= cx < width + 4 * size and -4 * size <= cy < height + 4 * size):
            return
        if depth[int(np.clip(cy, 0, height - 1)), int(np.clip(cx, 0, width - 1))] < local[2] - 1.0:
            return  # hidden behind something nearer
        strength = colour
        _splat_disc(radiance, emission, cx, cy, size, strength)
        mirror = camera.to_camera((position * np.array([1.0, -1.0, 1.0]))[None, :])[0]
        if mirror[2] > NEAR and self.wet > 0.2:
            mx, my = camera.project(mirror[None, :])[0]
            stretch = max(size * 4.0, 3.0)
            _splat_disc(radiance, emission, mx, my, size * 1.2, strength * 0.15 * self.wet, stretch_y=stretch)

    def _fog(self, radiance: np.ndarray, depth: np.ndarray) -> None:
        """Atmospheric fog: blend towards the fog colour with distance (the sky stays)."""
        finite = np.isfinite(depth)
        distance = np.where(finite, depth, 0.0)
        fade = np.clip((self.far - distance) / (0.35 * self.far), 0.0, 1.0)  # to full fog at the drawing distance
        keep = (np.exp(-distance / self.visibility) * fade)[..., None]
        radiance[finite] = (radiance * keep + self.light.fog * (1 - keep))[finite]

    def _develop(self, radiance: np.ndarray, emission: np.ndarray, index: int) -> np.ndarray:
        """Camera: auto exposure with a slow drift, bloom, tint, saturation, gamma, downsampling, slight blur."""
        if self.exposure is None:
            luminance = radiance @ _LUMA
            key = float(np.exp(np.mean(np.log(luminance + 1e-4))))
            # Auto exposure towards a mid-grey key, limited as a camera's is: night stays dark.
            target, limit = (0.16, 12.0) if self.light.night < 0.5 else (0.05, 4.0)
            self.exposure = float(np.clip(target / max(key, 1e-4), 0.5, limit))
        drift = 1.0 + self.exposure_drift * math.sin(self.exposure_phase + 0.15 * index)
        image = radiance * (self.exposure * drift)
        scale = self.config.supersample
        if float(emission.max()) > 0:
            # Bloom: two blurs whose widths follow the frame, so glare looks alike at any resolution.
            width = radiance.shape[1]
            exposed = emission * (self.exposure * drift)
            glow = cv2.GaussianBlur(exposed, (0, 0), 0.006 * width)
            glow += cv2.GaussianBlur(exposed, (0, 0), 0.025 * width) * 0.5
            image = image + glow * 0.35
        image = image * self.tint
        grey = (image @ _LUMA)[..., None]
        image = grey + (image - grey) * self.saturation
        image = image / (1.0 + 0.15 * image)  # soft shoulder before clipping
        image = np.clip(image, 0.0, 1.0) ** (1 / 2.2)
        if scale > 1:
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        image = cv2.GaussianBlur(image, (0, 0), 0.5)
        return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _splat_disc(
    radiance: np.ndarray,
    emission: np.ndarray,
    cx: float,
    cy: float,
    size: float,
    strength: np.ndarray,
    stretch_y: float | None = None,
) -> None:
    """Add a soft bright ellipse (radius ``size``, vertical radius ``stretch_y``) to radiance and emission."""
    height, width = radiance.shape[:2]
    ry = stretch_y or size
    x0, x1 = max(int(cx - 2 * size) - 1, 0), min(int(cx + 2 * size) + 2, width)
    y0, y1 = max(int(cy - 2 * ry) - 1, 0), min(int(cy + 2 * ry) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    weight = np.exp(-(((xs + 0.5 - cx) / size) ** 2 + ((ys + 0.5 - cy) / ry) ** 2))
    add = weight[..., None] * strength[None, None, :]
    radiance[y0:y1, x0:x1] += add
    emission[y0:y1, x0:x1] += add


# ---------------------------------------------------------------------------------------------------------------------
# Patterns (face textures in metres)


def _flat_pattern(colour: np.ndarray) -> Pattern:
    """One colour."""

    def pattern(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, None, None]:
        return np.broadcast_to(colour, (len(a), 3)), None, None

    return pattern


def _noise_pattern(colour: np.ndarray, scale: float, strength: float, seed: int) -> Pattern:
    """A colour with fractal noise (bark, hedges, concrete walls)."""

    def pattern(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, None, None]:
        if len(a) < _TEXTURED:  # a few pixels: the texture would not show
            return np.broadcast_to(colour, (len(a), 3)), None, None
        noise = fbm(a, b, seed, scale, 3, footprint)
        return colour[None, :] * (1.0 + strength * 2.0 * noise)[:, None], None, None

    return pattern


def _facade_pattern(
    base: np.ndarray,
    glass: np.ndarray,
    floor: float,
    cell: float,
    window: tuple[float, float],
    lit_share: float,
    seed: int,
) -> Pattern:
    """Wall with a grid of windows (one per floor and cell); some windows are lit at night; a shop floor."""
    win_w, win_h = window

    def pattern(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, None]:
        margin_w, margin_h = cell * (1 - win_w) / 2, floor * (1 - win_h) * 0.6
        horizontal = periodic_coverage(a, cell, margin_w, cell - margin_w, footprint)
        vertical = periodic_coverage(b, floor, margin_h, margin_h + floor * win_h, footprint)
        shop = b < floor
        vertical = np.where(shop, box_coverage(b, 0.4, floor - 0.5, footprint), vertical)
        glazing = horizontal * vertical
        column, row = np.floor(a / cell), np.floor(b / floor)
        pick = _hash(column.astype(np.int64), row.astype(np.int64), seed)
        stains = fbm(a, b, seed, 3.0, 2, footprint) if len(a) >= _TEXTURED else 0.0  # invisible when small
        wall = base[None, :] * (1.0 + 0.25 * np.asarray(stains))[..., None]
        blinds = (0.6 + 0.8 * pick)[:, None]
        colour = wall * (1 - glazing)[:, None] + (glass[None, :] * blinds) * glazing[:, None]
        glow = None
        if lit_share > 0:
            lit = (pick < lit_share) | (shop & (pick < 0.7))
            warm = np.where(pick[:, None] < 0.5, _srgb(1.0, 0.8, 0.5)[None, :], _srgb(0.9, 0.9, 1.0)[None, :])
            glow = warm * (glazing * lit * (0.25 + 0.35 * pick))[:, None]
        return colour, glow, None

    return pattern


def _sign_pattern(colour: np.ndarray, border: np.ndarray) -> Pattern:
    """A sign panel: coloured field with a light border and a light symbol."""

    def pattern(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, None, None]:
        size = float(np.max(a)) if len(a) else 1.0
        edge = 1.0 - box_coverage(a, size * 0.08, size * 0.92, footprint) * box_coverage(
            b, size * 0.08, size * 0.92, footprint
        )
        symbol = box_coverage(a, size * 0.4, size * 0.6, footprint) * box_coverage(
            b, size * 0.25, size * 0.75, footprint
        )
        mix = np.clip(edge + symbol, 0.0, 1.0)[:, None]
        return colour[None, :] * (1 - mix) + border[None, :] * mix, None, None

    return pattern


def _window_pattern(paint: np.ndarray, sky: np.ndarray) -> Pattern:
    """Car cabin: tinted glass with a painted frame (pillars)."""
    glass = _srgb(0.08, 0.09, 0.11) + 0.2 * sky

    def pattern(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, None, None]:
        top = float(np.max(b)) if len(b) else 1.0
        frame = 1.0 - box_coverage(b, 0.05, max(0.06, top - 0.06), footprint)
        return glass[None, :] * (1 - frame)[:, None] + paint[None, :] * frame[:, None], None, None

    return pattern


def _vehicle_ends_pattern(paint: np.ndarray, width: float, height: float, night: float, car: bool) -> Pattern:
    """Either end of a vehicle body: paint, a dark bumper strip, two lamps and a number plate; glass on vans.

    Both ends share it (the lamps are amber-white; the red tail-lights glow as lights at night).
    """
    lamp_colour = _srgb(0.85, 0.75, 0.6)
    dark = _srgb(0.04, 0.04, 0.045)
    plate = _srgb(0.9, 0.9, 0.85)
    lamp_y = (height * 0.55, height * 0.75) if car else (0.5, 0.8)
    lamp_w = 0.35

    def pattern(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, None, None]:
        colour = np.broadcast_to(paint, (len(a), 3)).copy()
        bumper = box_coverage(b, 0.0, 0.32, footprint)
        colour = colour * (1 - bumper)[:, None] + dark[None, :] * bumper[:, None]
        left = box_coverage(a, 0.08, 0.08 + lamp_w, footprint)
        right = box_coverage(a, width - 0.08 - lamp_w, width - 0.08, footprint)
        lamps = box_coverage(b, *lamp_y, footprint) * np.maximum(left, right)
        colour = colour * (1 - lamps)[:, None] + lamp_colour[None, :] * lamps[:, None]
        sign = box_coverage(a, width / 2 - 0.26, width / 2 + 0.26, footprint) * box_coverage(b, 0.35, 0.47, footprint)
        colour = colour * (1 - sign)[:, None] + plate[None, :] * sign[:, None]
        if not car:
            across = box_coverage(a, 0.15, width - 0.15, footprint)
            glass = box_coverage(b, height * 0.6, height * 0.92, footprint) * across
            colour = colour * (1 - glass)[:, None] + dark[None, :] * glass[:, None]
        return colour, None, None

    return pattern


def _vehicle_side_pattern(paint: np.ndarray, length: float, height: float, car: bool) -> Pattern:
    """Side of a vehicle body: paint, two dark wheels, a dark sill; windows along vans and buses."""
    dark = _srgb(0.03, 0.03, 0.035)
    wheel_r = 0.33 if car else 0.5

    def pattern(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, None, None]:
        colour = np.broadcast_to(paint, (len(a), 3)).copy()
        wheels = np.zeros_like(a)
        for centre in (0.8, length - 0.9):
            distance = np.hypot(a - centre, b - wheel_r)
            wheels = np.maximum(wheels, np.clip((wheel_r - distance) / np.maximum(footprint, 1e-3) + 0.5, 0.0, 1.0))
        sill = box_coverage(b, 0.0, 0.22, footprint)
        dark_share = np.maximum(wheels, sill)
        if not car:
            windows = box_coverage(b, height * 0.55, height * 0.85, footprint) * periodic_coverage(
                a, 1.6, 0.2, 1.4, footprint
            )
            dark_share = np.maximum(dark_share, windows * box_coverage(a, 0.5, length - 0.5, footprint))
        return colour * (1 - dark_share)[:, None] + dark[None, :] * dark_share[:, None], None, None

    return pattern


def _shadow_pattern(width: float, length: float) -> Pattern:
    """The contact shadow under a vehicle: black, fading towards the footprint's edge."""
    black = np.zeros(3, dtype=np.float32)

    def pattern(a: np.ndarray, b: np.ndarray, footprint: np.ndarray) -> tuple[np.ndarray, None, np.ndarray]:
        edge = np.minimum(np.minimum(a, width - a) / 0.35, np.minimum(b, length - b) / 0.35)
        return np.broadcast_to(black, (len(a), 3)), None, np.clip(edge, 0.0, 1.0) * 0.75

    return pattern


# ---------------------------------------------------------------------------------------------------------------------
# Clips


def make_road_clip(
    num_frames: int,
    size: tuple[int, int],
    rng: np.random.Generator | int = 0,
    config: RoadSceneConfig | None = None,
) -> np.ndarray:
    """A clip (t, h, w, 3) uint8 RGB of a camera driving along a procedural road.

    ``size``: (width, height); ``rng``: Generator (consumed) or seed; ``config``:
    ranges (None = :data:`ROAD_PRESETS` ``default``).
    """
    if num_frames < 1:
        raise InputError(f"make_road_clip needs num_frames >= 1, got {num_frames}")
    width, height = size
    return RoadScene.sample(config, rng, width, height).clip(num_frames)


def make_road_clips(
    count: int,
    num_frames: int,
    size: tuple[int, int],
    seed: int = 0,
    config: RoadSceneConfig | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``count`` (name, clip) pairs; clip i uses ``default_rng([seed, i])`` (independent of ``count``)."""
    for index in range(count):
        scene = RoadScene.sample(config, np.random.default_rng([seed, index]), *size)
        yield f"road_{scene.light.name}", scene.clip(num_frames)
