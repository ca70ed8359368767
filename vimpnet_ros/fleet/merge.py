"""One bag's finished units -> its derained output bag and its report (what bag-eval writes for the bag).

Runs once every unit of the bag is done. The output bag holds the input's messages and every
unit's output topics in bag-time order, in the input's storage and distro, written whole
(:class:`~vimpnet_ros.bags.io.BagWriter`: temporary folder, renamed when closed). RainStatus
counters count over the whole topic, as in one uninterrupted pass: ``processed_frames`` and
``dropped_frames`` of each segment are offset by the segments before it. The report folder
(written after the bag; ``report.json`` last) also holds ``timeline.json``: per camera, the rain
estimate and gating state of every output frame, which the fleet report plots.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vimpnet_ros.bags.io import BagReader, BagWriter
from vimpnet_ros.bags.typestore import RAIN_STATUS_TYPE, make_typestore
from vimpnet_ros.evaluation.bag_eval import EvalReport, SampleFrame, TopicReport, summarize_topic
from vimpnet_ros.evaluation.report import AtomicFolder, write_report
from vimpnet_ros.evaluation.scoring import FrameRecord
from vimpnet_ros.fleet.plan import BAG_REPORT, OUTPUT_BAG, STATE_DIR, BagPlan, FleetOptions
from vimpnet_ros.fleet.worker import UNIT_BAG, UNIT_SAMPLES, load_samples, record_from_json
from vimpnet_ros.pipeline.camera import header_stamp_ns
from vimpnet_ros.pipeline.outputs import Processing
from vimpnet_ros.pipeline.settings import NodeSettings

#: The timeline file in each bag's report folder.
TIMELINE_JSON = "timeline.json"
_UINT32 = 0xFFFFFFFF


@dataclass
class CameraTimeline:
    """Per output frame of one camera: source stamp, drop-mask coverage, streak intensity, gated, rain detected."""

    topic: str
    stamp_ns: list[int] = field(default_factory=list)
    raindrop_coverage: list[float] = field(default_factory=list)
    streak_intensity: list[float] = field(default_factory=list)
    gated: list[bool] = field(default_factory=list)
    rain_detected: list[bool] = field(default_factory=list)

    def add(self, status: Any) -> None:
        self.stamp_ns.append(header_stamp_ns(status.header))
        self.raindrop_coverage.append(float(status.raindrop_coverage))
        self.streak_intensity.append(float(status.streak_intensity))
        self.gated.append(int(status.processing) == Processing.GATED)
        self.rain_detected.append(bool(status.rain_detected))


def _messages(reader: BagReader, rank: int) -> Iterator[tuple[int, int, int, Any, BagReader]]:
    """(bag time, source rank, order, message, reader): the sort key keeps inputs before outputs of one time."""
    for order, message in enumerate(reader.messages()):
        yield message.timestamp, rank, order, message, reader


def merge_bag(
    plan: BagPlan, results: Sequence[dict[str, Any]], settings: NodeSettings, options: FleetOptions
) -> dict[str, Any]:
    """Write the bag's output bag and report from its units' results (in any order); returns report.json's summary."""
    state = options.output / STATE_DIR / "units" / plan.name
    ordered = sorted(results, key=lambda r: (r["topic"], r["index"]))
    out_dir = options.output / plan.name
    # Per topic, the counters of the segments before each unit (RainStatus counts over the whole topic).
    offsets: dict[str, tuple[int, int]] = {}
    running: dict[str, tuple[int, int]] = {}
    for result in ordered:
        processed, dropped = running.get(result["topic"], (0, 0))
        offsets[result["unit"]] = (processed, dropped)
        topic = result["topic_report"]
        running[result["topic"]] = (processed + topic["frames_out"], dropped + topic["bad_frames"])
    timelines = {topic: CameraTimeline(topic) for topic in dict.fromkeys(r["topic"] for r in ordered)}
    with ExitStack() as stack:
        source = stack.enter_context(BagReader(plan.path, options.distro))
        unit_readers = [stack.enter_context(BagReader(state / r["unit"] / UNIT_BAG)) for r in ordered]
        writer = stack.enter_context(
            BagWriter(
                out_dir / OUTPUT_BAG,
                plan.storage,
                make_typestore(source.resolved_distro),
                overwrite=True,
                distro=source.resolved_distro,
            )
        )
        streams = [_messages(source, 0)] + [_messages(r, 1 + i) for i, r in enumerate(unit_readers)]
        seen: dict[str, int] = {}
        for timestamp, rank, _, message, reader in heapq.merge(*streams, key=lambda item: item[:3]):
            raw = message.raw
            if rank and message.msgtype == RAIN_STATUS_TYPE:
                result = ordered[rank - 1]
                processed, dropped = offsets[result["unit"]]
                status = reader.deserialize(message)
                seen[result["unit"]] = seen.get(result["unit"], 0) + 1
                status.processed_frames = (processed + seen[result["unit"]]) & _UINT32
                status.dropped_frames = (dropped + int(status.dropped_frames)) & _UINT32
                raw = reader.typestore.serialize_cdr(status, message.msgtype)
                timelines[result["topic"]].add(status)
            writer.write_passthrough(message.connection, timestamp, raw)
        topic_counts = {t.name: t.count for t in source.topics()}
    report, records, samples = _bag_report(plan, ordered, settings, options, topic_counts, state)
    with AtomicFolder(out_dir / BAG_REPORT, overwrite=True) as folder:
        (folder / TIMELINE_JSON).write_text(json.dumps({t: asdict(v) for t, v in timelines.items()}))
        return write_report(folder, report, records, samples)


