"""Offline evaluation of rosbags: the node's own pipeline over every frame, an output bag and a report.

``evaluate_bag`` reads a rosbag2 (sqlite3 or MCAP, Humble/Jazzy/Kilted) in bag order and
sends every frame of each camera topic through the same
:class:`~vimpnet_ros.pipeline.camera.CameraPipeline` the node runs (the node's parameters,
from its params file), so the output bag holds exactly what the node publishes: per
camera ``derained/image``, ``raindrop_mask``, ``streak_map`` and ``rain_status``, each with
the source header at the source's bag timestamp. Every frame is restored (there is no
real-time skipping offline); ``rain_status.latency`` is the time spent on the frame.

Ground truth is found next to each camera (``<ns>/gt/image``, ``<ns>/gt/drop_mask``) or
named explicitly (``gt``/``gt_masks`` in :class:`BagEvalOptions`, ``--gt``/``--gt-mask``
on the command line), and topics named as ground truth are never derained. Frames with
ground truth are scored (:mod:`vimpnet_ros.evaluation.scoring`).

``evaluate_recording`` scores a live run instead: the bag a recorder wrote from the node's
outputs, against the source bag's ground truth (the demo uses it).

Outputs are written atomically (hidden temporary folder, renamed when complete): an error
leaves neither a half-written bag nor a report that looks valid.

A :class:`Segment` limits a run to a range of each camera's frames (the fleet runs bags as
many segments): the frames before it are restored first as warm-up without being written, so
the segment's outputs equal those of a whole-bag run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vimpnet_ros.bags.io import BagReader, BagWriter, TopicSummary
from vimpnet_ros.bags.stop import StopRequest
from vimpnet_ros.bags.typestore import COMPRESSED_TYPE, IMAGE_TYPE, IMAGE_TYPES, RAIN_STATUS_TYPE, make_typestore
from vimpnet_ros.errors import BagError, ConfigError, InputError
from vimpnet_ros.evaluation.scoring import (
    FrameRecord,
    clean_json,
    gt_resized_note,
    score_frame,
    summarize_quality,
    summarize_rain,
    summarize_timing,
)
from vimpnet_ros.pipeline.camera import (
    CameraCounters,
    CameraPipeline,
    SourceFrame,
    Turn,
    flush_camera,
    header_stamp_ns,
    restore_turn,
)
from vimpnet_ros.pipeline.decode import decode_message
from vimpnet_ros.pipeline.outputs import FrameOutputs, Plane, Processing, to_rgb8
from vimpnet_ros.pipeline.settings import InputSettings, NodeSettings
from vimpnet_ros.pipeline.topics import DERIVED_MARKERS, CameraTopics, camera_namespace

if TYPE_CHECKING:
    from vimpnet_ros.engine import InferenceEngine

LOGGER = logging.getLogger(__name__)

#: Frames that wait for their ground truth at most this many newer frames before being scored without it.
GT_WAIT_FRAMES = 16
#: Ground-truth topics looked for next to a camera when none is named: key -> name under the camera's namespace.
DEFAULT_GT_TOPICS: dict[str, str] = {"image": "gt/image", "drop_mask": "gt/drop_mask"}


# --------------------------------------------------------------------------------------------------------------------
# Records


@dataclass
class TopicReport:
    """Per image topic: counts, mean quality, latency percentiles, throughput and the topics written."""

    topic: str
    msgtype: str
    frames_in: int = 0
    frames_out: int = 0
    frames_with_gt: int = 0
    bad_frames: int = 0
    invalid_outputs: int = 0
    output_topics: dict[str, str] = field(default_factory=dict)
    gt_topics: dict[str, str] = field(default_factory=dict)
    quality: dict[str, float | None] = field(default_factory=dict)
    rain: dict[str, Any] = field(default_factory=dict)  # scoring.summarize_rain: known without ground truth
    restored_fraction: float | None = None  # frames the model restored / frames in
    warmup_frames: int = 0  # the cold start, left out of the percentiles (scoring.warmup_count)
    first_frame_ms: float | None = None
    latency_ms: dict[str, Any] = field(default_factory=dict)  # restored frames after the warm-up
    inference_ms: dict[str, Any] = field(default_factory=dict)
    throughput_fps: float | None = None
    output_rate_hz: float | None = None
    input_rate_hz: float | None = None
    rate_fraction: float | None = None


@dataclass
class EvalReport:
    """What one evaluation found: the summary that goes into report.json / report.md."""

    mode: str  # "offline" (bag-eval) or "live" (recorded node outputs)
    source_bag: str
    output_bag: str | None
    topics: list[TopicReport]
    settings: dict[str, Any]
    backend: str | None = None
    precision: str | None = None
    stage1_passes: int | None = None
    #: Each frame size and the size the network restored it at (``InferenceEngine.working_sizes``).
    working_sizes: str | None = None
    wall_s: float = 0.0
    topic_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Set when a stop signal ended the run early: ``{"signal", "frames_done", "frames_total"}``.
    interrupted: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN -> None)."""
        return clean_json(asdict(self))


