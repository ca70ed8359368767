"""Which bags, which work units: inputs expanded into bags, each camera topic cut into time segments.

A unit is (bag, camera topic, time segment). Segments are ``segment_s`` of bag time long and
begin with the window's warm-up (the ``window_size - 1`` frames before them, restored but not
written: :class:`~vimpnet_ros.evaluation.bag_eval.Segment`), so the merged outputs equal one
uninterrupted pass. With rain gating on, a frame's output depends on every frame before it
(the gate's state), so each topic is then one unit.

The plan is a pure function of the inputs and options: a rerun finds the same units under the
same names and skips those already done.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vimpnet_ros.bags.io import BagReader
from vimpnet_ros.errors import BagError, ConfigError
from vimpnet_ros.evaluation.bag_eval import Segment, select_image_topics
from vimpnet_ros.fleet import DEFAULT_SEGMENT_S
from vimpnet_ros.pipeline.settings import NodeSettings

#: Folder under the output folder that holds unit outputs while a run is in progress, and the run's fingerprint.
STATE_DIR = ".fleet"
#: Per bag under the output folder: the derained bag and the report.
OUTPUT_BAG, BAG_REPORT = "derained", "report"


@dataclass(frozen=True)
class FleetOptions:
    """What a fleet run does besides the node settings.

    ``workers`` None = as many as the cluster's GPUs (or CPUs / ``threads_per_worker``) allow;
    ``gt`` / ``gt_masks`` map a camera topic to its ground-truth topic in every bag that has both;
    ``retries``: restarts of a dead worker, and re-runs of the unit it held; ``samples``: contact-sheet
    rows per bag report.
    """

    output: Path
    address: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    gpus_per_worker: float | None = None
    segment_s: float = DEFAULT_SEGMENT_S
    topics: tuple[str, ...] | None = None
    gt: Mapping[str, str] = field(default_factory=dict)
    gt_masks: Mapping[str, str] = field(default_factory=dict)
    distro: str = "auto"
    retries: int = 3
    samples: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.segment_s > 0:
            raise ConfigError(f"--segment-s must be positive, got {self.segment_s}")
        if self.threads_per_worker < 1:
            raise ConfigError(f"--threads-per-worker must be at least 1, got {self.threads_per_worker}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.retries < 0:
            raise ConfigError(f"--retries must be 0 or more, got {self.retries}")

    def fingerprint(self, settings: NodeSettings) -> dict[str, Any]:
        """What decides the outputs (not how many workers make them): a rerun must match it to resume."""
        return {
            "settings": settings.values(),
            "segment_s": self.segment_s,
            "topics": list(self.topics) if self.topics else None,
            "gt": dict(self.gt),
            "gt_masks": dict(self.gt_masks),
            "distro": self.distro,
        }


@dataclass(frozen=True)
class Unit:
    """One work unit: frames ``segment.start`` .. ``segment.end - 1`` of ``topic`` in ``bag``."""

    bag: str
    name: str  # the bag's name in the output folder
    topic: str
    index: int  # segment number within the topic
    segment: Segment
    gt: Mapping[str, str]
    gt_masks: Mapping[str, str]

    @property
    def key(self) -> str:
        """Folder of this unit's outputs, unique within its bag: ``<topic slug>.<segment>``."""
        return f"{topic_slug(self.topic)}.{self.index:05d}"

    @property
    def frames(self) -> int:
        return self.segment.end - self.segment.start


@dataclass
class BagPlan:
    """One input bag: its units, or why it cannot be processed."""

    path: str
    name: str
    units: list[Unit] = field(default_factory=list)
    storage: str = "mcap"
    error: str | None = None

    @property
    def frames(self) -> int:
        return sum(unit.frames for unit in self.units)


