"""Fixtures for the engine tests: a small random ViMP-Net and a CPU-only machine description."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from vimpnet_ros.engine import InferenceEngine
from vimpnet_ros.engine.hardware import Environment
from vimpnet_ros.model import VimpNet, get_config

#: A CPU-only machine with ONNX Runtime, as on CI (tests must not depend on the runner's hardware).
CPU_ENV = Environment(cuda_devices=0, onnxruntime=True, cpu_fast_bf16=False)


def random_model(name: str = "vimpnet_lite", seed: int = 0) -> VimpNet:
    """A randomly initialised model whose zero-initialised DCN offset heads are perturbed.

    With the published init the deformable offsets start at exactly the flows; nudging
    every parameter makes the offsets, masks and attention non-trivial, so a wrong
    cache or a wrong frame order shows up in the outputs.
    """
    torch.manual_seed(seed)
    model = VimpNet(get_config(name)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model


@pytest.fixture(scope="session")
def lite_model() -> VimpNet:
    """One shared random ``vimpnet_lite`` (read-only in tests)."""
    return random_model()


def moving_frames(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth textured frames panning one pixel per frame, with a little noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : height + count, 0 : width + count].astype(np.float32)
    base = np.stack(
        [
            0.5 + 0.4 * np.sin(xs / 7.0) * np.cos(ys / 11.0),
            0.5 + 0.4 * np.sin((xs + ys) / 13.0),
            0.5 + 0.3 * np.cos(xs / 5.0 - ys / 9.0),
        ],
        axis=2,
    )
    frames = []
    for k in range(count):
        crop = base[k : k + height, k : k + width] + rng.normal(0, 0.02, (height, width, 3))
        frames.append(np.clip(crop * 255 + 0.5, 0, 255).astype(np.uint8))
    return frames


def count_step_calls(engine: InferenceEngine) -> dict[str, int]:
    """Wrap the loaded backend's steps so each call is counted; returns the live counts by step name."""
    calls = {"frame": 0, "flow": 0, "window": 0}
    backend = engine.require_loaded()
    for name in calls:
        original = getattr(backend, name)

        def counted(*args: torch.Tensor, _name: str = name, _original: Any = original) -> Any:
            calls[_name] += 1
            return _original(*args)

        setattr(backend, name, counted)
    return calls
