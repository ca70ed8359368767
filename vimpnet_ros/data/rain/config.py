"""Rain renderer configuration: parameter ranges as data, loaded from YAML and validated.

The tables below mirror ``vimpnet_ros/data/configs/rain_default.yaml`` (the shipped
defaults, which document each field). A user config may set any subset of the
fields; the rest keep the defaults of the dataclasses, which equal the shipped file.
``rain_heldout.yaml`` shifts the ranges for the held-out test set; ``rain_light.yaml`` (mostly
streak-free videos), ``rain_wide.yaml`` (larger drops) and ``rain_wide_heavy.yaml`` (those drops under the
heavier half of the default streaks), ``rain_wide_heavy_half.yaml`` (the same with half the videos streak-free)
and ``rain_wide_heavy_small_drops.yaml`` (small drops in every video under those streaks) are for training
(:data:`PRESETS`).

PyYAML is imported only to read a file: the defaults (``load_rain_config(None)``)
need no YAML, so training machines without PyYAML can render the default rain.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vimpnet_ros.config_files import read_extended
from vimpnet_ros.errors import ConfigError

#: A closed range [lo, hi]; one value is drawn per video (or per drop).
Range = tuple[float, float]


@dataclass(frozen=True)
class StreakConfig:
    """Ranges for rain streaks (falling particles, motion-blurred by the shutter)."""

    probability: float = 0.9
    density: Range = (2.0, 30.0)
    angle_deg: Range = (-30.0, 30.0)
    speed: Range = (0.10, 0.35)
    exposure: Range = (0.25, 1.0)
    intensity: Range = (0.2, 0.85)
    depth_falloff: Range = (0.15, 0.4)
    thickness: Range = (1.0, 3.0)
    blur: Range = (0.0, 1.2)
    layers: int = 4


@dataclass(frozen=True)
class DropConfig:
    """Ranges for raindrops on the lens or windshield."""

    probability: float = 0.9
    density: Range = (2.0, 14.0)
    radius: Range = (0.01, 0.07)
    irregularity: Range = (0.03, 0.15)
    aspect: Range = (0.75, 1.3)
    zoom: Range = (0.3, 0.85)
    look_up: Range = (0.5, 2.0)
    blur_sigma: Range = (0.8, 4.0)
    edge_width: Range = (1.0, 3.0)
    opacity: Range = (0.75, 1.0)
    rim_darkening: Range = (0.1, 0.45)
    brightness: Range = (0.9, 1.2)
    highlight: Range = (0.0, 0.35)
    static_probability: float = 0.3
    growth: Range = (0.0, 0.01)
    spawn_rate: Range = (0.0, 0.4)
    merge_overlap: float = 0.7
    slide_radius: float = 0.035
    slide_probability: float = 0.05
    slide_speed: Range = (0.004, 0.025)
    wipe_rate: float = 0.02
    wipe_frames: int = 3


@dataclass(frozen=True)
class SensorConfig:
    """Camera effects. ``gain``/``gamma`` change the clean frame itself (every stream: the
    scene as this camera exposes it); ``noise``/``shot_noise``/``jpeg_quality`` degrade
    only the rainy frame ``lq`` (the model learns to restore through them)."""

    probability: float = 0.8
    gain: Range = (0.7, 1.3)
    gamma: Range = (0.85, 1.2)
    noise: Range = (0.0, 0.012)
    shot_noise: Range = (0.0, 0.02)
    jpeg_probability: float = 0.5
    jpeg_quality: Range = (60.0, 95.0)


@dataclass(frozen=True)
class RainConfig:
    """The whole renderer configuration: streaks, drops and sensor effects."""

    streaks: StreakConfig = field(default_factory=StreakConfig)
    drops: DropConfig = field(default_factory=DropConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RainConfig:
        """Build and validate a config from a (possibly partial) nested mapping."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise ConfigError(f"unknown rain config section(s) {unknown}; expected some of {list(_SECTIONS)}")
        return cls(**{name: _section(kind, data.get(name), name) for name, kind in _SECTIONS.items()})

    def without(self, *, streaks: bool = False, drops: bool = False) -> RainConfig:
        """The same camera and rain with no ``streaks`` and/or no ``drops`` in any video (probability 0)."""
        config = self
        if streaks:
            config = dataclasses.replace(config, streaks=dataclasses.replace(config.streaks, probability=0.0))
        if drops:
            config = dataclasses.replace(config, drops=dataclasses.replace(config.drops, probability=0.0))
        return config

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (lists for ranges), e.g. to store next to a rendered dataset."""
        return {
            name: {
                k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(getattr(self, name)).items()
            }
            for name in _SECTIONS
        }


#: The sections of a rain config and their dataclasses.
_SECTIONS: dict[str, type[Any]] = {"streaks": StreakConfig, "drops": DropConfig, "sensor": SensorConfig}
#: Rain configs shipped in the package, by name: the training default, the held-out test set's shifted ranges,
#: light rain, wide drops, those under downpours, the same half streak-free, small drops in every video under downpours
#: (training) and none (the clean test set).
PRESETS: dict[str, str] = {
    "default": "rain_default.yaml",
    "heldout": "rain_heldout.yaml",
    "light": "rain_light.yaml",
    "wide": "rain_wide.yaml",
    "wide_heavy": "rain_wide_heavy.yaml",
    "wide_heavy_half": "rain_wide_heavy_half.yaml",
    "wide_heavy_small_drops": "rain_wide_heavy_small_drops.yaml",
    "none": "rain_none.yaml",
}


#: Fields that must lie in [0, 1] (probabilities and fractions).
_UNIT_FIELDS = frozenset(
    {
        "probability",
        "slide_probability",
        "static_probability",
        "jpeg_probability",
        "wipe_rate",
        "exposure",
        "intensity",
        "depth_falloff",
        "highlight",
        "opacity",
    }
)
#: Fields that may be negative (directions).
_SIGNED_FIELDS = frozenset({"angle_deg"})


def _section(cls: type[Any], data: Any, name: str) -> Any:
    """Parse one section (``streaks`` or ``drops``) into its dataclass, checking names, types and ranges."""
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigError(f"rain config section {name!r} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in rain config section {name!r}; known keys: {sorted(known)}")
    values: dict[str, Any] = {}
    for key, raw in data.items():
        where = f"{name}.{key}"
        if hints[key] == Range:
            values[key] = _parse_range(raw, where, key)
        elif hints[key] is int:
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
                raise ConfigError(f"rain config {where} must be a positive integer, got {raw!r}")
            values[key] = raw
        else:
            values[key] = _parse_number(raw, where, key)
    return cls(**values)


def _parse_number(raw: Any, where: str, key: str) -> float:
    """A finite float, checked against the field's allowed interval."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not np.isfinite(raw):
        raise ConfigError(f"rain config {where} must be a number, got {raw!r}")
    value = float(raw)
    if key not in _SIGNED_FIELDS and value < 0:
        raise ConfigError(f"rain config {where} must be >= 0, got {value}")
    if key in _UNIT_FIELDS and value > 1:
        raise ConfigError(f"rain config {where} must be in [0, 1], got {value}")
    return value