@dataclass
class SampleFrame:
    """One contact-sheet row: (h, w, 3) uint8 images; ``mask`` (h, w) float in [0, 1]; ``gt`` may be None."""

    topic: str
    index: int
    stamp_ns: int
    rainy: np.ndarray
    derained: np.ndarray
    mask: np.ndarray
    gt: np.ndarray | None


# --------------------------------------------------------------------------------------------------------------------
# Topic selection


def mono_plane(msg: Any) -> np.ndarray:
    """(h, w) uint8 of a mono8 Image message (ground-truth masks, recorded raindrop masks)."""
    if str(msg.encoding) != "mono8":
        raise InputError(f"expected a mono8 mask image, got '{msg.encoding}'")
    data = np.asarray(msg.data, np.uint8)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if data.size != step * height or step < width:
        raise InputError(f"malformed {width}x{height} mono8 image: {data.size} bytes for step {step}")
    return data.reshape(height, step)[:, :width]


def decode_rgb8(msg: Any, msgtype: str, inputs: InputSettings) -> np.ndarray:
    """Any camera or ground-truth image message -> (h, w, 3) uint8 RGB, through the node's decoder and limits."""
    limits = inputs.decode_limits
    frame = decode_message(msg, msgtype == COMPRESSED_TYPE, limits)
    return to_rgb8(frame.rgb, frame.white_level)


def _parse_mapping(pairs: Mapping[str, str] | None, what: str, available: Mapping[str, str]) -> dict[str, str]:
    """Explicit ``topic -> ground-truth topic`` pairs, checked against the bag."""
    mapping = dict(pairs or {})
    for topic, gt in mapping.items():
        for name in (topic, gt):
            if name not in available:
                raise BagError(f"{what} mapping names {name}, which is not in the bag; it has {', '.join(available)}")
        if available[gt] != IMAGE_TYPE:
            raise BagError(f"{what} topic {gt} has type {available[gt]}; ground truth must be sensor_msgs/msg/Image")
    return mapping


def gt_topics_for(
    topic: str, available: Mapping[str, str], gt: Mapping[str, str], gt_masks: Mapping[str, str]
) -> dict[str, str]:
    """Ground-truth topics of camera ``topic``: the explicit mapping, else ``<ns>/gt/image``, ``<ns>/gt/drop_mask``."""
    found = {}
    for key, explicit in (("image", gt), ("drop_mask", gt_masks)):
        candidate = explicit.get(topic) or f"{camera_namespace(topic)}/{DEFAULT_GT_TOPICS[key]}"
        if available.get(candidate) == IMAGE_TYPE:
            found[key] = candidate
    return found


def select_image_topics(
    topics: Sequence[TopicSummary], requested: Sequence[str] | None, exclude: Sequence[str] = ()
) -> list[str]:
    """The camera topics to restore: ``requested`` (checked), or every image topic that is not GT or an output.

    Topics in ``exclude`` (named as ground truth) are never restored.
    """
    by_name = {t.name: t for t in topics}
    listing = ", ".join(f"{t.name} ({t.msgtype})" for t in topics) or "no topics"
    if requested:
        for name in requested:
            if name not in by_name:
                raise BagError(f"topic {name} is not in the bag; the bag has: {listing}")
            if by_name[name].msgtype not in IMAGE_TYPES:
                raise BagError(
                    f"topic {name} has type {by_name[name].msgtype}; bag-eval restores sensor_msgs/msg/Image or "
                    "sensor_msgs/msg/CompressedImage topics"
                )
            if name in exclude:
                raise BagError(f"topic {name} is named as ground truth; it cannot also be restored")
        return list(dict.fromkeys(requested))
    chosen = [
        t.name
        for t in topics
        if t.msgtype in IMAGE_TYPES and t.name not in exclude and not any(d in t.name for d in DERIVED_MARKERS)
    ]
    if not chosen:
        raise BagError(f"the bag has no camera image topics (sensor_msgs Image/CompressedImage); it has: {listing}")
    return chosen


