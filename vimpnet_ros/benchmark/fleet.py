"""Fleet throughput: frames per second with 1 and 2 workers (one CPU thread each) in one run, and their ratio.

Both runs process the same sample bags (rendered here, so the figure needs no data) with the same
settings, one after the other on one local Ray. A run's rate is its frames over the time from its
workers being up (engines loaded) to its last unit done and merged: start-up is paid once per
worker per run, however long the run. Each run also records the CPU cores its workers actually had
(their CPU time over the run's time) and the machine's load average: on a machine shared with other
work, Linux shares the cores between sessions (autogroup scheduling), so a second worker of the same
run may get no more CPU than one worker had alone, and the ratio then measures the machine's load.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vimpnet_ros.bags.sample import SampleBagConfig, write_sample_bag
from vimpnet_ros.benchmark.measure import machine_record
from vimpnet_ros.fleet.plan import FleetOptions
from vimpnet_ros.fleet.run import run_fleet, start_local_ray
from vimpnet_ros.pipeline.settings import load_node_settings

LOGGER = logging.getLogger(__name__)

#: Where ``vimpnet-ros benchmark fleet`` writes by default.
DEFAULT_OUTPUT = Path("benchmarks/fleet.json")
#: The target: 2 workers on 2 cores should nearly double 1 worker.
TARGET_SCALING = 1.8


@dataclass(frozen=True)
class FleetBenchOptions:
    """What ``vimpnet-ros benchmark fleet`` measures (its options; the command line fills them)."""

    bags: int
    frames: int
    size: tuple[int, int]
    segment_s: float
    workers: tuple[int, ...]
    checkpoint: str | None
    output: Path


def measure(
    root: Path, settings: Any, bags: int, frames: int, size: tuple[int, int], segment_s: float, workers: list[int]
) -> dict[str, Any]:
    """Render ``bags`` sample bags under ``root`` and run the fleet over them once per worker count."""
    import ray

    inputs = root / "bags"
    for i in range(bags):
        write_sample_bag(inputs / f"drive_{i}", SampleBagConfig(num_frames=frames, size=size, seed=i))
    if not ray.is_initialized():
        start_local_ray(num_cpus=max(max(workers), os.cpu_count() or 1))
    runs = []
    for count in workers:
        options = FleetOptions(
            output=root / f"out_{count}", workers=count, threads_per_worker=1, segment_s=segment_s, samples=0
        )
        load_before = os.getloadavg()
        run = run_fleet([inputs], settings, options)
        if run.failed:
            raise RuntimeError(f"the fleet run with {count} workers failed: {run.failed}")
        done = sum(r["end"] - r["start"] for r in run.ran)
        runs.append(
            {
                "workers": count,
                "threads_per_worker": 1,
                "units": len(run.ran),
                "frames": done,
                "compute_s": run.compute_s,
                "wall_s": run.wall_s,
                "fps": done / run.compute_s,
                # CPU cores the workers had on average: below the worker count, other work took the rest
                "worker_cores": sum(r["cpu_s"] for r in run.ran) / run.compute_s,
                "load_average_before": list(load_before),
                "load_average_after": list(os.getloadavg()),
            }
        )
        runs[-1]["fps_per_core"] = runs[-1]["fps"] / runs[-1]["worker_cores"] if runs[-1]["worker_cores"] else None
        LOGGER.info("%d workers: %d frames in %.1f s = %.2f frames/s", count, done, run.compute_s, runs[-1]["fps"])
    by_count = {r["workers"]: r["fps"] for r in runs}
    per_core = {r["workers"]: r["fps_per_core"] for r in runs}
    return {
        "benchmark": "fleet",
        "command": "vimpnet-ros benchmark fleet "
        + " ".join(
            [f"--bags {bags}", f"--frames {frames}", f"--size {size[0]}x{size[1]}", f"--segment-s {segment_s:g}"]
        ),
        "model": settings.engine.model,
        "backend": settings.engine.backend,
        "precision": settings.engine.precision,
        "bags": bags,
        "frames_per_bag": frames,
        "size": list(size),
        "segment_s": segment_s,
        "machine": machine_record("cpu"),
        "runs": runs,
        "scaling": by_count[2] / by_count[1] if 1 in by_count and 2 in by_count else None,
        # frames/s per core the workers had, 2 workers over 1: what is left of the scaling once the machine's
        # other work is taken out (1.0 = a second worker loses nothing to the first)
        "per_core_efficiency": per_core[2] / per_core[1] if per_core.get(1) and per_core.get(2) else None,
        "target_scaling": TARGET_SCALING,
    }


def run(options: FleetBenchOptions) -> int:
    """``vimpnet-ros benchmark fleet``: measure, print, write JSON."""
    overrides = {"backend": "torch", "device": "cpu", "precision": "fp32"}
    if options.checkpoint:
        overrides["checkpoint"] = options.checkpoint
    settings = load_node_settings(None, overrides)
    with tempfile.TemporaryDirectory(prefix="vimpnet_fleet_bench_") as folder:
        result = measure(
            Path(folder), settings, options.bags, options.frames, options.size, options.segment_s, list(options.workers)
        )
    for r in result["runs"]:
        print(
            f"{r['workers']} worker(s) x 1 thread: {r['frames']} frames in {r['compute_s']:.1f} s = {r['fps']:.2f} "
            f"frames/s on {r['worker_cores']:.2f} cores (load average {r['load_average_before'][0]:.1f} -> "
            f"{r['load_average_after'][0]:.1f})"
        )
    if result["scaling"] is not None:
        print(f"scaling 1 -> 2 workers: {result['scaling']:.2f}x (target {TARGET_SCALING}x)")
    if result["per_core_efficiency"] is not None:
        print(f"frames/s per core the workers had, 2 workers over 1: {result['per_core_efficiency']:.2f}")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {options.output}")
    return 0
