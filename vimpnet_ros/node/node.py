"""The ViMP-Net deraining node, as a plain or a managed (lifecycle) rclpy node.

Both variants map their transitions onto :class:`DerainCore`, and each transition creates
what it owns and the reverse one destroys it:

- ``configure``: validate the parameters (:class:`~vimpnet_ros.node.ros_params.ParameterBridge`),
  load the model once (one :class:`~vimpnet_ros.engine.InferenceEngine` shared by every
  camera), one :class:`~vimpnet_ros.node.camera_io.CameraIO` per camera with its publishers,
  the diagnostics publisher and timer, the ``~/set_enabled`` service;
- ``activate``: one engine stream per camera, the subscriptions, the inference worker;
- ``deactivate`` / ``cleanup``: the reverse.

The plain node runs configure and activate at start; the lifecycle node runs them from its
transitions (or at start with ``autostart``) and publishes through lifecycle publishers.
Subscription callbacks only decode (with the size limits checked first) and hand frames to
the :class:`~vimpnet_ros.node.scheduler.InferenceWorker` (latest wins); the worker runs
:func:`~vimpnet_ros.pipeline.camera.restore_turn` and publishes. Nothing a message carries
can raise out of a callback or the worker: every bad case is counted and logged once per
``log_throttle_s``.

Topics per camera (``<ns>/`` prefix for each entry of ``cameras``, none when empty): in
``image`` or ``<resolved image>/compressed``, ``camera_info``; out ``derained/image``,
``derained/image/compressed``, ``derained/camera_info``, ``raindrop_mask``, ``streak_map``,
``rain_status``; and ``/diagnostics``.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from vimpnet_ros.errors import ConfigError, EngineError, VimpnetError
from vimpnet_ros.node.camera_io import CameraIO, CameraPublishers
from vimpnet_ros.node.diagnostics import ERROR, OK, Thresholds, make_array, make_status
from vimpnet_ros.node.qos import DIAGNOSTICS_QOS, SERVICE_QOS, InputSubscription, create_output_publisher
from vimpnet_ros.node.ros_params import ParameterBridge
from vimpnet_ros.node.scheduler import Batch, InferenceWorker
from vimpnet_ros.pipeline.camera import CameraPipeline, Turn, header_stamp_ns, restore_turn
from vimpnet_ros.pipeline.settings import NODE_NAME, NodeSettings
from vimpnet_ros.pipeline.topics import CameraTopics, camera_info_topic, transport_topic

if TYPE_CHECKING:
    from rclpy.publisher import Publisher
    from rclpy.service import Service
    from rclpy.timer import Timer

    from vimpnet_ros.engine import InferenceEngine

#: Seconds the worker gets to finish its turn when processing stops; a longer inference is abandoned
#: (not published, and the next activation's first turn waits for it to end).
WORKER_STOP_TIMEOUT_S = 2.0
#: How often inputs waiting for their first publisher (``input_reliability: auto``) look again [s].
INPUT_POLL_S = 0.5


class LogThrottle:
    """Rate-limited log lines keyed by (camera, kind), counting what was suppressed."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, text: str, period_s: float, error: bool = False) -> None:
        """Log ``text`` unless a line with the same key went out less than ``period_s`` ago."""
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


