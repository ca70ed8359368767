"""One camera's restoration pipeline, shared by the node and bag evaluation.

:class:`CameraPipeline` owns what a camera needs between a decoded message and its
:class:`~vimpnet_ros.pipeline.outputs.FrameOutputs`: the engine stream, the white level
of 16-bit input, rain gating, the rain estimate and the counters ``RainStatus`` reports.
:func:`restore_turn` runs one turn for several cameras: each camera's older frames go
into its temporal buffer as context (latest wins), its newest frame is restored, and
cameras of the same size share each network call. The node calls it from its worker
with whatever arrived; bag evaluation calls it once per recorded frame.

Every failure is contained: a bad frame is counted and reported, a failing or
non-finite inference publishes the input (``PROCESSING_FALLBACK``), and an
out-of-memory error lets the engine degrade (:meth:`InferenceEngine.recover`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vimpnet_ros.errors import InputError
from vimpnet_ros.pipeline.budget import FrameBudget
from vimpnet_ros.pipeline.decode import DecodedFrame, WhiteLevelTracker, declared_size, decode_message
from vimpnet_ros.pipeline.outputs import (
    FrameOutputs,
    Processing,
    StatusFields,
    empty_planes,
    image_plane,
    mask_plane,
    streak_plane,
    to_rgb8,
)
from vimpnet_ros.pipeline.rain import NO_RAIN, RainEstimate, RainGate, estimate_rain, mask_level

if TYPE_CHECKING:
    from vimpnet_ros.engine import EngineConfig, FrameResult, InferenceEngine, Stream
    from vimpnet_ros.pipeline.settings import InputSettings, NodeOptions, NodeSettings, RainSettings


class Reporter(Protocol):
    """Where the pipeline reports problems: ``(camera, kind, text, error)``; the node throttles per kind."""

    def __call__(self, camera: str, kind: str, text: str, error: bool = False) -> None: ...


def header_stamp_ns(header: Any) -> int:
    """``header.stamp`` in nanoseconds, for any stamp a message can carry (negative and far-future ones too)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def stamp_nanosec(header: Any) -> int:
    """``header.stamp.nanosec`` (0 for a header without a stamp, as bag evaluation's synthetic frames)."""
    stamp = getattr(header, "stamp", None)
    return int(stamp.nanosec) if stamp is not None else 0


@dataclass(frozen=True)
class SourceFrame:
    """A decoded frame with what publishing its result needs: stamp, header, and anything else the caller keeps."""

    frame: DecodedFrame
    stamp_ns: int
    header: Any
    extra: Any = None


