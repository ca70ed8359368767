"""ONNX Runtime backend: exported step modules run in onnxruntime and match eager PyTorch within 1e-4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.conftest import CPU_ENV, moving_frames
from vimpnet_ros.engine import EngineConfig, InferenceEngine
from vimpnet_ros.engine.backends.onnx import OnnxRuntimeBackend
from vimpnet_ros.engine.steps import StepModules
from vimpnet_ros.model import VimpNet

TOLERANCE = 1e-4


def test_frame_step_parity_and_cache(lite_model: VimpNet, tmp_path: Path) -> None:
    """The per-frame step through ONNX Runtime; a second backend loads the exported model from the cache."""
    steps = StepModules(lite_model, 4)
    backend = OnnxRuntimeBackend(steps, torch.device("cpu"), "fp32", tmp_path)
    frames = torch.rand(2, 3, 32, 48)
    feats, small = backend.frame(frames)
    with torch.inference_mode():
        ref_feats, ref_small = steps.frame(frames)
    assert (feats - ref_feats).abs().max().item() < TOLERANCE
    assert (small - ref_small).abs().max().item() < TOLERANCE
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    again = OnnxRuntimeBackend(steps, torch.device("cpu"), "fp32", tmp_path)
    assert torch.allclose(again.frame(frames)[0], feats)


@pytest.mark.slow
@pytest.mark.parametrize("output_frame", ["latest", "center"])
def test_engine_parity_with_torch(lite_model: VimpNet, tmp_path: Path, output_frame: str) -> None:
    """Whole streams through onnxruntime vs torch: float outputs within 1e-4."""
    outputs: dict[str, list[torch.Tensor]] = {}
    frames = moving_frames(4, 30, 38)
    for backend in ("torch", "onnxruntime"):
        config = EngineConfig(backend=backend, precision="fp32", device="cpu", window_size=3,
                              output_frame=output_frame, engine_cache_dir=tmp_path)  # fmt: skip
        engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
        assert engine.backend_name == backend
        stream = engine.open_stream("cam")
        outputs[backend] = []
        for k, frame in enumerate(frames):
            if stream.push(frame, k, restore=False) is None and len(stream.slots) > config.delay_frames:
                target = len(stream.slots) - 1 - config.delay_frames
                outputs[backend].append(engine.run_window(stream, stream.window_for(target)))
    assert len(outputs["torch"]) == len(outputs["onnxruntime"]) > 0
    for a, b in zip(outputs["torch"], outputs["onnxruntime"], strict=True):
        assert np.abs((a - b).numpy()).max() < TOLERANCE