class DerainCore:
    """The node's behaviour, independent of whether the rclpy node is managed (see the module docstring)."""

    def __init__(self, node: Node, lifecycle: bool = False) -> None:
        self.node = node
        self.logger = node.get_logger()
        self.throttle = LogThrottle(self.logger)
        self.params = ParameterBridge(node)
        self.engine: InferenceEngine | None = None
        self.cameras: dict[str, CameraIO] = {}
        self.worker: InferenceWorker | None = None
        self.active = False
        self.status_type: type | None = None
        self._create_publisher = node.create_lifecycle_publisher if lifecycle else node.create_publisher  # type: ignore[attr-defined]
        self._diagnostics: Publisher | None = None
        self._diagnostics_timer: Timer | None = None
        self._enable_service: Service | None = None
        self._input_timer: Timer | None = None
        #: A stopped worker whose last turn still ran when processing stopped (its inference is abandoned).
        self._retiring: InferenceWorker | None = None
        #: Turns running now, over this node's workers (an abandoned one included), and the turns that began while
        #: another still ran: the fence in ``activate`` keeps that at 0 (two turns on the same streams raced and
        #: held two inferences' memory); diagnostics report it as ``overlapping_turns``, an error when above 0.
        self._turns_running = 0
        self.overlapping_turns = 0
        self._turns_lock = threading.Lock()

    @property
    def abandoned_inference(self) -> bool:
        """True while an abandoned inference still runs: the process then exits without teardown (see main)."""
        return self._retiring is not None and self._retiring.running()

    @property
    def settings(self) -> NodeSettings:
        """The validated parameters (configure first)."""
        if self.params.settings is None:
            raise EngineError("the node is not configured")
        return self.params.settings

    def report(self, camera: str, kind: str, text: str, error: bool = False) -> None:
        """The pipelines' problem reports, throttled per camera and kind."""
        period = self.params.settings.diagnostics.log_throttle_s if self.params.settings else 0.0
        self.throttle.warn(f"{camera}:{kind}", text, period, error)

    # ----- lifecycle ------------------------------------------------------------------------
    def configure(self) -> None:
        """Validate parameters, load the model once, create publishers and services (raises VimpnetError)."""
        settings = self.params.load()
        try:
            from vimpnet_msgs.msg import RainStatus
        except ImportError as error:
            raise ConfigError(
                "the interface package vimpnet_msgs (RainStatus) is not built/installed: run make setup, or build "
                "it with colcon and source the workspace"
            ) from error
        from std_srvs.srv import SetBool

        from vimpnet_ros.engine import InferenceEngine

        self.status_type = RainStatus
        engine = InferenceEngine(settings.engine)
        started = time.monotonic()
        try:
            engine.load()
        except VimpnetError:
            raise
        except Exception as error:  # a backend's own exception: still one clear line and a non-zero exit
            source = settings.engine.checkpoint or "the shipped weights"
            raise EngineError(
                f"loading model {settings.engine.model!r} from {source} failed: {type(error).__name__}: {error}"
            ) from error
        self.engine = engine

        def output(msg_type: type, topic: str) -> Publisher:
            """One output publisher: the output_* parameters, QoS overrides, incompatible viewers reported."""
            return create_output_publisher(
                self._create_publisher,
                self.node,
                msg_type,
                topic,
                settings.topics.output_reliability,
                settings.topics.output_depth,
                lambda text: self.report("outputs", "qos", text),
            )

        for namespace in settings.topics.camera_namespaces:
            topics = CameraTopics.for_camera(namespace)
            pipeline = CameraPipeline(namespace.strip("/"), engine, self.report)
            publishers = CameraPublishers.create(output, topics, RainStatus, settings.topics.use_camera_info)
            self.cameras[pipeline.name] = CameraIO(topics, pipeline, publishers)
        self._diagnostics = self.node.create_publisher(_diagnostic_array_type(), "/diagnostics", DIAGNOSTICS_QOS)
        self._diagnostics_timer = self.node.create_timer(
            settings.diagnostics.diagnostics_period_s, self.publish_diagnostics
        )
        self._enable_service = self.node.create_service(
            SetBool, "~/set_enabled", self._set_enabled, qos_profile=SERVICE_QOS
        )
        labels = ", ".join(c.pipeline.label for c in self.cameras.values())
        self.logger.info(
            f"loaded {settings.engine.model} ({settings.engine.checkpoint or 'shipped weights'}) in "
            f"{time.monotonic() - started:.1f} s on {engine.backend_name}/{engine.precision_name} ({engine.device}), "
            f"shared by {len(self.cameras)} camera(s): {labels}; input {settings.topics.input_transport}, window "
            f"{settings.engine.window_size}, output frame {settings.engine.output_frame}"
        )

    def activate(self) -> None:
        """Subscribe every camera and start the worker (streams keep their frames across deactivate/activate).

        With ``input_reliability: auto`` an input is subscribed once its first publisher appears
        (a timer looks every ``INPUT_POLL_S``); a bad ``qos_overrides`` parameter is a ConfigError.
        """
        topics = self.settings.topics
        for camera in self.cameras.values():
            camera.pipeline.gate.reset()
            base = self.node.resolve_topic_name(camera.topics.image)
            compressed = topics.input_transport == "compressed"
            topic = transport_topic(base, "compressed") if compressed else base
            inputs = [
                (
                    CompressedImage if compressed else Image,
                    topic,
                    lambda m, c=camera, z=compressed: self._on_message(c, m, compressed=z),
                )
            ]
            if topics.use_camera_info:  # the camera's own camera_info, named after its resolved image topic
                info_topic = self.node.resolve_topic_name(camera_info_topic(base))
                inputs.append((CameraInfo, info_topic, camera.remember_info))
            camera.inputs = [
                InputSubscription(
                    self.node,
                    msg_type,
                    name,
                    callback,
                    topics.input_reliability,
                    topics.input_depth,
                    lambda text, c=camera: self.report(c.name, "transport", text),
                )
                for msg_type, name, callback in inputs
            ]
            camera.stats.watch()
        self.worker = InferenceWorker(list(self.cameras), self.settings.engine.window_size, self._turn)
        self.worker.start(after=self._retiring)  # the fence: no turn before an abandoned one has ended
        self.active = True
        if self._poll_inputs():  # fixed reliabilities subscribe now; auto ones wait for a publisher
            self._input_timer = self.node.create_timer(INPUT_POLL_S, self._poll_inputs)
        described = [
            f"{i.topic} ({i.effective_reliability or 'waiting for a publisher'})"
            for c in self.cameras.values()
            for i in c.inputs
        ]
        self.logger.info(f"active: subscribed to {', '.join(described)}")

    def _poll_inputs(self) -> bool:
        """Subscribe inputs whose first publisher appeared (auto); stop polling when all are subscribed.

        Returns whether some input still waits for a publisher.
        """
        waiting = [i for c in self.cameras.values() for i in c.inputs if not i.poll()]
        if not waiting:
            self._stop_input_polling()
        return bool(waiting)

    def _stop_input_polling(self) -> None:
        if self._input_timer is not None:
            self.node.destroy_timer(self._input_timer)
            self._input_timer = None

    def deactivate(self) -> None:
        """Unsubscribe and stop the worker (bounded: a long inference is abandoned; the model stays loaded)."""
        self.active = False
        self._stop_input_polling()
        for camera in self.cameras.values():
            for subscription in camera.inputs:
                subscription.destroy()
            camera.inputs = []
            camera.stats.unwatch()
        if self.worker is not None:
            if not self.worker.stop(timeout=WORKER_STOP_TIMEOUT_S):
                self._retiring = self.worker
                self.logger.info(
                    f"an inference still running after {WORKER_STOP_TIMEOUT_S:.0f} s is abandoned: its frame is not "
                    "published, and processing resumes only once it has ended"
                )
            self.worker = None

    def cleanup(self) -> None:
        """Release publishers, timer, service and the model."""
        if self.active or self.worker is not None:
            self.deactivate()
        for camera in self.cameras.values():
            for publisher in camera.publishers.all():
                self.node.destroy_publisher(publisher)
        self.cameras = {}
        if self._diagnostics_timer is not None:
            self.node.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self._diagnostics is not None:
            self.node.destroy_publisher(self._diagnostics)
            self._diagnostics = None
        if self._enable_service is not None:
            self.node.destroy_service(self._enable_service)
            self._enable_service = None
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.params.settings = None

    # ----- callbacks (executor thread): decode and enqueue only -------------------------------------
    def _on_message(self, camera: CameraIO, msg: Image | CompressedImage, compressed: bool) -> None:
        """Decode one frame (limits checked first) and hand it to the worker; never raises."""
        worker, settings = self.worker, self.params.settings
        if worker is None or settings is None:
            return
        camera.stats.received((self._now_ns() - header_stamp_ns(msg.header)) / 1e9)
        source = camera.pipeline.receive(msg, compressed, settings.inputs)  # None: refused, counted and logged
        if source is not None:
            worker.submit(camera.name, source)

    def _set_enabled(self, request: Any, response: Any) -> Any:
        """``~/set_enabled`` (std_srvs/SetBool): sets the ``enabled`` parameter, so ``ros2 param get`` agrees."""
        result = self.node.set_parameters([Parameter("enabled", value=bool(request.data))])[0]
        response.success = bool(result.successful)
        if not result.successful:
            response.message = result.reason
        else:
            response.message = "restoring frames" if request.data else "paused: frames pass through"
        return response

    # ----- worker thread --------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _turn(self, batches: list[Batch]) -> None:
        """Restore every camera's newest frame (batched) and publish; a stopping worker publishes nothing."""
        engine, settings, worker = self.engine, self.params.settings, self.worker
        if engine is None or settings is None or worker is None:
            return
        with self._turns_lock:
            overlapping = self._turns_running > 0
            self._turns_running += 1
            self.overlapping_turns += overlapping
        if overlapping:
            self.logger.error("a turn began while another still ran (an abandoned inference not fenced off)")
        try:
            turns = [Turn(self.cameras[b.camera].pipeline, b.frames, b.discarded) for b in batches]
            outputs = restore_turn(engine, turns, settings, self._now_ns)
        finally:
            with self._turns_lock:
                self._turns_running -= 1
        for pipeline, frame_outputs in outputs:
            if worker.stopping or not self.active or self.status_type is None:
                return  # shutting down: the context may already be gone
            try:
                self.cameras[pipeline.name].publish(frame_outputs, settings.outputs, self.status_type)
            except Exception as error:
                if worker.stopping or not self.node.context.ok():
                    return
                self.report(pipeline.name, "publish", f"[{pipeline.label}] publishing failed: {error}", error=True)

    # ----- diagnostics ----------------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        """One status per camera plus one for the engine on /diagnostics."""
        settings, pub, engine = self.params.settings, self._diagnostics, self.engine
        if settings is None or pub is None or engine is None:
            return
        diagnostics = settings.diagnostics
        budget, source = diagnostics.latency_budget_for(str(engine.device))
        thresholds = Thresholds(diagnostics, budget, source)
        hardware_id = self.node.get_fully_qualified_name()
        statuses = []
        for camera in self.cameras.values():
            level, message, values = camera.stats.status(thresholds, camera.pipeline.gate.gated)
            lost = camera.lost_in_transport
            values.append(("frames_lost_in_transport", str(lost)))
            if lost:
                level = max(level, 1)
                message = (
                    f"{lost} frame(s) lost in transport (docs/node.md: camera-sized frames, DDS transport); {message}"
                )
            if not self.active:
                message = f"inactive; {message}"
            elif not settings.node.enabled:
                message = f"paused (enabled=false); {message}"
            statuses.append(make_status(f"{hardware_id}: {camera.pipeline.label}", hardware_id, level, message, values))
        statuses.append(
            make_status(
                f"{hardware_id}: engine",
                hardware_id,
                ERROR if self.overlapping_turns else OK,
                ("active" if self.active else "inactive")
                + (f"; {self.overlapping_turns} turn(s) overlapped another" if self.overlapping_turns else ""),
                [
                    ("model", settings.engine.model),
                    ("checkpoint", str(settings.engine.checkpoint or "shipped weights")),
                    ("backend", engine.backend_name),
                    ("precision", engine.precision_name),
                    ("stage1_passes", str(engine.stage1_passes)),
                    ("device", str(engine.device)),
                    ("engines_loaded", str(1 + engine.reloads)),
                    ("tile_size", str(engine.config.tile_size)),
                    ("working_scale", f"{engine.config.working_scale} ({engine.working_pixels or 'none'} pixels)"),
                    ("change_upsampling", engine.config.change_upsampling),
                    ("working_sizes", engine.working_sizes()),
                    ("cameras", ", ".join(c.pipeline.label for c in self.cameras.values())),
                    ("pending_frames", str(self.worker.pending_count() if self.worker else 0)),
                    ("overlapping_turns", str(self.overlapping_turns)),
                    ("building_in_background", ", ".join(engine.building()) or "none"),
                    ("enabled", str(settings.node.enabled).lower()),
                ],
            )
        )
        pub.publish(make_array(statuses, self.node.get_clock().now().to_msg()))


def _diagnostic_array_type() -> type:
    from diagnostic_msgs.msg import DiagnosticArray

    return DiagnosticArray


class VimpnetNode(Node):
    """Plain node: configures and activates itself at :meth:`start`."""

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
    """Managed node: the model loads in configure, processing starts in activate; ``autostart`` does both at start."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.core = DerainCore(self, lifecycle=True)

    def start(self) -> None:
        """With ``autostart``, configure and activate now; raises VimpnetError when that fails."""
        if not self.get_parameter("autostart").value:
            self.get_logger().info("managed mode: waiting for configure/activate transitions")
            return
        self.trigger_configure()
        if self.core.engine is None:
            raise ConfigError("autostart: configure failed (see the error above)")
        self.trigger_activate()

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
