"""Compiled backend: each step ahead-of-time compiled by AOTInductor per static shape profile, cached on disk.

The eager engine launches thousands of small kernels per frame and the GPU mostly waits
for them (~6,000 launches per ``vimpnet`` frame). This backend exports each
step module of :mod:`vimpnet_ros.engine.steps` for one static shape profile with
``torch.export`` (one whole graph: no graph breaks), compiles it with AOTInductor
(``torch._inductor.aoti_compile_and_package``: Triton kernels on CUDA, C++ on CPU) into
a ``.pt2`` package, and keeps the package in the engine cache
(:mod:`~vimpnet_ros.engine.backends.cache`) keyed like the TensorRT cache: model weights,
step, input shapes and dtypes, precision, torch version, and the GPU's name (or the CPU
model). A restart loads packages in seconds (``aoti_load_package``); a stale entry (key
material differs) is rebuilt, and so is a corrupt one (it fails to load).

Precision: the step runs under ``torch.autocast`` inside the exported module
(:class:`PreciseStep`), so fp16/bf16 follow the same per-op rules as the eager backend,
and its inputs and outputs have fixed dtypes (features in the compute dtype, the 0.25x
frames, flows and the window output in float32), as the eager backend hands them over.

On CUDA each loaded program is captured once as a CUDA graph (:class:`GraphedProgram`)
with static input buffers: a step call copies its inputs in, replays the graph (one
launch) and clones the outputs (features and flows are cached across frames, and the
next replay overwrites the static outputs). All graphs of a backend share one memory
pool; they run one at a time on the same stream, so they may reuse each other's
intermediate memory.

No frame waits for a compilation: a profile missing from the cache is compiled in a child
process (:mod:`~vimpnet_ros.engine.backends.background`) while eager PyTorch serves its
frames (:meth:`CompiledBackend.building` lists them); :meth:`CompiledBackend.prepare`
waits, compiling the missing programs in parallel children. A compilation that fails is
logged once and its profile stays on eager PyTorch; the engine keeps serving.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vimpnet_ros.engine.backends.base import Backend, TorchBackend
from vimpnet_ros.engine.backends.cache import EngineCache, ProfileMaterial
from vimpnet_ros.engine.backends.static import ChildBuiltBackend, ProfileKey, profile_key
from vimpnet_ros.engine.hardware import autocast_dtype, compute_dtype, device_identity
from vimpnet_ros.engine.steps import StepModules

if TYPE_CHECKING:
    from vimpnet_ros.engine.config import EngineConfig

LOGGER = logging.getLogger(__name__)
#: File suffix of cached AOTInductor packages.
AOTI_SUFFIX = ".pt2"
#: Version of how programs are made here (wrapper module, dtypes); part of the key so a change rebuilds them.
PROGRAM_FORMAT = "aoti-1"
#: Inductor settings of every compilation (part of the key). Defaults otherwise: no max-autotune (its
#: benchmarking multiplies compile times), no freezing (the same graph runs with the weights as inputs).
INDUCTOR_CONFIGS: dict[str, Any] = {}
#: Untimed calls of a program before its CUDA graph is captured (lazy kernel loading, allocator warm-up).
WARMUP_CALLS = 2
#: The three steps, in the order a profile is built.
STEPS = ("frame", "flow", "window")


def build_parallelism(cpu_count: int | None = None) -> int:
    """How many programs compile at once in child processes: one per 4 cores (at least one).

    Each compilation is single-threaded Python for most of its time plus a pool of kernel
    compile workers; one per 4 cores keeps cores free for the frames eager PyTorch serves meanwhile.
    """
    return max(1, (cpu_count or os.cpu_count() or 1) // 4)


def step_dtypes(step: str, precision: str) -> tuple[tuple[torch.dtype, ...], tuple[torch.dtype, ...]]:
    """(input dtypes, output dtypes) of a compiled step: features in the compute dtype, everything else float32."""
    f32, compute = torch.float32, compute_dtype(precision)
    return {
        "frame": ((f32,), (compute, f32)),
        "flow": ((f32, f32), (f32, f32)),
        "window": ((f32, compute, f32, f32), (f32,)),
    }[step]


class PreciseStep(nn.Module):
    """A step module under the backend's autocast, with fixed output dtypes: what is exported and compiled.

    Inputs and outputs are those of the wrapped step (see :mod:`vimpnet_ros.engine.steps`).
    """

    def __init__(self, step: nn.Module, precision: str, device_type: str, out_dtypes: Sequence[torch.dtype]) -> None:
        super().__init__()
        self.step = step
        self.device_type = device_type
        self.autocast = autocast_dtype(precision)
        self.out_dtypes = tuple(out_dtypes)

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        """The step's outputs, cast to ``out_dtypes``."""
        if self.autocast is None:
            outputs = self.step(*inputs)
        else:
            with torch.autocast(self.device_type, dtype=self.autocast):
                outputs = self.step(*inputs)
        if isinstance(outputs, Tensor):
            return outputs.to(self.out_dtypes[0])
        return tuple(out.to(dtype) for out, dtype in zip(outputs, self.out_dtypes, strict=True))


