"""Export a step module to ONNX in a child process while the engine keeps serving frames.

Exporting a shape profile takes tens of seconds (minutes for ``vimpnet``). Done in
the engine's own process it would hold the first frame at every new size for that
long, so :class:`BackgroundExport` runs it in a spawned interpreter: the child
rebuilds the model from its config and weights, exports the one step, and stores
the result in the engine cache. The parent polls :meth:`BackgroundExport.poll` and
opens the cached program once the child exits cleanly. A separate process also
keeps the exporter's global tracing state and its memory peak out of the engine.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vimpnet_ros.engine.steps import StepModules
from vimpnet_ros.model import VimpNet
from vimpnet_ros.model.config import VimpNetConfig

LOGGER = logging.getLogger(__name__)


def _export_into_cache(
    cache_dir: str,
    name: str,
    material: Mapping[str, Any],
    model_config: dict[str, Any],
    weights: bytes,
    output_index: int,
    step: str,
    shapes: list[list[int]],
) -> None:
    """Child process: rebuild the model, export ``step`` for ``shapes``, write it to the ONNX cache."""
    from vimpnet_ros.engine.backends.cache import EngineCache
    from vimpnet_ros.engine.backends.onnx import ONNX_SUFFIX, export_onnx

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # leave the cores to the engine that keeps serving frames
    model = VimpNet(VimpNetConfig.from_dict(model_config))
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    module = getattr(StepModules(model, output_index), step)
    inputs = tuple(torch.rand(*shape) for shape in shapes)
    EngineCache(cache_dir, ONNX_SUFFIX).load_or_build(
        name,
        material,
        lambda: export_onnx(module, inputs),
        lambda data, path: path.write_bytes(data),
        lambda path: path.read_bytes(),
    )


class BackgroundExport:
    """One ONNX export running in a spawned child process; see the module docstring."""

    def __init__(self, name: str, process: multiprocessing.process.BaseProcess) -> None:
        self.name = name
        self.process = process
        self.started = time.monotonic()

    @classmethod
    def start(cls, cache_dir: Path, name: str, material: Mapping[str, Any], steps: StepModules, step: str,
              shapes: list[list[int]]) -> BackgroundExport:  # fmt: skip
        """Spawn the child that exports ``step`` of ``steps`` for input ``shapes`` into ``cache_dir``."""
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in steps.model.state_dict().items()}, buffer)
        process = multiprocessing.get_context("spawn").Process(
            target=_export_into_cache,
            args=(
                str(cache_dir),
                name,
                dict(material),
                steps.model.config.to_dict(),
                buffer.getvalue(),
                steps.window.output_index,
                step,
                shapes,
            ),
            name=f"onnx-export-{name}",
            daemon=True,  # never keeps a shutting-down node alive
        )
        process.start()
        return cls(name, process)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the export started."""
        return time.monotonic() - self.started

    def poll(self) -> bool | None:
        """None while the child runs, True when it stored the program, False when it failed."""
        if self.process.is_alive():
            return None
        self.process.join()
        return self.process.exitcode == 0

    def wait(self) -> bool:
        """Block until the child exits; True when it stored the program."""
        self.process.join()
        return self.process.exitcode == 0

    def cancel(self) -> None:
        """Stop the child (the cache never holds a half-written entry)."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=5.0)