# --------------------------------------------------------------------------------------------------------------------
# Offline evaluation


@dataclass(frozen=True)
class Segment:
    """Frames ``start`` .. ``end - 1`` of each restored topic (positions in the topic's message order).

    Reading starts at bag time ``read_from_ns`` (None: the beginning), where the topic's first message
    is the frame at position ``read_from``; for outputs equal to a whole-bag run ``read_from`` is at most
    ``start - (window_size - 1)`` (or 0). Frames before ``start`` are restored as warm-up but neither
    written nor scored, frames from ``end`` on only while ``center`` output still needs them. RainStatus
    counters (``processed_frames``, ``dropped_frames``) count from ``start``.
    """

    start: int
    end: int
    read_from: int = 0
    read_from_ns: int | None = None

    def holds(self, position: int) -> bool:
        """Whether the frame at ``position`` is one this segment outputs."""
        return self.start <= position < self.end


@dataclass(frozen=True)
class BagEvalOptions:
    """What bag-eval does besides the engine settings (those come from the node's params).

    ``image_topics`` None = every camera topic; ``output_bag`` None = no bag written;
    ``max_frames`` limits frames per topic; ``samples`` is the number of contact-sheet rows;
    ``gt`` / ``gt_masks`` map a camera topic to its ground-truth image / drop-mask topic;
    ``segment`` restores only part of each topic (input topics are then not copied).
    """

    image_topics: tuple[str, ...] | None = None
    output_bag: Path | None = None
    storage: str = "mcap"
    copy_input: bool = True
    distro: str = "auto"
    max_frames: int | None = None
    samples: int = 4
    progress: bool = True
    overwrite: bool = False
    gt: Mapping[str, str] = field(default_factory=dict)
    gt_masks: Mapping[str, str] = field(default_factory=dict)
    segment: Segment | None = None


@dataclass(frozen=True)
class BagFrame:
    """What bag-eval keeps with each pushed frame (``SourceFrame.extra``): its time and position in the bag."""

    bag_time: int
    position: int = 0


