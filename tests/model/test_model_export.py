"""torch.export of the generator at 256x256 and Torch-TensorRT 2.13 op coverage of the graphs.

The converter list and decomposition sets are parsed from the torch-tensorrt 2.13.0
wheel by ``tools/list_tensorrt_converters.py`` (kept here as data, since the wheel
needs CUDA to import). The exported graph is lowered with the decompositions
Torch-TensorRT applies by default (rebuilt with torch alone), then every op must
have a converter or be one TensorRT replaces with its own decomposition.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vimpnet_ros.model import VimpNet, get_config
from vimpnet_ros.model.export import (
    export_generator,
    graph_ops,
    tensorrt_decomposition_table,
    unconverted_ops,
)

DATA = Path(__file__).parent / "data"


def _converters() -> list[str]:
    lines = (DATA / "tensorrt_2_13_aten_converters.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _decompositions() -> dict[str, list[str]]:
    return json.loads((DATA / "tensorrt_2_13_decompositions.json").read_text())


def test_converter_list_is_plausible() -> None:
    converters = set(_converters())
    assert len(converters) > 150
    for op in ("aten.convolution.default", "aten.grid_sampler_2d.default", "aten.scaled_dot_product_attention.default"):
        assert op in converters
    # Why soft split/composition avoid unfold/fold: TensorRT has no converter for im2col/col2im.
    assert not {"aten.im2col.default", "aten.col2im.default", "aten.im2col", "aten.col2im"} & converters


def _check_config(config_name: str, size: int = 256, frames: int = 5) -> None:
    torch.manual_seed(0)
    model = VimpNet(get_config(config_name)).eval()
    program = export_generator(model, size, size, frames=frames)
    sets = _decompositions()
    lowered = program.run_decompositions(tensorrt_decomposition_table(sets["torch_enabled"], sets["torch_disabled"]))
    ops = graph_ops(lowered)
    assert "aten.convolution.default" in ops and "aten.grid_sampler_2d.default" in ops
    missing = unconverted_ops(ops, _converters(), sets["tensorrt_custom"])
    assert not missing, f"{config_name}: ops without a Torch-TensorRT 2.13 converter: {missing}"
    assert not {"aten.im2col.default", "aten.col2im.default"} & ops
    # The exported program computes what eager does.
    lqs = torch.rand(1, frames, 3, size, size)
    with torch.no_grad():
        exported = program.module()(lqs)
        eager = model(lqs)
    for a, b in zip(exported, eager, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("config_name", ["vimpnet_lite", "vimpnet_lite_gated"])
def test_export_and_op_coverage_quick(config_name: str) -> None:
    """Default-run guard: a 3-frame 64x64 lite export (same op set, smaller unrolled graph), ungated and gated."""
    _check_config(config_name, size=64, frames=3)


@pytest.mark.slow
def test_export_and_op_coverage_lite() -> None:
    _check_config("vimpnet_lite")


@pytest.mark.slow
def test_export_and_op_coverage_full() -> None:
    _check_config("vimpnet")
