"""ONNX Runtime backend: exported step modules run in onnxruntime and match eager PyTorch within 1e-4."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.conftest import CPU_ENV, moving_frames, random_model
from vimpnet_ros.engine import EngineConfig, InferenceEngine
from vimpnet_ros.engine.backends.background import BackgroundExport
from vimpnet_ros.engine.backends.onnx import OnnxRuntimeBackend
from vimpnet_ros.engine.backends.registry import REGISTRY
from vimpnet_ros.engine.steps import StepModules
from vimpnet_ros.model import VimpNet

TOLERANCE = 1e-4
ONNX_BUILDER = REGISTRY["onnxruntime"].child_builder


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


def _frame_until_built(backend: OnnxRuntimeBackend, frames: torch.Tensor, timeout_s: float = 300.0) -> None:
    """Run the frame step (served eagerly meanwhile) until no export runs in the background."""
    deadline = time.monotonic() + timeout_s
    backend.frame(frames)
    while backend.building():
        assert time.monotonic() < deadline, "background export did not finish"
        backend.frame(frames)
        time.sleep(0.5)


def test_background_export_serves_eager_frames_until_ready(
    lite_model: VimpNet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new shape does not wait for its export: eager PyTorch answers, ONNX Runtime takes over once cached."""
    caplog.set_level(logging.INFO, logger="vimpnet_ros")
    steps = StepModules(lite_model, 4)
    backend = OnnxRuntimeBackend(steps, torch.device("cpu"), "fp32", tmp_path, background_build=True)
    frames = torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        ref_feats, _ = steps.frame(frames)
    started = time.monotonic()
    feats, _ = backend.frame(frames)
    assert time.monotonic() - started < 5.0  # far less than an export
    assert torch.equal(feats, ref_feats)  # the eager fallback, bit for bit
    assert len(backend.building()) == 1
    _frame_until_built(backend, frames)
    assert "switching from eager PyTorch" in caplog.text
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    assert (backend.frame(frames)[0] - ref_feats).abs().max().item() < TOLERANCE
    # The next backend finds the program in the cache and never starts a child.
    again = OnnxRuntimeBackend(steps, torch.device("cpu"), "fp32", tmp_path, background_build=True)
    again.frame(frames)
    assert again.building() == []


def test_failed_background_export_keeps_serving_eagerly(
    lite_model: VimpNet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An export that cannot start (the cache path is a file) leaves eager PyTorch in charge, logged once."""
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    steps = StepModules(lite_model, 4)
    backend = OnnxRuntimeBackend(steps, torch.device("cpu"), "fp32", blocker, background_build=True)
    frames = torch.rand(1, 3, 32, 48)
    _frame_until_built(backend, frames)
    assert "cannot start the background ONNX export" in caplog.text
    with torch.inference_mode():
        assert torch.equal(backend.frame(frames)[0], steps.frame(frames)[0])
    assert backend.building() == []  # not retried on every frame


def test_failing_child_reports_its_error(lite_model: VimpNet, tmp_path: Path) -> None:
    export = BackgroundExport.start(
        tmp_path, "broken", {}, StepModules(lite_model, 4), "no_such_step", [[1, 3, 8, 8]], builder=ONNX_BUILDER
    )
    assert export.wait() is False
    assert export.exit_code != 0 and "no_such_step" in export.error_tail()
    assert not list(tmp_path.glob(".job-*"))  # the job file (weights) is removed


def test_close_stops_background_exports(lite_model: VimpNet, tmp_path: Path) -> None:
    backend = OnnxRuntimeBackend(StepModules(lite_model, 4), torch.device("cpu"), "fp32", tmp_path, True)
    backend.frame(torch.rand(1, 3, 32, 48))
    exports = list(backend._builds.values())
    assert len(exports) == 1
    backend.close()
    assert backend.building() == []
    assert exports[0].exit_code is not None  # terminated, not left running
    assert not list((tmp_path / "onnx").glob("*.onnx")) and not list((tmp_path / "onnx").glob(".job-*"))


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "output_frame", "stage1_passes"),
                         [("vimpnet_lite", "latest", 1), ("vimpnet_lite", "center", 1),
                          ("vimpnet_lite_gated", "latest", 1), ("vimpnet_lite_gated", "latest", 2)])  # fmt: skip
def test_engine_parity_with_torch(tmp_path: Path, model_name: str, output_frame: str, stage1_passes: int) -> None:
    """Whole streams through onnxruntime vs torch: float outputs within 1e-4 (the gated default too, and with two
    stage-1 passes)."""
    model = random_model(model_name)
    outputs: dict[str, list[torch.Tensor]] = {}
    frames = moving_frames(4, 30, 38)
    for backend in ("torch", "onnxruntime"):
        config = EngineConfig(backend=backend, precision="fp32", device="cpu", window_size=3, output_frame=output_frame,
                              engine_cache_dir=tmp_path, background_build=False,
                              stage1_passes=stage1_passes)  # fmt: skip
        engine = InferenceEngine(config, environment=CPU_ENV).load(model)
        assert engine.backend_name == backend and engine.stage1_passes == stage1_passes
        stream = engine.open_stream("cam")
        outputs[backend] = []
        for k, frame in enumerate(frames):
            target = engine.admit(stream, frame, k)
            if target is not None:
                outputs[backend].append(engine.run_network([(stream, target)])[0])
    assert len(outputs["torch"]) == len(outputs["onnxruntime"]) > 0
    for a, b in zip(outputs["torch"], outputs["onnxruntime"], strict=True):
        assert np.abs((a - b).numpy()).max() < TOLERANCE


def test_engine_reports_and_stops_background_builds(lite_model: VimpNet, tmp_path: Path) -> None:
    """What the node's diagnostics show (``engine.building()``) and what its cleanup calls (``engine.close()``)."""
    config = EngineConfig(backend="onnxruntime", device="cpu", window_size=3, engine_cache_dir=tmp_path)
    engine = InferenceEngine(config, environment=CPU_ENV).load(lite_model)
    result = engine.push(engine.open_stream("cam"), moving_frames(1, 30, 38)[0], 0)
    assert result is not None and result.image.shape == (30, 38, 3)  # served eagerly, not held
    assert engine.building() == ["vimpnet_lite-frame-1x3x32x40"]
    engine.close()
    assert engine.building() == []