class _TopicState:
    """Book-keeping of one camera topic: its pipeline, waiting scores, ground truth by stamp, timings."""

    def __init__(self, report: TopicReport, camera: CameraPipeline) -> None:
        self.report = report
        self.camera = camera
        self.topics = CameraTopics.for_image_topic(report.topic)
        self.records: list[FrameRecord] = []
        #: stamp -> (record, rainy, derained, mask plane) of outputs whose ground truth may still come
        self.waiting: dict[int, tuple[FrameRecord, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.gt_images: dict[int, np.ndarray] = {}
        self.gt_masks: dict[int, np.ndarray] = {}
        self.process_s = 0.0
        self.last_scored_stamp = -1
        self.position = 0  # of the next frame read, in the topic's message order
        self.done = False  # a segment's frames are all out and scored


class _Evaluation:
    """One bag-eval run: reads messages in bag order, drives the pipelines, writes outputs, scores frames."""

    def __init__(
        self,
        reader: BagReader,
        settings: NodeSettings,
        options: BagEvalOptions,
        engine: InferenceEngine,
        writer: BagWriter | None,
    ) -> None:
        self.reader = reader
        self.settings = settings
        self.options = options
        self.engine = engine
        self.writer = writer
        self.store = make_typestore()
        self.samples: list[SampleFrame] = []
        summaries = reader.topics()
        available = {t.name: t.msgtype for t in summaries}
        gt = _parse_mapping(options.gt, "--gt", available)
        gt_masks = _parse_mapping(options.gt_masks, "--gt-mask", available)
        topics = select_image_topics(summaries, options.image_topics, exclude=[*gt.values(), *gt_masks.values()])
        self.states: dict[str, _TopicState] = {}
        for topic in topics:
            report = TopicReport(
                topic=topic,
                msgtype=available[topic],
                output_topics=CameraTopics.for_image_topic(topic).outputs,
                gt_topics=gt_topics_for(topic, available, gt, gt_masks),
            )
            camera = CameraPipeline(topic, engine, self._report)
            self.states[topic] = _TopicState(report, camera)
        self.gt_lookup = {name: (s, key) for s in self.states.values() for key, name in s.report.gt_topics.items()}
        segment = options.segment
        for state in self.states.values():
            state.position = segment.read_from if segment else 0
        counts = [t.count for t in summaries if t.name in self.states]
        if segment is None:
            self.total = sum(min(count, options.max_frames or count) for count in counts)
        else:
            self.total = sum(max(0, min(count, segment.end) - segment.start) for count in counts)
        every = self.total // max(1, options.samples * len(self.states)) if options.samples else 0
        self.sample_every = max(1, every) if options.samples else 0

    @staticmethod
    def _report(camera: str, kind: str, text: str, error: bool = False) -> None:
        (LOGGER.error if error else LOGGER.warning)("%s", text)

    def run(self, progress: Any, stop: StopRequest | None = None) -> None:
        """Every message in bag order (a segment's topics from its start), then the end of each stream.

        A ``stop`` request ends the reading between two messages; the frames read so far are
        still restored to their end, written and scored.
        """
        segment = self.options.segment
        wanted = None if segment is None else [*self.states, *self.gt_lookup]
        for message in self.reader.messages(wanted, segment.read_from_ns if segment else None):
            if stop is not None and stop.requested:
                break
            if self.writer is not None and self.options.copy_input and segment is None:
                self.writer.write_passthrough(message.connection, message.timestamp, message.raw)
            if message.topic in self.gt_lookup:
                self._ground_truth(message)
            elif message.topic in self.states:
                state = self.states[message.topic]
                if segment is not None:
                    if self._segment_frame(state, message, segment, progress):
                        break
                elif self.options.max_frames is None or state.report.frames_in < self.options.max_frames:
                    self._frame(state, message)
                    progress.update(1)
        for state in self.states.values():
            if state.done:  # every frame of the segment is out; the frames left are beyond it
                continue
            started = time.perf_counter()
            newest = state.camera.stream.newest_stamp_ns or 0  # the described frames waited for the newest one
            outputs = flush_camera(state.camera, self.settings, lambda newest=newest: newest)
            state.process_s += time.perf_counter() - started
            for out in outputs:
                self._emit(state, out, latency_ms=float(out.status.inference_time) * 1e3)
            self._score_ready(state, final=True)

    def _segment_frame(self, state: _TopicState, message: Any, segment: Segment, progress: Any) -> bool:
        """Warm-up, segment or look-ahead frame; True once every topic's segment is out and scored."""
        position = state.position
        if position == segment.start:  # RainStatus counts from the segment's first frame
            state.camera.counters = CameraCounters()
        lag = self.settings.engine.delay_frames
        if position < segment.end + lag:
            self._frame(state, message)
            if segment.holds(position):
                progress.update(1)
        else:
            state.position += 1  # past the segment: only waiting for ground truth
        state.done = position + 1 >= segment.end + lag and (
            not state.waiting or position >= segment.end + GT_WAIT_FRAMES
        )
        return all(s.done for s in self.states.values())

    def _ground_truth(self, message: Any) -> None:
        state, key = self.gt_lookup[message.topic]
        msg = self.reader.deserialize(message)
        try:
            if key == "image":
                state.gt_images[header_stamp_ns(msg.header)] = decode_rgb8(msg, message.msgtype, self.settings.inputs)
            else:
                state.gt_masks[header_stamp_ns(msg.header)] = mono_plane(msg) >= 128
        except InputError as error:
            raise BagError(f"cannot decode ground truth on {message.topic}: {error}") from error
        self._score_ready(state, final=False)

    def _frame(self, state: _TopicState, message: Any) -> None:
        """Decode, restore and write one camera frame (a bad frame is counted and skipped)."""
        position, segment = state.position, self.options.segment
        state.position += 1
        counted = segment is None or segment.holds(position)
        state.report.frames_in += counted
        started = time.perf_counter()
        msg = self.reader.deserialize(message)
        compressed = message.msgtype == COMPRESSED_TYPE
        source = state.camera.receive(msg, compressed, self.settings.inputs, BagFrame(message.timestamp, position))
        if source is None:  # refused: counted and reported by the camera
            state.report.bad_frames += counted
            return

        def now_ns() -> int:  # offline "publish time": the frame's stamp plus the time spent on it
            return source.stamp_ns + int((time.perf_counter() - started) * 1e9)

        outputs = restore_turn(self.engine, [Turn(state.camera, [source])], self.settings, now_ns)
        state.process_s += time.perf_counter() - started
        for _, out in outputs:
            self._emit(state, out, latency_ms=(time.perf_counter() - started) * 1e3)

    def _emit(self, state: _TopicState, out: FrameOutputs, latency_ms: float) -> None:
        """Write one output frame and queue it for scoring (outside a segment: neither)."""
        source: SourceFrame = out.meta
        if self.options.segment is not None and not self.options.segment.holds(source.extra.position):
            return
        status = out.status
        report = state.report
        record = FrameRecord(
            topic=report.topic,
            index=report.frames_out,
            stamp_ns=out.stamp_ns,
            raindrop_coverage=status.raindrop_coverage,
            streak_intensity=status.streak_intensity,
            rain_detected=status.rain_detected,
            processing=Processing(status.processing).name.lower(),
            window_frames=status.window_frames,
            inference_ms=status.inference_time * 1e3,
            latency_ms=latency_ms,
            valid=status.processing != Processing.FALLBACK,
        )
        report.frames_out += 1
        report.invalid_outputs += 0 if record.valid else 1
        if self.writer is not None:
            self._write(state, out, source.extra.bag_time)
        rainy = to_rgb8(source.frame.rgb, source.frame.white_level)
        state.records.append(record)
        state.waiting[out.stamp_ns] = (record, rainy, out.rgb8, out.mask.pixels)
        take = self.sample_every and record.index % self.sample_every == self.sample_every // 2
        if take and len(self.samples) < self.options.samples:
            mask = out.mask.pixels.astype(np.float32) / 255.0
            self.samples.append(SampleFrame(report.topic, record.index, record.stamp_ns, rainy, out.rgb8, mask, None))
        self._score_ready(state, final=False)

    def _write(self, state: _TopicState, out: FrameOutputs, bag_time: int) -> None:
        """The node's outputs for one frame, as rosbags messages at the source's bag time."""
        assert self.writer is not None
        store, topics = self.store, state.report.output_topics
        header = store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](
                sec=out.meta.header.stamp.sec, nanosec=out.meta.header.stamp.nanosec
            ),
            frame_id=str(out.meta.header.frame_id),
        )
        for key, plane in (("image", out.image), ("mask", out.mask), ("streak", out.streak)):
            self.writer.write(topics[key], plane_message(store, plane, header), bag_time)
        fields = asdict(out.status)
        fields["processing"] = int(fields["processing"])
        self.writer.write(topics["status"], store.types[RAIN_STATUS_TYPE](header=header, **fields), bag_time)

    def _score_ready(self, state: _TopicState, final: bool) -> None:
        """Score waiting frames whose GT has arrived (all of them when ``final``, with or without GT)."""
        has_gt_image = "image" in state.report.gt_topics
        has_gt_mask = "drop_mask" in state.report.gt_topics
        newest = state.report.frames_out
        for stamp in list(state.waiting):
            record, rainy, derained, mask = state.waiting[stamp]
            gt_ready = (not has_gt_image or stamp in state.gt_images) and (not has_gt_mask or stamp in state.gt_masks)
            if not (gt_ready or final or newest - record.index > GT_WAIT_FRAMES):
                continue
            del state.waiting[stamp]
            gt = state.gt_images.pop(stamp, None)
            score_frame(record, rainy, derained, mask, gt, state.gt_masks.pop(stamp, None))
            if gt is not None:
                state.report.frames_with_gt += 1
            for sample in self.samples:
                if sample.topic == record.topic and sample.stamp_ns == stamp:
                    sample.gt = gt
            state.last_scored_stamp = max(state.last_scored_stamp, stamp)
        # GT of frames already scored, or never restored (undecodable, beyond max_frames), is not needed.
        for cache in (state.gt_images, state.gt_masks):
            for stamp in [s for s in cache if s not in state.waiting and (final or s <= state.last_scored_stamp)]:
                del cache[stamp]

    def finish(self, bag: str | Path, started: float) -> EvalReport:
        """The report of a completed run (BagError when a topic restored nothing)."""
        notes: list[str] = []
        for state in self.states.values():
            whole = self.options.segment is None  # a segment's bad frames are counted as they are read
            state.report.bad_frames = state.camera.counters.bad_input if whole else state.report.bad_frames
            if whole and state.report.frames_in and state.report.frames_out == 0:
                raise BagError(
                    f"no frame of {state.report.topic} could be restored ({state.report.bad_frames} undecodable); "
                    "check the image encoding"
                )
            report = state.report
            summarize_topic(report, state.records, self.settings.engine.window_size)
            report.throughput_fps = report.frames_out / state.process_s if state.process_s > 0 else None
            notes += gt_resized_note(report.topic, state.records)
        return EvalReport(
            mode="offline",
            source_bag=str(bag),
            output_bag=str(self.options.output_bag) if self.options.output_bag is not None else None,
            topics=[s.report for s in self.states.values()],
            settings=self.settings.values(),
            backend=self.engine.backend_name,
            precision=self.engine.precision_name,
            stage1_passes=self.engine.stage1_passes,
            working_sizes=self.engine.working_sizes(),
            wall_s=time.monotonic() - started,
            topic_counts={t.name: t.count for t in self.reader.topics()},
            notes=notes,
        )


