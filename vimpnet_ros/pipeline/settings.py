"""The node's parameters as data: names, defaults, descriptions, ranges, validation; params files and ``-p``.

:data:`PARAMETERS` is the single source of truth. The node declares exactly these
parameters (with ROS descriptors built from them, :mod:`vimpnet_ros.node.ros_params`);
:class:`NodeSettings` has one typed field per entry (a test checks they agree);
``config/vimpnet.yaml`` and the README's parameter table are generated from the table by
:func:`params_yaml` and :func:`markdown_table` (``tools/regenerate_docs.py``; a test checks they are current);
bag evaluation reads the same settings from a params file and ``-p`` overrides here.
Engine choices and ranges (backends, precisions, window sizes, the device syntax, the
tiling rules) are the engine's own (:mod:`vimpnet_ros.engine.config`), imported, never
restated: :meth:`NodeSettings.engine_config` builds the engine's config and its
validation reports a bad combination. No ROS import, so training and evaluation machines
can read the table.

Parameters marked ``read_only`` need a restart (or, in managed mode, a cleanup/configure
cycle) because they shape the loaded engine, the topics or the QoS; the others take
effect at the next frame.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from vimpnet_ros.engine.config import (
    BACKENDS,
    MAX_WINDOW,
    MIN_WINDOW,
    OUTPUT_FRAMES,
    OVERSIZE_POLICIES,
    PRECISIONS,
    EngineConfig,
)
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.pipeline.decode import DecodeLimits

ParamType = Literal["bool", "int", "double", "string", "string_array"]
ParamValue = bool | int | float | str | list[str]

INPUT_TRANSPORTS: tuple[str, ...] = ("raw", "compressed")
RELIABILITIES: tuple[str, ...] = ("best_effort", "reliable", "system_default")
#: ``input_reliability`` value that adapts to the publishers, as rosbag2 records (node/qos.py).
AUTO_RELIABILITY = "auto"
INPUT_RELIABILITIES: tuple[str, ...] = (AUTO_RELIABILITY, *RELIABILITIES)
STREAK_ENCODINGS: tuple[str, ...] = ("mono8", "32FC1")
#: The node's own name; bag evaluation looks for its section in params files.
NODE_NAME = "vimpnet"
_CAMERA_RE = re.compile(r"^/?[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")
#: p95 latency budgets when ``latency_budget_ms`` is 0 (auto), by the engine's device kind [ms].
AUTO_LATENCY_BUDGET_MS: dict[str, float] = {"cuda": 100.0, "cpu": 5000.0}


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: what the ROS descriptor, the YAML file and the README say about it."""

    name: str
    type: ParamType
    default: ParamValue
    description: str
    read_only: bool = False
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int, int] | None = None  # (from, to, step); step 0 = any
    float_range: tuple[float, float] | None = None
    section: str = ""  # a heading in config/vimpnet.yaml before this entry

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
        """What values are accepted, for error messages and the README."""
        kind = {"bool": "true or false", "int": "an integer", "double": "a number", "string": "a string",
                "string_array": "a list of strings"}[self.type]  # fmt: skip
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.int_range is not None:
            low, high, step = self.int_range
            return f"{kind} in [{low}, {high}]" + (f" in steps of {step}" if step > 1 else "")
        if self.float_range is not None:
            return f"{kind} in [{self.float_range[0]:g}, {self.float_range[1]:g}]"
        return kind

    @property
    def constraints(self) -> str:
        """Human-readable constraint text for the ROS descriptor's additional_constraints."""
        return "one of: " + ", ".join(self.choices) if self.choices else ""


_LIMITS = DecodeLimits()

