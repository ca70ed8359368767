"""Offline evaluation of rosbags: run the streaming engine over every frame, write an output bag and a report.

``evaluate_bag`` reads a rosbag2 (sqlite3 or MCAP, Humble/Jazzy/Kilted) in bag
order, pushes every frame of each image topic through its own engine stream
(the node's parameters, from its params file), and writes an output bag with the
input topics plus, per camera, what the node would publish: ``derained/image``,
``raindrop_mask``, ``streak_map`` and ``rain_status``, each with the source
header and at the source's bag timestamp. When the bag holds ground truth (the
sample bag's ``<ns>/gt/image``, ``gt/drop_mask``, ``gt/streak_map``) every frame
is scored: PSNR/SSIM of input and output against GT, raindrop-mask IoU/F1.

``evaluate_recording`` scores a live run instead: the bag a recorder wrote from
the node's outputs, against the source bag's ground truth (the demo uses it).

Outputs are written atomically (hidden temporary folder, renamed when complete):
an error leaves neither a half-written bag nor a report that looks valid.

Uses the pure-Python parts of the node package (parameter table, rain estimate),
which import no ROS, so that bag evaluation computes exactly what the node does.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vimpnet_ros.bags.images import array_to_image, message_to_rgb, stamp_ns
from vimpnet_ros.bags.io import BagReader, BagWriter, TopicSummary
from vimpnet_ros.bags.stats import Percentiles
from vimpnet_ros.bags.typestore import COMPRESSED_TYPE, IMAGE_TYPE, IMAGE_TYPES, RAIN_STATUS_TYPE, make_typestore
from vimpnet_ros.errors import BagError, ConfigError, InputError

LOGGER = logging.getLogger(__name__)

#: Suffixes of camera image topics; what precedes them is the camera namespace.
_IMAGE_SUFFIXES: tuple[str, ...] = ("/image/compressed", "/image_raw/compressed", "/image", "/image_raw")
#: Mask probability at or above which a pixel counts as raindrop for IoU/F1 (as the node's rain estimate).
DEFAULT_MASK_THRESHOLD = 0.5
#: Frames that wait for their ground truth at most this many newer frames before being scored without it.
_GT_WAIT_FRAMES = 16


# --------------------------------------------------------------------------------------------------------------------
# Node parameters -> engine config


def default_params_file() -> Path | None:
    """``config/vimpnet.yaml`` of the source tree or of an install's share dir, if present."""
    import sys

    candidates = [
        Path(__file__).resolve().parents[2] / "config" / "vimpnet.yaml",
        Path(sys.prefix) / "share" / "vimpnet_ros" / "config" / "vimpnet.yaml",
    ]
    return next((c for c in candidates if c.is_file()), None)


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The node's ``ros__parameters`` from a ROS 2 params YAML (``vimpnet_node:``, ``/**:`` or any single node)."""
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
    for key in ("vimpnet_node", "/vimpnet_node", "/**"):
        if key in sections:
            return dict(sections[key] or {})
    if len(sections) == 1:
        return dict(next(iter(sections.values())) or {})
    raise ConfigError(
        f"params file {path} has no 'vimpnet_node' or '/**' section with ros__parameters; sections: {sorted(data)}"
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


def load_node_settings(params_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Any:
    """Validated node settings (``vimpnet_ros.node.parameters.NodeSettings``): file, then overrides.

    ``params_file`` None = the package's ``config/vimpnet.yaml`` when found, else the table's defaults.
    """
    from vimpnet_ros.node.parameters import validate_settings

    path = default_params_file() if params_file is None else Path(params_file)
    values = read_params_file(path) if path is not None else {}
    values.update(overrides or {})
    return validate_settings(values)


def engine_config_from_settings(settings: Any) -> Any:
    """The ``EngineConfig`` the node builds from the same settings."""
    from vimpnet_ros.engine import EngineConfig
    from vimpnet_ros.node.parameters import engine_config_kwargs

    return EngineConfig(**engine_config_kwargs(settings))


# --------------------------------------------------------------------------------------------------------------------
# Records


@dataclass
class FrameRecord:
    """One output frame: quality against GT (None without GT), rain estimate and timing."""

    topic: str
    index: int
    stamp_ns: int
    psnr_in: float | None = None
    psnr_out: float | None = None
    ssim_in: float | None = None
    ssim_out: float | None = None
    mask_iou: float | None = None
    mask_f1: float | None = None
    raindrop_coverage: float = 0.0
    streak_intensity: float = 0.0
    inference_ms: float | None = None
    latency_ms: float | None = None
    valid: bool = True


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
    latency_ms: dict[str, Any] = field(default_factory=dict)
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
    wall_s: float = 0.0
    topic_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN -> None)."""
        return _clean(asdict(self))


def _clean(value: Any) -> Any:
    """Replace NaN/inf floats (not JSON) by None / large sentinel strings, recursively."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


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
# Scoring


def mask_f1(predicted: np.ndarray, target: np.ndarray, threshold: float) -> float:
    """F1 (Dice) of a soft mask thresholded at ``threshold`` against a binary target; 1.0 when both are empty."""
    p = predicted >= threshold
    t = target >= 0.5
    tp = int(np.logical_and(p, t).sum())
    denominator = int(p.sum()) + int(t.sum())
    return 1.0 if denominator == 0 else 2.0 * tp / denominator


def score_frame(
    record: FrameRecord,
    rainy: np.ndarray,
    derained: np.ndarray,
    mask: np.ndarray,
    gt: np.ndarray | None,
    gt_mask: np.ndarray | None,
    threshold: float,
) -> None:
    """Fill the quality fields of ``record`` (uint8 RGB frames, mask float (h, w), gt_mask bool/0..1)."""
    from vimpnet_ros.evaluation.metrics import mask_iou, psnr, ssim

    if gt is not None:
        if gt.shape != rainy.shape:
            raise InputError(f"ground truth {gt.shape} and frame {rainy.shape} differ in size on {record.topic}")
        record.psnr_in, record.psnr_out = psnr(rainy, gt), psnr(derained, gt)
        if min(gt.shape[:2]) >= 11:
            record.ssim_in, record.ssim_out = ssim(rainy, gt), ssim(derained, gt)
    if gt_mask is not None and gt_mask.shape == mask.shape:
        target = gt_mask.astype(np.float32)
        record.mask_iou = mask_iou(mask, target, threshold)
        record.mask_f1 = mask_f1(mask, target, threshold)


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarize_quality(records: Sequence[FrameRecord]) -> dict[str, float | None]:
    """Means over frames (finite values; PSNR of identical frames is inf and left out) and PSNR/SSIM gains."""
    quality = {
        name: _mean([getattr(r, name) for r in records])
        for name in ("psnr_in", "psnr_out", "ssim_in", "ssim_out", "mask_iou", "mask_f1")
    }
    quality["raindrop_coverage"] = _mean([r.raindrop_coverage for r in records])
    quality["streak_intensity"] = _mean([r.streak_intensity for r in records])
    for metric in ("psnr", "ssim"):
        before, after = quality[f"{metric}_in"], quality[f"{metric}_out"]
        quality[f"{metric}_gain"] = None if before is None or after is None else after - before
    return quality


# --------------------------------------------------------------------------------------------------------------------
# Topic selection


def camera_namespace(topic: str) -> str:
    """``/camera/image`` -> ``/camera``; a topic without a known image suffix is its own namespace."""
    for suffix in _IMAGE_SUFFIXES:
        if topic.endswith(suffix):
            return topic[: -len(suffix)]
    return topic


def output_topics_for(topic: str) -> dict[str, str]:
    """The node's output topics for camera ``topic`` (relative names under its namespace)."""
    ns = camera_namespace(topic)
    return {
        "image": f"{ns}/derained/image",
        "mask": f"{ns}/raindrop_mask",
        "streak": f"{ns}/streak_map",
        "status": f"{ns}/rain_status",
    }


def gt_topics_for(topic: str, available: Mapping[str, str]) -> dict[str, str]:
    """Ground-truth topics of camera ``topic`` in the bag: ``<ns>/gt/image``, ``gt/drop_mask``, ``gt/streak_map``."""
    ns = camera_namespace(topic)
    found = {}
    for key, name in (("image", "gt/image"), ("drop_mask", "gt/drop_mask"), ("streak_map", "gt/streak_map")):
        candidate = f"{ns}/{name}"
        if available.get(candidate) == IMAGE_TYPE:
            found[key] = candidate
    return found


def select_image_topics(topics: Sequence[TopicSummary], requested: Sequence[str] | None) -> list[str]:
    """The camera topics to restore: ``requested`` (checked), or every image topic that is not GT or an output."""
    by_name = {t.name: t for t in topics}
    if requested:
        for name in requested:
            if name not in by_name:
                listing = ", ".join(f"{t.name} ({t.msgtype})" for t in topics) or "no topics"
                raise BagError(f"topic {name} is not in the bag; the bag has: {listing}")
            if by_name[name].msgtype not in IMAGE_TYPES:
                raise BagError(
                    f"topic {name} has type {by_name[name].msgtype}; bag-eval restores sensor_msgs/msg/Image or "
                    "sensor_msgs/msg/CompressedImage topics"
                )
        return list(dict.fromkeys(requested))
    derived = ("/gt/", "/derained/", "/raindrop_mask", "/streak_map")
    chosen = [t.name for t in topics if t.msgtype in IMAGE_TYPES and not any(d in t.name for d in derived)]
    if not chosen:
        listing = ", ".join(f"{t.name} ({t.msgtype})" for t in topics) or "no topics"
        raise BagError(f"the bag has no camera image topics (sensor_msgs Image/CompressedImage); it has: {listing}")
    return chosen


# --------------------------------------------------------------------------------------------------------------------
# Offline evaluation


@dataclass(frozen=True)
class BagEvalOptions:
    """What bag-eval does besides the engine settings (those come from the node's params).

    ``image_topics`` None = every camera topic; ``output_bag`` None = no bag written;
    ``max_frames`` limits frames per topic; ``samples`` is the number of contact-sheet rows.
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


class _TopicState:
    """Book-keeping of one camera topic during offline evaluation."""

    def __init__(self, topic: str, msgtype: str, gt_topics: dict[str, str], stream: Any) -> None:
        self.report = TopicReport(
            topic=topic, msgtype=msgtype, output_topics=output_topics_for(topic), gt_topics=gt_topics
        )
        self.stream = stream
        self.records: list[FrameRecord] = []
        #: stamp -> (rainy rgb, header, bag timestamp, derained image encoding) of frames pushed, not yet output
        self.sources: dict[int, tuple[np.ndarray, Any, int, str]] = {}
        #: stamp -> finished result awaiting GT: (record, rainy, derained, mask)
        self.waiting: dict[int, tuple[FrameRecord, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.gt_images: dict[int, np.ndarray] = {}
        self.gt_masks: dict[int, np.ndarray] = {}
        self.latencies: list[float] = []
        self.inference: list[float] = []
        self.process_s = 0.0
        self.frame_counter = 0
        self.last_scored_stamp = -1
        self.backend: str | None = None
        self.precision: str | None = None


def evaluate_bag(
    bag: str | Path,
    report_dir: str | Path | None,
    settings: Any,
    options: BagEvalOptions | None = None,
    engine: Any = None,
) -> EvalReport:
    """Run the engine over every frame of ``bag``; write the output bag and (if ``report_dir``) the report.

    ``settings``: node settings (:func:`load_node_settings`); ``engine``: an already
    loaded ``InferenceEngine`` for these settings (else one is built and loaded here).
    """
    from vimpnet_ros.evaluation.report import AtomicFolder, write_report
    from vimpnet_ros.node.gating import estimate_rain

    options = options or BagEvalOptions()
    started = time.monotonic()
    if options.output_bag is not None and Path(options.output_bag).exists() and not options.overwrite:
        raise BagError(f"output bag {options.output_bag} already exists; remove it or pass --overwrite")
    with BagReader(bag, options.distro) as reader:
        summaries = reader.topics()
        available = {t.name: t.msgtype for t in summaries}
        topics = select_image_topics(summaries, options.image_topics)
        if engine is None:
            from vimpnet_ros.engine import InferenceEngine

            engine = InferenceEngine(engine_config_from_settings(settings))
            engine.load()
        threshold = settings.mask_threshold if settings.mask_threshold > 0 else DEFAULT_MASK_THRESHOLD
        states = {
            topic: _TopicState(topic, available[topic], gt_topics_for(topic, available), engine.open_stream(topic))
            for topic in topics
        }
        gt_lookup = {gt: (state, key) for state in states.values() for key, gt in state.report.gt_topics.items()}
        store = make_typestore()
        samples: list[SampleFrame] = []
        total = sum(min(t.count, options.max_frames or t.count) for t in summaries if t.name in states)
        sample_every = max(1, total // max(1, options.samples * len(states))) if options.samples else 0
        writer = (
            BagWriter(options.output_bag, options.storage, store, overwrite=options.overwrite)
            if options.output_bag is not None
            else None
        )
        progress = _progress(total, options.progress)
        report_folder = AtomicFolder(report_dir, overwrite=True) if report_dir is not None else None
        try:
            if writer is not None:
                writer.open()
            processed = 0

            def emit(state: _TopicState, result: Any, latency_ms: float) -> None:
                """Write the node's outputs for one result and queue it for scoring."""
                nonlocal processed
                source = state.sources.pop(result.stamp_ns, None)
                if source is None:
                    raise BagError(
                        f"engine returned stamp {result.stamp_ns} that was never pushed on {state.report.topic}"
                    )
                rainy, header, bag_time, encoding = source
                estimate = estimate_rain(result.drop_mask, result.streak_map, settings.mask_threshold)
                detected = estimate.detected(settings.rain_streak_threshold, settings.rain_coverage_threshold)
                record = FrameRecord(
                    topic=state.report.topic,
                    index=state.frame_counter,
                    stamp_ns=result.stamp_ns,
                    raindrop_coverage=estimate.raindrop_coverage,
                    streak_intensity=estimate.streak_intensity,
                    inference_ms=float(result.inference_ms),
                    latency_ms=latency_ms,
                    valid=bool(result.valid),
                )
                state.backend, state.precision = str(result.backend), str(result.precision)
                state.latencies.append(latency_ms)
                state.frame_counter += 1
                state.report.frames_out += 1
                state.report.invalid_outputs += 0 if result.valid else 1
                state.inference.append(float(result.inference_ms))
                if writer is not None:
                    _write_outputs(
                        writer,
                        store,
                        state,
                        result,
                        header,
                        bag_time,
                        encoding,
                        settings,
                        estimate,
                        detected,
                        latency_ms,
                    )
                state.records.append(record)
                state.waiting[result.stamp_ns] = (record, rainy, result.image, result.drop_mask)
                processed += 1
                if sample_every and record.index % sample_every == sample_every // 2 and len(samples) < options.samples:
                    samples.append(
                        SampleFrame(
                            state.report.topic,
                            record.index,
                            record.stamp_ns,
                            rainy,
                            result.image,
                            result.drop_mask,
                            None,
                        )
                    )
                _score_ready(state, threshold, samples, final=False)

            for message in reader.messages():
                if writer is not None and options.copy_input:
                    writer.write_passthrough(message.connection, message.timestamp, message.raw)
                if message.topic in gt_lookup:
                    state, key = gt_lookup[message.topic]
                    gt_msg = reader.deserialize(message)
                    try:
                        if key == "image":
                            state.gt_images[stamp_ns(gt_msg.header)] = message_to_rgb(gt_msg, IMAGE_TYPE)
                        elif key == "drop_mask":
                            state.gt_masks[stamp_ns(gt_msg.header)] = _mono(gt_msg) >= 128
                    except (InputError, ValueError) as error:
                        raise BagError(f"cannot decode ground truth on {message.topic}: {error}") from error
                    _score_ready(state, threshold, samples, final=False)
                    continue
                state = states.get(message.topic)
                if state is None:
                    continue
                if options.max_frames is not None and state.report.frames_in >= options.max_frames:
                    continue
                state.report.frames_in += 1
                msg = reader.deserialize(message)
                stamp = stamp_ns(msg.header)
                try:
                    tic = time.perf_counter()
                    rainy = message_to_rgb(msg, message.msgtype)
                    state.sources[stamp] = (rainy, msg.header, message.timestamp, _encoding_of(msg, message.msgtype))
                    result = state.stream.push(rainy, stamp)
                    elapsed = time.perf_counter() - tic
                except InputError as error:
                    state.report.bad_frames += 1
                    state.sources.pop(stamp, None)
                    LOGGER.warning("skipping frame %d on %s: %s", state.report.frames_in, message.topic, error)
                    continue
                state.process_s += elapsed
                progress.update(1)
                if result is not None:
                    emit(state, result, elapsed * 1e3)
            for state in states.values():
                tic = time.perf_counter()
                flushed = state.stream.flush()
                elapsed = time.perf_counter() - tic
                state.process_s += elapsed
                for result in flushed:
                    emit(state, result, elapsed * 1e3 / len(flushed))
                _score_ready(state, threshold, samples, final=True)
            progress.close()
            for state in states.values():
                if state.report.frames_in and state.report.frames_out == 0:
                    raise BagError(
                        f"no frame of {state.report.topic} could be restored ({state.report.bad_frames} undecodable); "
                        "check the image encoding"
                    )
            first = next(iter(states.values()))
            report = EvalReport(
                mode="offline",
                source_bag=str(bag),
                output_bag=str(options.output_bag) if options.output_bag is not None else None,
                topics=[_finish_topic(state) for state in states.values()],
                settings=_settings_dict(settings),
                backend=first.backend,
                precision=first.precision,
                wall_s=time.monotonic() - started,
                topic_counts={t.name: t.count for t in summaries},
            )
            if writer is not None:
                writer.close()
            if report_folder is not None:
                with report_folder as folder:
                    write_report(folder, report, [r for s in states.values() for r in s.records], samples)
        except BaseException:
            progress.close()
            if writer is not None:
                writer.abort()
            raise
    return report


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="bag-eval", disable=not enabled, leave=False)