def summarize_topic(report: TopicReport, records: Sequence[FrameRecord], window_size: int) -> None:
    """Fill ``report``'s summaries from its frames (offline and live): quality, rain, restored fraction, timing."""
    report.quality = summarize_quality(records)
    report.rain = summarize_rain(records)
    report.restored_fraction = report.rain["restored"] / report.frames_in if report.frames_in else None
    timing = summarize_timing(records, window_size)
    report.warmup_frames, report.first_frame_ms = timing["warmup_frames"], timing["first_frame_ms"]
    report.latency_ms, report.inference_ms = timing["latency_ms"], timing["inference_ms"]


def plane_message(store: Any, plane: Plane, header: Any) -> Any:
    """A rosbags ``sensor_msgs/Image`` of a pipeline plane (already in its encoding's layout, little-endian)."""
    pixels = np.ascontiguousarray(plane.pixels)
    if pixels.dtype.byteorder == ">":
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    return store.types[IMAGE_TYPE](
        header=header,
        height=int(pixels.shape[0]),
        width=int(pixels.shape[1]),
        encoding=plane.encoding,
        is_bigendian=0,
        step=int(pixels.strides[0]),
        data=pixels.reshape(-1).view(np.uint8).copy(),
    )


@dataclass
class BagEvalRun:
    """What one run produced: its report, and the per-frame records and contact-sheet rows behind it."""

    report: EvalReport
    records: list[FrameRecord]
    samples: list[SampleFrame]