#: Every parameter the node declares, in the order of config/vimpnet.yaml.
PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "model",
        "string",
        "vimpnet_lite",
        "model config name from vimpnet_ros.model",
        read_only=True,
        section="model and engine (read-only: restart to change)",
    ),
    ParamSpec(
        "checkpoint", "string", "", "checkpoint path; empty = the weights shipped with the package", read_only=True
    ),
    ParamSpec("backend", "string", "auto", "inference backend", read_only=True, choices=BACKENDS),
    ParamSpec("precision", "string", "auto", "compute precision", read_only=True, choices=PRECISIONS),
    ParamSpec("device", "string", "auto", "auto, cpu, cuda or cuda:N", read_only=True),
    ParamSpec(
        "engine_cache_dir",
        "string",
        "",
        "compiled-program cache (TensorRT, AOTInductor, ONNX); empty = ~/.cache/vimpnet_ros/engines",
        read_only=True,
    ),
    ParamSpec(
        "window_size",
        "int",
        5,
        "temporal window T (frames per clip); odd",
        read_only=True,
        int_range=(MIN_WINDOW, MAX_WINDOW, 2),
    ),
    ParamSpec(
        "output_frame",
        "string",
        "latest",
        "which frame of the window is restored: latest (no delay) or center (T//2 frames delay, both-side context)",
        read_only=True,
        choices=OUTPUT_FRAMES,
    ),
    ParamSpec(
        "inference_width",
        "int",
        0,
        "resize frames to this width for inference (0 = native); with inference_height",
        read_only=True,
        int_range=(0, 8192, 0),
    ),
    ParamSpec(
        "inference_height",
        "int",
        0,
        "resize frames to this height for inference (0 = native)",
        read_only=True,
        int_range=(0, 8192, 0),
    ),
    ParamSpec(
        "tile_size", "int", 0, "spatial tile size in pixels (0 = whole frame)", read_only=True, int_range=(0, 8192, 0)
    ),
    ParamSpec("tile_overlap", "int", 32, "overlap between tiles in pixels", read_only=True, int_range=(0, 1024, 0)),
    ParamSpec(
        "max_inference_pixels",
        "int",
        1920 * 1080,
        "frames with more pixels (after inference_width/height) are resized or tiled to this budget "
        "(oversize_policy) instead of costing memory in proportion (0 = no limit)",
        read_only=True,
        int_range=(0, 2**31 - 1, 0),
    ),
    ParamSpec(
        "oversize_policy",
        "string",
        "resize",
        "what happens to frames over max_inference_pixels: resize (to the budget, results mapped back) or "
        "tile (256 px tiles, full detail)",
        read_only=True,
        choices=OVERSIZE_POLICIES,
    ),
    ParamSpec(
        "max_gap_s",
        "double",
        1.0,
        "a stamp jump larger than this resets a camera's temporal buffer [s]",
        read_only=True,
        float_range=(0.001, 3600.0),
    ),
    ParamSpec(
        "cameras",
        "string_array",
        [],
        "camera namespaces (e.g. [front, rear]); topics become <ns>/image etc. Empty = one camera, relative names",
        read_only=True,
        section="topics and QoS (read-only)",
    ),
    ParamSpec(
        "input_transport",
        "string",
        "raw",
        "subscribe to image (raw) or <image>/compressed (compressed), image_transport style: the base topic "
        "is resolved (remapped) first, then the transport appended",
        read_only=True,
        choices=INPUT_TRANSPORTS,
    ),
    ParamSpec(
        "use_camera_info",
        "bool",
        False,
        "subscribe to camera_info and republish it as derained/camera_info",
        read_only=True,
    ),
    ParamSpec(
        "input_reliability",
        "string",
        AUTO_RELIABILITY,
        "input QoS reliability: auto = reliable if every publisher offers reliable, else best effort, decided when "
        "the first publisher appears (as ros2 bag record); qos_overrides.<topic>.subscription.reliability wins",
        read_only=True,
        choices=INPUT_RELIABILITIES,
    ),
    ParamSpec(
        "input_depth",
        "int",
        5,
        "input QoS history depth (default of every input; qos_overrides.<topic>.subscription.depth wins)",
        read_only=True,
        int_range=(1, 1000, 0),
    ),
    ParamSpec(
        "output_reliability",
        "string",
        "reliable",
        "output QoS reliability (default of every output; qos_overrides.<topic>.publisher.reliability wins)",
        read_only=True,
        choices=RELIABILITIES,
    ),
    ParamSpec("output_depth", "int", 5, "output QoS history depth", read_only=True, int_range=(1, 1000, 0)),
    ParamSpec(
        "max_input_width",
        "int",
        _LIMITS.max_width,
        "frames wider than this are rejected before decoding (counted as bad input)",
        int_range=(1, 65535, 0),
        section="input limits (bad input is counted, logged and dropped; good frames keep flowing)",
    ),
    ParamSpec(
        "max_input_height",
        "int",
        _LIMITS.max_height,
        "frames taller than this are rejected before decoding",
        int_range=(1, 65535, 0),
    ),
    ParamSpec(
        "max_input_pixels",
        "int",
        _LIMITS.max_pixels,
        "frames with more pixels than this are rejected before decoding",
        int_range=(1, 2**31 - 1, 0),
    ),
    ParamSpec(
        "input_white_level",
        "int",
        0,
        "full-scale value of 16-bit inputs (4095 for a 12-bit camera); 0 = the smallest 8/10/12/14/16-bit "
        "range the camera's frames have reached",
        int_range=(0, 65535, 0),
    ),
    ParamSpec(
        "max_stamp_skew_s",
        "double",
        60.0,
        "frames whose stamp is further than this from the node clock are processed but flagged, and left "
        "out of the latency statistics [s]",
        float_range=(0.001, 1e9),
    ),
    ParamSpec(
        "publish_image",
        "bool",
        True,
        "publish derained/image (sensor_msgs/Image)",
        section="outputs (change at run time with ros2 param set)",
    ),
    ParamSpec("publish_compressed", "bool", False, "publish derained/image/compressed (JPEG)"),
    ParamSpec("jpeg_quality", "int", 90, "JPEG quality of derained/image/compressed", int_range=(1, 100, 1)),
    ParamSpec("publish_mask", "bool", True, "publish raindrop_mask (mono8)"),
    ParamSpec(
        "mask_threshold",
        "double",
        0.0,
        "0 = raindrop_mask is the probability scaled to 0..255; > 0 = binary mask (255 where p >= threshold)",
        float_range=(0.0, 1.0),
    ),
    ParamSpec("publish_streak_map", "bool", False, "publish streak_map"),
    ParamSpec(
        "streak_map_encoding",
        "string",
        "mono8",
        "streak_map encoding: mono8 (intensity x 255, clipped) or 32FC1 (raw intensity)",
        choices=STREAK_ENCODINGS,
    ),
    ParamSpec(
        "rain_streak_threshold",
        "double",
        0.05,
        "mean streak intensity above which rain_detected is set",
        float_range=(0.0, 100.0),
        section="rain estimate and gating (run time)",
    ),
    ParamSpec(
        "rain_coverage_threshold",
        "double",
        0.01,
        "raindrop coverage fraction above which rain_detected is set",
        float_range=(0.0, 1.0),
    ),
    ParamSpec(
        "gating_enabled",
        "bool",
        False,
        "rain gating: after gating_frames dry frames, pass frames through and run the model only every "
        "gating_probe_interval-th frame",
    ),
    ParamSpec("gating_frames", "int", 30, "consecutive dry frames before gating starts", int_range=(1, 100000, 0)),
    ParamSpec(
        "gating_probe_interval",
        "int",
        10,
        "while gated, restore every k-th frame to re-check for rain",
        int_range=(1, 100000, 0),
    ),
    ParamSpec(
        "enabled",
        "bool",
        True,
        "false pauses restoration: frames pass through unchanged (PROCESSING_GATED); the ~/set_enabled "
        "service (std_srvs/SetBool) sets it too",
        section="node (run time)",
    ),
    ParamSpec(
        "autostart",
        "bool",
        False,
        "managed (lifecycle) node only: configure and activate at start instead of waiting for a manager",
        read_only=True,
    ),
    ParamSpec(
        "diagnostics_period_s",
        "double",
        1.0,
        "period of /diagnostics messages [s]",
        read_only=True,
        float_range=(0.05, 60.0),
        section="diagnostics and logging",
    ),
    ParamSpec(
        "latency_budget_ms",
        "double",
        0.0,
        "WARN when p95 end-to-end latency exceeds this [ms]; 0 = by device: 100 on CUDA, 5000 on CPU "
        "(diagnostics show the budget applied)",
        float_range=(0.0, 600000.0),
    ),
    ParamSpec(
        "min_rate_fraction",
        "double",
        0.5,
        "WARN when output rate < this fraction of the input rate",
        float_range=(0.0, 1.0),
    ),
    ParamSpec(
        "error_after_failures",
        "int",
        5,
        "ERROR after this many consecutive inference failures",
        int_range=(1, 100000, 0),
    ),
    ParamSpec(
        "log_throttle_s",
        "double",
        5.0,
        "minimum interval between repeated warnings of one kind [s]",
        float_range=(0.0, 3600.0),
    ),
)