def topic_slug(topic: str) -> str:
    """``/cam/front/image`` -> ``cam_front_image`` (file names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", topic).strip("_") or "root"


def _is_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file()


def find_bags(inputs: Sequence[str | Path]) -> list[Path]:
    """Bags named by ``inputs``: bag folders, folders holding bags (searched recursively), globs; sorted, unique."""
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        magic = glob.has_magic(text)
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True)) if magic else [Path(text)]  # noqa: PTH207
        if not matches or not matches[0].exists():
            raise ConfigError(f"input {text} does not exist (give bag folders, folders of bags or globs)")
        for path in matches:
            if _is_bag(path):
                found.append(path)
            elif path.is_dir():
                found.extend(sorted(p.parent for p in path.rglob("metadata.yaml")))
            else:
                raise ConfigError(f"input {path} is not a rosbag2 folder or a folder of bags")
    bags = list(dict.fromkeys(p.resolve() for p in found))
    if not bags:
        raise ConfigError(f"no rosbag2 folders (with metadata.yaml) found in {', '.join(map(str, inputs))}")
    return bags


def output_names(bags: Sequence[Path]) -> dict[Path, str]:
    """Each bag's folder name in the output, made unique with a hash of its path when names repeat."""
    counts: dict[str, int] = {}
    for bag in bags:
        counts[bag.name] = counts.get(bag.name, 0) + 1
    return {
        bag: bag.name if counts[bag.name] == 1 else f"{bag.name}_{hashlib.sha1(str(bag).encode()).hexdigest()[:8]}"
        for bag in bags
    }


def segments(stamps: Sequence[int], segment_ns: float, warmup: int) -> list[Segment]:
    """Cut one topic's bag times (sorted) into segments of ``segment_ns``, each with ``warmup`` frames before it."""
    if not stamps:
        return []
    first = stamps[0]
    bounds = [0]
    if math.isfinite(segment_ns):
        for position in range(1, len(stamps)):
            if (stamps[position] - first) // segment_ns != (stamps[bounds[-1]] - first) // segment_ns:
                bounds.append(position)
    bounds.append(len(stamps))
    cut = []
    for start, end in itertools.pairwise(bounds):
        read_from = max(0, start - warmup)
        while read_from > 0 and stamps[read_from - 1] == stamps[read_from]:  # reading starts at a bag time
            read_from -= 1
        cut.append(Segment(start, end, read_from, stamps[read_from] if read_from else None))
    return cut


def plan_bag(path: Path, name: str, settings: NodeSettings, options: FleetOptions) -> BagPlan:
    """The units of one bag (reads its camera topics' bag times once); BagError if the bag cannot be read."""
    with BagReader(path, options.distro) as reader:
        summaries = reader.topics()
        available = {t.name: t.msgtype for t in summaries}
        gt = {t: g for t, g in options.gt.items() if t in available and g in available}
        gt_masks = {t: g for t, g in options.gt_masks.items() if t in available and g in available}
        wanted = [t for t in options.topics if t in available] if options.topics else None
        topics = select_image_topics(summaries, wanted, exclude=[*gt.values(), *gt_masks.values()])
        stamps: dict[str, list[int]] = {topic: [] for topic in topics}
        for message in reader.messages(topics):
            stamps[message.topic].append(message.timestamp)
        counts = {t.name: t.count for t in summaries}
        short = [f"{t} ({len(stamps[t])} of {counts[t]})" for t in topics if len(stamps[t]) != counts[t]]
        if short:  # a damaged storage file can end a topic early without an error from the reader
            raise BagError(
                f"bag {path}: fewer camera messages could be read than metadata.yaml lists on {', '.join(short)}; "
                "the storage is damaged (or metadata.yaml is stale: `ros2 bag reindex` rewrites it)"
            )
        plan = BagPlan(str(path), name, storage=reader.storage)
        length = math.inf if settings.rain.gating_enabled else options.segment_s * 1e9
        for topic in topics:
            own_gt = {k: v for k, v in gt.items() if k == topic}
            own_masks = {k: v for k, v in gt_masks.items() if k == topic}
            for index, segment in enumerate(segments(stamps[topic], length, settings.engine.window_size - 1)):
                plan.units.append(Unit(str(path), name, topic, index, segment, own_gt, own_masks))
    return plan


def write_json(path: Path, data: Any) -> None:
    """Write JSON whole or not at all (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=1))
    partial.replace(path)
