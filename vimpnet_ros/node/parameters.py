"""The node's parameters as data: names, defaults, descriptions, ranges, validation.

The table :data:`PARAMETERS` is the single source of truth: the node declares
exactly these parameters (with ROS descriptors built from them), ``config/vimpnet.yaml``
lists exactly these with their defaults, and the launch file only overrides names
from it (a test checks all three agree). This module imports no ROS so the table
can be read by tests and tools on machines without rclpy.

Parameters marked ``read_only`` need a restart (or, in managed mode, a
cleanup/configure cycle) because they shape the loaded engine, the topics or the
QoS; the others take effect at the next frame.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vimpnet_ros.errors import ConfigError

ParamType = Literal["bool", "int", "double", "string", "string_array"]
ParamValue = bool | int | float | str | list[str]

BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
OUTPUT_FRAMES: tuple[str, ...] = ("latest", "center")
INPUT_TRANSPORTS: tuple[str, ...] = ("raw", "compressed")
RELIABILITIES: tuple[str, ...] = ("best_effort", "reliable", "system_default")
STREAK_ENCODINGS: tuple[str, ...] = ("mono8", "32FC1")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_CAMERA_RE = re.compile(r"^/?[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: what the ROS descriptor and the YAML file say about it."""

    name: str
    type: ParamType
    default: ParamValue
    description: str
    read_only: bool = False
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int, int] | None = None  # (from, to, step); step 0 = any
    float_range: tuple[float, float] | None = None
    group: str = "general"

    def check(self, value: Any) -> ParamValue:
        """Return ``value`` coerced to this parameter's type, or raise ConfigError saying why not."""
        name = self.name
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"parameter '{name}' must be true or false, got {value!r}")
            return value
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"parameter '{name}' must be an integer, got {value!r}")
            if self.int_range is not None:
                low, high, step = self.int_range
                if not low <= value <= high or (step > 0 and (value - low) % step != 0):
                    every = f" in steps of {step}" if step > 1 else ""
                    raise ConfigError(f"parameter '{name}' must be in [{low}, {high}]{every}, got {value}")
            return value
        if self.type == "double":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"parameter '{name}' must be a number, got {value!r}")
            value = float(value)
            if self.float_range is not None:
                low_f, high_f = self.float_range
                if not low_f <= value <= high_f:
                    raise ConfigError(f"parameter '{name}' must be in [{low_f}, {high_f}], got {value}")
            return value
        if self.type == "string":
            if not isinstance(value, str):
                raise ConfigError(f"parameter '{name}' must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ConfigError(f"parameter '{name}' must be one of {', '.join(self.choices)}; got '{value}'")
            return value
        if value is None:  # an empty YAML list arrives as "not set"
            return []
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"parameter '{name}' must be a list of strings, got {value!r}")
        return list(value)

    @property
    def allowed(self) -> str:
        """What values are accepted, for error messages."""
        kind = {"bool": "true or false", "int": "an integer", "double": "a number", "string": "a string",
                "string_array": "a list of strings"}[self.type]  # fmt: skip
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.int_range is not None:
            low, high, step = self.int_range
            return f"{kind} in [{low}, {high}]" + (f" in steps of {step}" if step > 1 else "")
        if self.float_range is not None:
            return f"{kind} in [{self.float_range[0]}, {self.float_range[1]}]"
        return kind

    @property
    def constraints(self) -> str:
        """Human-readable constraint text for the ROS descriptor's additional_constraints."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        return ""


def _p(
    name: str,
    type_: ParamType,
    default: ParamValue,
    description: str,
    group: str,
    *,
    read_only: bool = False,
    choices: tuple[str, ...] = (),
    int_range: tuple[int, int, int] | None = None,
    float_range: tuple[float, float] | None = None,
) -> ParamSpec:
    return ParamSpec(name, type_, default, description, read_only, choices, int_range, float_range, group)


#: Every parameter the node declares, in the order of config/vimpnet.yaml.
PARAMETERS: tuple[ParamSpec, ...] = (
    # --- model and engine (shape the loaded engine: restart to change) ---
    _p("model", "string", "vimpnet_lite", "model config name from vimpnet_ros.model", "model", read_only=True),
    _p(
        "checkpoint",
        "string",
        "",
        "checkpoint path; empty = the weights shipped with the package",
        "model",
        read_only=True,
    ),
    _p("backend", "string", "auto", "inference backend", "model", read_only=True, choices=BACKENDS),
    _p("precision", "string", "auto", "compute precision", "model", read_only=True, choices=PRECISIONS),
    _p("device", "string", "auto", "auto, cpu, cuda or cuda:N", "model", read_only=True),
    _p(
        "engine_cache_dir",
        "string",
        "",
        "TensorRT engine cache; empty = ~/.cache/vimpnet_ros/engines",
        "model",
        read_only=True,
    ),
    _p(
        "window_size",
        "int",
        5,
        "temporal window T (frames per clip); odd",
        "model",
        read_only=True,
        int_range=(3, 9, 2),
    ),
    _p(
        "output_frame",
        "string",
        "latest",
        "which frame of the window is restored: latest (no delay) or center (T//2 frames delay, both-side context)",
        "model",
        read_only=True,
        choices=OUTPUT_FRAMES,
    ),
    _p(
        "inference_width",
        "int",
        0,
        "resize frames to this width for inference (0 = native); with inference_height",
        "model",
        read_only=True,
        int_range=(0, 8192, 0),
    ),
    _p(
        "inference_height",
        "int",
        0,
        "resize frames to this height for inference (0 = native)",
        "model",
        read_only=True,
        int_range=(0, 8192, 0),
    ),
    _p(
        "tile_size",
        "int",
        0,
        "spatial tile size in pixels (0 = whole frame)",
        "model",
        read_only=True,
        int_range=(0, 8192, 0),
    ),
    _p("tile_overlap", "int", 32, "overlap between tiles in pixels", "model", read_only=True, int_range=(0, 1024, 0)),
    _p(
        "max_gap_s",
        "double",
        1.0,
        "a stamp jump larger than this resets a camera's temporal buffer [s]",
        "model",
        read_only=True,
        float_range=(0.001, 3600.0),
    ),
    # --- topics and QoS (restart to change) ---
    _p(
        "cameras",
        "string_array",
        [],
        "camera namespaces (e.g. [front, rear]); topics become <ns>/image etc. Empty = one camera, relative names",
        "io",
        read_only=True,
    ),
    _p(
        "input_transport",
        "string",
        "raw",
        "subscribe to image (raw) or image/compressed (compressed)",
        "io",
        read_only=True,
        choices=INPUT_TRANSPORTS,
    ),
    _p(
        "use_camera_info",
        "bool",
        False,
        "subscribe to camera_info and republish it as derained/camera_info",
        "io",
        read_only=True,
    ),
    _p(
        "input_reliability",
        "string",
        "best_effort",
        "input QoS reliability (best_effort accepts reliable and best-effort publishers)",
        "io",
        read_only=True,
        choices=RELIABILITIES,
    ),
    _p("input_depth", "int", 5, "input QoS history depth", "io", read_only=True, int_range=(1, 1000, 0)),
    _p(
        "output_reliability",
        "string",
        "reliable",
        "output QoS reliability",
        "io",
        read_only=True,
        choices=RELIABILITIES,
    ),
    _p("output_depth", "int", 5, "output QoS history depth", "io", read_only=True, int_range=(1, 1000, 0)),
    # --- outputs (take effect at the next frame) ---
    _p("publish_image", "bool", True, "publish derained/image (sensor_msgs/Image)", "outputs"),
    _p("publish_compressed", "bool", False, "publish derained/image/compressed (JPEG)", "outputs"),
    _p("jpeg_quality", "int", 90, "JPEG quality of derained/image/compressed", "outputs", int_range=(1, 100, 1)),
    _p("publish_mask", "bool", True, "publish raindrop_mask (mono8)", "outputs"),
    _p(
        "mask_threshold",
        "double",
        0.0,
        "0 = raindrop_mask is the probability scaled to 0..255; > 0 = binary mask (255 where p >= threshold)",
        "outputs",
        float_range=(0.0, 1.0),
    ),
    _p("publish_streak_map", "bool", False, "publish streak_map", "outputs"),
    _p(
        "streak_map_encoding",
        "string",
        "mono8",
        "streak_map encoding: mono8 (intensity x 255, clipped) or 32FC1 (raw intensity)",
        "outputs",
        choices=STREAK_ENCODINGS,
    ),
    # --- rain estimate and gating (take effect at the next frame) ---
    _p(
        "rain_streak_threshold",
        "double",
        0.05,
        "mean streak intensity above which rain_detected is set",
        "rain",
        float_range=(0.0, 100.0),
    ),
    _p(
        "rain_coverage_threshold",
        "double",
        0.01,
        "raindrop coverage fraction above which rain_detected is set",
        "rain",
        float_range=(0.0, 1.0),
    ),
    _p(
        "gating_enabled",
        "bool",
        False,
        "rain gating: after gating_frames dry frames, pass frames through and run the model only every "
        "gating_probe_interval-th frame",
        "rain",
    ),
    _p("gating_frames", "int", 30, "consecutive dry frames before gating starts", "rain", int_range=(1, 100000, 0)),
    _p(
        "gating_probe_interval",
        "int",
        10,
        "while gated, restore every k-th frame to re-check for rain",
        "rain",
        int_range=(1, 100000, 0),
    ),
    # --- diagnostics and logging ---
    _p(
        "diagnostics_period_s",
        "double",
        1.0,
        "period of /diagnostics messages [s]",
        "diagnostics",
        read_only=True,
        float_range=(0.05, 60.0),
    ),
    _p(
        "latency_budget_ms",
        "double",
        250.0,
        "WARN when p95 end-to-end latency exceeds this [ms]",
        "diagnostics",
        float_range=(1.0, 60000.0),
    ),
    _p(
        "min_rate_fraction",
        "double",
        0.5,
        "WARN when output rate < this fraction of the input rate",
        "diagnostics",
        float_range=(0.0, 1.0),
    ),
    _p(
        "error_after_failures",
        "int",
        5,
        "ERROR after this many consecutive inference failures",
        "diagnostics",
        int_range=(1, 100000, 0),
    ),
    _p(
        "log_throttle_s",
        "double",
        5.0,
        "minimum interval between repeated warnings of one kind [s]",
        "diagnostics",
        float_range=(0.0, 3600.0),
    ),
)

PARAMETERS_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values (one attribute per entry of :data:`PARAMETERS`)."""

    model: str
    checkpoint: str
    backend: str
    precision: str
    device: str
    engine_cache_dir: str
    window_size: int
    output_frame: str
    inference_width: int
    inference_height: int
    tile_size: int
    tile_overlap: int
    max_gap_s: float
    cameras: list[str]
    input_transport: str
    use_camera_info: bool
    input_reliability: str
    input_depth: int
    output_reliability: str
    output_depth: int
    publish_image: bool
    publish_compressed: bool
    jpeg_quality: int
    publish_mask: bool
    mask_threshold: float
    publish_streak_map: bool
    streak_map_encoding: str
    rain_streak_threshold: float
    rain_coverage_threshold: float
    gating_enabled: bool
    gating_frames: int
    gating_probe_interval: int
    diagnostics_period_s: float
    latency_budget_ms: float
    min_rate_fraction: float
    error_after_failures: int
    log_throttle_s: float

    @property
    def inference_size(self) -> tuple[int, int] | None:
        """(width, height) to resize to before inference, or None for native size."""
        if self.inference_width == 0:
            return None
        return (self.inference_width, self.inference_height)

    @property
    def camera_namespaces(self) -> list[str]:
        """Topic prefixes, one per camera: '' (relative names) when ``cameras`` is empty."""
        return list(self.cameras) if self.cameras else [""]

    def replace(self, **changes: Any) -> NodeSettings:
        """A validated copy with some values changed (runtime parameter updates)."""
        values = dataclasses.asdict(self)
        values.update(changes)
        return validate_settings(values)


