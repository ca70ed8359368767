"""ONNX Runtime backend: the step modules exported to ONNX (static shapes) and run on the CPU provider.

Each (step, input shapes) profile is exported with ``torch.onnx.export(dynamo=True)``
the first time it is needed (tens of seconds; a minute or more for ``vimpnet``),
kept in the engine cache directory like TensorRT programs (key: weights, step,
shapes, torch/onnxruntime versions) and loaded from there on the next start.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vimpnet_ros.engine.backends.base import Backend
from vimpnet_ros.engine.backends.cache import EngineCache, model_fingerprint
from vimpnet_ros.engine.steps import StepModules
from vimpnet_ros.errors import BackendUnavailableError

LOGGER = logging.getLogger(__name__)


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


class OnnxRuntimeBackend(Backend):
    """Runs each step in an ``onnxruntime.InferenceSession`` built per input-shape profile."""

    name = "onnxruntime"

    def __init__(self, steps: StepModules, device: torch.device, precision: str,
                 cache_dir: str | Path | None = None) -> None:  # fmt: skip
        super().__init__(steps, device, precision)
        try:
            import onnxruntime
        except ImportError as error:
            raise BackendUnavailableError(
                f"backend 'onnxruntime' needs the onnxruntime package ({error}); pip install onnxruntime"
            ) from error
        self._ort = onnxruntime
        self.cache = EngineCache(Path(cache_dir) / "onnx", ".onnx") if cache_dir is not None else None
        self.providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
        )
        self._sessions: dict[tuple[str, tuple[tuple[int, ...], ...]], Any] = {}
        self._fingerprint: str | None = None

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

    def _session(self, step: str, module: nn.Module, inputs: tuple[Tensor, ...]) -> Any:
        key = (step, tuple(tuple(x.shape) for x in inputs))
        if key in self._sessions:
            return self._sessions[key]
        shapes = "x".join(map(str, inputs[0].shape))
        name = f"{self.steps.model.config.name}-{step}-{shapes}"

        def build() -> bytes:
            LOGGER.info("exporting %s to ONNX (once per shape profile)", name)
            start = time.perf_counter()
            data = export_onnx(module, inputs)
            LOGGER.info("exported %s in %.1f s", name, time.perf_counter() - start)
            return data

        if self.cache is None:
            data = build()
        else:
            if self._fingerprint is None:
                self._fingerprint = model_fingerprint(self.steps.model)
            material = {
                "weights_sha256": self._fingerprint,
                "step": step,
                "output_index": self.steps.window.output_index if step == "window" else None,
                "input_shapes": [list(k) for k in key[1]],
                "torch": torch.__version__,
                "onnxruntime": self._ort.__version__,
            }
            report = self.cache.load_or_build(
                name, material, build, lambda data, path: path.write_bytes(data), lambda path: path.read_bytes()
            )
            data = report.program
        session = self._new_session(data)
        self._sessions[key] = session
        return session

    def _run(self, step: str, module: nn.Module, *inputs: Tensor) -> list[Tensor]:
        session = self._session(step, module, inputs)
        feeds = {
            meta.name: x.detach().float().cpu().numpy() for meta, x in zip(session.get_inputs(), inputs, strict=False)
        }
        outputs = session.run(None, feeds)
        return [torch.from_numpy(np.ascontiguousarray(o)).to(self.device) for o in outputs]

    def prepare(self, batch: int, window: int, height: int, width: int) -> None:
        """Export and open the three sessions of one profile."""
        examples = self.example_inputs(batch, window, height, width)
        self._session("frame", self.steps.frame, examples["frame"])
        self._session("flow", self.steps.flow, examples["flow"])
        self._session("window", self.steps.window, examples["window"])

    def frame(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Frame step in ONNX Runtime."""
        feats, small = self._run("frame", self.steps.frame, frames)
        return feats, small

    def flow(self, small_a: Tensor, small_b: Tensor) -> tuple[Tensor, Tensor]:
        """Flow step in ONNX Runtime."""
        first, second = self._run("flow", self.steps.flow, small_a, small_b)
        return first, second

    def window(self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor) -> Tensor:
        """Window step in ONNX Runtime."""
        return self._run("window", self.steps.window, lqs, feats, flows_backward, flows_forward)[0]