def _bag_report(
    plan: BagPlan,
    ordered: Sequence[dict[str, Any]],
    settings: NodeSettings,
    options: FleetOptions,
    topic_counts: dict[str, int],
    state: Path,
) -> tuple[EvalReport, list[FrameRecord], list[SampleFrame]]:
    """The bag's report as bag-eval would write it: per-topic sums, records renumbered over the whole topic."""
    topics: dict[str, TopicReport] = {}
    records: list[FrameRecord] = []
    samples: list[SampleFrame] = []
    busy: dict[str, float] = {}
    for result in ordered:
        part = result["topic_report"]
        topic = topics.setdefault(
            result["topic"],
            TopicReport(
                topic=result["topic"],
                msgtype=part["msgtype"],
                output_topics=part["output_topics"],
                gt_topics=part["gt_topics"],
            ),
        )
        offset = topic.frames_out
        for name in ("frames_in", "frames_out", "frames_with_gt", "bad_frames", "invalid_outputs"):
            setattr(topic, name, getattr(topic, name) + part[name])
        for data in result["records"]:
            record = record_from_json(data)
            record.index += offset
            records.append(record)
        for sample in load_samples(state / result["unit"] / UNIT_SAMPLES, result["samples"]):
            sample.index += offset
            samples.append(sample)
        busy[result["topic"]] = busy.get(result["topic"], 0.0) + result["wall_s"]
    for name, topic in topics.items():
        summarize_topic(topic, [r for r in records if r.topic == name], settings.engine.window_size)
        topic.throughput_fps = topic.frames_out / busy[name] if busy[name] > 0 else None
    if len(samples) > options.samples:
        step = len(samples) / options.samples
        samples = [samples[int(i * step)] for i in range(options.samples)]
    report = EvalReport(
        mode="offline",
        source_bag=plan.path,
        output_bag=str(options.output / plan.name / OUTPUT_BAG),
        topics=list(topics.values()),
        settings=settings.values(),
        backend=ordered[0]["backend"] if ordered else None,
        precision=ordered[0]["precision"] if ordered else None,
        stage1_passes=ordered[0].get("stage1_passes") if ordered else None,
        wall_s=sum(busy.values()),
        topic_counts=topic_counts,
        notes=[f"run by the fleet as {len(ordered)} units; wall time = the units' time summed over workers"],
    )
    return report, records, samples