def precise_step(steps: StepModules, step: str, precision: str, device: torch.device) -> PreciseStep:
    """The module compiled for ``step`` at ``precision`` on ``device``."""
    return PreciseStep(getattr(steps, step), precision, device.type, step_dtypes(step, precision)[1]).eval()


def compile_package(module: nn.Module, inputs: tuple[Tensor, ...], path: Path) -> Path:
    """Export ``module`` for these exact inputs as one graph and compile it into an AOTInductor package at ``path``.

    ``torch.export`` traces the whole forward or fails (there are no graph breaks to fall back on).
    """
    import torch._inductor  # not imported by ``import torch`` in every version

    with torch.no_grad():
        program = torch.export.export(module, inputs, strict=False)
    compiled = torch._inductor.aoti_compile_and_package(
        program, package_path=str(path), inductor_configs=dict(INDUCTOR_CONFIGS)
    )
    return Path(compiled)


def aoti_package(cache: EngineCache, name: str, material: Mapping[str, Any], module: nn.Module,
                 inputs: tuple[Tensor, ...]) -> tuple[Path, bool]:  # fmt: skip
    """The package of one profile: ``(path, temporary)``; from ``cache`` when fresh, else compiled and stored there.

    ``temporary`` is True when the cache could not be written: the package then lies in a
    temporary file the caller deletes once it has loaded it.
    """

    def build() -> Path:
        LOGGER.info("compiling %s with AOTInductor (once per shape profile)", name)
        start = time.perf_counter()
        handle, scratch = tempfile.mkstemp(prefix="vimpnet-aoti-", suffix=AOTI_SUFFIX)
        os.close(handle)
        try:
            package = compile_package(module, inputs, Path(scratch))
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise
        LOGGER.info("compiled %s in %.1f s", name, time.perf_counter() - start)
        return package

    report = cache.load_or_build(name, material, build, lambda package, target: shutil.copyfile(package, target),
                                 lambda path: path)  # fmt: skip
    if report.status == "hit":
        return report.program, False
    if cache.is_fresh(name, material):
        report.program.unlink(missing_ok=True)
        return report.entry.program, False
    return report.program, True