def default_values() -> dict[str, ParamValue]:
    """Parameter name -> default value (lists copied)."""
    return {spec.name: (list(spec.default) if isinstance(spec.default, list) else spec.default) for spec in PARAMETERS}


def validate_settings(values: Mapping[str, Any]) -> NodeSettings:
    """Check every value and the rules between them; raise ConfigError with the first problem.

    Missing names take their defaults; unknown names are an error (a typo in a
    params file should not be silently ignored).
    """
    unknown = sorted(set(values) - set(PARAMETERS_BY_NAME))
    if unknown:
        raise ConfigError(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(PARAMETERS_BY_NAME)}")
    merged = default_values()
    merged.update(values)
    checked = {name: PARAMETERS_BY_NAME[name].check(value) for name, value in merged.items()}
    settings = NodeSettings(**checked)  # type: ignore[arg-type]
    if not settings.model.strip():
        raise ConfigError("parameter 'model' must name a model config, e.g. vimpnet_lite")
    if not _DEVICE_RE.match(settings.device):
        raise ConfigError(f"parameter 'device' must be auto, cpu, cuda or cuda:N; got '{settings.device}'")
    if (settings.inference_width == 0) != (settings.inference_height == 0):
        raise ConfigError(
            "parameters 'inference_width' and 'inference_height' must both be 0 (native size) or both > 0; "
            f"got {settings.inference_width}x{settings.inference_height}"
        )
    if settings.tile_size and settings.tile_overlap * 2 >= settings.tile_size:
        raise ConfigError(
            f"parameter 'tile_overlap' ({settings.tile_overlap}) must be less than half of 'tile_size' "
            f"({settings.tile_size})"
        )
    seen: set[str] = set()
    for camera in settings.cameras:
        if not _CAMERA_RE.match(camera):
            raise ConfigError(
                f"parameter 'cameras': '{camera}' is not a valid namespace (letters, digits, '_', separated by '/')"
            )
        key = camera.strip("/")
        if key in seen:
            raise ConfigError(f"parameter 'cameras' lists '{camera}' twice")
        seen.add(key)
    return settings


def engine_config_kwargs(settings: NodeSettings) -> dict[str, Any]:
    """Keyword arguments for ``vimpnet_ros.engine.EngineConfig`` (kept as a dict so this module needs no torch)."""
    return {
        "model": settings.model,
        "checkpoint": settings.checkpoint or None,
        "backend": settings.backend,
        "precision": settings.precision,
        "device": settings.device,
        "window_size": settings.window_size,
        "output_frame": settings.output_frame,
        "inference_size": settings.inference_size,
        "tile_size": settings.tile_size,
        "tile_overlap": settings.tile_overlap,
        "max_gap_s": settings.max_gap_s,
        "engine_cache_dir": settings.engine_cache_dir or None,
    }
