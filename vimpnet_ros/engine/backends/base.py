"""What every backend offers the engine: the three steps of :mod:`vimpnet_ros.engine.steps` on tensors.

Backends take and return float32 torch tensors on the engine's device (cached
features may be stored in the backend's compute dtype); shapes are as in
:mod:`vimpnet_ros.engine.steps`. Programs that need static shapes (ONNX Runtime,
TensorRT) are built per input-shape profile the first time a shape is seen, or
ahead of time via :meth:`Backend.prepare`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from vimpnet_ros.engine.hardware import autocast_dtype
from vimpnet_ros.engine.steps import StepModules
from vimpnet_ros.model.arch_util import use_channels_last

if TYPE_CHECKING:
    from vimpnet_ros.engine.config import EngineConfig

#: Input shapes of one step call.
Shapes = tuple[tuple[int, ...], ...]


class Backend(abc.ABC):
    """Runs the frame, flow and window steps; subclasses decide how (eager, compiled, ONNX Runtime, TensorRT)."""

    name: str = "base"

    def __init__(self, steps: StepModules, device: torch.device, precision: str) -> None:
        self.steps = steps
        self.device = device
        self.precision = precision

    @abc.abstractmethod
    def frame(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(n, 3, h, w) -> (features (n, c, h/4, w/4), small (n, 3, h/4, w/4))."""

    @abc.abstractmethod
    def flow(self, small_a: Tensor, small_b: Tensor) -> tuple[Tensor, Tensor]:
        """0.25x frames (n, 3, h/4, w/4) x2 -> (flow a->b, flow b->a), each (n, 2, h/4, w/4)."""

    @abc.abstractmethod
    def window(self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor) -> Tensor:
        """(n, t, 3, h, w), (n, t, c, h/4, w/4), (n, t-1, 2, h/4, w/4) x2 -> (n, 5, h, w) float32."""

    def profile_shapes(self, batch: int, window: int, height: int, width: int) -> dict[str, Shapes]:
        """Input shapes of each step for one (batch, T, height, width) profile."""
        c, h4, w4 = self.steps.model.config.mid_channels, height // 4, width // 4
        return {
            "frame": ((batch, 3, height, width),),
            "flow": ((batch, 3, h4, w4), (batch, 3, h4, w4)),
            "window": ((batch, window, 3, height, width), (batch, window, c, h4, w4),
                       (batch, window - 1, 2, h4, w4), (batch, window - 1, 2, h4, w4)),
        }  # fmt: skip

    def example_inputs(self, batch: int, window: int, height: int, width: int) -> dict[str, tuple[Tensor, ...]]:
        """Inputs of each step for one shape profile (what static-shape backends build for); flows in [-1, 1]."""
        gen = torch.Generator().manual_seed(0)
        inputs = {
            step: tuple(torch.rand(*shape, generator=gen).to(self.device) for shape in shapes)
            for step, shapes in self.profile_shapes(batch, window, height, width).items()
        }
        lqs, feats, flows_backward, flows_forward = inputs["window"]
        inputs["window"] = (lqs, feats, flows_backward * 2 - 1, flows_forward * 2 - 1)
        return inputs

    def prepare(self, batch: int, window: int, height: int, width: int) -> None:  # noqa: B027 - optional hook
        """Build whatever a shape profile needs before the first frame (no-op for eager backends)."""

    def prepare_profiles(self, profiles: Sequence[tuple[int, int, int, int]]) -> None:
        """:meth:`prepare` for several (batch, window, height, width) profiles (backends may build them together)."""
        for profile in profiles:
            self.prepare(*profile)

    def building(self) -> list[str]:
        """Shape profiles being built in the background (their frames run eagerly meanwhile)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release background work; eager backends hold none."""

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        return f"{self.name} {self.precision} on {self.device}"


class TorchBackend(Backend):
    """Eager PyTorch on CPU or CUDA: fp32, bf16 autocast (CPU/CUDA) or fp16 autocast (CUDA)."""

    name = "torch"

    def __init__(self, steps: StepModules, device: torch.device, precision: str, channels_last: bool = False) -> None:
        super().__init__(steps, device, precision)
        self.channels_last = channels_last
        if channels_last:
            use_channels_last(self.steps.model)

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        """inference_mode plus autocast for reduced precisions."""
        dtype = autocast_dtype(self.precision)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            yield

    def _layout(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def frame(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Features and 0.25x frame, in the compute dtype."""
        with self._context():
            return self.steps.frame(self._layout(frames))

    def flow(self, small_a: Tensor, small_b: Tensor) -> tuple[Tensor, Tensor]:
        """Flows in float32 (SPyNet's flows feed warps, where bf16 rounding of pixel offsets would hurt)."""
        with self._context():
            forward, backward = self.steps.flow(small_a, small_b)
        return forward.float(), backward.float()

    def window(self, lqs: Tensor, feats: Tensor, flows_backward: Tensor, flows_forward: Tensor) -> Tensor:
        """Window step; output in float32."""
        with self._context():
            return self.steps.window(lqs, feats, flows_backward, flows_forward).float()


def create_torch(steps: StepModules, device: torch.device, precision: str, _config: EngineConfig,
                 _env: object) -> Backend:  # fmt: skip
    """The registry's factory: eager PyTorch, every convolution in channels-last layout (on a CPU and on CUDA;
    ``use_channels_last``)."""
    return TorchBackend(steps, device, precision, channels_last=True)
