"""Resolve ``auto`` backend, device and precision against what this machine has.

``auto`` on CUDA: Torch-TensorRT when it imports, else the AOTInductor-compiled backend
when a C++ compiler and Triton are there, else eager PyTorch. On CPU: the fastest
measured option of :data:`CPU_FASTEST` (the compiled backend is not measured there).

The facts about the machine are gathered once by
:meth:`~vimpnet_ros.engine.hardware.Environment.probe` and the decision is a pure
function of (config, environment), so every branch (including "TensorRT requested on a
machine without it") is tested on a CPU-only CI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vimpnet_ros.engine.backends.registry import REGISTRY
from vimpnet_ros.engine.config import EngineConfig
from vimpnet_ros.engine.hardware import Environment, resolve_device
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
    "vimpnet_lite_gated": ("torch", "fp32"),  # vimpnet_lite plus its gate heads: the same kernels, 7 % more FLOPs
}
#: CPUs with AMX/AVX512-BF16: bf16 autocast (on an Intel Xeon with AMX a ``vimpnet_lite`` clip takes 0.50 CPU s
#: in bf16 against 0.78 in fp32, docs/studies/lite-model-stage2.md; bf16's error vs fp32 is tested small).
CPU_FASTEST_BF16: dict[str, tuple[str, str]] = {
    "vimpnet": ("torch", "bf16"),
    "vimpnet_lite": ("torch", "bf16"),
    "vimpnet_lite_gated": ("torch", "bf16"),
}


@dataclass(frozen=True)
class Selection:
    """The concrete backend, device and precision an engine runs with, plus why (for logs and diagnostics).

    ``notes`` are worth a warning (what was asked for is not what runs); ``info`` only explains a
    choice ``auto`` made as expected, e.g. the CPU on a machine without a GPU when no GPU was asked for.
    """

    backend: str
    device: str
    precision: str
    notes: tuple[str, ...] = ()
    info: tuple[str, ...] = ()


def _cpu_choice(config: EngineConfig, env: Environment) -> tuple[str, str]:
    """The fastest measured CPU option for this model that honours an explicit precision."""
    table = CPU_FASTEST_BF16 if env.cpu_fast_bf16 else CPU_FASTEST
    backend, precision = table.get(config.model, ("torch", "fp32"))
    if config.precision not in ("auto", precision):
        backend, precision = "torch", config.precision
    if not env.has(REGISTRY[backend].module):
        backend = "torch"
    return backend, precision


def select_backend(config: EngineConfig, env: Environment) -> Selection:
    """Pick backend, device and precision; raise BackendUnavailableError for explicit requests that cannot work."""
    notes: list[str] = []
    device = resolve_device(config.device, env)
    on_cuda = device.startswith("cuda")
    backend = config.backend
    if backend != "auto":
        spec = REGISTRY[backend]
        if not env.has(spec.module):
            raise BackendUnavailableError(f"backend '{backend}' requested but {spec.module} is not installed "
                                          f"({spec.install}); use backend auto or torch")  # fmt: skip
        if not on_cuda and "cpu" not in spec.devices:
            on_cpu = ", ".join(name for name, other in REGISTRY.items() if "cpu" in other.devices)
            raise BackendUnavailableError(
                f"backend '{backend}' requested but no CUDA GPU is visible; use backend auto or one of {on_cpu}"
            )
    if backend == "onnxruntime":
        if on_cuda and not env.onnxruntime_cuda:
            if config.device != "auto":
                raise BackendUnavailableError(
                    f"backend 'onnxruntime' on {config.device!r} needs onnxruntime-gpu (CUDAExecutionProvider)"
                )
            device = "cpu"
            on_cuda = False
    elif backend == "compiled":
        can_build = env.can_compile_cuda if on_cuda else env.cxx_compiler
        if not can_build:
            needs = "a C++ compiler ($CXX or g++) and Triton" if on_cuda else "a C++ compiler ($CXX or g++)"
            notes.append(f"backend 'compiled' needs {needs} to build programs: shapes missing from the engine "
                         "cache run on eager PyTorch")  # fmt: skip
    elif backend == "auto":
        if on_cuda and env.torch_tensorrt:
            backend = "tensorrt"
        elif on_cuda and env.can_compile_cuda:
            backend = "compiled"
            notes.append("torch_tensorrt is not installed: using AOTInductor-compiled programs with CUDA graphs")
        elif on_cuda:
            backend = "torch"
            notes.append("neither torch_tensorrt nor AOTInductor's tools (a C++ compiler and Triton) are available: "
                         "falling back to eager PyTorch on CUDA")  # fmt: skip
        else:
            backend, cpu_precision = _cpu_choice(config, env)
            # The CPU is what was asked for (device cpu) or what auto finds here; a requested cuda device
            # without a GPU raised in resolve_device. So this is information, not a warning.
            why = "no CUDA GPU visible" if config.device == "auto" else f"device {config.device}"
            info = f"{why}: running {backend} on the CPU (TensorRT needs CUDA and torch_tensorrt)"
            if config.precision == "auto":
                return Selection(backend, device, cpu_precision, tuple(notes), (info,))
            return Selection(backend, device, _resolve_precision(config, backend, device, env), tuple(notes), (info,))
    precision = _resolve_precision(config, backend, device, env)
    return Selection(backend, device, precision, tuple(notes))


def _resolve_precision(config: EngineConfig, backend: str, device: str, env: Environment) -> str:
    on_cuda = device.startswith("cuda")
    precision = config.precision
    if precision == "auto":
        if len(REGISTRY[backend].precisions) == 1:  # a backend that computes in one precision only
            return REGISTRY[backend].precisions[0]
        if on_cuda:
            return "fp16"
        return "bf16" if env.cpu_fast_bf16 else "fp32"
    if precision == "fp16" and not on_cuda:
        raise BackendUnavailableError("precision 'fp16' needs a CUDA GPU and none is visible; use bf16 or fp32 on CPU")
    if precision == "bf16" and not on_cuda and not env.cpu_fast_bf16:
        LOGGER.warning("precision bf16 on a CPU without AMX/AVX512-BF16 is emulated and slower than fp32")
    return precision
