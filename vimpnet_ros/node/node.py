"""The ViMP-Net deraining node, as a plain or a managed (lifecycle) rclpy node.

Both variants delegate to :class:`DerainCore`, which owns the work:

- ``configure``: read and validate parameters, load the model once (one
  :class:`~vimpnet_ros.engine.InferenceEngine` shared by every camera), create
  the publishers and the diagnostics timer;
- ``activate``: open one engine stream per camera, subscribe, start the worker;
- ``deactivate`` / ``cleanup``: the reverse.

The plain node runs configure and activate at start; the lifecycle node runs
them from its transitions. Subscription callbacks only decode and hand frames to
the :class:`~vimpnet_ros.node.scheduler.InferenceWorker` (latest wins); the worker
thread runs the model and publishes.

Topics per camera (``<ns>/`` prefix for each entry of ``cameras``, none when empty):
in ``image`` or ``image/compressed``, ``camera_info``; out ``derained/image``,
``derained/image/compressed``, ``derained/camera_info``, ``raindrop_mask``,
``streak_map``, ``rain_status``; and ``/diagnostics``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from vimpnet_ros.errors import ConfigError, EngineError, InputError, VimpnetError
from vimpnet_ros.node import conversion
from vimpnet_ros.node.diagnostics import CameraStats, Thresholds, make_array, make_status
from vimpnet_ros.node.gating import RainEstimate, RainGate, estimate_rain
from vimpnet_ros.node.parameters import (
    PARAMETERS,
    NodeSettings,
    ParamSpec,
    engine_config_kwargs,
    validate_settings,
)
from vimpnet_ros.node.qos import DIAGNOSTICS_QOS, make_qos
from vimpnet_ros.node.scheduler import Batch, InferenceWorker, PendingFrame

if TYPE_CHECKING:
    from rclpy.publisher import Publisher
    from rclpy.subscription import Subscription

    from vimpnet_ros.engine import FrameResult, InferenceEngine

NODE_NAME = "vimpnet"

_ROS_TYPES: dict[str, int] = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "double": ParameterType.PARAMETER_DOUBLE,
    "string": ParameterType.PARAMETER_STRING,
    "string_array": ParameterType.PARAMETER_STRING_ARRAY,
}

#: Processing codes of RainStatus (mirrored so this module imports before the message is built).
RESTORED, GATED, FALLBACK = 0, 1, 2


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS parameter descriptor of one table entry (description, ranges, read-only)."""
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=_ROS_TYPES[spec.type],
        description=spec.description,
        additional_constraints=spec.constraints,
        read_only=spec.read_only,
    )
    if spec.int_range is not None:
        low, high, step = spec.int_range
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=step)]
    if spec.float_range is not None:
        low_f, high_f = spec.float_range
        descriptor.floating_point_range = [FloatingPointRange(from_value=low_f, to_value=high_f, step=0.0)]
    return descriptor


