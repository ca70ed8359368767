"""The one GPU check: ``vimpnet-ros benchmark gpu --output DIR`` (or ``python -m vimpnet_ros.benchmark.gpu``).

Meant for a GPU available for a few minutes, once: it must work the first time, stay inside a
time budget (``--budget-s``, default 330 s) and leave results even when it is killed. It
writes ``DIR/gpu.json`` (every case: its figures, or why it was skipped or failed) and
``DIR/gpu.md`` (README-ready tables) after every case, so a kill still leaves what was
measured. Needs only torch and numpy (no ROS, no YAML, no pytest).

What it measures (CUDA, fp16 unless ``--precisions`` says otherwise; random weights):

- ``fidelity``: the golden clip (``tests/model/data``, skipped when absent) through the whole
  model in fp32 (TF32 off) and each precision, against the reference's outputs on their grid;
- ``latency``: the engine streamed as the node runs it (steady state, wall time per push),
  eager PyTorch and the compiled backend, ``vimpnet_lite`` and ``vimpnet``, 640x384 and
  1280x720, with kernel launches per push (``torch.profiler``), peak GPU memory and, for the
  compiled backend, its load time from a warm cache and its difference from eager;
- ``latency`` with 4 cameras of 1280x720 ``vimpnet_lite`` restored in one batch per push;
- ``latency`` of the node's default model, ``vimpnet_lite_gated``, at 1280x720 and 3840x2160, both
  restored at its weights' scale as the node does, eager, with the stage-1 passes the engine picks
  there (one at the weights' scale): the two differ by the work done at the frame's own size;
- ``compile``: the compiled programs of each profile from a cold cache (these run in
  parallel child processes, niced, while the eager cases are timed);
- ``restart``: a fresh process to its first restored frame with a warm cache (interpreter,
  imports, model, engine load, first push: a proxy for the node, which needs ROS);
- ``fidelity_compiled``: the golden clip through the compiled steps.

Cases run one at a time (so timings do not share the GPU) in fresh subprocesses, in priority
order; a case starts only if its estimate fits the budget left, and anything that does not fit
is recorded as skipped with the reason. ``--quick --device cpu`` runs the same plan at tiny
sizes on a CPU (how CI tests this module).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vimpnet_ros.benchmark import fidelity

LOGGER = logging.getLogger(__name__)
#: Default time budget: under 6 minutes on a borrowed GPU, with room for the machine's own start.
DEFAULT_BUDGET_S = 330.0
#: Marks the one stdout line of a worker that carries its JSON record.
RESULT_MARK = "GPU-CHECK-RESULT "
#: Seconds kept back for the final write and cleanup.
RESERVE_S = 5.0
#: Rough seconds a case needs on one H100/H200 (interpreter, CUDA start, load, warm-up, timing); a case
#: starts only when its estimate fits in what is left of the budget. ``--quick`` on a CPU multiplies them.
ESTIMATE_S = {"fidelity": 40.0, "latency": 35.0, "restart": 25.0, "fidelity_compiled": 45.0}
CPU_QUICK_FACTOR = 2.0
#: A compilation is not started with less than this left: its programs could not be used any more.
MIN_COMPILE_S = 60.0
#: The GPU latency targets: per-frame milliseconds (streamed, fp16, one camera), camera rate, restart seconds.
TARGET_MS: dict[tuple[str, tuple[int, int]], float] = {
    ("vimpnet", (640, 384)): 15.0,
    ("vimpnet", (1280, 720)): 50.0,
    ("vimpnet_lite", (640, 384)): 5.0,
    ("vimpnet_lite", (1280, 720)): 10.0,
}
TARGET_CAMERA_HZ = 30.0
#: Compiled fp32 output must equal eager within this.
FP32_TOLERANCE = 1e-4
TARGET_RESTART_S = 10.0
#: Sizes and cameras of the full check and of ``--quick``.
FULL_SIZES = ((640, 384), (1280, 720))
QUICK_SIZES = ((48, 32),)
FULL_CAMERAS, QUICK_CAMERAS = 4, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the GPU check (defined here: it must start on a machine without the rest of the command line)."""
    parser.add_argument("--output", type=Path, required=True, help="folder for gpu.json and gpu.md")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --quick: how CI tests it)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="total seconds; what does not fit is recorded as skipped (default %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and vimpnet_lite only (a smoke run)")
    parser.add_argument("--precisions", default=None, help="comma-separated (default: fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--frames", type=int, default=None, help="timed pushes per case (default 30; quick 3)")
    parser.add_argument("--compile-jobs", type=int, default=None,
                        help="profiles compiled at once (default 3 on CUDA, 1 on CPU)")  # fmt: skip
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="engine cache to use (default: a fresh temporary one, removed at the end)")  # fmt: skip
    parser.add_argument(
        "--warm-inductor-cache",
        action="store_true",
        help="reuse inductor's own cache (default: a fresh one, so compile times are cold)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)


@dataclass(frozen=True)
class GpuCheckOptions:
    """What one GPU check runs (its options: :func:`add_arguments` on the command line, typed)."""

    output: Path
    device: str
    budget_s: float
    quick: bool
    precisions: str | None  # comma-separated; None = fp16 on CUDA, fp32 on CPU
    frames: int | None
    compile_jobs: int | None
    cache_dir: Path | None
    warm_inductor_cache: bool
    worker: str | None  # a case as JSON: run it in this process (the check's own workers)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GpuCheckOptions:
        """The options :func:`add_arguments` parsed (this module is its own command line on a bare GPU machine)."""
        return cls(**{item.name: getattr(args, item.name) for item in fields(cls)})


# -- the plan -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What one run measures, from the options."""

    device: str
    precisions: tuple[str, ...]
    models: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]
    cameras: int
    window: int
    frames: int
    quick: bool

    @classmethod
    def from_options(cls, options: GpuCheckOptions) -> Plan:
        """The full plan on CUDA; tiny sizes, ``vimpnet_lite`` only and fewer frames with ``--quick``."""
        on_cuda = options.device.startswith("cuda")
        quick = options.quick
        precisions = tuple(p for p in (options.precisions or ("fp16" if on_cuda else "fp32")).split(",") if p)
        return cls(
            device=options.device,
            precisions=precisions,
            models=("vimpnet_lite",) if quick else ("vimpnet_lite", "vimpnet"),
            sizes=QUICK_SIZES if quick else FULL_SIZES,
            cameras=QUICK_CAMERAS if quick else FULL_CAMERAS,
            window=3 if quick else 5,
            frames=options.frames or (3 if quick else 30),
            quick=quick,
        )

    def estimate(self, kind: str) -> float:
        """Budget estimate of one case of ``kind``."""
        factor = CPU_QUICK_FACTOR if not self.device.startswith("cuda") else 1.0
        return ESTIMATE_S[kind] * factor