def evaluate_bag(
    bag: str | Path,
    report_dir: str | Path | None,
    settings: NodeSettings,
    options: BagEvalOptions | None = None,
    engine: InferenceEngine | None = None,
    stop: StopRequest | None = None,
) -> EvalReport:
    """Run the node's pipeline over every frame of ``bag``; write the output bag and (if ``report_dir``) the report.

    ``settings``: node settings (:func:`~vimpnet_ros.pipeline.settings.load_node_settings`); ``engine``: an
    already loaded ``InferenceEngine`` for these settings (else one is built and loaded here); ``stop``: see
    :func:`run_bag_eval`.
    """
    return run_bag_eval(bag, report_dir, settings, options, engine, stop=stop).report


def run_bag_eval(
    bag: str | Path,
    report_dir: str | Path | None,
    settings: NodeSettings,
    options: BagEvalOptions | None = None,
    engine: InferenceEngine | None = None,
    progress: Any = None,
    stop: StopRequest | None = None,
) -> BagEvalRun:
    """:func:`evaluate_bag`, also returning the per-frame records (the fleet merges segments from them).

    ``progress``: where restored frames are counted (anything with ``update(n)``, such as the fleet's counter);
    None = bag-eval's own progress bar (off when ``options.progress`` is). ``stop``: a stop signal
    ends the run after the frame in hand; the output bag and the report then hold the frames done,
    and the report says it was interrupted (``EvalReport.interrupted``).
    """
    from tqdm import tqdm

    from vimpnet_ros.evaluation.report import AtomicFolder, write_report

    options = options or BagEvalOptions()
    started = time.monotonic()
    if options.output_bag is not None and Path(options.output_bag).exists() and not options.overwrite:
        raise BagError(f"output bag {options.output_bag} already exists; remove it or pass --overwrite")
    with BagReader(bag, options.distro) as reader:
        if engine is None:
            from vimpnet_ros.engine import InferenceEngine

            engine = InferenceEngine(settings.engine).load()
        writer = None
        if options.output_bag is not None:
            writer = BagWriter(
                options.output_bag,
                options.storage,
                make_typestore(reader.resolved_distro),
                overwrite=options.overwrite,
                distro=reader.resolved_distro,
            )  # readable where the input was
        evaluation = _Evaluation(reader, settings, options, engine, writer)
        bar = progress
        if bar is None:
            bar = tqdm(total=evaluation.total, unit="frame", desc="bag-eval", disable=not options.progress, leave=False)
        try:
            if writer is not None:
                writer.open()
            evaluation.run(bar, stop)
            report = evaluation.finish(bag, started)
            if stop is not None and stop.requested:
                done = sum(state.report.frames_in for state in evaluation.states.values())
                report.interrupted = {"signal": stop.name, "frames_done": done, "frames_total": evaluation.total}
                report.notes.append(
                    f"interrupted by {stop.name} after {done} of {evaluation.total} frames: this report and the "
                    "output bag hold the frames done"
                )
            if writer is not None:
                writer.close()
            records = [r for s in evaluation.states.values() for r in s.records]
            if report_dir is not None:
                with AtomicFolder(report_dir, overwrite=True) as folder:
                    write_report(folder, report, records, evaluation.samples)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            if progress is None:
                bar.close()
    return BagEvalRun(report, records, evaluation.samples)