def build_in_child(steps: StepModules, job: Mapping[str, Any]) -> None:
    """The background child's work (the registry's ``child_builder``): compile one step into the cache or fail."""
    device = torch.device(job["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    steps.to(device)
    module = precise_step(steps, job["step"], job["precision"], device)
    dtypes = step_dtypes(job["step"], job["precision"])[0]
    inputs = tuple(torch.rand(*shape, device=device).to(dtype) for shape, dtype in zip(job["shapes"], dtypes,
                                                                                        strict=True))  # fmt: skip
    path, temporary = aoti_package(EngineCache(job["cache_dir"], AOTI_SUFFIX), job["name"], job["material"],
                                   module, inputs)  # fmt: skip
    if temporary:
        path.unlink(missing_ok=True)
        raise SystemExit(f"cannot write the engine cache in {job['cache_dir']}; the compiled program is lost")


def load_package(path: Path, device: torch.device) -> Callable[..., Any]:
    """Open an AOTInductor package for ``device`` (raises when the file is not a loadable package).

    ``run_single_threaded``: the runner skips its per-call CUDA event bookkeeping (an event
    query in the middle of a graph capture is an error); the engine calls each program from
    one thread at a time (under its lock) anyway.
    """
    import torch._inductor

    index = (device.index or 0) if device.type == "cuda" else -1
    return torch._inductor.aoti_load_package(str(path), run_single_threaded=True, device_index=index)


def _as_tuple(outputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)


class EagerCallProgram:
    """A loaded program called directly: inputs cast to its dtypes and made contiguous (AOTInductor assumes both)."""

    graphed = False

    def __init__(self, runner: Callable[..., Any], dtypes: Sequence[torch.dtype]) -> None:
        self.runner = runner
        self.dtypes = tuple(dtypes)

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """Outputs of one call (fresh tensors)."""
        args = [x.to(dtype).contiguous() for x, dtype in zip(inputs, self.dtypes, strict=True)]
        return _as_tuple(self.runner(*args))


class GraphedProgram:
    """A loaded program replayed as a CUDA graph: static input buffers, outputs cloned after each replay.

    Capture follows PyTorch's recipe: a few warm-up calls on a side stream (kernels are loaded
    lazily on the first call), then one call captured in ``torch.cuda.graph``. The capture is
    thread-local, so other threads (frame uploads) may use CUDA meanwhile.
    """

    graphed = True

    def __init__(self, runner: Callable[..., Any], shapes: Sequence[Sequence[int]], dtypes: Sequence[torch.dtype],
                 device: torch.device, pool: Any) -> None:  # fmt: skip
        self.inputs = [torch.zeros(tuple(s), dtype=d, device=device) for s, d in zip(shapes, dtypes, strict=True)]
        current = torch.cuda.current_stream(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                runner(*self.inputs)
        current.wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(device), torch.cuda.graph(self.graph, pool=pool, capture_error_mode="thread_local"):
            self.outputs = _as_tuple(runner(*self.inputs))

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """Copy inputs in (casting to the static dtypes), replay, return clones of the outputs."""
        for static, x in zip(self.inputs, inputs, strict=True):
            static.copy_(x, non_blocking=True)
        self.graph.replay()
        return tuple(out.clone() for out in self.outputs)


@dataclass
class BackendCounts:
    """How many step calls each path served (diagnostics; a benchmark checks no eager call hides in its timing)."""

    compiled: int = 0
    eager: int = 0


class CompiledBackend(ChildBuiltBackend):
    """Runs each step through an AOTInductor program built (or loaded) for its input shapes; see the module docs."""

    name = "compiled"
    build_word = "compilation"
    program_word = "compiled program"
    cache: EngineCache

    def __init__(self, steps: StepModules, device: torch.device, precision: str, cache_dir: str | Path,
                 background_build: bool = True, cuda_graphs: bool = True) -> None:  # fmt: skip
        fallback = TorchBackend(steps, device, precision, channels_last=True)
        cache = EngineCache(Path(cache_dir) / "aoti", AOTI_SUFFIX)
        super().__init__(steps, device, precision, cache, background_build, build_parallelism(), fallback)
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self.counts = BackendCounts()
        self._key = ProfileMaterial(steps)
        self._device_name: str | None = None
        self._programs: dict[ProfileKey, EagerCallProgram | GraphedProgram] = {}
        self._pool: Any = None

    # -- keys -----------------------------------------------------------------------------------------

    def key_material(self, key: ProfileKey) -> dict[str, Any]:
        """Everything that invalidates a compiled program: weights, step, shapes, dtypes, precision, torch, device."""
        if self._device_name is None:
            self._device_name = device_identity(self.device)
        step, shapes, passes = key
        inputs, outputs = step_dtypes(step, self.precision)
        return self._key(
            step,
            shapes,
            passes,
            precision=self.precision,
            input_dtypes=[str(d) for d in inputs],
            output_dtypes=[str(d) for d in outputs],
            device=self.device.type,
            device_name=self._device_name,
            torch=torch.__version__,
            format=PROGRAM_FORMAT,
            inductor_configs=INDUCTOR_CONFIGS,
        )

    def program_name(self, key: ProfileKey) -> str:
        """Readable file-name prefix of a profile's cache entry (``vimpnet_lite-window-1x5x3x384x640-fp16``)."""
        step, shapes, _ = key
        return f"{self.steps.model.config.name}-{step}-{'x'.join(map(str, shapes[0]))}-{self.precision}"

    # -- building and loading -------------------------------------------------------------------------

    def _open(self, key: ProfileKey, path: Path) -> EagerCallProgram | GraphedProgram:
        """Load a package and, on CUDA, capture its graph (a capture that fails leaves plain calls, logged)."""
        step, shapes, _ = key
        dtypes = step_dtypes(step, self.precision)[0]
        runner = load_package(path, self.device)
        program: EagerCallProgram | GraphedProgram = EagerCallProgram(runner, dtypes)
        if self.cuda_graphs:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            try:
                program = GraphedProgram(runner, shapes, dtypes, self.device, self._pool)
            except Exception as error:  # a driver or op that cannot be captured: still compiled, not graphed
                torch.cuda.synchronize(self.device)
                LOGGER.warning("cannot capture %s as a CUDA graph (%s); calling it without one",
                               self.program_name(key), error)  # fmt: skip
        self._programs[key] = program
        return program

    def _open_cached(self, key: ProfileKey) -> EagerCallProgram | GraphedProgram | None:
        """The program from a fresh cache entry; None when there is none or it is corrupt (then discarded)."""
        name, material = self.program_name(key), self.key_material(key)
        if not self.cache.is_fresh(name, material):
            return None
        path = self.cache.entry(name, material).program
        try:
            return self._open(key, path)
        except Exception as error:
            self.cache.report_repair(path, f"corrupt ({error})")
            self.cache.discard(name, material)
            return None

    def child_job(self, key: ProfileKey) -> tuple[Mapping[str, Any], Mapping[str, str] | None]:
        """The child compiles for this device and precision, with a share of the cores (unless the user set it)."""
        threads = max(1, (os.cpu_count() or 1) // max(1, self.parallel_builds))
        compile_threads = os.environ.get("TORCHINDUCTOR_COMPILE_THREADS", str(threads))
        return {"device": str(self.device), "precision": self.precision}, {
            "TORCHINDUCTOR_COMPILE_THREADS": compile_threads
        }

    def _build_here(self, key: ProfileKey) -> None:
        """Compile ``key`` in this process (``background_build`` off): the caller waits; a failure is logged once."""
        step, shapes, _ = key
        dtypes = step_dtypes(step, self.precision)[0]
        inputs = tuple(torch.rand(*s, device=self.device).to(d) for s, d in zip(shapes, dtypes, strict=True))
        module = precise_step(self.steps, step, self.precision, self.device)
        try:
            path, temporary = aoti_package(self.cache, self.program_name(key), self.key_material(key), module, inputs)
        except Exception as error:
            last = (str(error).strip().splitlines() or [""])[-1][:300]
            self._fail(key, f"compilation failed: {type(error).__name__}: {last}")
            return
        try:
            self._open(key, path)
        except Exception as error:
            self._fail(key, f"the new package does not load: {error}")
        finally:
            if temporary:
                path.unlink(missing_ok=True)

    def _program(self, key: ProfileKey, block: bool) -> EagerCallProgram | GraphedProgram | None:
        """The program of ``key``, or None while it is built in the background (or after its build failed)."""
        program = self._programs.get(key)
        if program is not None or key in self._failed:
            return program
        if key in self._builds:
            if not self._finish_build(key, block):
                return None
            program = self._open_cached(key)
            if program is None:
                self._fail(key, "the new package does not load")
            return program
        program = self._open_cached(key)
        if program is not None:
            return program
        if not self.background_build:
            self._build_here(key)
            return self._programs.get(key)
        if self._builds_full() and not block:
            return None  # started by a later call, when a child is free
        self._start_build(key)
        return self._program(key, block) if block else None

    def prepare(self, batch: int, window: int, height: int, width: int) -> None:
        """Compile (or load) and capture the three programs of one profile, waiting for them."""
        self.prepare_profiles([(batch, window, height, width)])

    def prepare_profiles(self, profiles: Sequence[tuple[int, int, int, int]]) -> None:
        """Load every program of ``profiles``; the missing ones are compiled in parallel children first.

        A program that cannot be built is logged and left to eager PyTorch, as at run time.
        """
        keys = list(dict.fromkeys(profile_key(self.steps, step, shapes) for profile in profiles
                                  for step, shapes in self.profile_shapes(*profile).items()))  # fmt: skip
        todo = [key for key in keys if key not in self._programs and key not in self._failed]
        if self.background_build:
            todo = [key for key in todo if self._open_cached(key) is None]
            while todo or self._builds:
                while todo and not self._builds_full():
                    key = todo.pop(0)
                    if key not in self._builds:
                        self._start_build(key)
                finished = [key for key in list(self._builds) if self._finish_build(key, block=False) is not None]
                if not finished:
                    time.sleep(0.2)
        for key in keys:
            self._program(key, block=True)

    def status(self) -> dict[str, Any]:
        """Programs ready (and CUDA-graphed), being built, failed; calls served compiled and eagerly."""
        return {
            "ready": sorted(self.program_name(key) for key in self._programs),
            "graphed": sum(program.graphed for program in self._programs.values()),
            "building": self.building(),
            "failed": {self.program_name(key): reason for key, reason in self._failed.items()},
            "compiled_calls": self.counts.compiled,
            "eager_calls": self.counts.eager,
        }

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        graphs = ", CUDA graphs" if self.cuda_graphs else ""
        return f"{self.name} (AOTInductor{graphs}) {self.precision} on {self.device}"

    # -- running ---------------------------------------------------------------------------------------

    def _run(self, step: str, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        """Outputs of ``step`` through its program, or None when eager PyTorch must serve this call."""
        key = profile_key(self.steps, step, tuple(tuple(x.shape) for x in inputs))
        program = self._program(key, block=False)
        if program is None:
            self.counts.eager += 1
            return None
        self.counts.compiled += 1
        with torch.inference_mode():
            return program(*inputs)


def create(steps: StepModules, device: torch.device, precision: str, config: EngineConfig, _env: object) -> Backend:
    """The registry's factory: a compiled backend for the engine's config."""
    return CompiledBackend(steps, device, precision, config.cache_dir, config.background_build, config.cuda_graphs)
