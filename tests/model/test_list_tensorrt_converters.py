"""tools/list_tensorrt_converters.py regenerates the converter list from a wheel (here a tiny fake one)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tests.tool_loader import load_tool

CONVERTERS = """
import operator
import torch
@dynamo_tensorrt_converter(torch.ops.aten.convolution.default, supports_dynamic_shapes=True)
@dynamo_tensorrt_converter(torch.ops.aten.grid_sampler_2d, supports_dynamic_shapes=True)
def conv(ctx, target, args, kwargs, name): ...
@dynamo_tensorrt_converter(operator.mod)
def mod(ctx, target, args, kwargs, name): ...
"""
GROUPS = """
torch_enabled_decompositions = {aten.im2col, aten.repeat}
torch_disabled_decompositions: Set = {aten.linear.default}
"""
DECOMPS = """
@register_torch_trt_decomposition(aten.silu.default, registry=TORCH_TRT_DECOMPOSITIONS)
def silu(x): ...
"""


def test_regenerates_from_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "torch_tensorrt-9.9.9-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("torch_tensorrt-9.9.9.dist-info/METADATA", "Name: torch-tensorrt\n")
        archive.writestr("torch_tensorrt/dynamo/conversion/aten_ops_converters.py", CONVERTERS)
        archive.writestr("torch_tensorrt/dynamo/lowering/_decomposition_groups.py", GROUPS)
        archive.writestr("torch_tensorrt/dynamo/lowering/_decompositions.py", DECOMPS)
    output, decomps = tmp_path / "ops.txt", tmp_path / "decomps.json"
    tool = load_tool("list_tensorrt_converters")
    assert tool.main([str(wheel), "--output", str(output), "--decompositions", str(decomps)]) == 0
    lines = [line for line in output.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["aten.convolution.default", "aten.grid_sampler_2d"]
    assert "9.9.9" in output.read_text().splitlines()[0]
    sets = json.loads(decomps.read_text())
    assert sets["torch_enabled"] == ["aten.im2col", "aten.repeat"]
    assert sets["torch_disabled"] == ["aten.linear.default"]
    assert sets["tensorrt_custom"] == ["aten.silu.default"]
