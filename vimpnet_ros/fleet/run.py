"""Drive a fleet run: plan, start or join Ray, keep every worker busy, merge bags as they finish, report.

Workers are Ray actors (:class:`~vimpnet_ros.fleet.worker.SegmentWorker`), each holding one loaded
engine: one per GPU on GPU nodes, else one per ``threads_per_worker`` CPU threads. Fault tolerance is
Ray's own: an actor whose process dies is restarted (``max_restarts``) and the units it held are run
again (``max_task_retries``, at-least-once); units write their files whole under temporary names, so
running one twice changes nothing. A unit that still fails (its bag is unreadable, the retries are
spent) fails its bag only; the other bags finish. Finished units survive an interrupted run in the
output folder, and a rerun skips them.

The scheduling loop is a few lines over ``ray.wait`` rather than ``ray.util.ActorPool`` because a
failed unit must be reported by name, which the pool's ``get_next_unordered`` does not keep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from vimpnet_ros.errors import ConfigError, EngineError, VimpnetError
from vimpnet_ros.fleet.merge import merge_bag
from vimpnet_ros.fleet.plan import (
    BAG_REPORT,
    STATE_DIR,
    BagPlan,
    FleetOptions,
    Unit,
    find_bags,
    output_names,
    plan_bag,
    write_json,
)
from vimpnet_ros.fleet.worker import UNIT_RESULT, SegmentWorker
from vimpnet_ros.pipeline.settings import NodeSettings

LOGGER = logging.getLogger(__name__)

#: Units queued on each worker at once: the next one is ready while the driver merges or logs.
UNITS_IN_FLIGHT = 2
#: How often the driver reads the workers' frame counts for the progress bar [s].
PROGRESS_POLL_S = 0.5
#: The run's fingerprint (settings and cut) in the state folder: a rerun must match it to resume.
FINGERPRINT_JSON = "run.json"

#: Called with ("workers", {"pids": [...]}) once the workers are up, and ("unit", result) after each unit.
Events = Callable[[str, dict[str, Any]], None]


@dataclass
class FleetRun:
    """What a run did: per bag its plan and outcome, per unit whether it ran now, was resumed or failed."""

    plans: list[BagPlan]
    ran: list[dict[str, Any]] = field(default_factory=list)  # unit results computed by this run
    resumed: list[str] = field(default_factory=list)  # "bag name/unit": outputs a previous run left
    failed: dict[str, str] = field(default_factory=dict)  # "bag name/unit" or "bag name" -> error
    merged: list[str] = field(default_factory=list)  # bag names whose output bag and report this run wrote
    workers: int = 0
    wall_s: float = 0.0
    compute_s: float = 0.0  # from the workers being up (engines loaded) to the last unit done and merged
    frames_counted: int = 0  # frames the progress bar counted for the units this run ran


class FrameCounter:
    """Frames done per unit as workers report them, for the progress bar (a Ray actor in the driver's run).

    Each unit keeps its largest count, so a unit run again after its worker died is not counted twice.
    """

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def report(self, unit: str, frames: int) -> None:
        self.done[unit] = max(self.done.get(unit, 0), frames)

    def forget(self, unit: str) -> None:
        """A failed unit's frames are not done."""
        self.done.pop(unit, None)

    def total(self) -> int:
        return sum(self.done.values())


def start_local_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Start Ray on this machine, its workers importing this very package (also from a source checkout)."""
    import ray

    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([package_root, *paths])  # inherited by Ray's worker processes
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)


def _check_fingerprint(state: Path, fingerprint: dict[str, Any]) -> None:
    path = state / FINGERPRINT_JSON
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(fingerprint)):
            changed = sorted(k for k in fingerprint if previous.get(k) != json.loads(json.dumps(fingerprint[k])))
            raise ConfigError(
                f"{state.parent} holds a fleet run with other {', '.join(changed)}; resume it with the same "
                "options, or choose another --output"
            )
    else:
        write_json(path, fingerprint)


def _remove_partials(output: Path) -> None:
    """Temporary files a killed run left half-written: of units, merged bags, reports (no worker is running yet)."""
    patterns = (f"{STATE_DIR}/units/*/*/.*partial*", ".*.partial-*", "*/.*.partial-*")
    for partial in sorted(p for pattern in patterns for p in output.glob(pattern)):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def _error_text(error: BaseException) -> str:
    """One line for a unit's failure: the worker's own exception when Ray wrapped one."""
    cause = getattr(error, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def _worker_count(options: FleetOptions, units: int) -> tuple[int, float]:
    """(workers, GPUs per worker): as many as the cluster holds (or ``--workers``, if fewer), at most one per unit.

    More workers than the cluster's CPUs or GPUs hold would wait for resources forever; ConfigError when
    not even one fits.
    """
    import ray

    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    per_gpu = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus else 0.0)
    fits = int(resources.get("CPU", 0) // options.threads_per_worker)
    if per_gpu:
        fits = min(fits, int(gpus // per_gpu))
    if fits < 1:
        raise ConfigError(
            f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, {gpus:g} GPUs) cannot hold one worker of "
            f"{options.threads_per_worker} CPU threads and {per_gpu:g} GPUs; lower --threads-per-worker or "
            "--gpus-per-worker"
        )
    if options.workers is not None and options.workers > fits:
        LOGGER.warning("the cluster holds %d workers of this size, not %d; running %d", fits, options.workers, fits)
    count = fits if options.workers is None else min(options.workers, fits)
    return min(count, units), per_gpu


@contextlib.contextmanager
def _printing_through_tqdm(enabled: bool) -> Iterator[TextIO]:
    """Route what is printed (Ray's own messages about retried units) above the progress bar, as tqdm documents.

    Yields the real stderr, where the bar itself goes; log records take the same route through
    ``logging_redirect_tqdm``.
    """
    from tqdm.contrib import DummyTqdmFile

    saved = sys.stdout, sys.stderr
    if enabled:
        sys.stdout, sys.stderr = DummyTqdmFile(saved[0]), DummyTqdmFile(saved[1])
    try:
        yield saved[1]
    finally:
        sys.stdout, sys.stderr = saved


def run_fleet(
    inputs: Sequence[str | Path], settings: NodeSettings, options: FleetOptions, on_event: Events | None = None
) -> FleetRun:
    """Process every bag of ``inputs`` into ``options.output``; see the module docstring."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    started = time.monotonic()
    bags = find_bags(inputs)
    state = options.output / STATE_DIR
    _check_fingerprint(state, options.fingerprint(settings))
    _remove_partials(options.output)
    plans = []
    for bag, name in output_names(bags).items():
        try:
            plans.append(plan_bag(bag, name, settings, options))
        except Exception as error:  # storage libraries raise their own types on damaged files
            text = str(error) if isinstance(error, VimpnetError) else f"cannot read bag {bag}: {error!r}"
            plans.append(BagPlan(str(bag), name, error=text))
    run = FleetRun(plans)
    for plan in plans:
        if plan.error:
            run.failed[plan.name] = plan.error
            LOGGER.error("bag %s skipped: %s", plan.path, plan.error)
    done: dict[str, dict[str, dict[str, Any]]] = {}  # bag name -> unit key -> result
    pending: deque[Unit] = deque()
    finished_frames = total = 0
    for plan in plans:
        if plan.error:
            continue
        total += plan.frames
        if (options.output / plan.name / BAG_REPORT / "report.json").is_file():
            finished_frames += plan.frames
            run.resumed += [f"{plan.name}/{unit.key}" for unit in plan.units]
            continue
        done[plan.name] = {}
        for unit in plan.units:
            result_path = state / "units" / plan.name / unit.key / UNIT_RESULT
            if result_path.is_file():
                done[plan.name][unit.key] = json.loads(result_path.read_text())
                finished_frames += unit.frames
                run.resumed.append(f"{plan.name}/{unit.key}")
            else:
                pending.append(unit)
    with (
        logging_redirect_tqdm(),  # first: it finds the console handlers by the real stdout and stderr
        _printing_through_tqdm(options.progress) as terminal,
        tqdm(
            total=total,
            initial=finished_frames,
            unit="frame",
            desc="fleet",
            disable=not options.progress,
            smoothing=0.1,
            file=terminal,
        ) as progress,
    ):
        for plan in plans:  # bags whose units were all done before this run
            if plan.name in done and len(done[plan.name]) == len(plan.units):
                _merge(plan, done, settings, options, run)
        if pending:
            _run_units(pending, plans, done, settings, options, run, progress, on_event)
    run.wall_s = time.monotonic() - started
    return run


def _merge(
    plan: BagPlan,
    done: dict[str, dict[str, dict[str, Any]]],
    settings: NodeSettings,
    options: FleetOptions,
    run: FleetRun,
) -> None:
    """Merge a bag whose units are all done; its unit files go once its report is written."""
    try:
        merge_bag(plan, list(done.pop(plan.name).values()), settings, options)
    except Exception as error:  # one bag's damaged file must not end the others' run
        run.failed[plan.name] = f"merging its units failed: {error}"
        LOGGER.error("bag %s: merging its units failed: %s", plan.path, error)
        return
    run.merged.append(plan.name)
    shutil.rmtree(options.output / STATE_DIR / "units" / plan.name, ignore_errors=True)
    LOGGER.info("bag %s done: %s", plan.path, options.output / plan.name)


def _run_units(
    pending: deque[Unit],
    plans: list[BagPlan],
    done: dict[str, dict[str, dict[str, Any]]],
    settings: NodeSettings,
    options: FleetOptions,
    run: FleetRun,
    progress: Any,
    on_event: Events | None,
) -> None:
    """Run ``pending`` on Ray actors (starting a local Ray when none is running); merge bags as they finish."""
    import ray

    owns_ray = not ray.is_initialized()
    if owns_ray:
        if options.address:
            ray.init(address=options.address, log_to_driver=False)
        else:
            start_local_ray()
    by_name = {plan.name: plan for plan in plans}
    actors: list[Any] = []
    counter = None
    try:
        count, gpus = _worker_count(options, len(pending))
        worker_class = ray.remote(SegmentWorker).options(
            num_cpus=options.threads_per_worker,
            num_gpus=gpus,
            max_restarts=options.retries,
            max_task_retries=options.retries,
        )
        state = str(options.output / STATE_DIR)
        counter_name = f"vimpnet_fleet_progress_{os.getpid()}_{time.monotonic_ns()}"
        counter = ray.remote(FrameCounter).options(num_cpus=0, name=counter_name).remote()
        actors = [
            worker_class.remote(
                settings, options.threads_per_worker, state, options.samples, options.distro, counter_name
            )
            for _ in range(count)
        ]
        run.workers = count
        try:
            pids = ray.get([actor.pid.remote() for actor in actors])
        except ray.exceptions.RayError as error:  # the engine would not load: a missing checkpoint, no CUDA
            raise EngineError(f"the workers could not start: {_error_text(error)}") from error
        LOGGER.info(
            "%d workers (%d CPU threads%s each)", count, options.threads_per_worker, f", {gpus} GPU" * bool(gpus)
        )
        if on_event:
            on_event("workers", {"pids": pids})
        in_flight: dict[Any, tuple[Unit, int]] = {}
        loop_started = time.monotonic()

        def submit(worker: int) -> None:
            if pending:
                unit = pending.popleft()
                in_flight[actors[worker].run.remote(unit, f"worker-{worker}")] = (unit, worker)

        for worker in range(count):
            for _ in range(UNITS_IN_FLIGHT):
                submit(worker)
        before = progress.n  # frames of units done before this run

        def show() -> None:
            progress.update(before + ray.get(counter.total.remote()) - progress.n)

        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=PROGRESS_POLL_S)
            if not ready:
                show()
                continue
            unit, worker = in_flight.pop(ready[0])
            name, label = f"{unit.name}/{unit.key}", f"{unit.name} {unit.topic} segment {unit.index}"
            try:
                result = ray.get(ready[0])
            except (ray.exceptions.RayError, VimpnetError) as error:
                run.failed[name] = _error_text(error)
                LOGGER.error("%s failed: %s", label, _error_text(error))
                counter.forget.remote(name)
            else:
                for level, text in result["logs"]:
                    LOGGER.log(level, "[%s] %s", label, text)
                run.ran.append(result)
                counter.report.remote(name, unit.frames)
                show()
                if on_event:
                    on_event("unit", result)
                bag = done.get(unit.name)
                if bag is not None:
                    bag[unit.key] = result
                    if len(bag) == len(by_name[unit.name].units):
                        _merge(by_name[unit.name], done, settings, options, run)
            submit(worker)
        run.compute_s = time.monotonic() - loop_started
        run.frames_counted = ray.get(counter.total.remote())
        for name in list(done):
            missing = len(by_name[name].units) - len(done[name])
            run.failed.setdefault(name, f"{missing} of its units failed; rerun to retry them")
    finally:
        for actor in [*actors, counter] if counter is not None else actors:
            ray.kill(actor)
        if owns_ray:
            ray.shutdown()