@dataclass
class CameraCounters:
    """Per-camera counts since start; shared by callback, worker and diagnostics threads (hold ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    received: int = 0
    processed: int = 0  # frames output (restored, gated or fallback)
    restored: int = 0
    skipped: int = 0  # latest wins: buffered as context only
    bad_input: int = 0
    failures: int = 0  # inference exceptions and non-finite outputs
    consecutive_failures: int = 0
    resets: int = 0
    stamp_suspect: int = 0  # processed, but the stamp was implausible against the clock
    over_budget: int = 0  # declared more work than frame_cost_periods allows: resized before decoding, or refused
    last_error: str = ""

    @property
    def dropped(self) -> int:
        """Frames received but not restored: latest-wins skips and bad input (``RainStatus.dropped_frames``)."""
        return self.skipped + self.bad_input


class CameraPipeline:
    """Decode checks, temporal buffer, gating and outputs of one camera (see the module docstring)."""

    def __init__(self, name: str, engine: InferenceEngine, report: Reporter) -> None:
        self.name = name
        self.engine = engine
        #: The camera's ring buffer in ``engine`` (read through its public methods; the engine fills it).
        self.stream: Stream = engine.open_stream(name or "camera")
        self.report = report
        #: What this camera's frames may cost (running size and period, the device's measured rate).
        self.budget = FrameBudget(str(engine.device), self.inferred_pixels)
        self.gate = RainGate()
        self.white_level = WhiteLevelTracker()
        self.counters = CameraCounters()
        self.estimate: RainEstimate = NO_RAIN

    @property
    def label(self) -> str:
        """The camera's name in logs and diagnostics."""
        return self.name or "camera"

    def count_bad_input(self, error: Exception) -> None:
        """A frame that could not be used (undecodable, over a limit, rejected by the engine)."""
        with self.counters.lock:
            self.counters.bad_input += 1
        self.report(self.name, "input", f"[{self.label}] frame dropped: {error}")

    def receive(self, msg: Any, compressed: bool, inputs: InputSettings, extra: Any = None) -> SourceFrame | None:
        """The one way in for a camera message (rclpy or rosbags: the same fields): its frame, or None if refused.

        Sizes are checked against ``inputs`` before decoding; a refused message (over a limit,
        undecodable, or anything else a message can provoke) is counted as bad input and reported,
        never raised. ``extra`` travels with the frame to its outputs (bag-eval's bag time).
        """
        try:
            return self.source(self.decode(msg, compressed, inputs), msg.header, inputs, extra)
        except InputError as error:
            self.count_bad_input(error)
        except Exception as error:  # anything else a message can provoke: still one bad frame, never a crash
            self.count_bad_input(InputError(f"{type(error).__name__}: {error}"))
        return None

    def inferred_pixels(self, width: int, height: int) -> int:
        """Pixels the engine infers for a (width, height) frame (its working size; the frame cost budget's unit)."""
        work_w, work_h = self.engine.working_size(width, height)
        return work_w * work_h

    def decode(self, msg: Any, compressed: bool, inputs: InputSettings) -> DecodedFrame:
        """Decode a camera message within the input limits and the frame cost budget; InputError if unusable.

        A frame that declares more work than ``frame_cost_periods`` allows (pipeline/budget.py) is
        decoded at the budget's size (``frame_cost_policy: resize``; a JPEG at a reduced DCT scale)
        or refused, counted and reported, a jump far above the camera's running size by name.
        """
        limits = inputs.decode_limits
        width, height = declared_size(msg, compressed)
        limits.check(width, height, "declared size")
        budget = self.budget
        allowed = budget.allowed_pixels(width, height, inputs.frame_cost_periods)
        jump = budget.is_jump(width, height)
        budget.observe(width, height, header_stamp_ns(msg.header))
        if allowed:
            with self.counters.lock:
                self.counters.over_budget += 1
            cost = f"{width}x{height}"
            if jump:
                cost += f", {width * height / (budget.running_pixels or 1):.0f}x this camera's running size"
            cost += (
                f", would cost ~{budget.cost_s(width, height):.1f} s against its "
                f"{budget.period_s * 1e3:.0f} ms period (frame_cost_periods {inputs.frame_cost_periods:g})"
            )
            if inputs.frame_cost_policy == "refuse":
                raise InputError(f"frame declares {cost}; refused before decoding (frame_cost_policy refuse)")
            self.report(self.name, "budget", f"[{self.label}] frame declares {cost}; decoded at {allowed} pixels")
        return decode_message(msg, compressed, limits, allowed)

    def source(self, frame: DecodedFrame, header: Any, inputs: InputSettings, extra: Any = None) -> SourceFrame:
        """A decoded frame with its white level (``input_white_level``) and header stamp; InputError if unusable."""
        self.white_level.configured = inputs.input_white_level
        return SourceFrame(self.white_level.update(frame), header_stamp_ns(header), header, extra)

    def buffer(self, source: SourceFrame) -> bool:
        """Keep a frame as temporal context only (not restored); False if the engine rejected it."""
        try:
            self.engine.admit(self.stream, source.frame.rgb, source.stamp_ns, source, source.frame.white_level)
        except InputError as error:
            self.count_bad_input(error)
            return False
        return True

    def wants_restore(self, node: NodeOptions, rain: RainSettings) -> bool:
        """Whether this camera's next frame goes through the model (enabled, not gated)."""
        return node.enabled and self.gate.should_restore(rain.gating_enabled, rain.gating_probe_interval)

    # -- outputs -----------------------------------------------------------------------------------------------------

    def _latency_s(self, source: SourceFrame, now_ns: int, inputs: InputSettings) -> float:
        """now - stamp in seconds, or NaN (and counted) when the stamp cannot give a latency.

        That is: further than ``max_stamp_skew_s`` off the node clock, in the future (a negative
        latency means the clocks disagree), or unnormalised (``nanosec`` of a second or more).
        """
        latency = (now_ns - source.stamp_ns) / 1e9
        nanosec = stamp_nanosec(source.header)
        if nanosec >= 1_000_000_000:
            problem = f"has nanosec {nanosec} (1e9 or more: not normalised)"
        elif latency < 0:
            problem = f"is {-latency:.3g} s ahead of the node clock (the clocks disagree)"
        elif latency > inputs.max_stamp_skew_s:
            problem = f"is {latency:.3g} s off the node clock (max_stamp_skew_s {inputs.max_stamp_skew_s:g})"
        else:
            return latency
        with self.counters.lock:
            self.counters.stamp_suspect += 1
        self.report(
            self.name, "stamp", f"[{self.label}] frame stamp {problem}; processed, left out of the latency statistics"
        )
        return math.nan

    def _status(
        self,
        processing: Processing,
        estimate: RainEstimate,
        detected: bool,
        inference_s: float,
        latency_s: float,
        window_frames: int,
        engine: EngineConfig,
        backend: str,
        precision: str,
    ) -> StatusFields:
        with self.counters.lock:
            self.counters.processed += 1
            processed, dropped = self.counters.processed, self.counters.dropped
        return StatusFields(
            processing=processing,
            raindrop_coverage=estimate.raindrop_coverage,
            streak_intensity=estimate.streak_intensity,
            rain_detected=detected,
            inference_time=inference_s,
            latency=latency_s,
            window_frames=window_frames & 0xFF,  # the message's uint8 and uint32 fields wrap
            window_size=engine.window_size & 0xFF,
            processed_frames=processed & 0xFFFFFFFF,
            dropped_frames=dropped & 0xFFFFFFFF,
            backend=backend,
            precision=precision,
            model=engine.model,
        )

    def outputs(self, result: FrameResult, settings: NodeSettings, now_ns: int) -> FrameOutputs:
        """The published outputs for an engine result (its ``meta`` is the :class:`SourceFrame` it describes)."""
        source: SourceFrame = result.meta
        if result.reset_reason:
            with self.counters.lock:
                self.counters.resets += 1
            self.gate.reset()
            self.report(self.name, "reset", f"[{self.label}] temporal buffer reset: {result.reset_reason}")
        if not result.valid:
            return self.fallback(source, "model output contains NaN/Inf", settings, now_ns, result)
        planes, rain = settings.outputs, settings.rain
        estimate = estimate_rain(result.drop_mask, result.streak_intensity, planes.mask_threshold)
        detected = estimate.detected(rain.rain_streak_threshold, rain.rain_coverage_threshold)
        self.estimate = estimate
        self.gate.update(detected, rain.gating_enabled, rain.gating_frames)
        with self.counters.lock:
            self.counters.consecutive_failures = 0
            self.counters.restored += 1
        height, width = result.image.shape[:2]
        self.budget.measured(result.inference_ms / 1e3, width, height)
        latency = self._latency_s(source, now_ns, settings.inputs)
        status = self._status(
            Processing.RESTORED,
            estimate,
            detected,
            result.inference_ms / 1e3,
            latency,
            result.window_frames,
            settings.engine,
            result.backend,
            result.precision,
        )
        encoding = source.frame.output_encoding
        return FrameOutputs(
            stamp_ns=source.stamp_ns,
            meta=source,
            image=image_plane(result.image, encoding),
            mask=mask_plane(result.drop_mask, mask_level(planes.mask_threshold), planes.mask_threshold > 0),
            streak=streak_plane(result.streak_map, result.streak_float, planes.streak_map_encoding),
            rgb8=to_rgb8(result.image, result.white_level),
            status=status,
        )

    def passthrough(
        self,
        source: SourceFrame,
        processing: Processing,
        settings: NodeSettings,
        now_ns: int,
        result: FrameResult | None = None,
        backend: str = "",
        precision: str = "",
    ) -> FrameOutputs:
        """The input published unchanged (gated, disabled, or a failed inference), with empty planes."""
        rgb = source.frame.rgb
        mask, streak = empty_planes(rgb.shape[0], rgb.shape[1], settings.outputs.streak_map_encoding)
        estimate = self.estimate if processing == Processing.GATED else NO_RAIN
        detected = estimate.detected(settings.rain.rain_streak_threshold, settings.rain.rain_coverage_threshold)
        window = result.window_frames if result is not None else len(self.stream)
        inference_s = result.inference_ms / 1e3 if result is not None else 0.0
        status = self._status(
            processing,
            estimate,
            detected,
            inference_s,
            self._latency_s(source, now_ns, settings.inputs),
            window,
            settings.engine,
            backend or (result.backend if result else ""),
            precision or (result.precision if result else ""),
        )
        return FrameOutputs(
            stamp_ns=source.stamp_ns,
            meta=source,
            image=image_plane(rgb, source.frame.output_encoding),
            mask=mask,
            streak=streak,
            rgb8=to_rgb8(rgb, source.frame.white_level),
            status=status,
        )

    def fallback(
        self,
        source: SourceFrame,
        reason: str,
        settings: NodeSettings,
        now_ns: int,
        result: FrameResult | None = None,
        backend: str = "",
        precision: str = "",
    ) -> FrameOutputs:
        """Count a failed frame (ERROR level once failures repeat) and publish its input (``PROCESSING_FALLBACK``)."""
        with self.counters.lock:
            self.counters.failures += 1
            self.counters.consecutive_failures += 1
            self.counters.last_error = reason
            repeated = self.counters.consecutive_failures >= settings.diagnostics.error_after_failures
        self.report(self.name, "failure", f"[{self.label}] {reason}; published the input instead", repeated)
        return self.passthrough(source, Processing.FALLBACK, settings, now_ns, result, backend, precision)


