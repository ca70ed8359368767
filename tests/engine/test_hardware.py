"""Machine facts and the precision/device rules: one module, read at run time."""

from __future__ import annotations

import pytest
import torch

from vimpnet_ros.engine.config import parse_device
from vimpnet_ros.engine.hardware import (
    Environment,
    autocast_dtype,
    compute_dtype,
    cpu_bf16_is_fast,
    cpu_description,
    cpu_flags,
    resolve_device,
)
from vimpnet_ros.errors import BackendUnavailableError, ConfigError


def test_precision_names_map_to_dtypes() -> None:
    assert compute_dtype("fp32") is torch.float32 and compute_dtype("fp16") is torch.float16
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16") is torch.bfloat16
    with pytest.raises(ConfigError, match="fp64"):
        compute_dtype("fp64")


@pytest.mark.parametrize(
    ("text", "parsed"), [("auto", ("auto", 0)), ("cpu", ("cpu", 0)), ("cuda", ("cuda", 0)), ("cuda:3", ("cuda", 3))]
)
def test_device_syntax(text: str, parsed: tuple[str, int]) -> None:
    assert parse_device(text) == parsed


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "CPU", 0, None])
def test_bad_device_names_say_what_is_allowed(text: object) -> None:
    with pytest.raises(ConfigError, match="cuda:N"):
        parse_device(text)


def test_device_resolution_against_the_machine() -> None:
    no_gpu, two_gpus = Environment(cuda_devices=0), Environment(cuda_devices=2)
    assert resolve_device("auto", no_gpu) == "cpu" and resolve_device("auto", two_gpus) == "cuda:0"
    assert resolve_device("cuda", two_gpus) == "cuda:0" and resolve_device("cuda:1", two_gpus) == "cuda:1"
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        resolve_device("cuda", no_gpu)
    with pytest.raises(BackendUnavailableError, match="only 2"):
        resolve_device("cuda:2", two_gpus)


def test_cpu_features_are_read_not_assumed() -> None:
    """bf16 is 'fast' only where the flags say AMX/AVX512-BF16 and oneDNN agrees."""
    flags = cpu_flags()
    fast = cpu_bf16_is_fast()
    assert isinstance(fast, bool)
    if not flags & {"amx_bf16", "avx512_bf16"}:
        assert not fast
    assert "(" in cpu_description()
    assert Environment.probe().cpu_fast_bf16 == fast