PARAMETERS_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values: one typed attribute per entry of :data:`PARAMETERS` (checked by a test)."""

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
    max_inference_pixels: int
    oversize_policy: str
    max_gap_s: float
    cameras: list[str]
    input_transport: str
    use_camera_info: bool
    input_reliability: str
    input_depth: int
    output_reliability: str
    output_depth: int
    max_input_width: int
    max_input_height: int
    max_input_pixels: int
    input_white_level: int
    max_stamp_skew_s: float
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
    enabled: bool
    autostart: bool
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

    @property
    def decode_limits(self) -> DecodeLimits:
        """What one input frame may cost (checked before decoding)."""
        return DecodeLimits(
            max_width=self.max_input_width,
            max_height=self.max_input_height,
            max_pixels=self.max_input_pixels,
            max_bytes=self.max_input_pixels * 8,  # 4 channels x 16 bits: the largest raw layout
        )

    @property
    def float_streak(self) -> bool:
        """Whether results must carry the raw streak intensity (the 32FC1 streak map)."""
        return self.streak_map_encoding == "32FC1"

    def latency_budget_for(self, device: str) -> tuple[float, str]:
        """(budget in ms, where it comes from) for an engine on ``device`` (``cpu``, ``cuda:0``)."""
        if self.latency_budget_ms > 0:
            return self.latency_budget_ms, "parameter latency_budget_ms"
        kind = device.partition(":")[0]
        return AUTO_LATENCY_BUDGET_MS.get(kind, AUTO_LATENCY_BUDGET_MS["cpu"]), f"auto for {kind}"

    def engine_config(self) -> EngineConfig:
        """The engine's config for these settings (raises ConfigError for a combination the engine rejects)."""
        return EngineConfig(
            model=self.model,
            checkpoint=self.checkpoint or None,
            backend=self.backend,
            precision=self.precision,
            device=self.device,
            window_size=self.window_size,
            output_frame=self.output_frame,
            inference_size=self.inference_size,
            tile_size=self.tile_size,
            tile_overlap=self.tile_overlap,
            max_inference_pixels=self.max_inference_pixels,
            oversize_policy=self.oversize_policy,
            max_gap_s=self.max_gap_s,
            engine_cache_dir=self.engine_cache_dir or None,
        )

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
    if (settings.inference_width == 0) != (settings.inference_height == 0):
        raise ConfigError(
            "parameters 'inference_width' and 'inference_height' must both be 0 (native size) or both > 0; "
            f"got {settings.inference_width}x{settings.inference_height}"
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
    try:
        settings.engine_config()
    except ConfigError as error:  # the engine's own rule, named as a parameter problem
        raise ConfigError(f"parameters: {error}") from None
    return settings


# -- params files and -p overrides (the node reads them through rclpy; bag evaluation here) ----------------------


def default_params_file() -> Path | None:
    """``config/vimpnet.yaml`` of the source tree or of an install's share dir, if present."""
    import sys

    candidates = [
        Path(__file__).resolve().parents[2] / "config" / "vimpnet.yaml",
        Path(sys.prefix) / "share" / "vimpnet_ros" / "config" / "vimpnet.yaml",
    ]
    return next((c for c in candidates if c.is_file()), None)


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The node's ``ros__parameters`` from a ROS 2 params YAML (``vimpnet:``, ``/**:`` or any single node)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read params file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"params file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must map node names to {{ros__parameters: ...}}")
    sections = {k: v["ros__parameters"] for k, v in data.items() if isinstance(v, dict) and "ros__parameters" in v}
    for key in (NODE_NAME, f"/{NODE_NAME}", "vimpnet_node", "/vimpnet_node", "/**"):
        if key in sections:
            return dict(sections[key] or {})
    if len(sections) == 1:
        return dict(next(iter(sections.values())) or {})
    raise ConfigError(
        f"params file {path} has no '{NODE_NAME}' or '/**' section with ros__parameters; sections: {sorted(data)}"
    )


def parse_param_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["backend:=torch", "window_size:=3"]`` -> typed values (YAML scalars, like ``ros2 run -p``)."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition(":=")
        if not sep or not name:
            raise ConfigError(f"parameter override {item!r} must look like name:=value")
        values[name] = yaml.safe_load(text) if text else ""
    return values


def load_node_settings(
    params_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> NodeSettings:
    """Validated node settings: the params file (None = the package's config/vimpnet.yaml if found), then overrides."""
    path = default_params_file() if params_file is None else Path(params_file)
    values = read_params_file(path) if path is not None else {}
    values.update(overrides or {})
    return validate_settings(values)


# -- generated documents ---------------------------------------------------------------------------------------------


def _yaml_value(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return repr(value)


def params_yaml() -> str:
    """``config/vimpnet.yaml``: every parameter with its default and description (generated; a test compares)."""
    lines = [
        "# Parameters of vimpnet_node, every one with its default. Generated from the parameter table",
        "# (vimpnet_ros/pipeline/settings.py) by `python tools/regenerate_docs.py`; do not edit by hand.",
        "# Use: vimpnet_node --ros-args --params-file config/vimpnet.yaml -r image:=/cam/image_raw",
        "/**:",
        "  ros__parameters:",
    ]
    for spec in PARAMETERS:
        if spec.section:
            lines.append(f"    # --- {spec.section} ---")
        choices = f" ({', '.join(spec.choices)})" if spec.choices else ""
        lines.append(f"    # {spec.description}{choices}")
        lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The README's parameter table (generated; a test compares)."""
    rows = [
        "| parameter | type | default | restart | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in PARAMETERS:
        default = _yaml_value(spec.default).replace('"', "'")
        rows.append(
            f"| `{spec.name}` | {spec.type} | `{default}` | {'yes' if spec.read_only else ''} | "
            f"{spec.description}; {spec.allowed} |"
        )
    return "\n".join(rows) + "\n"