@dataclass
class Turn:
    """One camera's frames for one worker turn, oldest first: all but the last are context, the last is restored.

    With ``skipped`` frames, a stamp jump from the buffered frames to this turn's is the worker's
    doing, not a gap in the camera: no reset (:meth:`Stream.supersede`), and the turn's own frames
    (the last ``window_size`` that arrived) make the next window whole.
    """

    camera: CameraPipeline
    sources: list[SourceFrame]
    skipped: int = 0  # frames that fell out of the pending queue before this turn (counted as skipped)


def restore_turn(
    engine: InferenceEngine, turns: Sequence[Turn], settings: NodeSettings, now_ns: Callable[[], int]
) -> list[tuple[CameraPipeline, FrameOutputs]]:
    """Run one turn over several cameras; returns what to publish, per camera (passed-through frames first).

    Cameras whose frames have the same size share one network call per step. An exception
    from the engine publishes every restored camera's input (``PROCESSING_FALLBACK``) and
    gives the engine its chance to degrade (out of memory: tiles, then the CPU).
    """
    outputs: list[tuple[CameraPipeline, FrameOutputs]] = []
    jobs: list[tuple[CameraPipeline, int]] = []
    ran = {"backend": engine.backend_name, "precision": engine.precision_name}
    for turn in turns:
        camera = turn.camera
        context, newest = turn.sources[:-1], turn.sources[-1]
        with camera.counters.lock:
            camera.counters.skipped += len(context) + turn.skipped
        if turn.skipped:  # frames discarded while busy: a jump to this turn's frames is ours, not the camera's
            camera.stream.supersede(turn.sources[0].stamp_ns, engine.config.max_gap_s)
        for source in context:
            camera.buffer(source)
        if not camera.wants_restore(settings.node, settings.rain):
            if camera.buffer(newest):
                outputs.append((camera, camera.passthrough(newest, Processing.GATED, settings, now_ns(), **ran)))
            continue
        try:
            target = engine.admit(camera.stream, newest.frame.rgb, newest.stamp_ns, newest, newest.frame.white_level)
        except InputError as error:
            camera.count_bad_input(error)
            continue
        if target is not None:  # None: 'center' output still filling its first half window
            jobs.append((camera, target))
    if not jobs:
        return outputs
    try:
        results = engine.restore([(camera.stream, target) for camera, target in jobs], settings.outputs.float_streak)
    except Exception as error:  # a backend failure, CUDA out of memory: publish the inputs, keep running
        recovery = engine.recover(error)
        reason = f"inference failed ({type(error).__name__}: {error})" + (f"; {recovery}" if recovery else "")
        for camera, target in jobs:
            source = camera.stream.slot(target).meta
            outputs.append((camera, camera.fallback(source, reason, settings, now_ns(), **ran)))
        return outputs
    for (camera, _), result in zip(jobs, results, strict=True):
        outputs.append((camera, camera.outputs(result, settings, now_ns())))
    return outputs


def flush_camera(camera: CameraPipeline, settings: NodeSettings, now_ns: Callable[[], int]) -> list[FrameOutputs]:
    """Outputs for the frames ``center`` mode has not described yet (end of a bag or stream)."""
    results = camera.engine.flush(camera.stream, settings.outputs.float_streak)
    return [camera.outputs(result, settings, now_ns()) for result in results]
