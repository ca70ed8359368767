"""Backend selection: auto resolution, fallbacks with a warning, clear errors for explicit impossible requests."""

from __future__ import annotations

import logging

import pytest

from tests.engine.conftest import CPU_ENV
from vimpnet_ros.engine import EngineConfig, InferenceEngine
from vimpnet_ros.engine.backends.select import select_backend
from vimpnet_ros.engine.hardware import Environment
from vimpnet_ros.errors import BackendUnavailableError
from vimpnet_ros.model import VimpNet

GPU_TRT = Environment(cuda_devices=1, gpu_name="NVIDIA H100", torch_tensorrt=True, onnxruntime=True)
GPU_ONLY = Environment(cuda_devices=2, gpu_name="NVIDIA H100", onnxruntime=True)
GPU_INDUCTOR = Environment(cuda_devices=1, gpu_name="NVIDIA H100", cxx_compiler=True, triton=True)
CPU_BF16 = Environment(onnxruntime=True, cpu_fast_bf16=True)
BARE_CPU = Environment()


@pytest.mark.parametrize(
    ("env", "changes", "expected"),
    [
        (GPU_TRT, {}, ("tensorrt", "cuda:0", "fp16")),
        (GPU_TRT, {"precision": "fp32"}, ("tensorrt", "cuda:0", "fp32")),
        (GPU_ONLY, {}, ("torch", "cuda:0", "fp16")),
        (GPU_ONLY, {"device": "cuda:1"}, ("torch", "cuda:1", "fp16")),
        (GPU_TRT, {"device": "cpu", "model": "vimpnet"}, ("torch", "cpu", "fp32")),
        (CPU_ENV, {}, ("torch", "cpu", "fp32")),  # measured fastest for the default model on AVX2
        (CPU_ENV, {"model": "vimpnet"}, ("torch", "cpu", "fp32")),
        (BARE_CPU, {}, ("torch", "cpu", "fp32")),
        (CPU_BF16, {}, ("torch", "cpu", "bf16")),
        (CPU_BF16, {"precision": "fp32"}, ("torch", "cpu", "fp32")),
        (CPU_ENV, {"precision": "bf16"}, ("torch", "cpu", "bf16")),
        (CPU_ENV, {"backend": "onnxruntime"}, ("onnxruntime", "cpu", "fp32")),
        (GPU_ONLY, {"backend": "onnxruntime"}, ("onnxruntime", "cpu", "fp32")),
        (CPU_ENV, {"backend": "torch", "precision": "bf16"}, ("torch", "cpu", "bf16")),
        (GPU_TRT, {"backend": "torch"}, ("torch", "cuda:0", "fp16")),
        (GPU_INDUCTOR, {}, ("compiled", "cuda:0", "fp16")),  # no TensorRT: AOTInductor with CUDA graphs
        (GPU_INDUCTOR, {"precision": "bf16"}, ("compiled", "cuda:0", "bf16")),
        (
            Environment(cuda_devices=1, torch_tensorrt=True, cxx_compiler=True, triton=True),
            {},
            ("tensorrt", "cuda:0", "fp16"),
        ),
        (Environment(cuda_devices=1, cxx_compiler=True), {}, ("torch", "cuda:0", "fp16")),  # no Triton
        (CPU_ENV, {"backend": "compiled"}, ("compiled", "cpu", "fp32")),
        (Environment(cxx_compiler=True, cpu_fast_bf16=True), {"backend": "compiled"}, ("compiled", "cpu", "bf16")),
    ],
)
def test_resolution(env: Environment, changes: dict[str, str], expected: tuple[str, str, str]) -> None:
    selection = select_backend(EngineConfig(**changes), env)  # type: ignore[arg-type]
    assert (selection.backend, selection.device, selection.precision) == expected


