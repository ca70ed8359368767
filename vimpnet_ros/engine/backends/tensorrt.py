"""Torch-TensorRT backend: each step compiled once per static shape profile, cached on disk.

Programs are compiled with ``torch_tensorrt.compile(ir="dynamo")`` from the very
step modules the torch backend runs (:mod:`vimpnet_ros.engine.steps`) and the
example inputs of :meth:`TensorRTBackend.compile_plan`; precision comes from
Torch-TensorRT 2.13's rule-based autocast (fp16/bf16) or the fp32 dtypes. The
compiled program is saved with ``torch_tensorrt.save`` in the engine cache
(:mod:`vimpnet_ros.engine.backends.cache`), keyed by model weights, step, shapes,
precision, Torch-TensorRT/TensorRT/torch versions and GPU name, and loaded with
``torch_tensorrt.load`` on the next start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vimpnet_ros.engine.backends.base import Backend
from vimpnet_ros.engine.backends.cache import EngineCache, ProfileMaterial
from vimpnet_ros.engine.backends.registry import REGISTRY
from vimpnet_ros.engine.backends.static import ProfileKey, profile_key
from vimpnet_ros.engine.hardware import Environment, compute_dtype, device_identity, installed_version
from vimpnet_ros.engine.steps import StepModules

if TYPE_CHECKING:
    from vimpnet_ros.engine.config import EngineConfig

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompileUnit:
    """One program to compile: a step module and the example inputs fixing its static shapes."""

    step: str
    module: nn.Module
    inputs: tuple[Tensor, ...]

    @property
    def shapes(self) -> list[list[int]]:
        """Input shapes, part of the cache key."""
        return [list(x.shape) for x in self.inputs]


def runtime_versions() -> dict[str, str | None]:
    """Versions that make a compiled TensorRT program incompatible when they change."""
    return {
        "torch": torch.__version__,
        "torch_tensorrt": installed_version("torch-tensorrt") or installed_version("torch_tensorrt"),
        "tensorrt": (
            installed_version("tensorrt") or installed_version("tensorrt-cu12") or installed_version("tensorrt_cu12")
        ),
    }


class TensorRTBackend(Backend):
    """Runs each step through a Torch-TensorRT program built (or loaded) for its input shapes."""

    name = "tensorrt"

    def __init__(self, steps: StepModules, device: torch.device, precision: str, cache_dir: str | Path,
                 environment: Environment | None = None) -> None:  # fmt: skip
        super().__init__(steps, device, precision)
        self.cache = EngineCache(cache_dir)
        self.environment = environment
        self._programs: dict[ProfileKey, Any] = {}
        self._material = ProfileMaterial(steps)

    # -- what gets compiled (tested without TensorRT) ------------------------------------------------

    def compile_plan(self, batch: int, window: int, height: int, width: int) -> list[CompileUnit]:
        """The step modules and example inputs compiled for one (batch, T, height, width) profile."""
        examples = self.example_inputs(batch, window, height, width)
        return [
            CompileUnit("frame", self.steps.frame, examples["frame"]),
            CompileUnit("flow", self.steps.flow, examples["flow"]),
            CompileUnit("window", self.steps.window, examples["window"]),
        ]

    def key_material(self, unit: CompileUnit) -> dict[str, Any]:
        """Everything that invalidates a compiled program: weights, step, shapes, precision, versions, GPU."""
        gpu = self.environment.gpu_name if self.environment else None
        if gpu is None and self.device.type == "cuda":
            gpu = device_identity(self.device)
        key = profile_key(self.steps, unit.step, tuple(tuple(shape) for shape in unit.shapes))
        return self._material(*key, precision=self.precision, gpu=gpu, **runtime_versions())

    def compile_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``torch_tensorrt.compile`` (2.13: precision from autocast, not enabled_precisions)."""
        settings: dict[str, Any] = {"ir": "dynamo", "use_explicit_typing": True, "min_block_size": 1}
        if self.precision in ("fp16", "bf16"):
            settings.update(enable_autocast=True, low_precision_type=compute_dtype(self.precision))
        return settings

    # -- building and running (needs CUDA and torch_tensorrt) ---------------------------------------

    def _trt(self) -> Any:
        return REGISTRY[self.name].import_module()

    def _program(self, unit: CompileUnit) -> Any:
        key = profile_key(self.steps, unit.step, tuple(tuple(s) for s in unit.shapes))
        if key in self._programs:
            return self._programs[key]
        trt = self._trt()
        material = self.key_material(unit)
        name = f"{material['model']}-{unit.step}-{'x'.join(map(str, unit.shapes[0]))}-{self.precision}"

        def build() -> Any:
            LOGGER.warning("compiling the TensorRT program %s once (this can take minutes; it is cached in %s)",
                           name, self.cache.directory)  # fmt: skip
            start = time.perf_counter()
            with torch.no_grad():
                program = trt.compile(unit.module, arg_inputs=list(unit.inputs), **self.compile_settings())
            LOGGER.info("compiled %s in %.0f s", name, time.perf_counter() - start)
            return program

        def save(program: Any, path: Path) -> None:
            trt.save(program, str(path), arg_inputs=list(unit.inputs))

        def load(path: Path) -> Any:
            loaded = trt.load(str(path))
            return loaded.module() if hasattr(loaded, "module") else loaded

        report = self.cache.load_or_build(name, material, build, save, load)
        LOGGER.info("TensorRT program %s: %s (%s)", name, report.status, report.entry.program)
        self._programs[key] = report.program
        return report.program

    def prepare(self, batch: int, window: int, height: int, width: int) -> None:
        """Compile or load the three programs of one profile."""
        for unit in self.compile_plan(batch, window, height, width):
            self._program(unit)

    def _run(self, step: str, module: nn.Module, *inputs: Tensor) -> Any:
        unit = CompileUnit(step, module, tuple(inputs))
        with torch.inference_mode():
            return self._program(unit)(*inputs)

    def frame(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Compiled frame step."""
        feats, small = self._run("frame", self.steps.frame, frames.float())
        return feats, small.float()

    def flow(self, small_a: Tensor, small_b: Tensor) -> tuple[Tensor, Tensor]:
        """Compiled flow step (float32 flows)."""
        first, second = self._run("flow", self.steps.flow, small_a.float(), small_b.float())
        return first.float(), second.float()

    def window(self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor) -> Tensor:
        """Compiled window step."""
        out = self._run("window", self.steps.window, lqs.float(), feats.float(), flows_backward, flows_forward)
        return out.float()


def create(steps: StepModules, device: torch.device, precision: str, config: EngineConfig,
           environment: Environment) -> Backend:  # fmt: skip
    """The registry's factory: a TensorRT backend for the engine's config."""
    return TensorRTBackend(steps, device, precision, config.cache_dir, environment)