def _encoding_of(msg: Any, msgtype: str) -> str:
    """Encoding of the published derained image, as the node chooses it."""
    if msgtype == COMPRESSED_TYPE:
        return "bgr8"
    encoding = str(msg.encoding)
    if encoding in ("bgr8", "bgra8") or encoding.startswith("bayer_"):
        return "bgr8"
    if encoding in ("mono8", "mono16"):
        return "mono8"
    return "rgb8"


def _write_outputs(
    writer: BagWriter,
    store: Any,
    state: _TopicState,
    result: Any,
    header: Any,
    bag_time: int,
    encoding: str,
    settings: Any,
    estimate: Any,
    detected: bool,
    latency_ms: float,
) -> None:
    """Write derained image, mask, streak map and RainStatus as the node publishes them."""
    import cv2

    topics = state.report.output_topics
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=header.stamp.sec, nanosec=header.stamp.nanosec),
        frame_id=str(header.frame_id),
    )
    image = result.image
    if encoding == "bgr8":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif encoding == "mono8":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    writer.write(topics["image"], array_to_image(store, image, encoding, header), bag_time)
    if settings.mask_threshold > 0:
        mask = np.where(result.drop_mask >= settings.mask_threshold, np.uint8(255), np.uint8(0))
    else:
        mask = (np.clip(np.nan_to_num(result.drop_mask, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    writer.write(topics["mask"], array_to_image(store, mask, "mono8", header), bag_time)
    if settings.streak_map_encoding == "32FC1":
        streak = array_to_image(store, result.streak_map.astype(np.float32), "32FC1", header)
    else:
        pixels = (np.clip(np.nan_to_num(result.streak_map, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        streak = array_to_image(store, pixels, "mono8", header)
    writer.write(topics["streak"], streak, bag_time)
    status_cls = store.types[RAIN_STATUS_TYPE]
    status = status_cls(
        header=header,
        processing=status_cls.PROCESSING_RESTORED if result.valid else status_cls.PROCESSING_FALLBACK,
        raindrop_coverage=float(estimate.raindrop_coverage),
        streak_intensity=float(estimate.streak_intensity),
        rain_detected=bool(detected),
        inference_time=float(result.inference_ms) / 1e3,
        latency=latency_ms / 1e3,
        window_frames=int(result.window_frames),
        window_size=int(settings.window_size),
        processed_frames=int(state.report.frames_out),
        dropped_frames=int(state.report.bad_frames),
        backend=str(result.backend),
        precision=str(result.precision),
        model=str(settings.model),
    )
    writer.write(topics["status"], status, bag_time)


def _score_ready(state: _TopicState, threshold: float, samples: list[SampleFrame], final: bool) -> None:
    """Score waiting frames whose GT has arrived (all of them when ``final``, with or without GT)."""
    has_gt_image = "image" in state.report.gt_topics
    has_gt_mask = "drop_mask" in state.report.gt_topics
    newest = state.frame_counter
    for stamp in list(state.waiting):
        record, rainy, derained, mask = state.waiting[stamp]
        gt_ready = (not has_gt_image or stamp in state.gt_images) and (not has_gt_mask or stamp in state.gt_masks)
        if not (gt_ready or final or newest - record.index > _GT_WAIT_FRAMES):
            continue
        del state.waiting[stamp]
        gt = state.gt_images.pop(stamp, None)
        gt_mask = state.gt_masks.pop(stamp, None)
        score_frame(record, rainy, derained, mask, gt, gt_mask, threshold)
        if gt is not None:
            state.report.frames_with_gt += 1
        for sample in samples:
            if sample.topic == record.topic and sample.stamp_ns == stamp:
                sample.gt = gt
        state.last_scored_stamp = max(state.last_scored_stamp, stamp)
    # GT of frames already scored, or of frames never restored (undecodable, beyond max_frames), is not needed.
    pending = set(state.sources) | set(state.waiting)
    for cache in (state.gt_images, state.gt_masks):
        for stamp in [s for s in cache if s not in pending and (final or s <= state.last_scored_stamp)]:
            del cache[stamp]


def _finish_topic(state: _TopicState) -> TopicReport:
    """Fill the summary fields of a topic's report from its frame records."""
    report = state.report
    report.quality = summarize_quality(state.records)
    report.latency_ms = Percentiles.of(state.latencies).to_dict()
    report.inference_ms = Percentiles.of(state.inference).to_dict()
    report.throughput_fps = report.frames_out / state.process_s if state.process_s > 0 else None
    return report


def _settings_dict(settings: Any) -> dict[str, Any]:
    """Node settings as a plain dict."""
    return asdict(settings) if hasattr(settings, "__dataclass_fields__") else dict(settings)


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


def _mono(msg: Any) -> np.ndarray:
    """(h, w) uint8 of a mono8 Image message."""
    return np.asarray(msg.data, np.uint8).reshape(int(msg.height), int(msg.step))[:, : int(msg.width)]


def evaluate_recording(
    source_bag: str | Path,
    recorded_bag: str | Path,
    run: LiveRun,
    report_dir: str | Path | None,
    settings: Any,
    samples: int = 4,
) -> EvalReport:
    """Score the node's recorded outputs against the source bag's ground truth and write the report.

    Latency is the recorder's receive time (the recorded bag timestamp) minus the
    restamped header stamp: capture-to-output through DDS, decoding, the model and
    publishing. Keeps one output frame per restored stamp in memory (short runs).
    """
    from vimpnet_ros.evaluation.report import AtomicFolder, write_report

    started = time.monotonic()
    topics = output_topics_for(f"{run.output_namespace.rstrip('/')}/image")
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
            published = stamp_ns(msg.header)
            source_stamp = run.stamp_map.get(published)
            if source_stamp is None:
                continue  # not from this replay
            entry = outputs.setdefault(source_stamp, {"published": published})
            if message.topic == topics["image"]:
                entry["image"] = message_to_rgb(msg, message.msgtype)
                entry["received"] = message.timestamp
            elif message.topic == topics["mask"]:
                entry["mask"] = _mono(msg).astype(np.float32) / 255.0
            else:
                entry["status"] = msg
                backend, precision = str(msg.backend), str(msg.precision)
    restored = {stamp: entry for stamp, entry in outputs.items() if "image" in entry}
    state = TopicReport(topic=run.input_topic, msgtype=IMAGE_TYPE, output_topics=topics)
    records: list[FrameRecord] = []
    chosen: list[SampleFrame] = []
    threshold = settings.mask_threshold if settings.mask_threshold > 0 else DEFAULT_MASK_THRESHOLD
    with BagReader(source_bag) as reader:
        available = {t.name: t.msgtype for t in reader.topics()}
        reader.topic_type(run.input_topic)
        state.gt_topics = gt_topics_for(run.input_topic, available)
        gt_by_key = {v: k for k, v in state.gt_topics.items()}
        frames: dict[int, dict[str, Any]] = {}
        for message in reader.messages([run.input_topic, *gt_by_key]):
            msg = reader.deserialize(message)
            stamp = stamp_ns(msg.header)
            if stamp not in restored:
                continue
            key = "rainy" if message.topic == run.input_topic else gt_by_key[message.topic]
            if key in ("rainy", "image"):
                frames.setdefault(stamp, {})[key] = message_to_rgb(msg, message.msgtype)
            elif key == "drop_mask":
                frames.setdefault(stamp, {})[key] = _mono(msg) >= 128
    latencies, inference = [], []
    ordered = sorted(restored)
    pick = (
        set(ordered[len(ordered) // (2 * samples) :: max(1, len(ordered) // samples)][:samples]) if samples else set()
    )
    for index, stamp in enumerate(ordered):
        entry, frame = restored[stamp], frames.get(stamp, {})
        status = entry.get("status")
        mask = entry.get("mask")
        record = FrameRecord(topic=run.input_topic, index=index, stamp_ns=stamp)
        record.latency_ms = (entry["received"] - entry["published"]) / 1e6
        latencies.append(record.latency_ms)
        if status is not None:
            record.inference_ms = float(status.inference_time) * 1e3
            record.raindrop_coverage = float(status.raindrop_coverage)
            record.streak_intensity = float(status.streak_intensity)
            record.valid = int(status.processing) != 2
            inference.append(record.inference_ms)
        rainy = frame.get("rainy")
        if rainy is not None:
            if mask is None:
                mask = np.zeros(rainy.shape[:2], np.float32)
            score_frame(record, rainy, entry["image"], mask, frame.get("image"), frame.get("drop_mask"), threshold)
            state.frames_with_gt += int(frame.get("image") is not None)
            if stamp in pick:
                chosen.append(
                    SampleFrame(run.input_topic, index, stamp, rainy, entry["image"], mask, frame.get("image"))
                )
        records.append(record)
    state.frames_in = run.frames_played
    state.frames_out = len(restored)
    state.quality = summarize_quality(records)
    state.latency_ms = Percentiles.of(latencies).to_dict()
    state.inference_ms = Percentiles.of(inference).to_dict()
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
        settings=_settings_dict(settings),
        backend=backend,
        precision=precision,
        wall_s=run.wall_s or time.monotonic() - started,
        notes=[
            "latency = recorder receive time - header stamp (stamped at publish by bag-play --restamp)",
            f"camera rate {run.camera_rate_hz:.1f} Hz; the node skips frames (latest wins) when inference is slower",
        ],
    )
    if report_dir is not None:
        with AtomicFolder(report_dir) as folder:
            write_report(folder, report, records, chosen)
    return report
