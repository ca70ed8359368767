"""ONNX Runtime backend: the step modules exported to ONNX (static shapes) and run on the CPU provider.

Each (step, input shapes) profile is exported with ``torch.onnx.export(dynamo=True)``
the first time it is needed (tens of seconds; a minute or more for ``vimpnet``),
kept in the engine cache directory like TensorRT programs (key: weights, step,
shapes, torch/onnxruntime versions) and loaded from there on the next start.

With ``background_build`` a profile missing from the cache is exported in a child
process (:mod:`~vimpnet_ros.engine.backends.background`) while eager PyTorch fp32
(the same modules, equal within 1e-4) serves those frames; the backend switches to
ONNX Runtime once the program is ready. :meth:`OnnxRuntimeBackend.prepare` always
waits for the programs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from vimpnet_ros.engine.backends.base import Backend, TorchBackend
from vimpnet_ros.engine.backends.cache import EngineCache, ProfileMaterial
from vimpnet_ros.engine.backends.registry import REGISTRY
from vimpnet_ros.engine.backends.static import ChildBuiltBackend, ProfileKey, profile_key
from vimpnet_ros.engine.steps import StepModules

if TYPE_CHECKING:
    from vimpnet_ros.engine.config import EngineConfig

LOGGER = logging.getLogger(__name__)
#: File suffix of cached ONNX models.
ONNX_SUFFIX = ".onnx"


def export_onnx(module: nn.Module, inputs: tuple[Tensor, ...]) -> bytes:
    """Serialized ONNX model of ``module`` for these exact input shapes (float32)."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about every torchvision op it cannot register
    try:
        with torch.no_grad():
            example = tuple(x.float().cpu() for x in inputs)
            program = torch.onnx.export(module.eval(), example, dynamo=True, verbose=False)
    finally:
        exporter_log.setLevel(level)
    return program.model_proto.SerializeToString()


def onnx_model(cache: EngineCache | None, name: str, material: dict[str, Any], module: nn.Module,
               inputs: tuple[Tensor, ...]) -> bytes:  # fmt: skip
    """The serialized ONNX model of one profile: from ``cache`` when fresh, else exported (and stored there)."""

    def build() -> bytes:
        LOGGER.info("exporting %s to ONNX (once per shape profile)", name)
        start = time.perf_counter()
        data = export_onnx(module, inputs)
        LOGGER.info("exported %s in %.1f s", name, time.perf_counter() - start)
        return data

    if cache is None:
        return build()
    report = cache.load_or_build(
        name, material, build, lambda data, path: path.write_bytes(data), lambda path: path.read_bytes()
    )
    return report.program


def build_in_child(steps: StepModules, job: Mapping[str, Any]) -> None:
    """The background child's work (the registry's ``child_builder``): export one step into the engine cache."""
    module = getattr(steps, job["step"])
    inputs = tuple(torch.rand(*shape) for shape in job["shapes"])
    onnx_model(EngineCache(job["cache_dir"], ONNX_SUFFIX), job["name"], job["material"], module, inputs)


class OnnxRuntimeBackend(ChildBuiltBackend):
    """Runs each step in an ``onnxruntime.InferenceSession`` built per input-shape profile."""

    name = "onnxruntime"
    build_word = "ONNX export"
    program_word = "ONNX model"

    def __init__(self, steps: StepModules, device: torch.device, precision: str,
                 cache_dir: str | Path | None = None, background_build: bool = False) -> None:  # fmt: skip
        self._ort = REGISTRY[self.name].import_module()
        cache = EngineCache(Path(cache_dir) / "onnx", ONNX_SUFFIX) if cache_dir is not None else None
        # One export at a time: each child takes a core from the frames being served.
        super().__init__(steps, device, precision, cache, background_build, 1, TorchBackend(steps, device, "fp32"))
        self.providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
        )
        self._sessions: dict[ProfileKey, Any] = {}
        self._key = ProfileMaterial(steps)

    def _session_options(self) -> Any:
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        # No busy-waiting between runs: the engine shares the CPU with torch, the node and other processes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def _new_session(self, data: bytes) -> Any:
        return self._ort.InferenceSession(data, sess_options=self._session_options(), providers=self.providers)

    def program_name(self, key: ProfileKey) -> str:
        """``vimpnet_lite-frame-1x3x32x40``: model, step, first input shape."""
        step, shapes, _ = key
        return f"{self.steps.model.config.name}-{step}-{'x'.join(map(str, shapes[0]))}"

    def key_material(self, key: ProfileKey) -> dict[str, Any]:
        """Everything that makes a cached ONNX model of this profile invalid when it changes."""
        return self._key(*key, torch=torch.__version__, onnxruntime=self._ort.__version__)

    def _session(self, step: str, inputs: tuple[Tensor, ...], block: bool) -> Any | None:
        """The session of this profile, or None while (or because) its background export runs (or failed)."""
        key = profile_key(self.steps, step, tuple(tuple(x.shape) for x in inputs))
        if key in self._sessions:
            return self._sessions[key]
        if key in self._failed and not block:
            return None
        name = self.program_name(key)
        material: dict[str, Any] = {}
        if self.cache is not None:
            material = self.key_material(key)
            if not self._background_ready(key, name, material, block):
                return None
        session = self._new_session(onnx_model(self.cache, name, material, getattr(self.steps, step), inputs))
        self._sessions[key] = session
        return session

    def _background_ready(self, key: ProfileKey, name: str, material: dict[str, Any], block: bool) -> bool:
        """Start, poll or wait for the background export of ``key``; True when the cache can be read now.

        True also when no background export applies (``block``, background off, a
        fresh entry on disk): the caller then loads or builds in this process.
        """
        assert self.cache is not None
        if key not in self._builds:
            if block or not self.background_build or self.cache.is_fresh(name, material):
                return True
            if not self._builds_full():
                self._start_build(key)
            return False
        done = self._finish_build(key, block)
        if done is None:
            return False
        return done or block  # a blocking caller builds in-process and sees the error itself

    def _run(self, step: str, inputs: tuple[Tensor, ...]) -> list[Tensor] | None:
        """Outputs of ``step`` through ONNX Runtime, or None when its program is not ready yet."""
        session = self._session(step, inputs, block=not self.background_build)
        if session is None:
            return None
        feeds = {
            meta.name: x.detach().float().cpu().numpy() for meta, x in zip(session.get_inputs(), inputs, strict=False)
        }
        outputs = session.run(None, feeds)
        return [torch.from_numpy(np.ascontiguousarray(o)).to(self.device) for o in outputs]

    def prepare(self, batch: int, window: int, height: int, width: int) -> None:
        """Export (or wait for the background export of) and open the three sessions of one profile."""
        for step, inputs in self.example_inputs(batch, window, height, width).items():
            self._session(step, inputs, block=True)


def create(steps: StepModules, device: torch.device, precision: str, config: EngineConfig, _env: object) -> Backend:
    """The registry's factory: an ONNX Runtime backend for the engine's config."""
    return OnnxRuntimeBackend(steps, device, precision, config.cache_dir, config.background_build)