class _Throttle:
    """Rate-limited log lines keyed by (camera, kind), counting what was suppressed."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, text: str, period_s: float, error: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get(key, (-1e18, 0))
            if now - last < period_s:
                self._last[key] = (last, suppressed + 1)
                return
            self._last[key] = (now, 0)
        if suppressed:
            text = f"{text} ({suppressed} similar message(s) suppressed)"
        (self._logger.error if error else self._logger.warning)(text)


@dataclass
class FrameMeta:
    """What the worker needs to publish a frame besides its pixels."""

    header: Any
    output_encoding: str


@dataclass
class _Camera:
    """Everything one camera owns: topics, engine stream, counters, gating and recent frames."""

    name: str  # '' for the single unnamed camera
    prefix: str  # topic prefix, '' or 'front/'
    stats: CameraStats
    gate: RainGate = field(default_factory=RainGate)
    stream: Any = None
    recent: deque[PendingFrame] = field(default_factory=lambda: deque(maxlen=16))
    infos: deque[CameraInfo] = field(default_factory=lambda: deque(maxlen=8))
    info_lock: threading.Lock = field(default_factory=threading.Lock)
    publishers: dict[str, Publisher] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)
    estimate: RainEstimate = field(default_factory=lambda: RainEstimate(0.0, 0.0))

    @property
    def label(self) -> str:
        return self.name or "camera"


class DerainCore:
    """The node's behaviour, independent of whether the rclpy node is managed."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.logger = node.get_logger()
        self.throttle = _Throttle(self.logger)
        self.settings: NodeSettings | None = None
        self.engine: InferenceEngine | None = None
        self.engines_loaded = 0
        self.cameras: dict[str, _Camera] = {}
        self.worker: InferenceWorker | None = None
        self.active = False
        self.backend = "pending"
        self.precision = "pending"
        self._status_type: Any = None
        self._diag_pub: Publisher | None = None
        self._diag_timer: Any = None
        self._declare_parameters()
        node.add_on_set_parameters_callback(self._on_set_parameters)

    # ----- parameters -----------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        """Declare every table entry; a bad override (type, range) becomes a ConfigError."""
        for spec in PARAMETERS:
            default: Any = spec.default
            if spec.type == "string_array" and not default:
                default = Parameter.Type.STRING_ARRAY  # declared without a value: [] has no type
            try:
                self.node.declare_parameter(spec.name, default, descriptor_for(spec))
            except Exception as error:  # rclpy's ParameterException family, or a plain one for some type mismatches
                raise ConfigError(f"parameter '{spec.name}' must be {spec.allowed} ({error})") from error

    def read_settings(self) -> NodeSettings:
        """Validate the current parameter values (raises ConfigError)."""
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            try:
                parameter = self.node.get_parameter(spec.name)
            except ParameterUninitializedException:  # a list declared without a value and never set
                values[spec.name] = None
                continue
            values[spec.name] = parameter.value if parameter.type_ != Parameter.Type.NOT_SET else None
        if values["cameras"] is None:
            values["cameras"] = []
        return validate_settings(values)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate runtime updates against the same rules as at start; apply the valid ones at once."""
        if self.settings is None:  # not configured yet: configure validates everything
            try:
                changes = {p.name: p.value for p in parameters}
                current = dataclasses.asdict(self.read_settings())
                current.update(changes)
                validate_settings(current)
            except VimpnetError as error:
                return SetParametersResult(successful=False, reason=str(error))
            return SetParametersResult(successful=True)
        try:
            new = self.settings.replace(**{p.name: p.value for p in parameters})
        except (VimpnetError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.settings = new  # read-only ones never get here: rclpy rejects them first
        names = ", ".join(f"{p.name}={p.value}" for p in parameters)
        self.logger.info(f"parameters updated: {names}")
        return SetParametersResult(successful=True)

    # ----- lifecycle ------------------------------------------------------------------------
    def configure(self) -> None:
        """Validate parameters, load the model once, create publishers (raises VimpnetError)."""
        settings = self.read_settings()
        try:
            from vimpnet_ros.msg import RainStatus
        except ImportError as error:
            raise ConfigError(
                "the message module vimpnet_ros.msg is not built/installed (RainStatus); build the package first"
            ) from error
        from vimpnet_ros.engine import EngineConfig, InferenceEngine

        self._status_type = RainStatus
        engine = InferenceEngine(EngineConfig(**engine_config_kwargs(settings)))
        started = time.monotonic()
        try:
            engine.load()
        except VimpnetError:
            raise
        except Exception as error:  # a backend's own exception: still one clear line and a non-zero exit
            source = settings.checkpoint or "the shipped weights"
            raise EngineError(
                f"loading model {settings.model!r} from {source} failed: {type(error).__name__}: {error}"
            ) from error
        self.engine = engine
        self.engines_loaded += 1
        self.settings = settings
        self.cameras = {}
        for name in settings.camera_namespaces:
            prefix = f"{name.rstrip('/')}/" if name else ""
            camera = _Camera(name=name.strip("/"), prefix=prefix, stats=CameraStats(name.strip("/") or "camera"))
            self._create_publishers(camera, settings)
            self.cameras[camera.name] = camera
        self._diag_pub = self.node.create_publisher(_diagnostic_array_type(), "/diagnostics", DIAGNOSTICS_QOS)
        self._diag_timer = self.node.create_timer(settings.diagnostics_period_s, self.publish_diagnostics)
        self.backend = str(getattr(engine, "backend_name", None) or settings.backend)
        self.precision = str(getattr(engine, "precision_name", None) or settings.precision)
        labels = ", ".join(c.label for c in self.cameras.values())
        self.logger.info(
            f"loaded {settings.model} ({settings.checkpoint or 'shipped weights'}) in "
            f"{time.monotonic() - started:.1f} s, shared by {len(self.cameras)} camera(s): {labels}; "
            f"input {settings.input_transport}, window {settings.window_size}, output frame {settings.output_frame}"
        )

    def _create_publishers(self, camera: _Camera, settings: NodeSettings) -> None:
        qos = make_qos(settings.output_reliability, settings.output_depth)
        p = camera.prefix
        create = self.node.create_publisher
        camera.publishers = {
            "image": create(Image, f"{p}derained/image", qos),
            "compressed": create(CompressedImage, f"{p}derained/image/compressed", qos),
            "mask": create(Image, f"{p}raindrop_mask", qos),
            "streak": create(Image, f"{p}streak_map", qos),
            "status": create(self._status_type, f"{p}rain_status", qos),
        }
        if settings.use_camera_info:
            camera.publishers["info"] = create(CameraInfo, f"{p}derained/camera_info", qos)

    def activate(self) -> None:
        """Open one stream per camera on the shared engine, subscribe, start the worker."""
        assert self.settings is not None and self.engine is not None, "configure() first"
        settings = self.settings
        qos = make_qos(settings.input_reliability, settings.input_depth)
        for camera in self.cameras.values():
            camera.stream = self.engine.open_stream(camera.label)
            camera.gate.reset()
            p = camera.prefix
            if settings.input_transport == "compressed":
                sub = self.node.create_subscription(
                    CompressedImage, f"{p}image/compressed", lambda m, c=camera: self._on_compressed(c, m), qos
                )
            else:
                sub = self.node.create_subscription(Image, f"{p}image", lambda m, c=camera: self._on_image(c, m), qos)
            camera.subscriptions = [sub]
            if settings.use_camera_info:
                camera.subscriptions.append(
                    self.node.create_subscription(
                        CameraInfo, f"{p}camera_info", lambda m, c=camera: self._on_camera_info(c, m), qos
                    )
                )
        self.worker = InferenceWorker(list(self.cameras), settings.window_size, self._process)
        self.worker.start()
        self.active = True
        topics = ", ".join(s.topic_name for c in self.cameras.values() for s in c.subscriptions)
        self.logger.info(f"active: subscribed to {topics}")

    def deactivate(self) -> None:
        """Stop the worker and unsubscribe (the model stays loaded)."""
        self.active = False
        for camera in self.cameras.values():
            for sub in camera.subscriptions:
                self.node.destroy_subscription(sub)
            camera.subscriptions = []
        if self.worker is not None:
            if not self.worker.stop(timeout=3.0):
                self.logger.warning("inference worker did not stop within 3 s (inference still running)")
            self.worker = None

    def cleanup(self) -> None:
        """Release publishers, timer and the model."""
        if self.active:
            self.deactivate()
        for camera in self.cameras.values():
            for pub in camera.publishers.values():
                self.node.destroy_publisher(pub)
            camera.publishers = {}
        self.cameras = {}
        if self._diag_timer is not None:
            self.node.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.node.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.settings = None

    # ----- callbacks (executor thread): decode and enqueue only ----------------------------
    def _on_image(self, camera: _Camera, msg: Image) -> None:
        self._enqueue(camera, msg, conversion.image_to_rgb)

    def _on_compressed(self, camera: _Camera, msg: CompressedImage) -> None:
        self._enqueue(camera, msg, conversion.compressed_to_rgb)

    def _on_camera_info(self, camera: _Camera, msg: CameraInfo) -> None:
        with camera.info_lock:
            camera.infos.append(msg)

    def _enqueue(self, camera: _Camera, msg: Any, decode: Any) -> None:
        settings, worker = self.settings, self.worker
        if settings is None or worker is None or not self.active:
            return
        stats = camera.stats
        with stats.lock:
            stats.received += 1
            stats.input_rate.tick()
        try:
            decoded = decode(msg)
        except InputError as error:
            with stats.lock:
                stats.bad_input += 1
            self.throttle.warn(
                f"{camera.name}:input", f"[{camera.label}] frame dropped: {error}", settings.log_throttle_s
            )
            return
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        meta = FrameMeta(header=msg.header, output_encoding=decoded.output_encoding)
        worker.submit(PendingFrame(camera.name, stamp_ns, decoded.rgb, time.monotonic_ns(), meta))

    # ----- worker thread: inference and publishing -----------------------------------------
    def _process(self, batch: Batch) -> None:
        """Push older frames as context only, restore the newest (or pass it through when gated)."""
        settings = self.settings
        camera = self.cameras.get(batch.camera)
        if settings is None or camera is None or camera.stream is None:
            return
        frames = batch.frames
        with camera.stats.lock:
            camera.stats.skipped += batch.discarded + len(frames) - 1
        for frame in frames[:-1]:
            self._push_context(camera, frame, settings)
        newest = frames[-1]
        if not camera.gate.should_restore(settings.gating_enabled, settings.gating_probe_interval):
            self._push_context(camera, newest, settings)
            self._publish_input(camera, newest, settings, GATED, camera.estimate)
            return
        camera.recent.append(newest)
        try:
            result = camera.stream.push(newest.rgb, newest.stamp_ns, restore=True)
        except InputError as error:
            with camera.stats.lock:
                camera.stats.bad_input += 1
            self.throttle.warn(
                f"{camera.name}:push", f"[{camera.label}] frame dropped: {error}", settings.log_throttle_s
            )
            return
        except Exception as error:  # backend failure, CUDA OOM: publish the input, keep running
            self._on_failure(camera, newest, settings, error)
            return
        if result is None:  # 'center' output: still filling the first half window
            return
        self._publish_result(camera, result, settings)

    def _push_context(self, camera: _Camera, frame: PendingFrame, settings: NodeSettings) -> None:
        camera.recent.append(frame)
        try:
            camera.stream.push(frame.rgb, frame.stamp_ns, restore=False)
        except InputError as error:
            with camera.stats.lock:
                camera.stats.bad_input += 1
            self.throttle.warn(
                f"{camera.name}:push", f"[{camera.label}] frame dropped: {error}", settings.log_throttle_s
            )
        except Exception as error:
            self.throttle.warn(
                f"{camera.name}:context", f"[{camera.label}] could not buffer a frame: {error}", settings.log_throttle_s
            )

    def _count_failure(self, camera: _Camera, settings: NodeSettings, kind: str, reason: str) -> None:
        """Count one failed frame and log it; ERROR level once failures repeat past the parameter's limit."""
        stats = camera.stats
        with stats.lock:
            stats.failures += 1
            stats.consecutive_failures += 1
            stats.last_error = reason
            failures = stats.consecutive_failures
        self.throttle.warn(
            f"{camera.name}:{kind}",
            f"[{camera.label}] {reason}; published the input instead",
            settings.log_throttle_s,
            error=failures >= settings.error_after_failures,
        )

    def _on_failure(self, camera: _Camera, frame: PendingFrame, settings: NodeSettings, error: Exception) -> None:
        self._count_failure(camera, settings, "failure", f"inference failed ({type(error).__name__}: {error})")
        if _is_out_of_memory(error):
            self._recover_from_oom(settings)
        self._publish_input(camera, frame, settings, FALLBACK, camera.estimate)

    def _recover_from_oom(self, settings: NodeSettings) -> None:
        """CUDA out of memory: free cached memory, then reload with tiling, then on CPU if tiling was already on."""
        import torch

        from vimpnet_ros.engine import EngineConfig, InferenceEngine

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        kwargs = engine_config_kwargs(settings)
        if settings.tile_size == 0:
            kwargs["tile_size"], kwargs["tile_overlap"] = 256, 32
            plan = "tiling 256 px"
        else:
            kwargs["device"], kwargs["backend"], kwargs["precision"] = "cpu", "torch", "fp32"
            plan = "the CPU"
        self.logger.error(f"CUDA out of memory: reloading the model with {plan}")
        try:
            engine = InferenceEngine(EngineConfig(**kwargs))
            engine.load()
        except Exception as error:
            self.logger.error(f"could not reload the model after out-of-memory: {error}")
            return
        if self.engine is not None:
            self.engine.close()
        self.engine = engine
        self.engines_loaded += 1
        self.settings = settings = settings.replace(
            tile_size=kwargs["tile_size"],
            tile_overlap=kwargs["tile_overlap"],
            device=kwargs["device"],
            backend=kwargs["backend"],
            precision=kwargs["precision"],
        )
        for camera in self.cameras.values():
            camera.stream = engine.open_stream(camera.label)

    def _publish_result(self, camera: _Camera, result: FrameResult, settings: NodeSettings) -> None:
        stats = camera.stats
        source = self._find_source(camera, result.stamp_ns)
        if result.reset_reason:
            with stats.lock:
                stats.resets += 1
            camera.gate.reset()
            self.throttle.warn(
                f"{camera.name}:reset",
                f"[{camera.label}] temporal buffer reset: {result.reset_reason}",
                settings.log_throttle_s,
            )
        self.backend, self.precision = result.backend, result.precision
        if not result.valid:
            self._count_failure(camera, settings, "nan", "model output contains NaN/Inf")
            self._publish_input(camera, source, settings, FALLBACK, camera.estimate, result)
            return
        estimate = estimate_rain(result.drop_mask, result.streak_map, settings.mask_threshold)
        detected = estimate.detected(settings.rain_streak_threshold, settings.rain_coverage_threshold)
        camera.estimate = estimate
        camera.gate.update(detected, settings.gating_enabled, settings.gating_frames)
        with stats.lock:
            stats.consecutive_failures = 0
            stats.restored += 1
            stats.inference_ms.add(result.inference_ms)
            stats.gated = camera.gate.gated
        header = source.meta.header
        pubs = camera.publishers
        if settings.publish_image:
            pubs["image"].publish(conversion.rgb_to_image(result.image, source.meta.output_encoding, header))
        if settings.publish_compressed:
            pubs["compressed"].publish(conversion.rgb_to_compressed(result.image, header, settings.jpeg_quality))
        if settings.publish_mask:
            pubs["mask"].publish(conversion.mask_to_image(result.drop_mask, header, settings.mask_threshold))
        if settings.publish_streak_map:
            pubs["streak"].publish(conversion.streak_to_image(result.streak_map, header, settings.streak_map_encoding))
        self._finish(camera, source, settings, RESTORED, estimate, result, detected)

    def _publish_input(
        self,
        camera: _Camera,
        frame: PendingFrame,
        settings: NodeSettings,
        processing: int,
        estimate: RainEstimate,
        result: FrameResult | None = None,
    ) -> None:
        """Publish the unrestored input (gating or failure), with an empty raindrop mask."""
        header = frame.meta.header
        pubs = camera.publishers
        height, width = frame.rgb.shape[:2]
        if settings.publish_image:
            pubs["image"].publish(conversion.rgb_to_image(frame.rgb, frame.meta.output_encoding, header))
        if settings.publish_compressed:
            pubs["compressed"].publish(conversion.rgb_to_compressed(frame.rgb, header, settings.jpeg_quality))
        zeros = np.zeros((height, width), np.float32)
        if settings.publish_mask:
            pubs["mask"].publish(conversion.mask_to_image(zeros, header, settings.mask_threshold))
        if settings.publish_streak_map:
            pubs["streak"].publish(conversion.streak_to_image(zeros, header, settings.streak_map_encoding))
        if processing == GATED:
            with camera.stats.lock:
                camera.stats.gated = True
        detected = estimate.detected(settings.rain_streak_threshold, settings.rain_coverage_threshold)
        self._finish(camera, frame, settings, processing, estimate, result, detected)

    def _finish(
        self,
        camera: _Camera,
        source: PendingFrame,
        settings: NodeSettings,
        processing: int,
        estimate: RainEstimate,
        result: FrameResult | None,
        detected: bool,
    ) -> None:
        """camera_info and rain_status for one output frame, then the counters."""
        header = source.meta.header
        pubs = camera.publishers
        if "info" in pubs:
            info = self._find_info(camera, source.stamp_ns)
            if info is not None:
                pubs["info"].publish(_with_header(info, header))
        now_ns = self.node.get_clock().now().nanoseconds
        latency_s = (now_ns - source.stamp_ns) / 1e9
        stats = camera.stats
        with stats.lock:
            stats.processed += 1
            stats.output_rate.tick()
            stats.latency_ms.add(latency_s * 1000.0)
            processed, dropped = stats.processed, stats.dropped
        status = self._status_type()
        status.header = header
        status.processing = processing
        status.raindrop_coverage = float(estimate.raindrop_coverage)
        status.streak_intensity = float(estimate.streak_intensity)
        status.rain_detected = bool(detected)
        status.inference_time = float(result.inference_ms / 1000.0) if result is not None else 0.0
        status.latency = float(latency_s)
        buffered = int(camera.stream.cache_stats()["frames"]) if hasattr(camera.stream, "cache_stats") else 0
        status.window_frames = int(result.window_frames if result is not None else buffered) & 0xFF
        status.window_size = settings.window_size
        status.processed_frames = processed & 0xFFFFFFFF
        status.dropped_frames = dropped & 0xFFFFFFFF
        status.backend = self.backend
        status.precision = self.precision
        status.model = settings.model
        pubs["status"].publish(status)

    def _find_source(self, camera: _Camera, stamp_ns: int) -> PendingFrame:
        """The received frame a result describes (its header, encoding, pixels)."""
        for frame in reversed(camera.recent):
            if frame.stamp_ns == stamp_ns:
                return frame
        return camera.recent[-1]

    def _find_info(self, camera: _Camera, stamp_ns: int) -> CameraInfo | None:
        """The CameraInfo with the frame's stamp, else the latest one."""
        with camera.info_lock:
            for info in reversed(camera.infos):
                if Time.from_msg(info.header.stamp).nanoseconds == stamp_ns:
                    return info
            return camera.infos[-1] if camera.infos else None

    # ----- diagnostics ----------------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        """One status per camera plus one for the engine on /diagnostics."""
        settings, pub = self.settings, self._diag_pub
        if settings is None or pub is None:
            return
        thresholds = Thresholds(settings.latency_budget_ms, settings.min_rate_fraction, settings.error_after_failures)
        hardware_id = self.node.get_fully_qualified_name()
        statuses = []
        for camera in self.cameras.values():
            level, message, values = camera.stats.status(thresholds)
            if not self.active:
                message = f"inactive; {message}"
            statuses.append(make_status(f"{hardware_id}: {camera.label}", hardware_id, level, message, values))
        pending = self.worker.pending_count() if self.worker is not None else 0
        building = self.engine.building() if self.engine is not None else []
        statuses.append(
            make_status(
                f"{hardware_id}: engine",
                hardware_id,
                0,
                "active" if self.active else "inactive",
                [
                    ("model", settings.model),
                    ("checkpoint", settings.checkpoint or "shipped weights"),
                    ("backend", self.backend),
                    ("precision", self.precision),
                    ("device", settings.device),
                    ("engines_loaded", str(self.engines_loaded)),
                    ("cameras", ", ".join(c.label for c in self.cameras.values())),
                    ("pending_frames", str(pending)),
                    ("building_in_background", ", ".join(building) or "none"),
                ],
            )
        )
        pub.publish(make_array(statuses, self.node.get_clock().now().to_msg()))


