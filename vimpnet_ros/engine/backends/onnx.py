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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vimpnet_ros.engine.backends.background import BackgroundExport
from vimpnet_ros.engine.backends.base import Backend, TorchBackend
from vimpnet_ros.engine.backends.cache import EngineCache, ProfileMaterial
from vimpnet_ros.engine.steps import StepModules
from vimpnet_ros.errors import BackendUnavailableError

LOGGER = logging.getLogger(__name__)
#: File suffix of cached ONNX models.
ONNX_SUFFIX = ".onnx"
#: A shape profile of one step: (step name, input shapes).
ProfileKey = tuple[str, tuple[tuple[int, ...], ...]]


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


class OnnxRuntimeBackend(Backend):
    """Runs each step in an ``onnxruntime.InferenceSession`` built per input-shape profile."""

    name = "onnxruntime"

    def __init__(self, steps: StepModules, device: torch.device, precision: str,
                 cache_dir: str | Path | None = None, background_build: bool = False) -> None:  # fmt: skip
        super().__init__(steps, device, precision)
        try:
            import onnxruntime
        except ImportError as error:
            raise BackendUnavailableError(
                f"backend 'onnxruntime' needs the onnxruntime package ({error}); pip install onnxruntime"
            ) from error
        self._ort = onnxruntime
        self.cache = EngineCache(Path(cache_dir) / "onnx", ONNX_SUFFIX) if cache_dir is not None else None
        self.providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
        )
        #: Background builds need the cache: the child hands its program over through it.
        self.background_build = background_build and self.cache is not None
        self._fallback = TorchBackend(steps, device, "fp32")
        self._sessions: dict[ProfileKey, Any] = {}
        self._exports: dict[ProfileKey, BackgroundExport] = {}
        self._failed: set[ProfileKey] = set()
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

    def _material(self, key: ProfileKey) -> dict[str, Any]:
        """Everything that makes a cached ONNX model of this profile invalid when it changes."""
        step, shapes = key
        return self._key(step, shapes, torch=torch.__version__, onnxruntime=self._ort.__version__)

    def _session(self, step: str, module: nn.Module, inputs: tuple[Tensor, ...], block: bool) -> Any | None:
        """The session of this profile, or None while (or because) its background export runs (or failed)."""
        key: ProfileKey = (step, tuple(tuple(x.shape) for x in inputs))
        if key in self._sessions:
            return self._sessions[key]
        if key in self._failed and not block:
            return None
        name = f"{self.steps.model.config.name}-{step}-{'x'.join(map(str, inputs[0].shape))}"
        material: dict[str, Any] = {}
        if self.cache is not None:
            material = self._material(key)
            if not self._background_ready(key, name, material, block):
                return None
        session = self._new_session(onnx_model(self.cache, name, material, module, inputs))
        self._sessions[key] = session
        return session

    def _background_ready(self, key: ProfileKey, name: str, material: dict[str, Any], block: bool) -> bool:
        """Start, poll or wait for the background export of ``key``; True when the cache can be read now.

        True also when no background export applies (``block``, background off, a
        fresh entry on disk): the caller then loads or builds in this process.
        """
        assert self.cache is not None
        export = self._exports.get(key)
        if export is None:
            if block or not self.background_build or self.cache.is_fresh(name, material):
                return True
            if self._exports:  # one export at a time: each child takes a core from the frames being served
                return False
            shapes = [list(shape) for shape in key[1]]
            try:
                export = BackgroundExport.start(self.cache.directory, name, material, self.steps, key[0], shapes)
            except OSError as error:
                LOGGER.error("cannot start the background ONNX export of %s (%s); eager PyTorch keeps serving this "
                             "shape", name, error)  # fmt: skip
                self._failed.add(key)
                return False
            self._exports[key] = export
            LOGGER.info("exporting %s to ONNX in the background (once per shape profile); eager PyTorch fp32 "
                        "serves these frames until it is ready", name)  # fmt: skip
            return False
        done = export.wait() if block else export.poll()
        if done is None:
            return False
        del self._exports[key]
        if done and self.cache.is_fresh(name, material):
            LOGGER.info("ONNX model %s ready after %.0f s; switching from eager PyTorch", name, export.elapsed_s)
            return True
        LOGGER.error("background ONNX export of %s failed (exit code %s: %s); eager PyTorch keeps serving this "
                     "shape", name, export.exit_code, export.error_tail() or "no output")  # fmt: skip
        self._failed.add(key)
        return block  # a blocking caller builds in-process and sees the error itself

    def _run(self, step: str, module: nn.Module, *inputs: Tensor) -> list[Tensor] | None:
        """Outputs of ``step`` through ONNX Runtime, or None when its program is not ready yet."""
        session = self._session(step, module, inputs, block=not self.background_build)
        if session is None:
            return None
        feeds = {
            meta.name: x.detach().float().cpu().numpy() for meta, x in zip(session.get_inputs(), inputs, strict=False)
        }
        outputs = session.run(None, feeds)
        return [torch.from_numpy(np.ascontiguousarray(o)).to(self.device) for o in outputs]

    def prepare(self, batch: int, window: int, height: int, width: int) -> None:
        """Export (or wait for the background export of) and open the three sessions of one profile."""
        examples = self.example_inputs(batch, window, height, width)
        self._session("frame", self.steps.frame, examples["frame"], block=True)
        self._session("flow", self.steps.flow, examples["flow"], block=True)
        self._session("window", self.steps.window, examples["window"], block=True)

    def building(self) -> list[str]:
        """Names of the profiles being exported in the background."""
        return [export.name for export in self._exports.values()]

    def close(self) -> None:
        """Stop background exports."""
        for export in self._exports.values():
            export.cancel()
        self._exports.clear()

    def frame(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Frame step in ONNX Runtime (eager PyTorch while its program is built)."""
        outputs = self._run("frame", self.steps.frame, frames)
        if outputs is None:
            return self._fallback.frame(frames)
        feats, small = outputs
        return feats, small

    def flow(self, small_a: Tensor, small_b: Tensor) -> tuple[Tensor, Tensor]:
        """Flow step in ONNX Runtime (eager PyTorch while its program is built)."""
        outputs = self._run("flow", self.steps.flow, small_a, small_b)
        if outputs is None:
            return self._fallback.flow(small_a, small_b)
        first, second = outputs
        return first, second

    def window(self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor) -> Tensor:
        """Window step in ONNX Runtime (eager PyTorch while its program is built)."""
        outputs = self._run("window", self.steps.window, lqs, feats, flows_backward, flows_forward)
        if outputs is None:
            return self._fallback.window(lqs, feats, flows_backward, flows_forward)
        return outputs[0]
