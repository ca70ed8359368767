"""Resolve ``auto`` backend, device and precision against what this machine has.

The facts about the machine are gathered once by :meth:`Environment.probe` and the
decision is a pure function of (config, environment), so every branch (including
"TensorRT requested on a machine without it") is tested on a CPU-only CI.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from vimpnet_ros.engine.config import EngineConfig
from vimpnet_ros.errors import BackendUnavailableError

LOGGER = logging.getLogger(__name__)

#: Fastest CPU (backend, precision) per model on CPUs without fast bf16 (AVX2), measured with
#: ``vimpnet-ros benchmark engine --threads 2`` on an idle 2-core AMD EPYC (benchmarks/engine_vimpnet_lite.json):
#: vimpnet_lite per streamed frame, eager PyTorch vs ONNX Runtime: 415 vs 515 ms at 256x256, 1922 vs 1911 ms
#: at 640x384, 9.2 vs 11.1 s at 1280x720 (tiled), with a third of the memory. ``vimpnet`` was not measured
#: with ONNX Runtime (its export takes minutes) and stays on eager PyTorch too.
CPU_FASTEST: dict[str, tuple[str, str]] = {
    "vimpnet": ("torch", "fp32"),
    "vimpnet_lite": ("torch", "fp32"),
}
#: CPUs with AMX/AVX512-BF16: bf16 autocast (not measured here: this CI CPU lacks AMX; the issue quotes
#: ~2600 GFLOP/s bf16 vs ~430 GFLOP/s fp32 on such a CPU, and bf16's error vs fp32 is tested small).
CPU_FASTEST_BF16: dict[str, tuple[str, str]] = {
    "vimpnet": ("torch", "bf16"),
    "vimpnet_lite": ("torch", "bf16"),
}


def _cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@dataclass(frozen=True)
class Environment:
    """What the machine offers: CUDA GPUs, Torch-TensorRT, ONNX Runtime, fast bf16 on CPU."""

    cuda_devices: int = 0
    gpu_name: str | None = None
    torch_tensorrt: bool = False
    onnxruntime: bool = False
    onnxruntime_cuda: bool = False
    cpu_fast_bf16: bool = False

    @classmethod
    def probe(cls) -> Environment:
        """Look at this machine (imports torch; cheap otherwise)."""
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        gpu_name = torch.cuda.get_device_name(0) if cuda_devices else None
        has_ort = importlib.util.find_spec("onnxruntime") is not None
        ort_cuda = False
        if has_ort:
            import onnxruntime

            ort_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        flags = _cpu_flags()
        return cls(
            cuda_devices=cuda_devices,
            gpu_name=gpu_name,
            torch_tensorrt=importlib.util.find_spec("torch_tensorrt") is not None,
            onnxruntime=has_ort,
            onnxruntime_cuda=ort_cuda,
            cpu_fast_bf16=bool(flags & {"amx_bf16", "avx512_bf16"}),
        )


@dataclass(frozen=True)
class Selection:
    """The concrete backend, device and precision an engine runs with, plus why (for logs and diagnostics)."""

    backend: str
    device: str
    precision: str
    notes: tuple[str, ...] = ()


def _resolve_device(config: EngineConfig, env: Environment) -> str:
    if config.device == "auto":
        return "cuda:0" if env.cuda_devices else "cpu"
    if config.device == "cpu":
        return "cpu"
    index = int(config.device.partition(":")[2] or 0)
    if env.cuda_devices == 0:
        raise BackendUnavailableError(
            f"device {config.device!r} requested but PyTorch sees no CUDA GPU (CPU-only torch build, no driver, "
            "or CUDA_VISIBLE_DEVICES empty); set device to auto or cpu"
        )
    if index >= env.cuda_devices:
        raise BackendUnavailableError(
            f"device {config.device!r} requested but only {env.cuda_devices} CUDA GPU(s) are visible"
        )
    return f"cuda:{index}"


def _cpu_choice(config: EngineConfig, env: Environment) -> tuple[str, str]:
    """The fastest measured CPU option for this model that honours an explicit precision."""
    table = CPU_FASTEST_BF16 if env.cpu_fast_bf16 else CPU_FASTEST
    backend, precision = table.get(config.model, ("torch", "fp32"))
    if config.precision not in ("auto", precision):
        backend, precision = "torch", config.precision
    if backend == "onnxruntime" and not env.onnxruntime:
        backend = "torch"
    return backend, precision


def select_backend(config: EngineConfig, env: Environment) -> Selection:
    """Pick backend, device and precision; raise BackendUnavailableError for explicit requests that cannot work."""
    notes: list[str] = []
    device = _resolve_device(config, env)
    on_cuda = device.startswith("cuda")
    backend = config.backend
    if backend == "tensorrt":
        if not env.torch_tensorrt:
            raise BackendUnavailableError(
                "backend 'tensorrt' requested but torch_tensorrt is not installed (pip install torch-tensorrt "
                "matching your torch version); use backend auto or torch"
            )
        if not on_cuda:
            raise BackendUnavailableError(
                "backend 'tensorrt' requested but no CUDA GPU is visible; use backend auto, torch or onnxruntime"
            )
    elif backend == "onnxruntime":
        if not env.onnxruntime:
            raise BackendUnavailableError(
                "backend 'onnxruntime' requested but onnxruntime is not installed (pip install onnxruntime)"
            )
        if on_cuda and not env.onnxruntime_cuda:
            if config.device != "auto":
                raise BackendUnavailableError(
                    f"backend 'onnxruntime' on {config.device!r} needs onnxruntime-gpu (CUDAExecutionProvider)"
                )
            device = "cpu"
            on_cuda = False
    elif backend == "auto":
        if on_cuda and env.torch_tensorrt:
            backend = "tensorrt"
        elif on_cuda:
            backend = "torch"
            notes.append("torch_tensorrt is not installed: falling back to eager PyTorch on CUDA")
        else:
            backend, cpu_precision = _cpu_choice(config, env)
            notes.append(
                f"no CUDA GPU visible: falling back to {backend} on CPU (TensorRT needs CUDA and torch_tensorrt)"
            )
            if config.precision == "auto":
                return Selection(backend, device, cpu_precision, tuple(notes))
    precision = _resolve_precision(config, backend, device, env)
    return Selection(backend, device, precision, tuple(notes))


def _resolve_precision(config: EngineConfig, backend: str, device: str, env: Environment) -> str:
    on_cuda = device.startswith("cuda")
    precision = config.precision
    if precision == "auto":
        if backend == "onnxruntime":
            return "fp32"
        if on_cuda:
            return "fp16"
        return "bf16" if env.cpu_fast_bf16 else "fp32"
    if precision == "fp16" and not on_cuda:
        raise BackendUnavailableError("precision 'fp16' needs a CUDA GPU and none is visible; use bf16 or fp32 on CPU")
    if precision == "bf16" and not on_cuda and not env.cpu_fast_bf16:
        LOGGER.warning("precision bf16 on a CPU without AMX/AVX512-BF16 is emulated and slower than fp32")
    return precision
