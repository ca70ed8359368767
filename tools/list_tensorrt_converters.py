#!/usr/bin/env python3
"""List the aten ops that a Torch-TensorRT wheel converts, without installing it.

Torch-TensorRT needs CUDA and TensorRT to import, so this reads its source from the
wheel instead: every ``@dynamo_tensorrt_converter(torch.ops.<ns>.<op>[.<overload>])``
in ``torch_tensorrt/dynamo/conversion/`` is one converted op, and the decomposition
sets in ``torch_tensorrt/dynamo/lowering/`` say which ops it rewrites before
conversion. Our export tests check our graphs against both files.

Usage::

    pip download --no-deps torch-tensorrt==2.13.0 -d /tmp/trt
    python tools/list_tensorrt_converters.py /tmp/trt/torch_tensorrt-2.13.0-*.whl \\
        --output tests/model/data/tensorrt_2_13_aten_converters.txt \\
        --decompositions tests/model/data/tensorrt_2_13_decompositions.json
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import zipfile
from pathlib import Path

CONVERSION_DIR = "torch_tensorrt/dynamo/conversion/"
GROUPS_FILE = "torch_tensorrt/dynamo/lowering/_decomposition_groups.py"
DECOMPOSITIONS_FILE = "torch_tensorrt/dynamo/lowering/_decompositions.py"


def _op_name(node: ast.AST) -> str | None:
    """``torch.ops.aten.add.Tensor`` -> ``aten.add.Tensor``; ``aten.add`` -> ``aten.add`` (a packet)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    parts.reverse()
    if parts[:2] == ["torch", "ops"]:
        parts = parts[2:]
    if len(parts) < 2 or parts[0] not in {"aten", "prims", "tensorrt"}:
        return None
    return ".".join(parts)


def _calls_named(tree: ast.AST, function: str) -> list[ast.Call]:
    """Every call of ``function`` (as a plain name or an attribute) in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name == function:
                found.append(node)
    return found


def converted_ops(wheel: zipfile.ZipFile) -> list[str]:
    """Sorted op names registered with ``dynamo_tensorrt_converter`` (packets end without an overload)."""
    ops: set[str] = set()
    for name in wheel.namelist():
        if not (name.startswith(CONVERSION_DIR) and name.endswith(".py")):
            continue
        tree = ast.parse(wheel.read(name).decode("utf-8"), filename=name)
        for call in _calls_named(tree, "dynamo_tensorrt_converter"):
            if call.args and (op := _op_name(call.args[0])) is not None:
                ops.add(op)
    return sorted(ops)


def _op_set(tree: ast.Module, variable: str) -> list[str]:
    """The op names in a module-level ``variable = {aten.x, ...}`` set literal."""
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == variable and isinstance(node.value, ast.Set):
            return sorted(op for element in node.value.elts if (op := _op_name(element)) is not None)
    raise SystemExit(f"{variable} not found: the wheel's lowering code changed; update this script")


def decompositions(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    """Torch-TensorRT's decomposition sets: torch ones it enables/disables and its own replacements."""
    groups = ast.parse(wheel.read(GROUPS_FILE).decode("utf-8"))
    custom_tree = ast.parse(wheel.read(DECOMPOSITIONS_FILE).decode("utf-8"))
    custom: set[str] = set()
    for call in _calls_named(custom_tree, "register_torch_trt_decomposition"):
        if call.args and (op := _op_name(call.args[0])) is not None:
            custom.add(op)
    return {
        "torch_enabled": _op_set(groups, "torch_enabled_decompositions"),
        "torch_disabled": _op_set(groups, "torch_disabled_decompositions"),
        "tensorrt_custom": sorted(custom),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the converter list (and optionally the decomposition sets) from a wheel."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="torch_tensorrt-*.whl (pip download --no-deps torch-tensorrt==X)")
    parser.add_argument("--output", type=Path, required=True, help="text file, one op a line")
    parser.add_argument("--decompositions", type=Path, help="JSON file for the decomposition sets")
    args = parser.parse_args(argv)
    with zipfile.ZipFile(args.wheel) as wheel:
        version = next(
            (
                n.split("/")[0].removesuffix(".dist-info").split("-")[1]
                for n in wheel.namelist()
                if n.endswith(".dist-info/METADATA")
            ),
            "unknown",
        )
        ops = converted_ops(wheel)
        header = (
            f"# aten/prims ops with a Torch-TensorRT {version} converter, from {args.wheel.name}\n"
            "# regenerate: python tools/list_tensorrt_converters.py WHEEL --output THIS_FILE\n"
            "# an entry without an overload (aten.x) is a packet: every overload of aten.x\n"
        )
        args.output.write_text(header + "".join(f"{op}\n" for op in ops))
        if args.decompositions:
            sets = {"torch_tensorrt_version": version, **decompositions(wheel)}
            args.decompositions.write_text(json.dumps(sets, indent=1) + "\n")
    print(f"{len(ops)} converted ops -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