def test_cpu_table_entry_for_onnxruntime_needs_it_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a measurement names ONNX Runtime fastest, auto picks it only when it is installed."""
    from vimpnet_ros.engine.backends import select

    monkeypatch.setitem(select.CPU_FASTEST, EngineConfig().model, ("onnxruntime", "fp32"))
    assert select_backend(EngineConfig(), CPU_ENV).backend == "onnxruntime"
    assert select_backend(EngineConfig(), BARE_CPU).backend == "torch"


def test_auto_fallback_says_why() -> None:
    assert any("neither torch_tensorrt nor AOTInductor" in n for n in select_backend(EngineConfig(), GPU_ONLY).notes)
    assert any("AOTInductor-compiled" in n for n in select_backend(EngineConfig(), GPU_INDUCTOR).notes)
    notes = select_backend(EngineConfig(backend="compiled"), GPU_ONLY).notes  # explicit: served, with a warning
    assert any("C++ compiler" in n and "Triton" in n for n in notes)
    assert select_backend(EngineConfig(), GPU_TRT).notes == ()


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_cpu_without_a_gpu_is_information_not_a_warning(device: str) -> None:
    """Nobody asked for a GPU (device auto or cpu): the CPU choice is explained at INFO, never warned about."""
    selection = select_backend(EngineConfig(device=device), CPU_ENV)
    assert selection.device == "cpu" and selection.notes == ()
    assert len(selection.info) == 1 and "on the CPU" in selection.info[0]
    assert ("no CUDA GPU visible" in selection.info[0]) == (device == "auto")
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):  # asking for cuda is an error, not a fallback
        select_backend(EngineConfig(device="cuda"), CPU_ENV)


@pytest.mark.parametrize(
    ("env", "changes", "words"),
    [
        (CPU_ENV, {"backend": "tensorrt"}, "torch_tensorrt is not installed"),
        (GPU_ONLY, {"backend": "tensorrt"}, "torch_tensorrt is not installed"),
        (Environment(torch_tensorrt=True), {"backend": "tensorrt"}, "no CUDA GPU"),
        (CPU_ENV, {"device": "cuda"}, "sees no CUDA GPU"),
        (GPU_ONLY, {"device": "cuda:2"}, "only 2 CUDA GPU"),
        (BARE_CPU, {"backend": "onnxruntime"}, "pip install onnxruntime"),
        (GPU_ONLY, {"backend": "onnxruntime", "device": "cuda"}, "onnxruntime-gpu"),
        (CPU_ENV, {"precision": "fp16"}, "fp16"),
    ],
)
def test_explicit_requests_that_cannot_work(env: Environment, changes: dict[str, str], words: str) -> None:
    with pytest.raises(BackendUnavailableError, match=words):
        select_backend(EngineConfig(**changes), env)  # type: ignore[arg-type]


def test_engine_load_explicit_tensorrt_fails_and_auto_informs(
    lite_model: VimpNet, caplog: pytest.LogCaptureFixture
) -> None:
    """On a CPU-only machine: explicit tensorrt is an error; auto runs on the CPU and says so at INFO, not WARNING."""
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        InferenceEngine(EngineConfig(backend="tensorrt"), CPU_ENV).load(lite_model)
    with caplog.at_level(logging.INFO):
        engine = InferenceEngine(EngineConfig(), CPU_ENV).load(lite_model)
    assert engine.backend_name in ("torch", "onnxruntime") and engine.device.type == "cpu"
    levels = [r.levelno for r in caplog.records if "no CUDA GPU visible" in r.getMessage()]
    assert levels == [logging.INFO], caplog.text


def test_probe_describes_this_machine() -> None:
    env = Environment.probe()
    assert env.cuda_devices >= 0 and isinstance(env.onnxruntime, bool)


def test_channels_last_torch_backend_matches(lite_model: VimpNet) -> None:
    """The channels-last layout (the torch backend's, on a CPU and on CUDA) computes the same features."""
    import copy

    import torch

    from vimpnet_ros.engine.backends.base import TorchBackend
    from vimpnet_ros.engine.steps import StepModules

    frames = torch.rand(2, 3, 32, 32)
    plain = TorchBackend(StepModules(lite_model, 4), torch.device("cpu"), "fp32")
    last = TorchBackend(StepModules(copy.deepcopy(lite_model), 4), torch.device("cpu"), "fp32", channels_last=True)
    torch.testing.assert_close(last.frame(frames)[0], plain.frame(frames)[0], atol=1e-5, rtol=1e-5)