def _diagnostic_array_type() -> type:
    from diagnostic_msgs.msg import DiagnosticArray

    return DiagnosticArray


def _with_header(info: CameraInfo, header: Any) -> CameraInfo:
    """A copy of ``info`` carrying ``header`` (the derained image's)."""
    out = CameraInfo()
    for name in CameraInfo.get_fields_and_field_types():
        setattr(out, name, getattr(info, name))
    out.header = header
    return out


def _is_out_of_memory(error: BaseException) -> bool:
    """True for torch.OutOfMemoryError and CUDA OOM RuntimeErrors (without importing torch here)."""
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()


class VimpnetNode(Node):
    """Plain node: configures and activates itself at construction."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.core = DerainCore(self)

    def start(self) -> None:
        """Load the model and start processing (raises VimpnetError)."""
        self.core.configure()
        self.core.activate()

    def stop(self) -> None:
        """Stop the worker and release everything."""
        self.core.cleanup()


class VimpnetLifecycleNode(LifecycleNode):
    """Managed node: the model loads in configure, processing starts in activate."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.core = DerainCore(self)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.core.configure()
        except Exception as error:  # VimpnetError or a backend's own error: report, stay unconfigured
            self.get_logger().error(f"configure failed: {error}")
            self.core.cleanup()
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.core.activate()
        except Exception as error:  # e.g. a topic name the remapping made invalid
            self.get_logger().error(f"activate failed: {error}")
            self.core.deactivate()
            return TransitionCallbackReturn.FAILURE
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.cleanup()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.cleanup()
        return super().on_shutdown(state)

    def stop(self) -> None:
        """Stop the worker and release everything."""
        self.core.cleanup()