# --------------------------------------------------------------------------------------------------------------------
# Live evaluation: score what a recorder captured from the running node


@dataclass(frozen=True)
class LiveRun:
    """What the demo knows about a live replay besides the two bags.

    ``stamp_map``: published (restamped) stamp -> source stamp, from the player;
    ``frames_played``: input frames published; ``camera_rate_hz``: rate they were
    published at; ``input_topic``: the camera topic in the source bag;
    ``output_namespace``: where the node published (e.g. ``/camera``).
    """

    input_topic: str
    output_namespace: str
    stamp_map: Mapping[int, int]
    frames_played: int
    camera_rate_hz: float
    wall_s: float = 0.0

    @classmethod
    def from_play_stats(
        cls,
        bag: str | Path,
        play_stats: str | Path,
        topics: Sequence[str] | None = None,
        output_namespace: str | None = None,
        distro: str = "auto",
    ) -> LiveRun:
        """The replay ``bag-play --restamp --stats FILE`` made of ``bag`` (ConfigError when the stats are unusable).

        The camera topic is the first of ``topics`` (default: the bag's first camera topic); the
        node published under ``output_namespace`` (default: the topic's namespace).
        """
        import json

        try:
            play = json.loads(Path(play_stats).read_text())
            stamp_map = {int(published): int(original) for published, original in play["stamp_map"]}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"cannot read bag-play stats {play_stats}: {error}") from error
        if not stamp_map:
            raise ConfigError(f"{play_stats} has no stamp map; play the bag with bag-play --restamp --stats FILE")
        with BagReader(bag, distro) as reader:
            topic = select_image_topics(reader.topics(), topics)[0]
            count = next(t.count for t in reader.topics() if t.name == topic)
            span_s = reader.duration_ns / 1e9
        played = len(set(stamp_map.values()))
        rate_hz = replay_rate_hz(count, span_s, float(play.get("rate") or 1.0))
        return cls(topic, output_namespace or camera_namespace(topic), stamp_map, played, rate_hz)


def replay_rate_hz(count: int, span_s: float, speed: float) -> float:
    """Frames per second a replay of ``count`` frames recorded over ``span_s`` seconds publishes at ``speed``.

    ``speed`` 0 (as fast as possible) counts as the recorded rate; 0 Hz when the bag has no span.
    """
    if span_s <= 0 or count < 2:
        return 0.0
    return (count - 1) / span_s * (speed if speed > 0 else 1.0)


