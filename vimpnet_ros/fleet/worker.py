"""The Ray actor that runs work units: one loaded engine per actor, one unit at a time.

Each unit is bag-eval's own run (:func:`~vimpnet_ros.evaluation.bag_eval.run_bag_eval`) over one
segment of one camera topic. Its outputs land in the unit's folder under the run's state folder:
``outputs`` (a bag with the node's output topics), ``samples.npz`` (contact-sheet rows) and, last,
``result.json`` (counts, per-frame records, timing). Every file is written under a temporary name and
renamed when whole, so a unit is either done (``result.json`` exists) or absent; running it again
(a retry after the actor died, a rerun) replaces its files with the same content.

Log records of a unit are collected and returned with its result, so the driver prints them
between progress-bar updates instead of Ray interleaving worker output with the bar.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from vimpnet_ros.evaluation.bag_eval import BagEvalOptions, SampleFrame, run_bag_eval
from vimpnet_ros.evaluation.metrics import MaskCounts
from vimpnet_ros.evaluation.scoring import FrameRecord
from vimpnet_ros.fleet.plan import Unit, write_json
from vimpnet_ros.pipeline.settings import NodeSettings

#: Log records kept per unit (a bag full of bad frames must not flood the driver's memory).
MAX_UNIT_LOGS = 50
#: How often a worker tells the driver how far its unit is [s].
PROGRESS_EVERY_S = 0.5
#: File names in a unit's folder.
UNIT_BAG, UNIT_SAMPLES, UNIT_RESULT = "outputs", "samples.npz", "result.json"


class _Collect(logging.Handler):
    """Keeps the first :data:`MAX_UNIT_LOGS` warnings of a unit; counts the rest."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[int, str]] = []
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < MAX_UNIT_LOGS:
            self.lines.append((record.levelno, record.getMessage()))
        else:
            self.dropped += 1


def record_to_json(record: FrameRecord) -> dict[str, Any]:
    """A frame record with its mask pixel counts (the bag's mask IoU sums them)."""
    return asdict(record)


def record_from_json(data: dict[str, Any]) -> FrameRecord:
    """Inverse of :func:`record_to_json`."""
    counts = data.get("counts")
    return FrameRecord(**{**data, "counts": MaskCounts(**counts) if counts else None})


def save_samples(path: Path, samples: list[SampleFrame]) -> list[dict[str, Any]]:
    """Contact-sheet rows into one ``.npz`` (temporary name, then rename); returns their descriptions."""
    arrays: dict[str, np.ndarray] = {}
    described = []
    for i, sample in enumerate(samples):
        arrays |= {f"rainy{i}": sample.rainy, f"derained{i}": sample.derained, f"mask{i}": sample.mask}
        if sample.gt is not None:
            arrays[f"gt{i}"] = sample.gt
        described.append({"topic": sample.topic, "index": sample.index, "stamp_ns": sample.stamp_ns})
    partial = path.with_name(f".{path.name}.partial.npz")
    np.savez_compressed(partial, **arrays)
    partial.replace(path)
    return described


def load_samples(path: Path, described: list[dict[str, Any]]) -> list[SampleFrame]:
    """Inverse of :func:`save_samples`."""
    if not described:
        return []
    with np.load(path) as data:
        return [
            SampleFrame(
                d["topic"],
                d["index"],
                d["stamp_ns"],
                data[f"rainy{i}"],
                data[f"derained{i}"],
                data[f"mask{i}"],
                data.get(f"gt{i}"),
            )
            for i, d in enumerate(described)
        ]


class _UnitProgress:
    """Counts a unit's restored frames and tells the driver's counter at most every :data:`PROGRESS_EVERY_S`."""

    def __init__(self, counter: Any, unit: str) -> None:
        self.counter, self.unit, self.frames, self.sent = counter, unit, 0, time.monotonic()

    def update(self, frames: int = 1) -> None:
        self.frames += frames
        if time.monotonic() - self.sent >= PROGRESS_EVERY_S:
            self.counter.report.remote(self.unit, self.frames)  # fire and forget: the driver reads the sum
            self.sent = time.monotonic()


def _named_actor(name: str) -> Any:
    import ray

    return ray.get_actor(name)


class SegmentWorker:
    """Holds one loaded engine (``threads`` CPU threads, or the GPU Ray gave the actor); runs units on it.

    The driver makes it a Ray actor (``ray.remote(SegmentWorker)`` in :mod:`vimpnet_ros.fleet.run`); plain
    Python here, so it runs and profiles without Ray too.
    """

    def __init__(
        self, settings: NodeSettings, threads: int, state_dir: str, samples: int, distro: str, counter: str = ""
    ) -> None:
        from vimpnet_ros.engine import InferenceEngine

        # The driver's FrameCounter actor, looked up by name: an actor handle among the constructor's arguments
        # would be kept in the object store, where a restart could lose it.
        self.counter = _named_actor(counter) if counter else None
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.samples = samples
        self.distro = distro
        self.engine = InferenceEngine(replace(settings.engine, cpu_threads=threads)).load()

    def pid(self) -> int:
        """The actor's process id (tests kill it to check that units are retried)."""
        return os.getpid()

    def run(self, unit: Unit, worker: str) -> dict[str, Any]:
        """Run one unit and write its outputs; returns what ``result.json`` holds."""
        started, cpu_started = time.perf_counter(), time.process_time()
        folder = self.state_dir / "units" / unit.name / unit.key
        folder.mkdir(parents=True, exist_ok=True)
        options = BagEvalOptions(
            image_topics=(unit.topic,),
            output_bag=folder / UNIT_BAG,
            storage="mcap",
            copy_input=False,
            distro=self.distro,
            samples=self.samples,
            progress=False,
            overwrite=True,
            gt=unit.gt,
            gt_masks=unit.gt_masks,
            segment=unit.segment,
        )
        collect = _Collect()
        logger = logging.getLogger("vimpnet_ros")
        logger.addHandler(collect)
        try:
            progress = _UnitProgress(self.counter, f"{unit.name}/{unit.key}") if self.counter is not None else None
            run = run_bag_eval(unit.bag, None, self.settings, options, self.engine, progress)
        finally:
            logger.removeHandler(collect)
        if collect.dropped:
            collect.lines.append((logging.WARNING, f"... and {collect.dropped} more warnings"))
        (topic,) = run.report.topics
        result = {
            "unit": unit.key,
            "name": unit.name,
            "topic": unit.topic,
            "index": unit.index,
            "start": unit.segment.start,
            "end": unit.segment.end,
            "topic_report": asdict(topic),
            "records": [record_to_json(r) for r in run.records],
            "samples": save_samples(folder / UNIT_SAMPLES, run.samples),
            "backend": run.report.backend,
            "precision": run.report.precision,
            "stage1_passes": run.report.stage1_passes,
            "worker": worker,
            "host": platform.node(),
            "pid": os.getpid(),
            "wall_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started,  # below wall_s x threads: the worker waited for a CPU
            "logs": collect.lines,
        }
        write_json(folder / UNIT_RESULT, result)
        return result
