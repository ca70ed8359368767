"""Which reduced precisions are fast on this machine, so "auto" never picks an emulated one.

PyTorch runs bf16/fp16 convolutions and matmuls on CPU through oneDNN only when the
CPU has native support (AVX512-BF16 / AMX, AVX512-FP16); otherwise it falls back to
generic kernels that are 30-100x slower than fp32 (measured on an AVX2-only AMD EPYC).
"""

from __future__ import annotations

import torch


def cpu_bf16_is_fast() -> bool:
    """True if oneDNN has native bf16 kernels on this CPU (bf16 autocast then beats fp32)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_fp16_is_fast() -> bool:
    """True if oneDNN has native fp16 kernels on this CPU (rare: AVX512-FP16 / AMX-FP16)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_fp16_supported())


def autocast_dtype(precision: str) -> torch.dtype | None:
    """``fp32`` -> None (no autocast), ``bf16`` -> torch.bfloat16, ``fp16`` -> torch.float16."""
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in table:
        from vimpnet_ros.errors import ConfigError

        raise ConfigError(f"precision {precision!r} is not one of {sorted(table)}")
    return table[precision]