def evaluate_recording(
    source_bag: str | Path,
    recorded_bag: str | Path,
    run: LiveRun,
    report_dir: str | Path | None,
    settings: NodeSettings,
    samples: int = 4,
) -> EvalReport:
    """Score the node's recorded outputs against the source bag's ground truth and write the report.

    Latency is the recorder's receive time (the recorded bag timestamp) minus the
    restamped header stamp: capture-to-output through DDS, decoding, the model and
    publishing. Keeps one output frame per restored stamp in memory (short runs).
    """
    from vimpnet_ros.evaluation.report import AtomicFolder, write_report

    started = time.monotonic()
    topics = CameraTopics(f"{run.output_namespace.rstrip('/')}/").outputs
    outputs: dict[int, dict[str, Any]] = {}
    backend = precision = None
    with BagReader(recorded_bag) as reader:
        recorded_topics = {t.name for t in reader.topics()}
        if topics["image"] not in recorded_topics:
            raise BagError(
                f"the recording has no {topics['image']}: the node published nothing; {reader.describe_topics()}"
            )
        wanted = [t for t in (topics["image"], topics["mask"], topics["status"]) if t in recorded_topics]
        for message in reader.messages(wanted):
            msg = reader.deserialize(message)
            published = header_stamp_ns(msg.header)
            source_stamp = run.stamp_map.get(published)
            if source_stamp is None:
                continue  # not from this replay
            entry = outputs.setdefault(source_stamp, {"published": published})
            if message.topic == topics["image"]:
                entry["image"] = decode_rgb8(msg, message.msgtype, settings.inputs)
                entry["received"] = message.timestamp
            elif message.topic == topics["mask"]:
                entry["mask"] = np.ascontiguousarray(mono_plane(msg))
            else:
                entry["status"] = msg
                backend, precision = str(msg.backend), str(msg.precision)
    restored = {stamp: entry for stamp, entry in outputs.items() if "image" in entry}
    state = TopicReport(topic=run.input_topic, msgtype=IMAGE_TYPE, output_topics=topics)
    records: list[FrameRecord] = []
    chosen: list[SampleFrame] = []
    with BagReader(source_bag) as reader:
        available = {t.name: t.msgtype for t in reader.topics()}
        reader.topic_type(run.input_topic)
        state.gt_topics = gt_topics_for(run.input_topic, available, {}, {})
        gt_by_key = {v: k for k, v in state.gt_topics.items()}
        frames: dict[int, dict[str, Any]] = {}
        for message in reader.messages([run.input_topic, *gt_by_key]):
            msg = reader.deserialize(message)
            stamp = header_stamp_ns(msg.header)
            if stamp not in restored:
                continue
            key = "rainy" if message.topic == run.input_topic else gt_by_key[message.topic]
            if key in ("rainy", "image"):
                frames.setdefault(stamp, {})[key] = decode_rgb8(msg, message.msgtype, settings.inputs)
            elif key == "drop_mask":
                frames.setdefault(stamp, {})[key] = mono_plane(msg) >= 128
    ordered = sorted(restored)
    pick = (
        set(ordered[len(ordered) // (2 * samples) :: max(1, len(ordered) // samples)][:samples]) if samples else set()
    )
    for index, stamp in enumerate(ordered):
        entry, frame = restored[stamp], frames.get(stamp, {})
        status = entry.get("status")
        record = FrameRecord(topic=run.input_topic, index=index, stamp_ns=stamp)
        record.latency_ms = (entry["received"] - entry["published"]) / 1e6
        if status is not None:
            record.inference_ms = float(status.inference_time) * 1e3
            record.raindrop_coverage = float(status.raindrop_coverage)
            record.streak_intensity = float(status.streak_intensity)
            record.rain_detected = bool(status.rain_detected)
            record.processing = Processing(int(status.processing)).name.lower()
            record.window_frames = int(status.window_frames)
            record.valid = int(status.processing) != Processing.FALLBACK
        rainy = frame.get("rainy")
        if rainy is not None:
            mask = entry.get("mask", np.zeros(rainy.shape[:2], np.uint8))
            score_frame(record, rainy, entry["image"], mask, frame.get("image"), frame.get("drop_mask"))
            state.frames_with_gt += int(frame.get("image") is not None)
            if stamp in pick:
                soft = mask.astype(np.float32) / 255.0
                chosen.append(
                    SampleFrame(run.input_topic, index, stamp, rainy, entry["image"], soft, frame.get("image"))
                )
        records.append(record)
    state.frames_in = run.frames_played
    state.frames_out = len(restored)
    summarize_topic(state, records, settings.engine.window_size)
    received = sorted(entry["received"] for entry in restored.values())
    span = (received[-1] - received[0]) / 1e9 if len(received) > 1 else 0.0
    state.output_rate_hz = (len(received) - 1) / span if span > 0 else None
    state.input_rate_hz = run.camera_rate_hz
    state.rate_fraction = state.frames_out / run.frames_played if run.frames_played else None
    state.throughput_fps = 1e3 / state.inference_ms["p50"] if state.inference_ms.get("p50") else None
    report = EvalReport(
        mode="live",
        source_bag=str(source_bag),
        output_bag=str(recorded_bag),
        topics=[state],
        settings=settings.values(),
        backend=backend,
        precision=precision,
        wall_s=run.wall_s or time.monotonic() - started,
        notes=[
            "latency = recorder receive time - header stamp (stamped at publish by bag-play --restamp)",
            f"camera rate {run.camera_rate_hz:.1f} Hz; the node skips frames (latest wins) when inference is slower",
            *gt_resized_note(run.input_topic, records),
        ],
    )
    if report_dir is not None:
        with AtomicFolder(report_dir) as folder:
            write_report(folder, report, records, chosen)
    return report
