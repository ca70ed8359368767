"""The node's settings, one record per concern; each record field declared with :func:`~.specs.param` is a parameter.

To add a parameter, add one field to the record of its concern (``name: type = param(default,
description, ...)``): the table, the ROS declaration, ``config/vimpnet.yaml`` and the README
follow (``tools/regenerate_docs.py``), and code reads it as ``settings.<record>.<name>``.
The engine's parameters fill the engine's own :class:`~vimpnet_ros.engine.config.EngineConfig`
(its fields, choices and ranges are the engine's, imported, never restated), so they are listed
here as specs that name the field they fill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vimpnet_ros.engine import (
    AUTO_STAGE1_PASSES,
    BACKENDS,
    CHANGE_UPSAMPLINGS,
    DROP_FILL_BLEND,
    DROP_FILL_FRAMES,
    MAX_DROP_FILL_FRAMES,
    MAX_STAGE1_PASSES,
    MAX_WINDOW,
    MIN_WINDOW,
    OUTPUT_FRAMES,
    OVERSIZE_POLICIES,
    PRECISIONS,
    RESIZED_STAGE1_PASSES,
    WORKING_SCALES,
    EngineConfig,
)
from vimpnet_ros.errors import ConfigError
from vimpnet_ros.pipeline.decode import DecodeLimits
from vimpnet_ros.pipeline.settings.specs import ParamSpec, param

INPUT_TRANSPORTS: tuple[str, ...] = ("raw", "compressed")
#: ``dds_profile``: ``auto`` writes the node's Fast DDS profile unless the user configured DDS, ``off`` never does.
DDS_PROFILES: tuple[str, ...] = ("auto", "off")
#: Automatic stale-input thresholds: WARN after this many periods of the measured input rate (at least the
#: floor; the floor alone before a rate is known), ERROR after this many times the WARN threshold (at least its floor).
STALE_WARN_PERIODS, STALE_WARN_FLOOR_S = 5.0, 1.0
STALE_ERROR_FACTOR, STALE_ERROR_FLOOR_S = 5.0, 5.0
RELIABILITIES: tuple[str, ...] = ("best_effort", "reliable", "system_default")
#: ``input_reliability`` value that adapts to the publishers, as rosbag2 records (node/qos.py).
AUTO_RELIABILITY = "auto"
INPUT_RELIABILITIES: tuple[str, ...] = (AUTO_RELIABILITY, *RELIABILITIES)
STREAK_ENCODINGS: tuple[str, ...] = ("mono8", "32FC1")
#: What happens to a frame that declares more work than frame_cost_periods allows.
FRAME_COST_POLICIES: tuple[str, ...] = ("resize", "refuse")
_CAMERA_RE = re.compile(r"^/?[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")
#: p95 latency budgets when ``latency_budget_ms`` is 0 (auto), by the engine's device kind [ms].
AUTO_LATENCY_BUDGET_MS: dict[str, float] = {"cuda": 100.0, "cpu": 5000.0}

_LIMITS = DecodeLimits()
_ENGINE = EngineConfig()

#: The parameters that fill :class:`~vimpnet_ros.engine.config.EngineConfig` (all read-only: they shape the engine).
ENGINE_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "string", _ENGINE.model, "model config name from vimpnet_ros.model", read_only=True),
    ParamSpec(
        "checkpoint",
        "string",
        "",
        "checkpoint path; empty = the weights shipped with the package",
        read_only=True,
        unset="",
    ),
    ParamSpec("backend", "string", _ENGINE.backend, "inference backend", read_only=True, choices=BACKENDS),
    ParamSpec("precision", "string", _ENGINE.precision, "compute precision", read_only=True, choices=PRECISIONS),
    ParamSpec("device", "string", _ENGINE.device, "auto, cpu, cuda or cuda:N", read_only=True),
    ParamSpec(
        "engine_cache_dir",
        "string",
        "",
        "compiled-program cache (TensorRT, AOTInductor, ONNX); empty = ~/.cache/vimpnet_ros/engines",
        read_only=True,
        unset="",
    ),
    ParamSpec(
        "window_size",
        "int",
        5,
        "temporal window T (frames per clip); odd; shipped weights may allow less (max_window in weights/MODEL.json)",
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
        "resize frames to this width for inference, the network's change mapped back onto each frame "
        "(0 = as working_scale says); with inference_height",
        read_only=True,
        int_range=(0, 8192, 0),
        field="inference_size",
        part=0,
        unset=0,
    ),
    ParamSpec(
        "inference_height",
        "int",
        0,
        "resize frames to this height for inference (0 = as working_scale says)",
        read_only=True,
        int_range=(0, 8192, 0),
        field="inference_size",
        part=1,
        unset=0,
    ),
    ParamSpec(
        "working_scale",
        "string",
        _ENGINE.working_scale,
        "without inference_width/height: weights restores a frame larger than the weights' scale (the model's "
        "working_pixels) at that scale, aspect kept, the network's change mapped back onto the frame; native "
        "restores it at its own size",
        read_only=True,
        choices=WORKING_SCALES,
    ),
    ParamSpec(
        "change_upsampling",
        "string",
        _ENGINE.change_upsampling,
        "how the change the network made at a smaller working size is enlarged onto the frame: guided (a guided "
        "filter, so it follows the frame's own edges: streaks and drop rims at the camera's resolution) or bilinear",
        read_only=True,
        choices=CHANGE_UPSAMPLINGS,
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
        "drop_fill",
        "double",
        DROP_FILL_BLEND,
        "inside the predicted raindrops, the weight of an inpainting from the drop's surroundings against the "
        "network's restoration (their mean at 0.5); 0 = the network's restoration alone",
        read_only=True,
        float_range=(0.0, 1.0),
    ),
    ParamSpec(
        "drop_fill_frames",
        "int",
        DROP_FILL_FRAMES,
        "earlier restored frames of each camera the raindrops are also filled from, where they saw the road the drops "
        "hide (at the drop_fill weight; a drop there is a probability of 0.2 or more); 0 = from the frame's own "
        "pixels only",
        read_only=True,
        int_range=(0, MAX_DROP_FILL_FRAMES, 1),
    ),
    ParamSpec(
        "stage1_passes",
        "int",
        _ENGINE.stage1_passes,
        "times stage 1 (the streaks) runs on each window, each later pass reconstructing the previous pass's frames "
        "where the first found heavy streaks; more removes more of heavy rain for a feature extraction and a "
        "reconstruction more each; 0 = by device for a model with stage1_presence such as the default ("
        + ", ".join(f"{n} on {kind.upper()}" for kind, n in AUTO_STAGE1_PASSES.items())
        + f", {RESIZED_STAGE1_PASSES} on frames restored at the weights' scale), else 1",
        read_only=True,
        int_range=(0, MAX_STAGE1_PASSES, 1),
    ),
    ParamSpec(
        "max_gap_s",
        "double",
        1.0,
        "a stamp jump larger than this resets a camera's temporal buffer [s]",
        read_only=True,
        float_range=(0.001, 3600.0),
    ),
)


@dataclass(frozen=True)
class TopicSettings:
    """Which cameras, which input transport, and the QoS of inputs and outputs."""

    cameras: list[str] = param(
        [],
        "camera namespaces (e.g. [front, rear]); topics become <ns>/image etc. Empty = one camera, relative names",
        read_only=True,
    )
    input_transport: str = param(
        "raw",
        "subscribe to image (raw) or <image>/compressed (compressed), image_transport style: the base topic "
        "is resolved (remapped) first, then the transport appended",
        read_only=True,
        choices=INPUT_TRANSPORTS,
    )
    use_camera_info: bool = param(
        True,
        "follow the camera's camera_info (the sibling of the resolved image topic, as image_transport's camera "
        "publisher names it: /cam/image_raw -> /cam/camera_info) and republish it as derained/camera_info with "
        "the derained image's header; false = neither",
        read_only=True,
    )
    input_reliability: str = param(
        AUTO_RELIABILITY,
        "input QoS reliability: auto = reliable if every publisher offers reliable, else best effort, decided when "
        "the first publisher appears (as ros2 bag record); qos_overrides.<topic>.subscription.reliability wins",
        read_only=True,
        choices=INPUT_RELIABILITIES,
    )
    input_depth: int = param(
        5,
        "input QoS history depth (default of every input; qos_overrides.<topic>.subscription.depth wins)",
        read_only=True,
        int_range=(1, 1000, 0),
    )
    output_reliability: str = param(
        "reliable",
        "output QoS reliability (default of every output; qos_overrides.<topic>.publisher.reliability wins)",
        read_only=True,
        choices=RELIABILITIES,
    )
    output_depth: int = param(5, "output QoS history depth", read_only=True, int_range=(1, 1000, 0))
    dds_profile: str = param(
        "auto",
        "auto = give the node process a Fast DDS profile of UDP with large socket buffers (camera-sized best-effort "
        "frames arrive) unless Fast DDS is configured by the user; off = never touch the DDS transport (keep shared "
        "memory, your own profiles). Read before ROS starts, from -p or a params file",
        read_only=True,
        choices=DDS_PROFILES,
    )

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for camera in self.cameras:
            if not _CAMERA_RE.match(camera):
                raise ConfigError(
                    f"parameter 'cameras': '{camera}' is not a valid namespace (letters, digits, '_', separated by '/')"
                )
            key = camera.strip("/")
            if key in seen:
                raise ConfigError(f"parameter 'cameras' lists '{camera}' twice")
            seen.add(key)

    @property
    def camera_namespaces(self) -> list[str]:
        """Topic prefixes, one per camera: '' (relative names) when ``cameras`` is empty."""
        return list(self.cameras) if self.cameras else [""]


@dataclass(frozen=True)
class InputSettings:
    """What one input frame may cost (checked before decoding) and how its levels and stamp are read."""

    max_input_width: int = param(
        _LIMITS.max_width,
        "frames wider than this are rejected before decoding (counted as bad input)",
        int_range=(1, 65535, 0),
    )
    max_input_height: int = param(
        _LIMITS.max_height, "frames taller than this are rejected before decoding", int_range=(1, 65535, 0)
    )
    max_input_pixels: int = param(
        _LIMITS.max_pixels,
        "frames with more pixels than this are rejected before decoding",
        int_range=(1, 2**31 - 1, 0),
    )
    input_white_level: int = param(
        0,
        "full-scale value of 16-bit inputs (4095 for a 12-bit camera); 0 = the smallest 8/10/12/14/16-bit "
        "range the camera's frames have reached",
        int_range=(0, 65535, 0),
    )
    frame_cost_periods: float = param(
        3.0,
        "the most camera periods of work one frame may cost beyond the camera's usual frames, judged from "
        "its declared size before decoding, the device's measured speed and the camera's rate; a frame over it "
        "is decoded smaller (frame_cost_policy) (0 = no bound)",
        float_range=(0.0, 1e6),
    )
    frame_cost_policy: str = param(
        "resize",
        "frames over frame_cost_periods: resize (decoded at the budget's size, published at that size) or refuse",
        choices=FRAME_COST_POLICIES,
    )
    max_stamp_skew_s: float = param(
        60.0,
        "frames whose stamp is further than this from the node clock are processed but flagged, and left "
        "out of the latency statistics [s]",
        float_range=(0.001, 1e9),
    )

    @property
    def decode_limits(self) -> DecodeLimits:
        """What one input frame may cost (checked before decoding)."""
        return DecodeLimits(
            max_width=self.max_input_width,
            max_height=self.max_input_height,
            max_pixels=self.max_input_pixels,
            max_bytes=self.max_input_pixels * 8,  # 4 channels x 16 bits: the largest raw layout
        )


@dataclass(frozen=True)
class OutputSettings:
    """Which outputs are published, and how the mask and streak planes are encoded."""

    publish_image: bool = param(True, "publish derained/image (sensor_msgs/Image)")
    publish_compressed: bool = param(False, "publish derained/image/compressed (JPEG)")
    jpeg_quality: int = param(90, "JPEG quality of derained/image/compressed", int_range=(1, 100, 1))
    publish_mask: bool = param(True, "publish raindrop_mask (mono8)")
    mask_threshold: float = param(
        0.0,
        "0 = raindrop_mask is the probability scaled to 0..255; > 0 = binary mask (255 where p >= threshold)",
        float_range=(0.0, 1.0),
    )
    publish_streak_map: bool = param(False, "publish streak_map")
    streak_map_encoding: str = param(
        "mono8",
        "streak_map encoding: mono8 (intensity x 255, clipped) or 32FC1 (raw intensity)",
        choices=STREAK_ENCODINGS,
    )

    @property
    def float_streak(self) -> bool:
        """Whether results must carry the raw streak intensity (the 32FC1 streak map)."""
        return self.streak_map_encoding == "32FC1"


@dataclass(frozen=True)
class RainSettings:
    """When a frame counts as rainy, and rain gating (pass dry frames through, probe now and then)."""

    rain_streak_threshold: float = param(
        0.05, "mean streak intensity above which rain_detected is set", float_range=(0.0, 100.0)
    )
    rain_coverage_threshold: float = param(
        0.01, "raindrop coverage fraction above which rain_detected is set", float_range=(0.0, 1.0)
    )
    gating_enabled: bool = param(
        False,
        "rain gating: after gating_frames dry frames, pass frames through and run the model only every "
        "gating_probe_interval-th frame",
    )
    gating_frames: int = param(30, "consecutive dry frames before gating starts", int_range=(1, 100000, 0))
    gating_probe_interval: int = param(
        10, "while gated, restore every k-th frame to re-check for rain", int_range=(1, 100000, 0)
    )


@dataclass(frozen=True)
class NodeOptions:
    """Whether frames are restored at all, and how a managed node starts."""

    enabled: bool = param(
        True,
        "false pauses restoration: frames pass through unchanged (PROCESSING_GATED); the ~/set_enabled "
        "service (std_srvs/SetBool) sets it too",
    )
    autostart: bool = param(
        False,
        "managed (lifecycle) node only: configure and activate at start instead of waiting for a manager",
        read_only=True,
    )


@dataclass(frozen=True)
class DiagnosticsSettings:
    """When /diagnostics warns or errs, how often it is published, and how often repeated warnings are logged."""

    diagnostics_period_s: float = param(
        1.0, "period of /diagnostics messages [s]", read_only=True, float_range=(0.05, 60.0)
    )
    latency_budget_ms: float = param(
        0.0,
        "WARN when p95 end-to-end latency exceeds this [ms]; 0 = by device: 100 on CUDA, 5000 on CPU "
        "(diagnostics show the budget applied)",
        float_range=(0.0, 600000.0),
    )
    min_rate_fraction: float = param(
        0.5, "WARN when output rate < this fraction of the input rate", float_range=(0.0, 1.0)
    )
    error_after_failures: int = param(
        5, "ERROR after this many consecutive inference failures", int_range=(1, 100000, 0)
    )
    log_throttle_s: float = param(
        5.0, "minimum interval between repeated warnings of one kind [s]", float_range=(0.0, 3600.0)
    )
    stale_input_warn_s: float = param(
        0.0,
        f"WARN when a camera sent nothing for this long [s]; 0 = auto: {STALE_WARN_PERIODS:g} periods of its measured "
        f"input rate, at least {STALE_WARN_FLOOR_S:g} s",
        float_range=(0.0, 86400.0),
    )
    stale_input_error_s: float = param(
        0.0,
        f"ERROR when a camera sent nothing for this long [s]; 0 = auto: {STALE_ERROR_FACTOR:g} x the WARN threshold, "
        f"at least {STALE_ERROR_FLOOR_S:g} s",
        float_range=(0.0, 86400.0),
    )
    stamp_max_delay_s: float = param(
        5.0,
        "WARN when a frame arrives with a header stamp older than this (node clock minus stamp) [s]",
        float_range=(0.0, 1e9),
    )
    stamp_max_future_s: float = param(
        1.0, "WARN when a frame arrives with a header stamp this far in the future [s]", float_range=(0.0, 1e9)
    )

    def __post_init__(self) -> None:
        if 0 < self.stale_input_error_s <= self.stale_input_warn_s:
            raise ConfigError(
                f"parameter 'stale_input_error_s' ({self.stale_input_error_s:g}) must be larger than "
                f"'stale_input_warn_s' ({self.stale_input_warn_s:g}), or 0 (auto)"
            )

    def stale_after(self, period_s: float | None) -> tuple[float, float]:
        """(WARN, ERROR) seconds without input for a camera of measured frame period ``period_s`` (None: unknown)."""
        warn = self.stale_input_warn_s or max(STALE_WARN_FLOOR_S, STALE_WARN_PERIODS * (period_s or 0.0))
        error = self.stale_input_error_s or max(STALE_ERROR_FLOOR_S, STALE_ERROR_FACTOR * warn)
        return warn, error

    def latency_budget_for(self, device: str) -> tuple[float, str]:
        """(budget in ms, where it comes from) for an engine on ``device`` (``cpu``, ``cuda:0``)."""
        if self.latency_budget_ms > 0:
            return self.latency_budget_ms, "parameter latency_budget_ms"
        kind = device.partition(":")[0]
        return AUTO_LATENCY_BUDGET_MS.get(kind, AUTO_LATENCY_BUDGET_MS["cpu"]), f"auto for {kind}"