def _profile_id(model: str, size: tuple[int, int], cameras: int, precision: str, weights: str = "random") -> str:
    return f"compile-{model}-{size[0]}x{size[1]}-{cameras}cam-{precision}" + ("-golden" if weights == "golden" else "")


def build_plan(plan: Plan, cache_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(measuring cases in priority order, compilations in priority order); see the module docstring."""
    common = {"device": plan.device, "cache_dir": str(cache_dir), "window": plan.window, "frames": plan.frames}
    largest = plan.sizes[-1]
    cases: list[dict[str, Any]] = []
    compiles: list[dict[str, Any]] = []

    def compile_job(model: str, size: tuple[int, int], cameras: int, precision: str, weights: str = "random") -> str:
        job_id = _profile_id(model, size, cameras, precision, weights)
        if all(job["id"] != job_id for job in compiles):
            compiles.append({**common, "id": job_id, "kind": "compile", "model": model, "size": list(size),
                             "cameras": cameras, "precision": precision, "weights": weights})  # fmt: skip
        return job_id

    reduced = [p for p in plan.precisions if p != "fp32"]
    cases.append({**common, "id": "fidelity", "kind": "fidelity", "precisions": ["fp32", *reduced]})
    latency = [(model, size, 1) for model in plan.models for size in plan.sizes]
    latency.append((plan.models[0], largest, plan.cameras))
    for backend in ("torch", "compiled"):
        for precision in plan.precisions:
            for model, size, cameras in latency:
                case = {**common, "kind": "latency", "backend": backend, "precision": precision, "model": model,
                        "size": list(size), "cameras": cameras}  # fmt: skip
                case["id"] = f"latency-{backend}-{model}-{size[0]}x{size[1]}-{cameras}cam-{precision}"
                if backend == "compiled":
                    case["needs"] = compile_job(model, size, cameras, precision)
                cases.append(case)
    precision = plan.precisions[0]
    # The node's default model as the node runs it there: stage-1 passes by device and frame size, frames larger than
    # its weights' scale restored at that scale (working_scale weights), eager, beside the compilations, after the
    # eager cases above; at the largest size and at three times its sides (3840x2160), both inferred alike, so the
    # two rows give the work done at a frame's own size (the node's frame cost budget, FULL_SIZE_SHARE).
    from vimpnet_ros.engine import EngineConfig

    model = EngineConfig().model
    defaults = [{**common, "kind": "latency", "backend": "torch", "precision": precision, "model": model,
                 "size": [width, height], "cameras": 1, "working_scale": "weights",
                 "id": f"latency-torch-{model}-{width}x{height}-1cam-{precision}"}
                for width, height in (largest, (3 * largest[0], 3 * largest[1]))]  # fmt: skip
    first_compiled = next((i for i, case in enumerate(cases) if case.get("backend") == "compiled"), len(cases))
    cases[first_compiled:first_compiled] = defaults
    cases.append({**common, "id": "restart", "kind": "restart", "backend": "compiled", "precision": precision,
                  "model": plan.models[0], "size": list(largest), "cameras": 1,
                  "needs": compile_job(plan.models[0], largest, 1, precision)})  # fmt: skip
    golden = {**common, "id": "fidelity_compiled", "kind": "fidelity_compiled", "backend": "compiled",
              "precision": precision, "model": "vimpnet", "size": [256, 256], "cameras": 1, "window": 5}  # fmt: skip
    if plan.quick:
        golden["skip"] = "quick mode: compiling the full model for the golden clip takes too long here"
    elif fidelity.missing():
        golden["skip"] = fidelity.missing()
    else:
        golden["needs"] = compile_job("vimpnet", (256, 256), 1, precision, "golden")
        for job in compiles:
            if job["weights"] == "golden":
                job["window"] = 5
    cases.append(golden)
    # Compile order: what the most cases wait for first (lite, then the full model, then the golden profile).
    compiles.sort(key=lambda job: (job["weights"] == "golden", job["model"] != plan.models[0]))
    return cases, compiles


# -- the orchestrator -----------------------------------------------------------------------------------------------


@dataclass
class Running:
    """A worker process of one case or compilation."""

    case: dict[str, Any]
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    started: float
    deadline: float


@dataclass
class Report:
    """Everything measured so far, written after every change (``gpu.json``, ``gpu.md``)."""

    output: Path
    header: dict[str, Any]
    cases: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        """Record one finished, failed or skipped case and write the files."""
        self.cases.append(record)
        self.write(complete=False)

    def write(self, complete: bool) -> None:
        """Write ``gpu.json`` and ``gpu.md`` atomically (a kill between two writes leaves the previous ones)."""
        self.output.mkdir(parents=True, exist_ok=True)
        doc = {**self.header, "elapsed_s": round(time.monotonic() - self.header["_t0"], 1), "complete": complete,
               "targets": target_summary(self.cases), "cases": self.cases}  # fmt: skip
        doc.pop("_t0")
        for name, text in (("gpu.json", json.dumps(doc, indent=1, default=str) + "\n"), ("gpu.md", markdown(doc))):
            tmp = self.output / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.output / name)


def _worker_env(scratch: Path, warm_inductor: bool) -> dict[str, str]:
    """The workers' environment: this checkout importable; their temporary files (a package being compiled, a
    killed compiler's leftovers) inside ``scratch``, which the check removes; inductor's cache there too, unless
    it is kept warm where inductor keeps it by default."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    import vimpnet_ros

    env = dict(os.environ)
    root = str(Path(vimpnet_ros.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    inductor = env.get("TORCHINDUCTOR_CACHE_DIR", default_cache_dir()) if warm_inductor else str(scratch / "inductor")
    env["TORCHINDUCTOR_CACHE_DIR"] = inductor
    (scratch / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(scratch / "tmp")
    return env


def _start(case: dict[str, Any], scratch: Path, env: dict[str, str], timeout_s: float, nice: int = 0) -> Running:
    """Start the worker of ``case`` in its own session (so its children are stopped with it)."""
    stdout, stderr = scratch / f"{case['id']}.out", scratch / f"{case['id']}.err"
    case = {**case, "spawned_at": time.time()}
    command = [sys.executable, "-m", "vimpnet_ros.benchmark.gpu", "--output", str(scratch), "--worker",
               json.dumps(case)]  # fmt: skip
    with stdout.open("wb") as out, stderr.open("wb") as err:
        niced = functools.partial(os.nice, nice) if nice else None
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                   start_new_session=True, preexec_fn=niced)  # fmt: skip
    now = time.monotonic()
    return Running(case, process, stdout, stderr, now, now + timeout_s)


def _stop(running: Running, grace_s: float = 5.0) -> None:
    """Terminate a worker and everything it started: its whole process group, not only the worker.

    A child the worker started (the engine's background compiler) outlives it unless the group itself is
    waited for, so the group is asked to stop (SIGTERM), given ``grace_s`` to empty, then killed (SIGKILL).
    """
    group = running.process.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            running.process.poll()  # reap the worker itself, so that only live members keep the group
            if not _group_alive(group):
                return
            time.sleep(0.05)
    running.process.wait()


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` still runs (reaped or zombie members do not count: Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields_after_name = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields_after_name[2]) == group and fields_after_name[0] != "Z":
            return True
    return False


def _collect(running: Running) -> dict[str, Any]:
    """The finished worker's record, or an error record with the end of its stderr."""
    base = {k: v for k, v in running.case.items() if k not in ("cache_dir", "spawned_at")}
    elapsed = round(time.monotonic() - running.started, 1)
    for line in reversed(running.stdout.read_text(errors="replace").splitlines()):
        if line.startswith(RESULT_MARK):
            return {**base, **json.loads(line[len(RESULT_MARK) :]), "wall_s": elapsed}
    tail = " | ".join(running.stderr.read_text(errors="replace").strip().splitlines()[-6:])
    return {**base, "status": "error", "error": f"exit code {running.process.returncode}: {tail[-1500:]}",
            "wall_s": elapsed}  # fmt: skip


def run_check(options: GpuCheckOptions) -> int:
    """Run the plan within the budget; write ``gpu.json``/``gpu.md`` as it goes. Exit code 0 unless nothing ran."""
    from vimpnet_ros.benchmark.measure import machine_record

    t0 = time.monotonic()
    deadline = t0 + options.budget_s
    plan = Plan.from_options(options)
    scratch = Path(tempfile.mkdtemp(prefix="vimpnet-gpu-check-"))
    cache_dir = options.cache_dir or scratch / "engines"
    cases, compiles = build_plan(plan, cache_dir)
    header = {
        "check": "vimpnet-ros benchmark gpu",
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "budget_s": options.budget_s,
        "plan": dataclasses.asdict(plan),
        "machine": machine_record(plan.device),
        "_t0": t0,
    }
    report = Report(options.output, header)
    report.write(complete=False)
    # A polite kill (the caller's timeout) is noted and read between two steps of the loop, never inside one (a
    # worker just started and not yet recorded would outlive the check): the workers are stopped, the files written.
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    env = _worker_env(scratch, options.warm_inductor_cache)
    jobs = options.compile_jobs or (3 if plan.device.startswith("cuda") else 1)
    done_compiles: dict[str, dict[str, Any]] = {}
    running_compiles: list[Running] = []
    current: Running | None = None
    try:
        while (cases or running_compiles or current is not None) and not stopped:
            left = deadline - time.monotonic() - RESERVE_S
            # Compilations: start in priority order while slots and time allow; collect the finished ones.
            while compiles and len(running_compiles) < jobs and left > MIN_COMPILE_S:
                job = compiles.pop(0)
                LOGGER.info("compiling %s (%.0f s left)", job["id"], left)
                running_compiles.append(_start(job, scratch, env, left, nice=10))
            if left <= MIN_COMPILE_S:
                for job in compiles:
                    record = {k: v for k, v in job.items() if k != "cache_dir"}
                    report.add({**record, "status": "skipped", "reason": f"budget: not started ({left:.0f} s left)"})
                    done_compiles[job["id"]] = report.cases[-1]
                compiles.clear()
            for running in list(running_compiles):
                if running.process.poll() is not None or time.monotonic() > running.deadline:
                    timed_out = running.process.poll() is None
                    _stop(running)
                    record = _collect(running)
                    if timed_out:
                        record.update(status="skipped", reason=f"budget: not finished after {record['wall_s']} s")
                    done_compiles[running.case["id"]] = record
                    report.add(record)
                    running_compiles.remove(running)
            # The measuring case: one at a time.
            if current is not None:
                if current.process.poll() is None and time.monotonic() <= current.deadline:
                    time.sleep(0.2)
                    continue
                timed_out = current.process.poll() is None
                _stop(current)
                record = _collect(current)
                if timed_out:
                    record.update(status="error", error=f"timed out after {record['wall_s']} s (budget)")
                report.add(record)
                current = None
                continue
            current = _next_case(cases, compiles, running_compiles, done_compiles, report, plan, left, scratch, env)
            if current is None and cases:
                time.sleep(0.5)  # waiting for a compilation
            # Compilations nothing is waiting for any more are stopped.
            wanted = {case.get("needs") for case in cases} | ({current.case.get("needs")} if current else set())
            compiles[:] = [job for job in compiles if job["id"] in wanted]
            for running in [r for r in running_compiles if r.case["id"] not in wanted]:
                _stop(running)
                running_compiles.remove(running)
                report.add({**_collect(running), "status": "skipped", "reason": "no case left that could use it"})
    finally:
        for running in running_compiles + ([current] if current else []):
            _stop(running)
        report.write(complete=not (stopped or cases or running_compiles or current))
        shutil.rmtree(scratch, ignore_errors=True)  # worker logs, inductor's cache, the default engine cache
    print(markdown({**header, "cases": report.cases, "targets": target_summary(report.cases)}))
    print(f"wrote {options.output / 'gpu.json'} and gpu.md in {time.monotonic() - t0:.0f} s")
    if stopped:
        return 128 + stopped[0]  # the shell's code for a process ended by the signal (143)
    return 0 if any(case.get("status") == "ok" for case in report.cases) else 1


def _next_case(cases: list[dict[str, Any]], compiles: list[dict[str, Any]], running_compiles: list[Running],
               done_compiles: dict[str, dict[str, Any]], report: Report, plan: Plan, left: float, scratch: Path,
               env: dict[str, str]) -> Running | None:  # fmt: skip
    """Start the first case that can run now; record the ones that never will as skipped."""
    compiling = {running.case["id"] for running in running_compiles} | {job["id"] for job in compiles}
    for case in list(cases):
        need = case.get("needs")
        reason = case.get("skip")
        if reason is None and need and need in done_compiles and done_compiles[need].get("status") != "ok":
            compile_record = done_compiles[need]
            why = compile_record.get("reason") or compile_record.get("error") or compile_record.get("failed")
            reason = f"its compilation {compile_record.get('status')}: {why}"
        elif reason is None and need and need not in done_compiles and need not in compiling:
            reason = "budget: its compilation could not start in time"
        elif reason is None and left < plan.estimate(case["kind"]):
            reason = f"budget: {left:.0f} s left, the case needs about {plan.estimate(case['kind']):.0f} s"
        if reason is not None:
            cases.remove(case)
            report.add({**{k: v for k, v in case.items() if k != "cache_dir"}, "status": "skipped", "reason": reason})
            continue
        if need and need not in done_compiles:
            continue  # its programs are still compiling; a later case may run meanwhile
        cases.remove(case)
        LOGGER.info("running %s (%.0f s left)", case["id"], left)
        return _start({**case, "compiled_in_s": (done_compiles.get(need) or {}).get("compile_s")}, scratch, env, left)
    return None


# -- summaries ------------------------------------------------------------------------------------------------------


def target_summary(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPU latency targets against the best measured compiled (or any) figure."""
    rows = []
    ok = [c for c in cases if c.get("status") == "ok"]
    for (model, size), target in TARGET_MS.items():
        measured = [c for c in ok if c["kind"] == "latency" and c["model"] == model and tuple(c["size"]) == size
                    and c["cameras"] == 1]  # fmt: skip
        best = min(measured, key=lambda c: c["p50_ms"], default=None)
        rows.append({"target": f"{model} {size[0]}x{size[1]} <= {target:.0f} ms/frame",
                     "measured": None if best is None else f"{best['p50_ms']:.1f} ms ({best['backend']})",
                     "met": None if best is None else best["p50_ms"] <= target})  # fmt: skip
    multi = [c for c in ok if c["kind"] == "latency" and c["cameras"] > 1]
    best = max(multi, key=lambda c: c["camera_hz"], default=None)
    rows.append({"target": f"{FULL_CAMERAS} cameras 1280x720 vimpnet_lite >= {TARGET_CAMERA_HZ:.0f} Hz each",
                 "measured": None if best is None else f"{best['camera_hz']:.1f} Hz ({best['backend']}, "
                 f"{best['cameras']} cameras {best['size'][0]}x{best['size'][1]})",
                 "met": None if best is None else best["camera_hz"] >= TARGET_CAMERA_HZ})  # fmt: skip
    restart = next((c for c in ok if c["kind"] == "restart"), None)
    rows.append({"target": f"restart with a warm cache to the first frame <= {TARGET_RESTART_S:.0f} s",
                 "measured": None if restart is None else f"{restart['total_s']:.1f} s",
                 "met": None if restart is None else restart["total_s"] <= TARGET_RESTART_S})  # fmt: skip
    return rows


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _sci(value: float | None) -> str:
    return "–" if value is None else f"{value:.1e}"


def markdown(doc: dict[str, Any]) -> str:
    """README-ready tables of a check document (``gpu.json``)."""
    from vimpnet_ros.benchmark.measure import launches

    machine = doc.get("machine", {})
    lines = [f"GPU check on {machine.get('gpu') or machine.get('cpu')} ({machine.get('gpu_memory_gib', '–')} GiB), "
             f"torch {machine.get('torch')}, CUDA {machine.get('cuda')}, {doc.get('started')}", ""]  # fmt: skip
    cases = doc.get("cases", [])
    lines += ["| model | size | cameras | backend | precision | p50 ms | p95 ms | Hz per camera | launches/push "
              "| GPU kernels/push | peak GPU MiB | load s | max abs vs eager |",
              "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for c in cases:
        if c.get("kind") != "latency":
            continue
        size = "x".join(map(str, c.get("size", [])))
        if c.get("working_scale") == "weights" and c.get("working_sizes"):
            size = c["working_sizes"]  # the node's default: restored at the weights' scale, e.g. 1280x720 at 269x151
        passes = f" (stage 1 x{c['stage1_passes']})" if c.get("stage1_passes", 1) > 1 else ""
        head = f"| {c['model']}{passes} | {size} | {c['cameras']} | {c['backend']} | {c['precision']} |"
        if c.get("status") != "ok":
            lines.append(f"{head} {c.get('status')}: {str(c.get('reason') or c.get('error'))[:120]} ||||||||")
            continue
        kernels = (c.get("launches_per_push") or {}).get("gpu_kernels")
        lines.append(f"{head} {c['p50_ms']:.1f} | {c['p95_ms']:.1f} | {c['camera_hz']:.1f} | "
                     f"{_fmt(launches(c))} | {_fmt(kernels)} | {_fmt(c.get('peak_allocated_mib'), 0)} | "
                     f"{_fmt(c.get('load_s'))} | {_sci(c.get('vs_eager', {}).get('max_abs'))} |")  # fmt: skip
    lines += ["", "| compiled profile | status | cold compile s | programs |", "| --- | --- | ---: | ---: |"]
    for c in cases:
        if c.get("kind") == "compile":
            lines.append(f"| {c['id'].removeprefix('compile-')} | {c.get('status')} | {_fmt(c.get('compile_s'))} | "
                         f"{_fmt(c.get('programs'))} |")  # fmt: skip
    lines += ["", "| other | status | figures |", "| --- | --- | --- |"]
    for c in cases:
        if c.get("kind") in ("fidelity", "fidelity_compiled", "restart"):
            figures = {k: v for k, v in c.items() if k in ("total_s", "first_push_s", "engine_load_s", "errors",
                                                           "within_fp32_tolerance", "vs_eager")}  # fmt: skip
            text = json.dumps(figures, default=str) if c.get("status") == "ok" else (c.get("reason") or c.get("error"))
            lines.append(f"| {c['id']} | {c.get('status')} | {str(text)[:600]} |")
    lines += ["", "| target | measured | met |", "| --- | --- | --- |"]
    for row in doc.get("targets", []):
        lines.append(f"| {row['target']} | {_fmt(row['measured'])} | {_fmt(row['met'])} |")
    return "\n".join(lines) + "\n"


# -- workers (each in a fresh process) ------------------------------------------------------------------------------


def _engine(case: dict[str, Any], backend: str | None = None) -> Any:
    """The engine of a case, loaded with its model (random weights from seed 0, or the golden ones).

    On a CPU (``--quick`` smoke runs) one thread: the compilations run beside it, and OpenMP
    barriers stall when a thread of a busy machine is descheduled.
    """
    import torch

    from vimpnet_ros.engine import EngineConfig, InferenceEngine
    from vimpnet_ros.model import VimpNet, get_config

    if case.get("weights") == "golden" or case["kind"] == "fidelity_compiled":
        model = fidelity.golden_model()
    else:
        torch.manual_seed(0)
        model = VimpNet(get_config(case["model"])).eval()
    # The network at the size named (working_scale native) unless the case runs the node's default scale.
    config = EngineConfig(model=case["model"], backend=backend or case["backend"], precision=case["precision"],
                          device=case["device"], window_size=case["window"], tile_size=0,
                          tile_batch=max(4, case["cameras"]), engine_cache_dir=case["cache_dir"],
                          cpu_threads=1 if case["device"] == "cpu" else 0,
                          working_scale=case.get("working_scale", "native"))  # fmt: skip
    return InferenceEngine(config).load(model)


def _compile_worker(case: dict[str, Any]) -> dict[str, Any]:
    engine = _engine({**case, "backend": "compiled"})
    width, height = case["size"]
    start = time.perf_counter()
    engine.prepare(width, height, streams=case["cameras"])
    status = engine.backend.status()
    return {"status": "ok" if not status["failed"] else "failed", "compile_s": time.perf_counter() - start,
            "programs": len(status["ready"]), "failed": status["failed"]}  # fmt: skip


def _run_outputs(engine: Any, frames: list[list[Any]], count: int) -> list[Any]:
    """Float network outputs of the last push of ``count`` batched pushes on fresh streams (one per camera)."""
    from vimpnet_ros.benchmark.measure import admit_all

    streams = [engine.open_stream(f"parity{i}") for i in range(len(frames))]
    outputs = []
    for k in range(count):
        outputs = engine.run_network(admit_all(engine, streams, [camera[k] for camera in frames], k))
    return [o.float() for o in outputs]


def _latency_worker(case: dict[str, Any]) -> dict[str, Any]:
    from vimpnet_ros.benchmark.measure import StreamBench, device_memory

    width, height, cameras = case["size"][0], case["size"][1], case["cameras"]
    start = time.perf_counter()
    engine = _engine(case)
    bench = StreamBench(engine, width, height, cameras, case["frames"] + 4)
    load_s = time.perf_counter() - start
    bench.time(2)  # warm-up (allocator, cuDNN plans)
    counts = getattr(engine.backend, "counts", None)
    eager_before = counts.eager if counts is not None else 0
    record: dict[str, Any] = {"status": "ok", **bench.record(case["frames"]), "load_s": load_s}
    record.update(device_memory(engine.device))
    record["engine"] = engine.backend.describe()
    record["stage1_passes"] = engine.stage1_passes_for(width, height)
    record["working_sizes"] = engine.working_sizes()
    if case["backend"] == "compiled":
        status = engine.backend.status()
        record["eager_calls_while_timed"] = counts.eager - eager_before
        record["graphed_programs"] = status["graphed"]
        if status["failed"] or record["eager_calls_while_timed"]:
            record["status"] = "failed"
            record["error"] = f"not all calls were compiled: {status['failed'] or record['eager_calls_while_timed']}"
        record.update(_parity(case, engine, bench.frames))
        if not record["parity_ok"]:
            record["status"] = "failed"
            record["error"] = "compiled output differs from eager by more than the precision allows"
    engine.close()
    return record


def _difference(ours: list[Any], theirs: list[Any]) -> dict[str, float]:
    diffs = [(a - b).abs() for a, b in zip(ours, theirs, strict=True)]
    return {"max_abs": max(float(d.max()) for d in diffs), "mean_abs": sum(float(d.mean()) for d in diffs) / len(diffs)}


def _parity(case: dict[str, Any], engine: Any, frames: list[list[Any]]) -> dict[str, Any]:
    """Compiled vs eager on the same frames: at the same precision, and both against eager fp32.

    fp32: within :data:`FP32_TOLERANCE`. fp16/bf16: the compiled error against fp32 at most
    twice eager's own (rounding differs between fused and unfused kernels, not its size).
    """
    count = case["window"] + 2
    ours = _run_outputs(engine, frames, count)
    eager = _run_outputs(_engine(case, backend="torch"), frames, count)
    result: dict[str, Any] = {"vs_eager": _difference(ours, eager)}
    if case["precision"] == "fp32":
        result["parity_ok"] = result["vs_eager"]["max_abs"] < FP32_TOLERANCE
        return result
    reference = _run_outputs(_engine({**case, "precision": "fp32"}, backend="torch"), frames, count)
    result["vs_eager_fp32"] = _difference(ours, reference)
    result["eager_vs_eager_fp32"] = _difference(eager, reference)
    result["parity_ok"] = result["vs_eager_fp32"]["max_abs"] <= 2 * result["eager_vs_eager_fp32"]["max_abs"] + 1e-4
    return result


def _restart_worker(case: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    import torch  # noqa: F401 - timed: importing torch is part of a restart

    imported = time.time()
    from vimpnet_ros.benchmark.measure import synchronize, synthetic_frames

    engine = _engine(case)
    loaded = time.time()
    width, height = case["size"]
    result = engine.push(engine.open_stream("cam"), synthetic_frames(1, width, height)[0], 0)
    synchronize(engine.device)
    first = time.time()
    status = engine.backend.status()
    ok = result is not None and result.valid and status["eager_calls"] == 0 and not status["failed"]
    return {"status": "ok" if ok else "failed", "total_s": first - case["spawned_at"],
            "interpreter_s": started - case["spawned_at"], "import_torch_s": imported - started,
            "engine_load_s": loaded - imported, "first_push_s": first - loaded, "compiled": status["eager_calls"] == 0,
            "graphed_programs": status["graphed"]}  # fmt: skip


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _fidelity_worker(case: dict[str, Any]) -> dict[str, Any]:
    import torch

    from vimpnet_ros.engine import autocast_dtype

    reason = fidelity.missing()
    if reason:
        return {"status": "skipped", "reason": reason}
    device = torch.device(case["device"])
    model = fidelity.golden_model().to(device)
    lqs = fidelity.golden_input().to(device)
    reference = fidelity.reference()
    errors: dict[str, dict[str, dict[str, float]]] = {}
    outputs = {}
    for precision in case["precisions"]:
        dtype = autocast_dtype(precision)
        with _no_tf32(), torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(lqs)
        outputs[precision] = {name: getattr(out, name).float().cpu().numpy() for name in fidelity.ARRAYS}
        errors[precision] = {name: fidelity.errors(outputs[precision][name], reference[name])
                             for name in fidelity.ARRAYS}  # fmt: skip
    record: dict[str, Any] = {"status": "ok", "errors": errors,
                              "within_fp32_tolerance": fidelity.within_tolerance(errors["fp32"])}  # fmt: skip
    record["reduced_vs_fp32_full_resolution"] = {
        precision: {
            name: float(abs(outputs[precision][name] - outputs["fp32"][name]).max()) for name in fidelity.ARRAYS
        }
        for precision in outputs
        if precision != "fp32"
    }
    if not record["within_fp32_tolerance"]:
        record["status"] = "failed"
    return record


def _fidelity_compiled_worker(case: dict[str, Any]) -> dict[str, Any]:
    import torch

    from vimpnet_ros.engine import TorchBackend

    reason = fidelity.missing()
    if reason:
        return {"status": "skipped", "reason": reason}
    engine = _engine(case)
    engine.prepare(256, 256)
    lqs = fidelity.golden_input().to(engine.device)
    reference = fidelity.reference()
    index = engine.config.output_index
    eager = TorchBackend(engine.backend.steps, engine.device, case["precision"])

    def restore(backend: Any) -> Any:
        """The window step's (1, 5, h, w) output for the golden clip, as a stream computes it."""
        feats, small = zip(*(backend.frame(lqs[:, i]) for i in range(lqs.shape[1])), strict=True)
        flows = [backend.flow(small[i], small[i + 1]) for i in range(lqs.shape[1] - 1)]
        to_next = torch.stack([f for f, _ in flows], dim=1)  # flow i -> i+1: the window's flows_backward
        to_previous = torch.stack([b for _, b in flows], dim=1)  # flow i+1 -> i: its flows_forward
        return backend.window(lqs, torch.stack(feats, dim=1), to_next, to_previous).float().cpu().numpy()

    ours, theirs = restore(engine.backend), restore(eager)
    parts = {"output": slice(0, 3), "drop_mask": slice(3, 4), "streak_map": slice(4, 5)}
    errors = {name: fidelity.errors(ours[:, part], reference[name][:, index]) for name, part in parts.items()}
    eager_errors = {name: fidelity.errors(theirs[:, part], reference[name][:, index]) for name, part in parts.items()}
    status = engine.backend.status()
    difference = abs(ours - theirs)
    return {
        "status": "ok" if status["eager_calls"] == 0 else "failed",
        "frame_index": index,
        "errors": errors,
        "eager_errors": eager_errors,
        "vs_eager": {"max_abs": float(difference.max()), "mean_abs": float(difference.mean())},
    }


WORKERS = {
    "compile": _compile_worker,
    "latency": _latency_worker,
    "restart": _restart_worker,
    "fidelity": _fidelity_worker,
    "fidelity_compiled": _fidelity_compiled_worker,
}


def run_worker(case: dict[str, Any]) -> None:
    """Measure one case in this process and print its record on one marked line."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        record = WORKERS[case["kind"]](case)
    except Exception as error:  # reported in the JSON, with its type, instead of a trace only
        LOGGER.exception("case %s failed", case["id"])
        record = {"status": "error", "error": f"{type(error).__name__}: {str(error)[:1500]}"}
    print(RESULT_MARK + json.dumps(record, default=str), flush=True)


def run(options: GpuCheckOptions) -> int:
    """Entry of ``vimpnet-ros benchmark gpu`` (and of this module's workers)."""
    if options.worker:
        run_worker(json.loads(options.worker))
        return 0
    if options.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("benchmark gpu: PyTorch sees no CUDA GPU here; use --device cpu --quick for a smoke run",
                  file=sys.stderr)  # fmt: skip
            return 2
    return run_check(options)


def main(argv: list[str] | None = None) -> int:
    """``python -m vimpnet_ros.benchmark.gpu --output DIR`` (no ROS or command-line package needed)."""
    parser = argparse.ArgumentParser(prog="python -m vimpnet_ros.benchmark.gpu", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.worker:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return run(GpuCheckOptions.from_args(args))


if __name__ == "__main__":
    sys.exit(main())
