"""torch.export helpers: export the generator with static shapes and list the aten ops of a graph.

The vehicle path compiles the exported program with Torch-TensorRT; an op without a
TensorRT converter would fall back to PyTorch, so the tests compare our op set with
the converters of the Torch-TensorRT release we target (see
``tools/list_tensorrt_converters.py``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.export import ExportedProgram

#: Graph targets that are not tensor ops (tuple indexing, shape arithmetic).
_NON_OPS = {operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv}


def export_generator(
    model: nn.Module, height: int, width: int, frames: int = 5, batch: int = 1, dtype: torch.dtype = torch.float32
) -> ExportedProgram:
    """``torch.export.export`` of a generator for one static input shape (n, t, 3, h, w)."""
    example = torch.rand(batch, frames, 3, height, width, dtype=dtype)
    with torch.no_grad():
        return torch.export.export(model.eval(), (example,))


def resolve_op(name: str) -> Any:
    """``aten.add.Tensor`` -> the OpOverload; ``aten.add`` -> the OpOverloadPacket."""
    parts = name.split(".")
    obj: Any = torch.ops
    for part in parts:
        obj = getattr(obj, part)
    return obj


def op_name(target: object) -> str:
    """Canonical ``namespace.op.overload`` name of a graph node target."""
    if isinstance(target, torch._ops.OpOverload):
        schema_name = target._schema.name.replace("::", ".")
        overload = target._overloadname or "default"
        return f"{schema_name}.{overload}"
    return getattr(target, "__name__", str(target))


def graph_ops(program: ExportedProgram) -> set[str]:
    """Names of every tensor op called in the program's graph (getitem and symbolic int ops excepted)."""
    names: set[str] = set()
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target in _NON_OPS:
            continue
        name = op_name(node.target)
        # Torch-TensorRT's remove_assert_nodes pass drops the _assert_* metadata checks.
        if name.startswith(("aten.sym_", "_operator.", "aten._assert_")):
            continue
        names.add(name)
    return names


def tensorrt_decomposition_table(
    torch_enabled: Iterable[str], torch_disabled: Iterable[str]
) -> dict[Any, Callable[..., Any]]:
    """Rebuild, with torch alone, the decomposition table Torch-TensorRT applies by default.

    Mirrors ``torch_tensorrt.dynamo.lowering.get_decompositions`` (non-experimental):
    every composite-implicit aten op decomposes unless TensorRT disables it (it has a
    converter for it, e.g. ``linear``, ``upsample_*``) or it is an attention op, plus
    the torch decompositions TensorRT enables explicitly. TensorRT's own replacement
    functions are not reproduced; callers accept those ops by name.
    """
    from torch._decomp import get_decompositions
    from torch._export.utils import _collect_all_valid_cia_ops_for_aten_namespace, _get_decomp_for_cia

    disabled = {resolve_op(n) for n in torch_disabled if _exists(n)}
    attention = {
        torch.ops.aten.scaled_dot_product_attention.default,
        torch.ops.aten._scaled_dot_product_flash_attention.default,
        torch.ops.aten._scaled_dot_product_efficient_attention.default,
        torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    }
    table: dict[Any, Callable[..., Any]] = {}
    for op in _collect_all_valid_cia_ops_for_aten_namespace():
        if op not in disabled and op not in attention:
            table[op] = _get_decomp_for_cia(op)
    enabled = get_decompositions([resolve_op(n) for n in torch_enabled if _exists(n)])
    return {**enabled, **table}


def _exists(name: str) -> bool:
    try:
        resolve_op(name)
    except (AttributeError, RuntimeError):
        return False
    return True


def unconverted_ops(ops: Iterable[str], converters: Iterable[str], replaced: Iterable[str] = ()) -> list[str]:
    """Ops neither converted (by overload or by packet) nor replaced by a TensorRT decomposition."""
    covered = set(converters) | set(replaced)
    missing = []
    for name in sorted(ops):
        packet = name.rsplit(".", 1)[0]
        if name not in covered and packet not in covered:
            missing.append(name)
    return missing
