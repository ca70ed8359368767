"""What this machine offers and how precision and device names become torch objects: the one place for both.

:class:`Environment` gathers the facts once (CUDA GPUs, Torch-TensorRT, ONNX Runtime,
fast bf16 on the CPU); everything that depends on the machine (``auto`` backend,
device and precision in :mod:`vimpnet_ros.engine.backends.select`, autocast dtypes in
the backends, the benchmarks) asks this module, so a CPU feature or a device rule is
written down once and is read at run time, never assumed.

CPU features are read from ``/proc/cpuinfo`` *and* confirmed with oneDNN: PyTorch runs
bf16 convolutions and matmuls on the CPU through oneDNN only with native support
(AVX512-BF16 or AMX); without it they fall back to generic kernels 30-100x slower
than fp32 (measured on an AVX2-only AMD EPYC).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vimpnet_ros.engine.backends.registry import OPTIONAL_MODULES
from vimpnet_ros.engine.config import parse_device
from vimpnet_ros.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    import torch

#: The C++ compiler inductor calls (its own default, overridden by ``$CXX`` as inductor reads it).
DEFAULT_CXX = "g++"

#: Precision name -> torch dtype name (the dtype itself needs torch; see :func:`compute_dtype`).
_DTYPE_NAMES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: CPU flags that give oneDNN native bf16 kernels.
FAST_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def compute_dtype(precision: str) -> torch.dtype:
    """``fp32`` -> torch.float32, ``bf16`` -> torch.bfloat16, ``fp16`` -> torch.float16."""
    import torch

    if precision not in _DTYPE_NAMES:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(_DTYPE_NAMES)}")
    return getattr(torch, _DTYPE_NAMES[precision])


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision: None for fp32 (no autocast)."""
    return None if precision == "fp32" else compute_dtype(precision)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_bf16_is_fast() -> bool:
    """True if this CPU has native bf16 (AMX or AVX512-BF16) and oneDNN uses it."""
    import torch

    if not cpu_flags() & FAST_BF16_FLAGS:
        return False
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_description() -> str:
    """The CPU model and its vector features, for benchmark records (``Intel Xeon ..., avx2 avx512_bf16 amx_bf16``)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    features = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags()]
    return f"{model} ({' '.join(features) or 'no AVX2'})"


def installed_version(distribution: str) -> str | None:
    """The installed version of a Python distribution, or None where it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_identity(device: torch.device) -> str:
    """What a compiled program is specific to: the GPU's name on CUDA, the CPU model and vector features on CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_description()


def cxx_compiler_available() -> bool:
    """Whether the C++ compiler AOTInductor builds with (``$CXX``, default g++) is on PATH."""
    return shutil.which(os.environ.get("CXX") or DEFAULT_CXX) is not None


@dataclass(frozen=True)
class Environment:
    """What the machine offers: CUDA GPUs, Torch-TensorRT, ONNX Runtime, fast bf16 on CPU, AOTInductor's tools.

    ``cxx_compiler`` and ``triton`` say whether the ``compiled`` backend can build programs
    (AOTInductor compiles a C++ wrapper, and Triton kernels on CUDA); loading programs
    already in the engine cache needs neither.
    """

    cuda_devices: int = 0
    gpu_name: str | None = None
    torch_tensorrt: bool = False
    onnxruntime: bool = False
    onnxruntime_cuda: bool = False
    cpu_fast_bf16: bool = False
    cxx_compiler: bool = False
    triton: bool = False

    @classmethod
    def probe(cls) -> Environment:
        """Look at this machine (imports torch; cheap otherwise)."""
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        gpu_name = torch.cuda.get_device_name(0) if cuda_devices else None
        installed = {module: importlib.util.find_spec(module) is not None for module in OPTIONAL_MODULES}
        ort_cuda = False
        if installed["onnxruntime"]:
            import onnxruntime

            ort_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        return cls(
            cuda_devices=cuda_devices,
            gpu_name=gpu_name,
            **installed,
            onnxruntime_cuda=ort_cuda,
            cpu_fast_bf16=cpu_bf16_is_fast(),
            cxx_compiler=cxx_compiler_available(),
            triton=importlib.util.find_spec("triton") is not None,
        )

    def has(self, module: str | None) -> bool:
        """Whether a backend's optional package (``onnxruntime``, ``torch_tensorrt``; None = none needed) is here."""
        return module is None or bool(getattr(self, module))

    @property
    def can_compile_cuda(self) -> bool:
        """Whether AOTInductor can build CUDA programs here (a C++ compiler and Triton)."""
        return self.cxx_compiler and self.triton


def resolve_device(device: str, env: Environment) -> str:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> ``cpu`` or ``cuda:N`` here; BackendUnavailableError if there is none."""
    kind, index = parse_device(device)
    if kind == "auto":
        return "cuda:0" if env.cuda_devices else "cpu"
    if kind == "cpu":
        return "cpu"
    if env.cuda_devices == 0:
        raise BackendUnavailableError(
            f"device {device!r} requested but PyTorch sees no CUDA GPU (CPU-only torch build, no driver, "
            "or CUDA_VISIBLE_DEVICES empty); set device to auto or cpu"
        )
    if index >= env.cuda_devices:
        raise BackendUnavailableError(
            f"device {device!r} requested but only {env.cuda_devices} CUDA GPU(s) are visible"
        )
    return f"cuda:{index}"