def _parse_range(raw: Any, where: str, key: str) -> Range:
    """A [lo, hi] pair (or a single number meaning [x, x]) with lo <= hi."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = [raw, raw]
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise ConfigError(f"rain config {where} must be a range [lo, hi] or a number, got {raw!r}")
    lo, hi = (_parse_number(item, where, key) for item in raw)
    if lo > hi:
        raise ConfigError(f"rain config {where}: lo {lo} is larger than hi {hi}")
    return (lo, hi)


def default_rain_config_path() -> Path:
    """Path of the shipped default config (package data)."""
    return preset_path("default")


def preset_path(name: str) -> Path:
    """Path of a shipped rain config by preset name (``default``, ``heldout``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown rain config preset {name!r}; choose one of {sorted(PRESETS)} or give a YAML path")
    return Path(str(resources.files("vimpnet_ros.data") / "configs" / PRESETS[name]))


def load_rain_config(path: str | Path | None = None) -> RainConfig:
    """Load a rain config: None = the defaults (no file read), a preset name (``heldout``) or a YAML path.

    Missing keys keep the defaults. A file may start from another (``extends: wide_heavy``, a preset name or a
    path) and list only what differs from it (:mod:`vimpnet_ros.config_files`).
    """
    if path is None or str(path) == "default":
        return RainConfig()
    return RainConfig.from_dict(read_extended(path, _rain_config_path, "rain config"))


def _rain_config_path(name_or_path: str | Path) -> Path:
    """A preset's path, or the path given (a name that is neither is refused with the presets listed)."""
    path = Path(name_or_path)
    if str(name_or_path) in PRESETS or (path.suffix not in (".yaml", ".yml") and not path.exists()):
        return preset_path(str(name_or_path))
    return path


def draw(rng: np.random.Generator, value: Range) -> float:
    """One uniform draw from a range; always consumes one number so the random stream does not depend on values."""
    lo, hi = value
    return float(rng.uniform(lo, hi))
